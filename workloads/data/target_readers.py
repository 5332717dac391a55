"""Readers for CASSLE's Table-2 targets that torchvision lacks, each from its published layout.

* ``imagenet100``: the 100 ImageNet classes of CMC (Tian et al.) that AugSelf and CASSLE use
  (``assets/imagenet100.txt``, label = line), read from an extracted ImageNet root
  (``root/{train,val}/<wnid>/*.JPEG``) or from a packed ImageNet (``sassl pack``, shards under
  ``root/<split>``), keeping only those classes and copying nothing;
* ``mit67``: MIT Indoor-67, ``root/Images/<class>/*.jpg`` split by ``TrainImages.txt`` /
  ``TestImages.txt``;
* ``cub200``: CUB-200-2011, split by its ``train_test_split.txt``;
* ``w300``: 300 Faces In-the-Wild (68 facial landmarks, a regression target), cropped and split
  as CASSLE's ``FacesInTheWild300W`` does (gmum/CASSLE datasets.py).

Each is an ImageSource (sources.py): decoded one image at a time, resized by to_square_tensor,
unreadable files dropped and reported at construction as the folder sources do. Build them
with registry.open_source.
"""
from __future__ import annotations

import hashlib
import io
import math
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from .errors import DatasetError
from .remote import is_uri
from .shards import MANIFEST, PackedShards
from .sources import FOLDER_EXTENSIONS, ImageSource, open_rgb_file, readable

__all__ = ["READER_SPLITS", "open_reader", "imagenet100_wnids", "IMAGENET100_LIST", "ImageNet100Folders",
           "ImageNet100Packed", "MIT67Source", "CUB200Source", "W300Source", "w300_split_indices",
           "read_pts", "square_geometry"]

IMAGENET100_LIST = Path(__file__).resolve().parent / "assets" / "imagenet100.txt"

READER_SPLITS: dict[str, tuple[str, ...]] = {
    "imagenet100": ("train", "val"),
    "mit67": ("train", "test"),
    "cub200": ("train", "test"),
    "w300": ("train", "val", "test"),
}


def open_reader(name: str, split: str, image_size: int, root: str | None) -> ImageSource:
    """Dataset ``name`` (one of READER_SPLITS) at ``split``, read from ``root``."""
    if root is None:
        raise DatasetError(f"{name}: needs root=<folder> holding the dataset in its published layout "
                           f"({_LAYOUTS[name]})")
    if name == "imagenet100":
        return open_imagenet100(str(root), split, image_size)
    reader = {"mit67": MIT67Source, "cub200": CUB200Source, "w300": W300Source}[name]
    return reader(Path(str(root)).expanduser(), split, image_size)


_LAYOUTS = {
    "imagenet100": "root/{train,val}/<wnid>/*.JPEG as torchvision's ImageNet leaves it, or a packed "
                   "ImageNet with root/<split>/manifest.json written by `sassl pack`",
    "mit67": "root/Images/<class>/<file>.jpg, root/TrainImages.txt and root/TestImages.txt, each line "
             "<class>/<file>.jpg",
    "cub200": "root/ or root/CUB_200_2011/ holding images/<class>/<file>.jpg, images.txt, "
              "image_class_labels.txt, train_test_split.txt and classes.txt",
    "w300": "root/01_Indoor/*.png and root/02_Outdoor/*.png, each with its same-named .pts file",
}


# --- shared: a list of image files -----------------------------------------------------------

def _first(items: Sequence[Any], k: int = 3) -> str:
    return ", ".join(str(x) for x in items[:k]) + (" ..." if len(items) > k else "")


