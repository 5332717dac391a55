"""Readers for two of CASSLE's Table-2 targets that torchvision does not split the way the
authors did: Caltech-101 (torchvision has no split) and SUN397 split 1 (torchvision's SUN397
reads every image, with no partitions). Stanford Cars and FGVC-Aircraft need no reader of their
own: torchvision's classes read them (registry._TORCHVISION).

Both read the files as published and give a source per split; registry.open_source routes
`caltech101` and `sun397` here.

Caltech-101. CASSLE (gmum/CASSLE, datasets.py, load_datasets 'caltech101') and AugSelf
(hankook/AugSelf, datasets.py) index torchvision's Caltech101 with `splits/caltech101.pth`:
2,525 train / 505 val / 5,647 test indices. Read per class (torchvision's order: sorted class
folders without BACKGROUND_Google, files image_0001.jpg ...), that file holds exactly 25 train
and 5 val images of every one of the 101 classes, drawn at random within the class (Faces:
train 0, 16, 22, 49, ...), and the rest of each class as test. No seed reproduces it, so this is
the same rule, seeded: per class, a permutation from a generator seeded by (CALTECH101_SEED,
CRC-32 of the class name) gives 25 train, then 5 val, then the rest test. Indices are into
torchvision's order, so a class's split depends only on its own files.

SUN397 split 1. CASSLE's SUN397 (datasets.py) reads ClassName.txt (``/a/abbey`` ...; label =
line order) and Training_01.txt / Testing_01.txt (``/a/abbey/sun_xxx.jpg``), each 50 images per
class. Its train/val cut of Training_01 (splits/sun397.pth: 40 + 10 per class) is left to the
probe, which carves its own validation split from `train`.
"""
from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .sources import FileSource

__all__ = ["TARGET_SPLITS", "open_target", "caltech101_split", "CALTECH101_PER_CLASS", "CALTECH101_SEED",
           "SUN397_PARTITION"]

TARGET_SPLITS: dict[str, tuple[str, ...]] = {
    "caltech101": ("train", "val", "test", "trainval"),
    "sun397": ("train", "test"),
}
CALTECH101_PER_CLASS = {"train": 25, "val": 5}  # per class; the rest of the class is test
CALTECH101_SEED = 0
CALTECH101_BACKGROUND = "BACKGROUND_Google"  # not a class (torchvision and the authors drop it)
SUN397_PARTITION = 1  # of the ten official partitions

_CALTECH_LAYOUT = ("<root>/caltech101/101_ObjectCategories/<class>/image_0001.jpg ... (101 class folders "
                   "and BACKGROUND_Google, as torchvision's Caltech101 unpacks caltech-101.zip; set download: "
                   "true to let torchvision fetch it)")
_SUN_LAYOUT = ("<root>/SUN397/ClassName.txt, <root>/SUN397/Partitions/{Training,Testing}_01.txt (or both "
               "files beside ClassName.txt) and the images as <root>/SUN397/a/abbey/sun_*.jpg ...: "
               "SUN397.tar.gz and Partitions.zip from https://vision.princeton.edu/projects/2010/SUN/")


class TargetSource(FileSource):
    """Images listed by a published split, read from files (unreadable ones dropped and reported)."""

    def __init__(self, name: str, split: str, root: Path, files: list[Path], labels: list[int],
                 classes: list[str], image_size: int, check: str = "verify"):
        super().__init__(name, root, files, labels, classes, image_size, check)
        self.split = split

    def describe(self, i: int) -> str:
        return f"{self.name}/{self.split}: {self.files[i]}"


def open_target(name: str, split: str, image_size: int, root: str | None, download: bool = False) -> TargetSource:
    layout = _CALTECH_LAYOUT if name == "caltech101" else _SUN_LAYOUT
    if root is None:
        raise DatasetError(f"{name}: no root folder given (root is None); expected {layout}")
    root_path = Path(root).expanduser().resolve()  # files and root alike absolute (identity() relates them)
    if name == "caltech101":
        return _caltech101(root_path, split, image_size, download)
    if download:
        raise DatasetError(f"sun397: download is not possible (torchvision fetches the images but not the "
                           f"partitions); expected {_SUN_LAYOUT}")
    return _sun397(root_path, split, image_size)


# ---------------------------------------------------------------- Caltech-101

