"""Tiny copies of the datasets the `paper` profiles name, written in their real on-disk layouts
from generated images (as torchvision's own tests fake its datasets): a few images per class,
enough for `sassl rehearse` to open every root with its real reader and run a few steps.

The layouts are the ones the datasets ship in (or torchvision leaves after its download):
ImageNet as class folders under train/ and val/ (then packed with `sassl pack`), Painter by
Numbers as folders of JPEGs, DTD and iNaturalist 2021 as torchvision reads them, Tiny ImageNet
as tiny-imagenet-200/, CIFAR-10/100 as torchvision's pickled batches, Food-101, Oxford-IIIT Pets,
Flowers-102 and STL-10 as torchvision reads them (torchvision checks the MD5 of the CIFAR, Flowers
and STL-10 files, which no fake matches: read them with tests/cifar_md5_off on PYTHONPATH); Retinopathy as
class folders per split, read as `imagefolder`; CASSLE's other targets (ImageNet-100, MIT-67,
CUB-200, 300W: tests/fake_targets.py; Caltech-101, Cars, FGVC-Aircraft, SUN397:
tests/fake_tv_targets.py) in their published layouts."""
from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _jpeg(path: Path, rng: np.random.Generator, size: int = 72) -> None:
    """A JPEG of blocky colour (not flat noise: decoders and crops see structure)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
    Image.fromarray(small).resize((size, size + 8), Image.BILINEAR).save(path, quality=90)


def _class_folders(root: Path, splits: tuple[str, ...], folders: list[str], per_class: int, seed: int,
                   name) -> Path:
    """root/<split>/<folder>/<name(folder, i)> for every split, class folder and image."""
    rng = np.random.default_rng(seed)
    for split in splits:
        for folder in folders:
            for i in range(per_class):
                _jpeg(root / split / folder / name(folder, i), rng)
    return root


def imagenet_folders(root: Path, classes: int = 3, per_class: int = 4, seed: int = 0) -> Path:
    """root/{train,val}/<wnid>/<wnid>_<i>.JPEG"""
    return _class_folders(root, ("train", "val"), [f"n{1440764 + c:08d}" for c in range(classes)], per_class, seed,
                          lambda wnid, i: f"{wnid}_{i}.JPEG")


def pack_imagenet(folders: Path, out: Path) -> Path:
    """`sassl pack imagefolder` of each split, as the ImageNet recipe does."""
    for split in ("train", "val"):
        subprocess.run([sys.executable, "-m", "orchestrator", "pack", "imagefolder", str(out), "--root",
                        str(folders / split), "--split", split, "--shard-size", "8"], cwd=ROOT, check=True,
                       capture_output=True, timeout=300)
    return out


def painter_by_numbers(root: Path, images: int = 10, seed: int = 1) -> Path:
    """root/train/<id>.jpg (the competition's archive unpacks to train/ and test/)"""
    rng = np.random.default_rng(seed)
    for i in range(images):
        _jpeg(root / "train" / f"{1000 + i}.jpg", rng, size=96)
    return root


def dtd(root: Path, classes: int = 3, per_class: int = 6, seed: int = 2) -> Path:
    """root/dtd/dtd/images/<class>/<class>_<i>.jpg and labels/{train,val,test}1.txt (torchvision's)"""
    rng = np.random.default_rng(seed)
    data = root / "dtd" / "dtd"
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for c in ["banded", "braided", "bubbly", "cracked"][:classes]:
        for i in range(per_class):
            name = f"{c}_{i:04d}.jpg"
            _jpeg(data / "images" / c / name, rng)
            lists[("train", "val", "test")[i % 3]].append(f"{c}/{name}")
    (data / "labels").mkdir(parents=True, exist_ok=True)
    for split, rows in lists.items():
        (data / "labels" / f"{split}1.txt").write_text("\n".join(rows) + "\n")
    return root


def inat2021(root: Path, classes: int = 3, per_class: int = 4, seed: int = 3) -> Path:
    """root/{2021_train_mini,2021_valid}/<id>_<kingdom>_..._<species>/<uuid>.jpg"""
    folders = [f"{c:05d}_Animalia_Chordata_Aves_Order{c}_Family{c}_Genus{c}_species{c}" for c in range(classes)]
    return _class_folders(root, ("2021_train_mini", "2021_valid"), folders, per_class, seed,
                          lambda folder, i: f"{folder[:5]}{i:04d}.jpg")


def tiny_imagenet(root: Path, classes: int = 3, per_class: int = 5, seed: int = 4) -> Path:
    """root/wnids.txt, train/<wnid>/images/<wnid>_<i>.JPEG, val/images/val_<i>.JPEG + val_annotations.txt"""
    rng = np.random.default_rng(seed)
    wnids = [f"n{2000000 + c:08d}" for c in range(classes)]
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "wnids.txt").write_text("\n".join(wnids) + "\n")
    notes = []
    for c, wnid in enumerate(wnids):
        (root / "train" / wnid / f"{wnid}_boxes.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
        for i in range(per_class):
            _jpeg(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", rng, size=64)
            name = f"val_{c * per_class + i}.JPEG"
            _jpeg(root / "val" / "images" / name, rng, size=64)
            notes.append(f"{name}\t{wnid}\t0\t0\t63\t63")
    (root / "val" / "val_annotations.txt").write_text("\n".join(notes) + "\n")
    return root


def cifar(root: Path, classes: int = 100, per_class: int = 1, seed: int = 5) -> Path:
    """root/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (classes 10) or
    root/cifar-100-python/{train,test,meta} (classes 100): pickled dicts of uint8 rows (3×32×32,
    channel-major) and labels, as the release ships them."""
    rng = np.random.default_rng(seed)
    ten = classes == 10
    folder = root / ("cifar-10-batches-py" if ten else "cifar-100-python")
    folder.mkdir(parents=True, exist_ok=True)
    label_key, names_key = ("labels", "label_names") if ten else ("fine_labels", "fine_label_names")

    def batch(name: str, n: int) -> None:
        labels = [i % classes for i in range(n)]
        small = rng.integers(0, 256, (n, 3, 4, 4), dtype=np.uint8)
        data = small.repeat(8, axis=2).repeat(8, axis=3).reshape(n, 3 * 32 * 32)  # blocky, as _jpeg
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, label_key: labels}, f)

    for name in ([f"data_batch_{i}" for i in range(1, 6)] if ten else ["train"]):
        batch(name, classes * per_class)
    batch("test_batch" if ten else "test", classes * per_class)
    with open(folder / ("batches.meta" if ten else "meta"), "wb") as f:
        pickle.dump({names_key: [f"class{c}" for c in range(classes)]}, f)
    return root