class _ListedImages(ImageSource):
    """Images from a given list of files and labels; unreadable files are dropped (and reported)
    at construction, as the folder sources do. ``positions`` are the kept files' places in the
    list given."""

    def __init__(self, name: str, split: str, root: Path, files: list[Path], labels: Sequence[int],
                 classes: Sequence[str], image_size: int, check: str):
        self.root = root
        keep = [readable(f, check) for f in files]
        self.skipped: list[str] = [str(f) for f, ok in zip(files, keep) if not ok]
        self.files: list[Path] = [f for f, ok in zip(files, keep) if ok]
        self.positions = np.flatnonzero(np.asarray(keep, dtype=bool)).astype(np.int64)
        if not self.files:
            raise DatasetError(f"{name} ({split}): no readable images under {root} ({len(files)} listed, "
                               f"{len(self.skipped)} unreadable)")
        if self.skipped:
            warnings.warn(f"{name} ({split}): skipped {len(self.skipped)} unreadable image(s) under {root}: "
                          f"{_first(self.skipped)}", stacklevel=3)
        super().__init__(name, split, classes, np.asarray(labels, dtype=np.int64)[self.positions], image_size)

    def _open(self, i: int) -> Image.Image:
        return open_rgb_file(self.name, self.files[i])

    def _load(self, i: int) -> Image.Image:
        return self._open(i)

    def describe(self, i: int) -> str:
        return str(self.files[i])

    def identity(self) -> str:
        h = hashlib.sha256()
        for part in (type(self).__name__, self.name, self.split, self.root):
            h.update(str(part).encode() + b"\0")
        for f in self.files:
            st = f.stat()
            h.update(f"{f.relative_to(self.root)}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        h.update(self.labels.numpy().tobytes())
        return h.hexdigest()[:16]


def _need(name: str, paths: Sequence[Path]) -> None:
    for p in paths:
        if not p.exists():
            raise DatasetError(f"{name}: {p} is missing; expected the published layout: {_LAYOUTS[name]}")


def _list_lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text(errors="replace").splitlines() if line.strip()]


def _missing_files(name: str, files: list[Path], where: str) -> None:
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise DatasetError(f"{name}: {len(missing)} of the {len(files)} images {where} lists are missing: "
                           f"{_first(missing)}")


# --- ImageNet-100 ----------------------------------------------------------------------------

_WNID = re.compile(r"n\d{8}")


def imagenet100_wnids() -> list[str]:
    """The 100 WordNet ids of CMC's ImageNet-100 (HobbitLong/CMC imagenet100.txt), in its order."""
    return IMAGENET100_LIST.read_text().split()


def open_imagenet100(root: str, split: str, image_size: int, check: str = "verify") -> ImageSource:
    """A packed ImageNet when root/<split> holds a sassl-pack manifest (or root is an object-store
    URI), else an ImageNet root in class folders (root/<split>/<wnid>/)."""
    if is_uri(root) or (Path(root).expanduser() / split / MANIFEST).is_file():
        return ImageNet100Packed(root, split, image_size)
    base = Path(root).expanduser()
    if (base / split).is_dir():
        return ImageNet100Folders(base, split, image_size, check)
    what = "does not exist" if not base.exists() else f"holds neither {base / split}/<wnid>/ nor " \
                                                        f"{base / split / MANIFEST}"
    raise DatasetError(f"imagenet100 ({split}): {base} {what}; root is the folder holding train/ and val/: "
                       f"{_LAYOUTS['imagenet100']}")


class ImageNet100Folders(_ListedImages):
    """ImageNet-100 from class folders root/<split>/<wnid>/, in the order of CASSLE's ImageNet100
    (an ImageFolder of root/<split>, i.e. sorted wnid folders and sorted files, filtered to the
    100 classes), labelled by the list's order. Other class folders are ignored."""

    def __init__(self, root: Path, split: str, image_size: int, check: str = "verify"):
        wnids = imagenet100_wnids()
        folder = root / split
        missing = [w for w in wnids if not (folder / w).is_dir()]
        if missing:
            raise DatasetError(f"imagenet100 ({split}): {len(missing)} of the 100 class folders are missing "
                               f"under {folder}: {_first(missing)} (expected {folder}/<wnid>/*.JPEG for "
                               f"every wnid of {IMAGENET100_LIST.name}; the val split too must be sorted "
                               f"into class folders, as torchvision's ImageNet does)")
        root = root.resolve()
        index = {w: k for k, w in enumerate(wnids)}
        files, labels = [], []
        for wnid in sorted(wnids):
            found = sorted(p for p in (root / split / wnid).rglob("*") if p.suffix.lower() in FOLDER_EXTENSIONS
                           and not p.name.startswith(".") and p.is_file())
            files += found
            labels += [index[wnid]] * len(found)
        super().__init__("imagenet100", split, root, files, labels, wnids, image_size, check)


