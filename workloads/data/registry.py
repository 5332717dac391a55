"""Dataset names -> ImageSource. The single entry point the workloads use to get images.

Five families:
  * embedded kits (`*-kit`): small packs shipped in workloads/data/assets, no root needed;
  * torchvision datasets by name, read from (or downloaded into) `root`;
  * `imagefolder` / `stylefolder`: any folder given as `root`; `tinyimagenet`: its own layout;
  * CASSLE's targets in their published layouts under `root` (data/target_readers.py): `imagenet100`
    (CMC's 100 classes of an ImageNet root or a packed ImageNet), `mit67`, `cub200`, `w300` (300W
    landmarks: float N x 136 labels, `task = "regression"`);
  * `packed`: a split written by `sassl pack` (Parquet shards of JPEGs) under `root/<split>`.
Every failure to open is a DatasetError whose message says what to do about it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .packed import PackedImages
from .sources import (ImageFolderSource, ImageSource, PackedShardsSource, PackSource, StyleFolderSource,
                      TinyImageNetSource, TorchvisionSource)
from .splits import stratified_split
from .target_readers import READER_SPLITS, open_reader
from .torchvision_targets import TARGET_SPLITS, open_target

__all__ = ["open_source", "DATASETS", "SPLITS", "DatasetError", "ASSETS_DIR"]

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
# DTD has no official split in the kit; this fixed one makes dtd-kit train/val/test identical everywhere.
DTD_KIT_FRACTIONS = {"train": 0.6, "val": 0.2, "test": 0.2}
DTD_KIT_SEED = 0


@dataclass(frozen=True)
class _Torchvision:
    cls: str                       # class name in torchvision.datasets
    splits: dict[str, dict]        # our split name -> constructor kwargs
    manual: str | None = None      # how to get the data when torchvision cannot download it
    layout: str | None = None      # the files torchvision reads under root, for the error messages


_TORCHVISION = {
    "cifar10": _Torchvision("CIFAR10", {"train": {"train": True}, "test": {"train": False}}),
    "cifar100": _Torchvision("CIFAR100", {"train": {"train": True}, "test": {"train": False}}),
    "stl10": _Torchvision("STL10", {s: {"split": s} for s in ("train", "test", "unlabeled", "train+unlabeled")}),
    "dtd": _Torchvision("DTD", {s: {"split": s, "partition": 1} for s in ("train", "val", "test")}),
    "flowers102": _Torchvision("Flowers102", {s: {"split": s} for s in ("train", "val", "test")}),
    "oxford_pets": _Torchvision("OxfordIIITPet", {s: {"split": s} for s in ("trainval", "test")}),
    "food101": _Torchvision("Food101", {s: {"split": s} for s in ("train", "test")}),
    "fashion_mnist": _Torchvision("FashionMNIST", {"train": {"train": True}, "test": {"train": False}}),
    "inat2021": _Torchvision("INaturalist", {"train": {"version": "2021_train"},
                                             "train_mini": {"version": "2021_train_mini"},
                                             "val": {"version": "2021_valid"}}),
    "imagenet": _Torchvision("ImageNet", {"train": {"split": "train"}, "val": {"split": "val"}},
                             manual="torchvision cannot download ImageNet: get ILSVRC2012_devkit_t12.tar.gz "
                                    "and ILSVRC2012_img_train.tar / ILSVRC2012_img_val.tar from "
                                    "https://image-net.org and place them in {root} (torchvision unpacks "
                                    "them on first use), or use 'imagefolder' on an extracted split folder"),
    # CASSLE's Table-2 targets (gmum/CASSLE datasets.py: torchvision's classes, these splits)
    "stanford_cars": _Torchvision("StanfordCars", {s: {"split": s} for s in ("train", "test")},
                                  manual="torchvision cannot download Stanford Cars (its URL is gone): place "
                                         "the release's files in {root} as torchvision reads them",
                                  layout="{root}/stanford_cars/cars_train/*.jpg, cars_test/*.jpg, "
                                         "devkit/cars_meta.mat, devkit/cars_train_annos.mat and "
                                         "cars_test_annos_withlabels.mat"),
    "fgvc_aircraft": _Torchvision("FGVCAircraft", {s: {"split": s, "annotation_level": "variant"}
                                                   for s in ("train", "val", "trainval", "test")},
                                  layout="{root}/fgvc-aircraft-2013b/data/images/*.jpg, variants.txt and "
                                         "images_variant_{{train,val,trainval,test}}.txt"),
}

_KIT_SPLITS = {
    "cifar10-kit": ("train", "test"),
    "dtd-kit": ("train", "val", "test", "all"),
    "paintings-kit": ("all", "train"),
}

# Valid splits per name; None = any name the data at root has (a folder given as root is the
# whole dataset for imagefolder / stylefolder, which ignore the split; packed reads root/<split>).
SPLITS: dict[str, tuple[str, ...] | None] = {
    **_KIT_SPLITS,
    **{name: tuple(spec.splits) for name, spec in _TORCHVISION.items()},
    "tinyimagenet": ("train", "val"),
    **READER_SPLITS,
    **TARGET_SPLITS,
    "imagefolder": None,
    "stylefolder": None,
    "packed": None,
}
DATASETS: list[str] = list(SPLITS)


def open_source(name: str, *, split: str, image_size: int, root: str | None = None,
                download: bool = False) -> ImageSource:
    """Open dataset `name` at `split` as a lazy ImageSource yielding 3 x image_size^2 uint8 tensors."""
    if name not in SPLITS:
        raise DatasetError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    valid = SPLITS[name]
    if valid is not None and split not in valid:
        raise DatasetError(f"{name}: unknown split {split!r}; valid splits: {', '.join(valid)}")
    if name in _KIT_SPLITS:
        return _open_kit(name, split, image_size)
    if name in _TORCHVISION:
        return _open_torchvision(name, split, image_size, root, download)
    if name in TARGET_SPLITS:
        return open_target(name, split, image_size, root, download)
    if name in READER_SPLITS:
        return open_reader(name, split, image_size, root)
    if root is None:
        raise DatasetError(f"{name}: needs root=<folder> (the folder of images to read)")
    if name == "packed":
        return PackedShardsSource(root, split, image_size)
    if name == "imagefolder":
        return ImageFolderSource(Path(root).expanduser(), image_size)
    if name == "tinyimagenet":
        return TinyImageNetSource(Path(root).expanduser(), split, image_size)
    return StyleFolderSource(Path(root).expanduser(), image_size)


@lru_cache(maxsize=None)
def _pack(stem: str) -> PackedImages:
    """One in-memory copy per pack and process, however many splits are opened."""
    path = ASSETS_DIR / f"{stem}.npz"
    if not path.exists():
        raise DatasetError(f"embedded pack {path} is missing: run `python scripts/build_data_kit.py` "
                           "from the repository root to build it")
    return PackedImages(path)


def _open_kit(name: str, split: str, image_size: int) -> ImageSource:
    pack = _pack(name.removesuffix("-kit"))
    if name == "cifar10-kit":
        indices = np.flatnonzero(pack.split == (0 if split == "train" else 1))
    elif name == "dtd-kit" and split != "all":
        indices = stratified_split(pack.labels, DTD_KIT_FRACTIONS, seed=DTD_KIT_SEED)[split]
    else:
        indices = np.arange(len(pack))
    return PackSource(pack, indices, name, split, image_size)


def _open_torchvision(name: str, split: str, image_size: int, root: str | None,
                      download: bool) -> ImageSource:
    spec = _TORCHVISION[name]
    where = "<root>" if root is None else str(root)
    how = (spec.manual.format(root=where) if spec.manual
           else f"set download: true to let torchvision fetch it into {where}")
    if spec.layout:
        how += f"; expected layout: {spec.layout.format(root=where)}"
    if root is None:
        raise DatasetError(f"{name}: no root folder given (root is None); pass root=<folder> "
                           f"holding the data; {how}")
    root_path = Path(root).expanduser()
    if spec.manual and download:
        raise DatasetError(f"{name}: download is not possible; {how}")
    # Checked here because some torchvision classes create `root` even when not downloading.
    if not download and not root_path.exists():
        raise DatasetError(f"{name} ({split}): data not found, folder {root_path} does not exist; {how}")
    import torchvision.datasets as tvd  # deferred: only these sources need it

    kwargs = dict(spec.splits[split])
    if not spec.manual:
        kwargs["download"] = download
    try:
        ds = getattr(tvd, spec.cls)(str(root_path), **kwargs)
    except Exception as e:  # torchvision raises RuntimeError/OSError/URLError/... inconsistently
        raise DatasetError(f"{name} ({split}): could not open it from {root_path}: {e} -- {how}") from e
    labels = _labels(ds)
    return TorchvisionSource(ds, name, split, _classes(ds, labels), labels, image_size, str(root_path))


def _labels(ds) -> np.ndarray:
    if hasattr(ds, "index") and hasattr(ds, "all_categories"):  # INaturalist: (category id, file)
        return np.asarray([cat for cat, _ in ds.index], dtype=np.int64)
    for attr in ("targets", "labels", "_labels"):  # where torchvision keeps them, per class
        if hasattr(ds, attr):
            return np.asarray(getattr(ds, attr), dtype=np.int64)
    if hasattr(ds, "_samples"):  # StanfordCars: (file, label)
        return np.asarray([lab for _, lab in ds._samples], dtype=np.int64)
    raise DatasetError(f"{type(ds).__name__}: cannot find its labels")


def _classes(ds, labels: np.ndarray) -> list[str]:
    classes = getattr(ds, "all_categories", None) or getattr(ds, "classes", None)
    if classes:
        return [c[0] if isinstance(c, tuple) else str(c) for c in classes]  # ImageNet: synonym tuples
    return [str(i) for i in range(int(labels.max(initial=-1)) + 1)]