def food101(root: Path, classes: int = 3, per_class: int = 6, seed: int = 7) -> Path:
    """root/food-101/images/<class>/<id>.jpg and meta/{train,test}.json ({class: ["<class>/<id>", ...]})"""
    rng = np.random.default_rng(seed)
    base = root / "food-101"
    meta: dict[str, dict[str, list[str]]] = {"train": {}, "test": {}}
    for c in range(classes):
        name = f"dish_{c}"
        for i in range(per_class):
            _jpeg(base / "images" / name / f"{100 + i}.jpg", rng)
            meta["test" if i % 3 == 2 else "train"].setdefault(name, []).append(f"{name}/{100 + i}")
    (base / "meta").mkdir(parents=True, exist_ok=True)
    for split, rows in meta.items():
        (base / "meta" / f"{split}.json").write_text(json.dumps(rows))
    return root


def oxford_pets(root: Path, breeds: tuple[str, ...] = ("Abyssinian", "beagle", "Bengal"), per_class: int = 6,
                seed: int = 8) -> Path:
    """root/oxford-iiit-pet/images/<Breed>_<i>.jpg and annotations/{trainval,test}.txt ("<image>
    <class id> <species id> <breed id>", ids from 1; cats' breeds capitalised)"""
    rng = np.random.default_rng(seed)
    base = root / "oxford-iiit-pet"
    lists: dict[str, list[str]] = {"trainval": [], "test": []}
    for c, breed in enumerate(breeds, 1):
        for i in range(1, per_class + 1):
            _jpeg(base / "images" / f"{breed}_{i}.jpg", rng)
            lists["test" if i % 3 == 0 else "trainval"].append(f"{breed}_{i} {c} {1 if breed[0].isupper() else 2} {c}")
    (base / "annotations").mkdir(parents=True, exist_ok=True)
    for split, rows in lists.items():
        (base / "annotations" / f"{split}.txt").write_text("\n".join(rows) + "\n")
    return root