class ImageNet100Packed(ImageSource):
    """ImageNet-100 as the rows of a packed ImageNet (``sassl pack``) whose class is one of the
    100 wnids; the class names are the pack's (manifest.json ``classes``, the class folders'
    names when the pack was made with ``sassl pack imagefolder``). Rows stay in the pack's order
    (shard by shard, so a sequential pass reads each shard once)."""

    def __init__(self, root: str, split: str, image_size: int):
        self.shards = PackedShards(root, split)
        wnids = imagenet100_wnids()
        classes = self.shards.classes
        have = set(classes)
        if not any(_WNID.fullmatch(c) for c in classes):
            raise DatasetError(f"imagenet100 ({split}): the classes of the pack at {self.shards.folder} are not "
                               f"WordNet ids ({_first(classes)}); pack ImageNet's class folders instead "
                               f"(`sassl pack imagefolder OUT --root <imagenet>/{split} --split {split}`), whose "
                               "classes are the folders' wnids")
        missing = [w for w in wnids if w not in have]
        if missing:
            raise DatasetError(f"imagenet100 ({split}): {len(missing)} of the 100 classes are not in the pack at "
                               f"{self.shards.folder} (its manifest's classes): {_first(missing)}")
        index = {w: k for k, w in enumerate(wnids)}
        remap = np.asarray([index.get(c, -1) for c in classes] + [-1], dtype=np.int64)
        old = self.shards.column("label").astype(np.int64)
        old = np.where((old >= 0) & (old < len(classes)), old, len(classes))  # out of range: dropped
        labels = remap[old]
        self.rows = np.flatnonzero(labels >= 0).astype(np.int64)
        super().__init__("imagenet100", split, wnids, labels[self.rows], image_size)

    def _load(self, i: int) -> Image.Image:
        row = int(self.rows[i])
        try:
            return Image.open(io.BytesIO(self.shards.jpeg(row))).convert("RGB")
        except Exception as e:  # `sassl pack` wrote it, so this is a damaged shard
            raise DatasetError(f"imagenet100: cannot decode row {row} of {self.shards.folder}: {e}") from e

    def describe(self, i: int) -> str:
        return f"{self.shards.folder}[{int(self.rows[i])}]"

    def source_index(self) -> np.ndarray:
        """Each image's index in the source the pack was made from (its ``index`` column)."""
        return self.shards.column("index")[self.rows]

    def identity(self) -> str:
        h = hashlib.sha256(f"imagenet100-packed\0{self.shards.identity()}\0{self.split}\0".encode())
        h.update(self.rows.tobytes())
        return h.hexdigest()[:16]


# --- MIT Indoor-67 ---------------------------------------------------------------------------

class MIT67Source(_ListedImages):
    """MIT Indoor-67 as published: the images of ``TrainImages.txt`` (5,360: 80 per class) or
    ``TestImages.txt`` (1,340: 20 per class) under root/Images; classes: the sorted class names
    the two lists use (67), the same for both splits. The other images of Images/ are in neither
    split. (CASSLE reads the same split from Kaggle's train/ and test/ folders as ImageFolders.)"""
    LISTS = {"train": "TrainImages.txt", "test": "TestImages.txt"}

    def __init__(self, root: Path, split: str, image_size: int, check: str = "verify"):
        root = root.resolve() if root.exists() else root
        _need("mit67", [root / "Images", *(root / f for f in self.LISTS.values())])
        rows = {s: _list_lines(root / f) for s, f in self.LISTS.items()}
        bad = [r for rs in rows.values() for r in rs if "/" not in r]
        if bad:
            raise DatasetError(f"mit67: lines of {root}/{self.LISTS['train']} or {self.LISTS['test']} are not "
                               f"<class>/<file>: {_first(bad)}")
        classes = sorted({r.split("/", 1)[0] for rs in rows.values() for r in rs})
        index = {c: k for k, c in enumerate(classes)}
        files = [root / "Images" / r for r in rows[split]]
        _missing_files("mit67", files, f"{root / self.LISTS[split]}")
        labels = [index[r.split("/", 1)[0]] for r in rows[split]]
        super().__init__("mit67", split, root, files, labels, classes, image_size, check)


# --- CUB-200-2011 ----------------------------------------------------------------------------