def _caltech101_listing(root: Path, download: bool) -> tuple[Path, list[str], list[Path], np.ndarray]:
    if download:
        if not root.exists():
            root.mkdir(parents=True)
        import torchvision.datasets as tvd  # deferred: only a download needs it

        try:
            tvd.Caltech101(str(root), download=True)
        except Exception as e:  # network and archive errors of many types
            raise DatasetError(f"caltech101: torchvision could not download it into {root}: {e}") from e
    top = next((p for p in (root / "caltech101" / "101_ObjectCategories", root / "101_ObjectCategories")
                if p.is_dir()), None)
    if top is None:
        raise DatasetError(f"caltech101: no folder {root / 'caltech101' / '101_ObjectCategories'}; "
                           f"expected {_CALTECH_LAYOUT}")
    classes = sorted(d.name for d in top.iterdir()
                     if d.is_dir() and not d.name.startswith(".") and d.name != CALTECH101_BACKGROUND)
    files: list[Path] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):  # torchvision's order: image_0001.jpg, image_0002.jpg ...
        found = sorted(p for p in (top / cls).iterdir() if p.suffix.lower() == ".jpg" and not p.name.startswith("."))
        files += found
        labels += [label] * len(found)
    if not files:
        raise DatasetError(f"caltech101: no class folders of .jpg images in {top}; expected {_CALTECH_LAYOUT}")
    return top, classes, files, np.asarray(labels, dtype=np.int64)


def caltech101_split(labels: np.ndarray, classes: list[str], seed: int = CALTECH101_SEED,
                     per_class: dict[str, int] = CALTECH101_PER_CLASS) -> dict[str, np.ndarray]:
    """Indices of train / val / test (and trainval): per class, a permutation seeded by
    (seed, CRC-32 of the class name) gives per_class['train'] train, then per_class['val'] val,
    then the rest test. A class with no image left for test is an error."""
    n_train, n_val = per_class["train"], per_class["val"]
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for label, cls in enumerate(classes):
        idx = np.flatnonzero(labels == label)
        if len(idx) <= n_train + n_val:
            raise DatasetError(f"caltech101: class {cls!r} has {len(idx)} images, the split needs more than "
                               f"{n_train + n_val} ({n_train} train + {n_val} val + test)")
        idx = np.random.default_rng([seed, zlib.crc32(cls.encode())]).permutation(idx)
        parts["train"].append(idx[:n_train])
        parts["val"].append(idx[n_train:n_train + n_val])
        parts["test"].append(idx[n_train + n_val:])
    split = {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in parts.items()}
    split["trainval"] = np.sort(np.concatenate([split["train"], split["val"]]))
    return split


def _caltech101(root: Path, split: str, image_size: int, download: bool) -> TargetSource:
    top, classes, files, labels = _caltech101_listing(root, download)
    chosen = caltech101_split(labels, classes)[split]
    return TargetSource("caltech101", split, top, [files[i] for i in chosen], labels[chosen].tolist(), classes,
                        image_size)


# ---------------------------------------------------------------- SUN397

def _sun397_dir(root: Path) -> Path:
    for d in (root / "SUN397", root):
        if (d / "ClassName.txt").is_file() or (d / "Partitions" / "ClassName.txt").is_file():
            return d
    raise DatasetError(f"sun397: no ClassName.txt in {root / 'SUN397'} (nor in {root}, nor in their "
                       f"Partitions/); expected {_SUN_LAYOUT}")


def _sun397(root: Path, split: str, image_size: int) -> TargetSource:
    data = _sun397_dir(root)
    names = next(p for p in (data / "ClassName.txt", data / "Partitions" / "ClassName.txt") if p.is_file())
    class_paths = [line.strip() for line in names.read_text().splitlines() if line.strip()]  # "/a/abbey"
    index = {c: i for i, c in enumerate(class_paths)}
    stem = f"{'Training' if split == 'train' else 'Testing'}_{SUN397_PARTITION:02d}.txt"
    listing = next((p for p in (data / "Partitions" / stem, data / stem) if p.is_file()), None)
    if listing is None:
        raise DatasetError(f"sun397 ({split}): no {data / 'Partitions' / stem} (nor {data / stem}); "
                           f"expected {_SUN_LAYOUT}")
    files, labels = [], []
    for line in listing.read_text().splitlines():  # "/a/abbey/sun_aqswjsnjlrfzzhiz.jpg"
        line = line.strip()
        if not line:
            continue
        cls = line.rsplit("/", 1)[0]
        if cls not in index:
            raise DatasetError(f"sun397: {listing} lists {line!r}, whose class {cls!r} is not in {names}")
        files.append(data / line.lstrip("/"))
        labels.append(index[cls])
    if not files:
        raise DatasetError(f"sun397 ({split}): {listing} lists no images; expected {_SUN_LAYOUT}")
    classes = [c[3:] if c[2:3] == "/" else c.lstrip("/") for c in class_paths]  # torchvision's: "abbey"
    return TargetSource("sun397", split, data, files, labels, classes, image_size)
