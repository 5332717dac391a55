"""Lazy image sources: every dataset the workloads use, seen as (uint8 3xSxS tensor, label).

Sources decode one image per __getitem__ and hold no pixels, so they are cheap to build and
to ship to DataLoader workers. All of them resize the same way (to_square_tensor), so a method
sees identical preprocessing whatever the dataset's origin. Build them with
registry.open_source rather than directly.
"""
from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .errors import DatasetError
from .packed import PackedImages
from .shards import PackedShards

# torchvision's ImageFolder extensions, so an `imagefolder` root sees the same files.
FOLDER_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
STYLE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")


def to_square_tensor(img: Image.Image, size: int) -> torch.Tensor:
    """RGB, shorter side -> size, centre crop; uint8 tensor 3 x size x size.

    Images already size x size are left untouched (no resampling of the CIFAR kit at 32 px).
    PIL's resize filters over the whole source footprint when shrinking, i.e. it antialiases.
    """
    if img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (size, size):
        w, h = img.size
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - size) // 2, (nh - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous()


def _digest(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.tobytes() if isinstance(p, np.ndarray) else str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


class ImageSource(Dataset):
    """Base class. Subclasses implement `_load(i) -> PIL.Image` and `identity()`."""

    def __init__(self, name: str, split: str, classes: Sequence[str], labels: Any, image_size: int):
        if not isinstance(image_size, int) or image_size <= 0:
            raise DatasetError(f"{name}: image_size must be a positive int, got {image_size!r}")
        self.name = name
        self.split = split
        self.classes: list[str] = list(classes)
        self.labels: torch.Tensor = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self.image_size = image_size
        self._label_list = self.labels.tolist()  # python ints: cheaper per item than tensor indexing

    def __len__(self) -> int:
        return len(self._label_list)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        i = range(len(self))[i]  # normalises negatives, raises IndexError when out of range
        return to_square_tensor(self._load(i), self.image_size), self._label_list[i]

    def image(self, i: int) -> Image.Image:
        """Image i as stored (original size, before the square resize): what `sassl pack`
        re-encodes and what a crop from the original is taken from."""
        return self._load(range(len(self))[i])

    def describe(self, i: int) -> str:
        """Where image i comes from, for messages (a file path where there is one)."""
        return f"{self.name}/{self.split}[{i}]"

    def _load(self, i: int) -> Image.Image:
        raise NotImplementedError

    def identity(self) -> str:
        """A string that changes whenever the content would (used as cache key)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"classes={len(self.classes)}, image_size={self.image_size})")


class PackSource(ImageSource):
    """A subset (given by indices) of an embedded pack."""

    def __init__(self, pack: PackedImages, indices: np.ndarray, name: str, split: str, image_size: int):
        self.pack = pack
        self.indices = np.asarray(indices, dtype=np.int64)
        super().__init__(name, split, pack.classes, pack.labels[self.indices], image_size)

    def _load(self, i: int) -> Image.Image:
        return self.pack.decode(int(self.indices[i]))

    def identity(self) -> str:
        return _digest("pack", self.pack.sha256, self.name, self.split, self.indices)


class TorchvisionSource(ImageSource):
    """Any torchvision dataset whose item is (PIL image, target)."""

    def __init__(self, dataset: Any, name: str, split: str, classes: Sequence[str], labels: Any,
                 image_size: int, root: str):
        self.dataset = dataset
        self.root = os.path.abspath(root)
        super().__init__(name, split, classes, labels, image_size)

    def _load(self, i: int) -> Image.Image:
        return self.dataset[i][0]

    def identity(self) -> str:
        return _digest("torchvision", self.name, self.split, self.root, self.labels.numpy())


class PackedShardsSource(ImageSource):
    """A split packed by `sassl pack` (data/shards.py): Parquet shards of JPEG bytes."""

    def __init__(self, root: str | Path, split: str, image_size: int, name: str = "packed"):
        self.shards = PackedShards(root, split)
        super().__init__(name, split, self.shards.classes, self.shards.column("label"), image_size)

    def _load(self, i: int) -> Image.Image:
        try:
            return Image.open(io.BytesIO(self.shards.jpeg(i))).convert("RGB")
        except Exception as e:  # pack_split wrote it, so this is a damaged shard
            raise DatasetError(f"{self.name}: cannot decode image {i} of {self.shards.folder}: {e}") from e

    def identity(self) -> str:
        return _digest("packed", self.shards.identity(), self.split)


def readable(path: Path, check: str) -> bool:
    """`verify` reads headers/structure only (fast); `decode` decodes fully (catches truncation)."""
    try:
        with Image.open(path) as im:
            im.verify() if check == "verify" else im.load()
        return True
    except Exception:  # PIL raises many different types for bad files
        return False


def open_rgb_file(name: str, path: Path) -> Image.Image:
    """A listed image file as RGB; a file that fails to decode (e.g. truncated, though it passed
    verify()) is a DatasetError naming the dataset and the file."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except Exception as e:  # PIL raises many different types for bad files
        raise DatasetError(f"{name}: cannot decode {path}: {e}") from e


def _scan(root: Path, extensions: tuple[str, ...]) -> list[Path]:
    return sorted(p for p in root.rglob("*")
                  if p.suffix.lower() in extensions and not p.name.startswith(".") and p.is_file())


class FileSource(ImageSource):
    """Images from files, with unreadable ones dropped (and reported) at construction."""

    def __init__(self, name: str, root: str | Path, files: list[Path], labels: list[int],
                 classes: Sequence[str], image_size: int, check: str):
        self.root = Path(root).resolve()
        keep = [readable(f, check) for f in files]
        self.skipped: list[str] = [str(f) for f, ok in zip(files, keep) if not ok]
        self.files: list[Path] = [f for f, ok in zip(files, keep) if ok]
        if not self.files:
            raise DatasetError(f"{name}: no readable images in folder {self.root} "
                               f"({len(files)} candidate files, {len(self.skipped)} unreadable)")
        if self.skipped:
            more = " ..." if len(self.skipped) > 3 else ""
            warnings.warn(f"{name}: skipped {len(self.skipped)} unreadable image(s) in {self.root}: "
                          f"{', '.join(self.skipped[:3])}{more}", stacklevel=3)
        labels = [lab for lab, ok in zip(labels, keep) if ok]
        super().__init__(name, "all", classes, labels, image_size)

    def _load(self, i: int) -> Image.Image:
        return open_rgb_file(self.name, self.files[i])

    def describe(self, i: int) -> str:
        return str(self.files[i])

    def identity(self) -> str:
        stats = [(str(f.relative_to(self.root)), f.stat().st_size, f.stat().st_mtime_ns) for f in self.files]
        return _digest("files", self.name, self.root, stats, self.labels.numpy())


class ImageFolderSource(FileSource):
    """torchvision ImageFolder layout: root/<class>/**/<image>; classes = sorted subfolders."""

    def __init__(self, root: str | Path, image_size: int, name: str = "imagefolder", check: str = "verify"):
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{name}: folder {root} does not exist")
        classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not classes:
            raise DatasetError(f"{name}: folder {root} has no class subfolders "
                               f"(for a flat folder of unlabelled images use 'stylefolder')")
        files, labels = [], []
        for label, cls in enumerate(classes):
            found = _scan(root / cls, FOLDER_EXTENSIONS)
            files += found
            labels += [label] * len(found)
        super().__init__(name, root, files, labels, classes, image_size, check)


class TinyImageNetSource(FileSource):
    """Tiny ImageNet as distributed (the tiny-imagenet-200 folder): ``train/<wnid>/images/*``
    labelled by folder; ``val/images/*`` labelled by ``val/val_annotations.txt`` (file, wnid, box);
    classes: the wnids of ``wnids.txt`` (else train's folders), the same for both splits. Its
    val folder has no class subfolders: read as an image folder it would be one class."""

    def __init__(self, root: str | Path, split: str, image_size: int, check: str = "verify"):
        root = Path(root)
        if not (root / split).is_dir():
            raise DatasetError(f"tinyimagenet: no folder {root / split} (root is the tiny-imagenet-200 folder "
                               "holding train/ and val/)")
        wnids = root / "wnids.txt"
        classes = wnids.read_text().split() if wnids.is_file() else \
            sorted(d.name for d in (root / "train").iterdir() if d.is_dir())
        index = {c: i for i, c in enumerate(classes)}
        if split == "train":
            pairs = [(f, c) for c in classes for f in _scan(root / "train" / c, FOLDER_EXTENSIONS)]
        else:
            notes = root / split / f"{split}_annotations.txt"
            if not notes.is_file():
                raise DatasetError(f"tinyimagenet: {notes} is missing (it labels the {split} images)")
            rows = [line.split("\t") for line in notes.read_text().splitlines() if line.strip()]
            unknown = sorted({r[1] for r in rows if r[1] not in index})
            if unknown:
                raise DatasetError(f"tinyimagenet: {notes} names classes not in wnids.txt: {unknown[:3]}")
            pairs = [(root / split / "images" / r[0], r[1]) for r in rows]
        super().__init__("tinyimagenet", root, [f for f, _ in pairs], [index[c] for _, c in pairs], classes,
                         image_size, check)


class StyleFolderSource(FileSource):
    """All .jpg/.jpeg/.png/.webp under root (recursively), unlabelled (label -1)."""

    def __init__(self, root: str | Path, image_size: int, name: str = "stylefolder", check: str = "verify"):
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{name}: folder {root} does not exist")
        files = _scan(root, STYLE_EXTENSIONS)
        super().__init__(name, root, files, [-1] * len(files), [], image_size, check)