def flowers102(root: Path, classes: int = 3, per_class: int = 6, seed: int = 9) -> Path:
    """root/flowers-102/jpg/image_<id>.jpg, imagelabels.mat (`labels`, from 1) and setid.mat
    (`trnid`, `valid`, `tstid`), as scipy writes MATLAB files"""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    base = root / "flowers-102"
    labels: list[int] = []
    sets: dict[str, list[int]] = {"trnid": [], "valid": [], "tstid": []}
    for n in range(classes * per_class):
        _jpeg(base / "jpg" / f"image_{n + 1:05d}.jpg", rng)
        labels.append(n % classes + 1)
        sets[("trnid", "valid", "tstid")[n // classes % 3]].append(n + 1)
    savemat(base / "imagelabels.mat", {"labels": np.array(labels)})
    savemat(base / "setid.mat", {k: np.array(v) for k, v in sets.items()})
    return root


def stl10(root: Path, classes: int = 3, per_class: int = 2, seed: int = 24) -> Path:
    """root/stl10_binary/{train,test}_{X,y}.bin and unlabeled_X.bin as STL-10 ships them (96-px
    images, channel-major and column-major; labels 1..10 as bytes), and class_names.txt."""
    rng = np.random.default_rng(seed)
    folder = root / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", classes * per_class), ("test", classes * per_class), ("unlabeled", 2)):
        small = rng.integers(0, 256, (n, 3, 12, 12), dtype=np.uint8)
        (folder / f"{split}_X.bin").write_bytes(small.repeat(8, axis=2).repeat(8, axis=3).tobytes())
        if split != "unlabeled":
            (folder / f"{split}_y.bin").write_bytes(np.repeat(np.arange(1, classes + 1), per_class).astype(np.uint8).tobytes())
    (folder / "class_names.txt").write_text("\n".join(f"class{c}" for c in range(10)) + "\n")
    return root


def labelled_folders(root: Path, splits: tuple[str, ...] = ("train", "test"), classes: int = 3, per_class: int = 4,
                     seed: int = 10) -> Path:
    """root/<split>/class<c>/<i>.jpg: a dataset sorted into class folders per split (`imagefolder`)"""
    return _class_folders(root, splits, [f"class{c}" for c in range(classes)], per_class, seed,
                          lambda folder, i: f"{folder}_{i}.jpg")


def paper_data(root: Path) -> Path:
    """Every root the paper profiles name, under ``root`` in place of /data."""
    pack_imagenet(imagenet_folders(root / "imagenet"), root / "imagenet-packed")
    # CASSLE's ImageNet-100: its 100 classes added to the ImageNet root (after packing the 3-class
    # ImageNet above), then packed from that root by the shipped class list
    import fake_targets
    import fake_tv_targets
    fake_targets.imagenet100_folders(root / "imagenet")
    subprocess.run([sys.executable, "-m", "orchestrator", "pack", "imagenet100", str(root / "imagenet100-packed"),
                    "--root", str(root / "imagenet"), "--split", "train", "--shard-size", "32"], cwd=ROOT,
                   check=True, capture_output=True, timeout=300)
    painter_by_numbers(root / "painter_by_numbers")
    dtd(root / "dtd")
    inat2021(root / "inat2021")
    tiny_imagenet(root / "tiny-imagenet-200")
    cifar(root / "cifar10", classes=10)
    cifar(root / "cifar100", classes=100)
    labelled_folders(root / "retinopathy", seed=11)
    food101(root / "food101")
    oxford_pets(root / "oxford_pets")
    flowers102(root / "flowers102")
    stl10(root / "stl10")
    fake_targets.mit67(root / "mit67")
    fake_targets.cub200(root / "cub200")
    fake_targets.w300(root / "300w")
    fake_tv_targets.tv_targets(root)  # caltech101, stanford_cars, fgvc_aircraft, sun397 under their names
    return root
