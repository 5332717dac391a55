"""Tiny copies of four of CASSLE's Table-2 targets in the layouts their readers take: Caltech-101
and Stanford Cars, FGVC-Aircraft as torchvision reads them, SUN397 as the official release and
its Partitions.zip unpack (workloads/data/torchvision_targets.py). A few classes, a few small
JPEGs each; the .mat files written by scipy.io.savemat as MATLAB writes them (structs, cells).

Each function returns the root to pass as `root:`; `tv_targets(root)` writes all four under
root/<name> and returns {name: root}."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fake_datasets import _jpeg

# Caltech-101: the authors' split needs more than 25 + 5 images per class (the real minimum is 31)
CALTECH_CLASSES = {"Faces": 31, "Leopards": 33, "accordion": 35}
CARS_CLASSES = ["AM General Hummer SUV 2000", "Acura RL Sedan 2012", "Audi TTS Coupe 2012"]
AIRCRAFT_VARIANTS = ["707-320", "A300B4", "Boeing 717"]  # names with '-' and ' ', as the real list has
SUN_CLASSES = ["/a/abbey", "/a/airport_terminal", "/b/bakery/shop"]  # "/b/bakery/shop": a two-level name


def caltech101(root: Path, classes: dict[str, int] | None = None, background: int = 2, seed: int = 20) -> Path:
    """root/caltech101/101_ObjectCategories/<class>/image_<0001..n>.jpg, plus BACKGROUND_Google
    (not a class); one grayscale image, as the real set has"""
    rng = np.random.default_rng(seed)
    top = root / "caltech101" / "101_ObjectCategories"
    classes = classes or CALTECH_CLASSES
    for cls, n in {**classes, "BACKGROUND_Google": background}.items():
        for i in range(1, n + 1):
            _jpeg(top / cls / f"image_{i:04d}.jpg", rng, size=24)
    gray = top / next(iter(classes)) / "image_0002.jpg"
    Image.open(gray).convert("L").save(gray)
    return root


def stanford_cars(root: Path, per_class: tuple[int, int] = (3, 2), seed: int = 21) -> Path:
    """root/stanford_cars/{cars_train,cars_test}/<00001>.jpg, devkit/cars_meta.mat (`class_names`,
    a 1xK cell), devkit/cars_train_annos.mat and cars_test_annos_withlabels.mat (`annotations`, a
    1xN struct of bbox_x1, bbox_y1, bbox_x2, bbox_y2, class (from 1), fname)"""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    base = root / "stanford_cars"
    fields = [(f, "O") for f in ("bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname")]
    for folder, mat, n in (("cars_train", base / "devkit" / "cars_train_annos.mat", per_class[0]),
                           ("cars_test", base / "cars_test_annos_withlabels.mat", per_class[1])):
        rows = []
        for k in range(n * len(CARS_CLASSES)):
            fname = f"{k + 1:05d}.jpg"
            _jpeg(base / folder / fname, rng, size=24)
            rows.append((np.uint8(1), np.uint8(2), np.uint8(20), np.uint8(22), np.uint8(k % len(CARS_CLASSES) + 1),
                         fname))
        mat.parent.mkdir(parents=True, exist_ok=True)
        savemat(mat, {"annotations": np.array([rows], dtype=fields)})
    savemat(base / "devkit" / "cars_meta.mat", {"class_names": np.array([CARS_CLASSES], dtype=object)})
    return root


def fgvc_aircraft(root: Path, per_split: dict[str, int] | None = None, seed: int = 22) -> Path:
    """root/fgvc-aircraft-2013b/data/images/<id>.jpg, variants.txt (one class a line) and
    images_variant_{train,val,trainval,test}.txt ("<id> <variant>"; trainval = train + val)"""
    rng = np.random.default_rng(seed)
    data = root / "fgvc-aircraft-2013b" / "data"
    per_split = per_split or {"train": 2, "val": 1, "test": 2}
    rows: dict[str, list[str]] = {s: [] for s in per_split}
    image_id = 1000000
    for split, n in per_split.items():
        for k in range(n * len(AIRCRAFT_VARIANTS)):
            image_id += 1
            _jpeg(data / "images" / f"{image_id:07d}.jpg", rng, size=24)
            rows[split].append(f"{image_id:07d} {AIRCRAFT_VARIANTS[k % len(AIRCRAFT_VARIANTS)]}")
    rows["trainval"] = rows["train"] + rows["val"]
    (data / "variants.txt").write_text("\n".join(AIRCRAFT_VARIANTS) + "\n")
    for split, lines in rows.items():
        (data / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def sun397(root: Path, per_class: int = 3, unlisted: int = 1, seed: int = 23) -> Path:
    """root/SUN397/ClassName.txt ("/a/abbey" a line), the images as SUN397/a/abbey/sun_<id>.jpg,
    and Partitions/{ClassName,Training_01,Testing_01,Training_02,Testing_02}.txt
    ("/a/abbey/sun_<id>.jpg" a line): per_class images of each class in Training_01 and as many
    in Testing_01 (partition 2 swaps them), and `unlisted` images in no partition"""
    rng = np.random.default_rng(seed)
    data = root / "SUN397"
    lists: dict[str, list[str]] = {"Training_01": [], "Testing_01": []}
    for c, cls in enumerate(SUN_CLASSES):
        for i in range(2 * per_class + unlisted):
            line = f"{cls}/sun_{c:02d}{i:02d}{''.join(rng.choice(list('abcdefghij'), 8))}.jpg"
            _jpeg(data / line.lstrip("/"), rng, size=24)
            if i < 2 * per_class:
                lists["Training_01" if i < per_class else "Testing_01"].append(line)
    lists["Training_02"], lists["Testing_02"] = lists["Testing_01"], lists["Training_01"]
    names = "\n".join(SUN_CLASSES) + "\n"
    (data / "ClassName.txt").write_text(names)
    (data / "Partitions").mkdir(parents=True, exist_ok=True)
    (data / "Partitions" / "ClassName.txt").write_text(names)
    for stem, lines in lists.items():
        (data / "Partitions" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return root


def tv_targets(root: Path) -> dict[str, Path]:
    """All four under root/<name>: {name: the root to read it from}."""
    return {name: make(root / name) for name, make in (("caltech101", caltech101), ("stanford_cars", stanford_cars),
                                                        ("fgvc_aircraft", fgvc_aircraft), ("sun397", sun397))}