class CUB200Source(_ListedImages):
    """CUB-200-2011 as published: ``train_test_split.txt`` picks the split (1 train: 5,994, 0 test:
    5,794), ``image_class_labels.txt`` the class (1..200, label = class - 1), ``classes.txt`` the
    names. Images are ordered by their path (as an ImageFolder of a split folder orders them)."""
    FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")

    def __init__(self, root: Path, split: str, image_size: int, check: str = "verify"):
        base = root / "CUB_200_2011" if (root / "CUB_200_2011" / "images.txt").is_file() else root
        base = base.resolve() if base.exists() else base
        _need("cub200", [base / "images", *(base / f for f in self.FILES)])
        tables = {}
        for f in self.FILES:
            pairs = [line.split(maxsplit=1) for line in _list_lines(base / f)]
            if any(len(p) != 2 for p in pairs):
                raise DatasetError(f"cub200: {base / f} has lines that are not '<id> <value>'")
            tables[f] = dict(pairs)
        paths, labels, is_train = (tables[f] for f in self.FILES[:3])
        class_ids = sorted(tables["classes.txt"], key=int)
        classes = [tables["classes.txt"][c] for c in class_ids]
        unlisted = [i for i in paths if i not in labels or i not in is_train]
        if unlisted:
            raise DatasetError(f"cub200: {len(unlisted)} image id(s) of {base / 'images.txt'} have no class or "
                               f"split in image_class_labels.txt / train_test_split.txt: {_first(unlisted)}")
        want = "1" if split == "train" else "0"
        chosen = sorted((paths[i], int(labels[i]) - 1) for i in paths if is_train[i] == want)
        out_of_range = [p for p, lab in chosen if not 0 <= lab < len(classes)]
        if out_of_range:
            raise DatasetError(f"cub200: images with a class outside 1..{len(classes)}: {_first(out_of_range)}")
        files = [base / "images" / p for p, _ in chosen]
        _missing_files("cub200", files, f"{base / 'images.txt'} ({split})")
        super().__init__("cub200", split, base, files, [lab for _, lab in chosen], classes, image_size, check)


# --- 300W --------------------------------------------------------------------------------------

W300_FOLDERS = ("01_Indoor", "02_Outdoor")
W300_FRACTIONS = (0.3, 0.3, 0.4)   # train / val / test, CASSLE's generate_dataset_splits
W300_SEED = 0
W300_POINTS = 68


def w300_split_indices(n: int) -> dict[str, np.ndarray]:
    """CASSLE's 300W split of n images (gmum/CASSLE datasets.py, FacesInTheWild300W.
    generate_dataset_splits, split_sizes [0.3, 0.3, 0.4], shots None): np.random.seed(0), shuffle
    arange(n), then train = [:int(n*0.3)], valid = [int(n*0.3):int(n*0.6)], test = the rest, each
    in the shuffled order (not sorted), as CASSLE indexes its image list."""
    idx = np.arange(n)
    np.random.RandomState(W300_SEED).shuffle(idx)  # the global np.random.seed(0) + shuffle, without the global state
    a, b = int(n * W300_FRACTIONS[0]), int(n * sum(W300_FRACTIONS[:2]))
    return {"train": idx[:a], "val": idx[a:b], "test": idx[b:]}


def read_pts(path: Path) -> np.ndarray:
    """The landmarks of a .pts file (``version: 1``, ``n_points: 68``, ``{``, one ``x y`` per line,
    ``}``) as float32 (points × 2), the precision CASSLE parses them at (torch.tensor of floats)."""
    lines = [line.strip() for line in path.read_text(errors="replace").splitlines()]
    try:
        start, end = lines.index("{"), lines.index("}")
        points = np.asarray([[float(v) for v in line.split()] for line in lines[start + 1:end] if line],
                            dtype=np.float32)
    except ValueError as e:
        raise DatasetError(f"w300: {path} is not a .pts file (version, n_points, then x y lines in {{ }}): {e}") from e
    if points.shape != (W300_POINTS, 2):
        raise DatasetError(f"w300: {path} holds {points.shape[0] if points.ndim == 2 else 0} points of "
                           f"shape {points.shape[1:]}, expected {W300_POINTS} x y pairs")
    return points


