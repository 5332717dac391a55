"""Tiny copies of CASSLE's targets in the layouts their readers take (workloads/data/target_readers.py):
ImageNet-100 as an ImageNet root of class folders (every one of the 100 listed wnids and one more,
which the reader must drop) and the same packed with `sassl pack`; MIT Indoor-67 and CUB-200-2011
with their list files; 300W as PNGs with .pts landmark files of known coordinates."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fake_datasets import _jpeg, pack_imagenet

ROOT = Path(__file__).resolve().parents[1]
IMAGENET100 = ROOT / "workloads" / "data" / "assets" / "imagenet100.txt"
NOT_IN_IMAGENET100 = "n01440764"  # tench: an ImageNet class outside the 100


def imagenet100_folders(root: Path, wnids: list[str] | None = None, per_class: int = 1, extra: int = 2,
                        seed: int = 20) -> Path:
    """root/{train,val}/<wnid>/<wnid>_<i>.JPEG for ``wnids`` (default: all 100 of the list) plus
    NOT_IN_IMAGENET100 with ``extra`` images, small (24 × 32 px) to pack fast."""
    rng = np.random.default_rng(seed)
    wnids = IMAGENET100.read_text().split() if wnids is None else wnids
    for split in ("train", "val"):
        for wnid in [*wnids, NOT_IN_IMAGENET100]:
            for i in range(extra if wnid == NOT_IN_IMAGENET100 else per_class):
                _jpeg(root / split / wnid / f"{wnid}_{i}.JPEG", rng, size=24)
    return root


def imagenet100_packed(folders: Path, out: Path) -> Path:
    """The fake ImageNet root packed as the recipe packs ImageNet (`sassl pack imagefolder`)."""
    return pack_imagenet(folders, out)


def mit67(root: Path, classes: tuple[str, ...] = ("kitchen", "airport_inside", "bar"), train: int = 3,
          test: int = 2, unlisted: int = 1, seed: int = 21) -> Path:
    """root/Images/<class>/<file>.jpg, root/TrainImages.txt and TestImages.txt (``<class>/<file>``,
    CRLF line ends as the published files have); ``unlisted`` images per class in neither list."""
    rng = np.random.default_rng(seed)
    lists: dict[str, list[str]] = {"TrainImages.txt": [], "TestImages.txt": []}
    for c in classes:
        for i in range(train + test + unlisted):
            rel = f"{c}/{c}_{i:03d}.jpg"
            _jpeg(root / "Images" / rel, rng)
            if i < train + test:
                lists["TrainImages.txt" if i < train else "TestImages.txt"].append(rel)
    for name, rows in lists.items():
        (root / name).write_bytes(("\r\n".join(rows) + "\r\n").encode())
    return root


def cub200(root: Path, classes: int = 3, per_class: int = 4, seed: int = 22) -> Path:
    """root/CUB_200_2011/ as the archive unpacks: images/<NNN.Name>/<Name>_<k>.jpg and images.txt
    (<id> <path>), image_class_labels.txt (<id> <class from 1>), train_test_split.txt (<id> <1 train,
    0 test>: every other image train), classes.txt (<id> <NNN.Name>). Ids run class by class, as the
    release's."""
    rng = np.random.default_rng(seed)
    base = root / "CUB_200_2011"
    names = [f"{c + 1:03d}.Bird_{chr(65 + c)}" for c in range(classes)]
    images, labels, split = [], [], []
    n = 0
    for c, folder in enumerate(names, 1):
        for k in range(per_class):
            n += 1
            rel = f"{folder}/{folder.split('.')[1]}_{k:04d}_{100 + n}.jpg"
            _jpeg(base / "images" / rel, rng)
            images.append(f"{n} {rel}")
            labels.append(f"{n} {c}")
            split.append(f"{n} {1 if k % 2 == 0 else 0}")
    for name, rows in (("images.txt", images), ("image_class_labels.txt", labels), ("train_test_split.txt", split),
                       ("classes.txt", [f"{c} {f}" for c, f in enumerate(names, 1)])):
        (base / name).write_text("\n".join(rows) + "\n")
    return root


def w300_points(k: int) -> np.ndarray:
    """The 68 landmarks (x, y) of fake 300W image k: x spans [20, 80] and y [10, 50] exactly
    (both ranges reached), shifted by (k/4, k/8) so the crop's corner is fractional for k > 0."""
    j = np.arange(68)
    x = 20 + np.round(60 * j / 67, 3)
    y = 10 + np.round(40 * ((7 * j) % 68) / 67, 3)
    return np.stack([x + k / 4, y + k / 8], axis=1)


def _pts(path: Path, points: np.ndarray) -> None:
    rows = "\n".join(f"{x:.3f} {y:.3f}" for x, y in points)
    path.write_text(f"version: 1\nn_points:  68\n{{\n{rows}\n}}\n")


def w300(root: Path, indoor: int = 6, outdoor: int = 5, seed: int = 23) -> Path:
    """root/01_Indoor/indoor_<NNN>.png and root/02_Outdoor/outdoor_<NNN>.png (100 × 90 px), each
    with its .pts (w300_points of its place k in the sorted list: indoor first)."""
    rng = np.random.default_rng(seed)
    k = 0
    for folder, stem, count in (("01_Indoor", "indoor", indoor), ("02_Outdoor", "outdoor", outdoor)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(1, count + 1):
            small = rng.integers(0, 256, (9, 10, 3), dtype=np.uint8)
            Image.fromarray(small).resize((100, 90), Image.BILINEAR).save(root / folder / f"{stem}_{i:03d}.png")
            _pts(root / folder / f"{stem}_{i:03d}.pts", w300_points(k))
            k += 1
    return root