def square_geometry(w: int, h: int, size: int) -> tuple[float, float, int, int]:
    """What to_square_tensor (sources.py) does to a w × h image, as (sx, sy, left, top): a point
    (x, y) of the image (pixel-edge coordinates, PIL's) lands at (x·sx − left, y·sy − top) of the
    size × size result. Shorter side -> size (rounded per side, at least size), centre crop;
    an image already size × size is left as it is."""
    if (w, h) == (size, size):
        return 1.0, 1.0, 0, 0
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    return nw / w, nh / h, (nw - size) // 2, (nh - size) // 2


def face_box(points: np.ndarray) -> tuple[float, float, float, float]:
    """CASSLE's face crop: a square of side max(ceil(x range), ceil(y range)) from the landmarks'
    top-left corner (x1, y1), as the box PIL crops (left, top, right, bottom): PIL rounds each
    coordinate (round half to even) and fills any part outside the image with black."""
    x1, x2 = float(points[:, 0].min()), float(points[:, 0].max())
    y1, y2 = float(points[:, 1].min()), float(points[:, 1].max())
    side = max(math.ceil(x2 - x1), math.ceil(y2 - y1))
    return x1, y1, x1 + side, y1 + side


def w300_target(points: np.ndarray, image_size: int) -> np.ndarray:
    """The 136-vector CASSLE regresses, in this repository's frame: the landmarks relative to the
    face crop's (unrounded) corner, through to_square_tensor's resize and centre crop of that
    crop (square_geometry), flattened (x1, y1, ..., x68, y68) and L2-normalised (F.normalize).
    CASSLE maps them the same way into the 224-px square of its Resize + CenterCrop; once
    normalised the two agree exactly for a square crop (the usual case) and up to the resizes'
    rounding otherwise."""
    box = face_box(points)
    left, top, right, bottom = (int(round(v)) for v in box)  # the size of the crop PIL returns
    sx, sy, ox, oy = square_geometry(right - left, bottom - top, image_size)
    rel = points.astype(np.float64) - np.asarray(box[:2])
    mapped = np.stack([rel[:, 0] * sx - ox, rel[:, 1] * sy - oy], axis=1).reshape(-1)
    return (mapped / max(np.linalg.norm(mapped), 1e-12)).astype(np.float32)


class W300Source(_ListedImages):
    """300W (the 600 images of 01_Indoor/ and 02_Outdoor/ with their 68-landmark .pts files) as
    CASSLE's FacesInTheWild300W reads it (gmum/CASSLE datasets.py):

    * the .png files of both folders sorted by path, **the last one dropped** (CASSLE's
      ``sorted(images)[0:len(images) - 1]``, so 599 of the 600), split 30 / 30 / 40 % by
      w300_split_indices (train 179, val 180, test 240 of 599);
    * each image is its face crop (face_box) and its target the 136 normalised coordinates of
      w300_target, a float32 N × 136 ``labels``; ``classes`` is empty and ``task`` says
      "regression".
    """
    task = "regression"  # its name is in workloads.spec.REGRESSION_DATASETS

    def __init__(self, root: Path, split: str, image_size: int, check: str = "verify"):
        root = root.resolve() if root.exists() else root
        _need("w300", [root / f for f in W300_FOLDERS])
        images = sorted((p for f in W300_FOLDERS for p in (root / f).glob("*.png")), key=str)
        if len(images) < 2:
            raise DatasetError(f"w300: {len(images)} .png image(s) under {root}/01_Indoor and 02_Outdoor; "
                               f"expected {_LAYOUTS['w300']}")
        no_pts = [p for p in images if not p.with_suffix(".pts").is_file()]
        if no_pts:
            raise DatasetError(f"w300: {len(no_pts)} image(s) have no same-named .pts file: {_first(no_pts)}")
        images = images[:-1]  # as CASSLE: sorted(images)[0:len(images) - 1]
        chosen = w300_split_indices(len(images))[split]
        files = [images[i] for i in chosen]
        points = [read_pts(f.with_suffix(".pts")) for f in files]
        super().__init__("w300", split, root, files, list(range(len(files))), [], image_size, check)
        kept = [points[k] for k in self.positions]
        self.boxes = [face_box(p) for p in kept]
        self.labels = torch.from_numpy(np.stack([w300_target(p, image_size) for p in kept]))
        self._label_list = list(self.labels)  # rows: __getitem__ gives (image, float32 136-vector)

    def _load(self, i: int) -> Image.Image:
        return self._open(i).crop(self.boxes[i])
