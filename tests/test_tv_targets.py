"""CASSLE's Table-2 targets read in their published layouts: Caltech-101 (the authors' 25 / 5 /
rest split rule, seeded), Stanford Cars and FGVC-Aircraft (torchvision's readers), SUN397 split 1
(its partition files). The fakes are tests/fake_tv_targets.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fake_tv_targets import (AIRCRAFT_VARIANTS, CALTECH_CLASSES, CARS_CLASSES, SUN_CLASSES, caltech101,
                             fgvc_aircraft, stanford_cars, sun397, tv_targets)
from workloads.data import DATASETS, DatasetError, open_source
from workloads.data.torchvision_targets import caltech101_split


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, Path]:
    return tv_targets(tmp_path_factory.mktemp("tv_targets"))


def _open(name: str, split: str, root, **kw):
    return open_source(name, split=split, image_size=16, root=str(root), **kw)


def test_the_four_names_and_their_splits():
    from workloads.data.registry import SPLITS

    assert {"caltech101", "stanford_cars", "fgvc_aircraft", "sun397"} <= set(DATASETS)
    assert SPLITS["caltech101"] == ("train", "val", "test", "trainval")
    assert SPLITS["stanford_cars"] == ("train", "test") and SPLITS["sun397"] == ("train", "test")
    assert SPLITS["fgvc_aircraft"] == ("train", "val", "trainval", "test")


# ---------------------------------------------------------------- Caltech-101

def test_caltech101_split_sizes_per_class_and_labels(roots):
    parts = {s: _open("caltech101", s, roots["caltech101"]) for s in ("train", "val", "test", "trainval")}
    counts = list(CALTECH_CLASSES.values())
    for s, src in parts.items():
        assert src.classes == list(CALTECH_CLASSES)  # sorted folders, BACKGROUND_Google left out
        assert src.split == s and src.name == "caltech101"
    assert np.bincount(parts["train"].labels.numpy()).tolist() == [25] * 3
    assert np.bincount(parts["val"].labels.numpy()).tolist() == [5] * 3
    assert np.bincount(parts["test"].labels.numpy()).tolist() == [n - 30 for n in counts]
    assert np.bincount(parts["trainval"].labels.numpy()).tolist() == [30] * 3
    files = {s: {str(f) for f in src.files} for s, src in parts.items()}
    assert not files["train"] & files["val"] and not files["train"] & files["test"] and not files["val"] & files["test"]
    assert files["trainval"] == files["train"] | files["val"]
    assert len(files["train"] | files["val"] | files["test"]) == sum(counts)
    for src in parts.values():  # a file's label is its folder
        assert all(src.classes[y] == f.parent.name for f, y in zip(src.files, src.labels.tolist()))
    gray = next((src, i) for src in parts.values() for i, f in enumerate(src.files)
                if f.parent.name == "Faces" and f.name == "image_0002.jpg")
    x, y = gray[0][gray[1]]  # the grayscale image comes out RGB, like every other
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8 and y == 0


def test_caltech101_split_is_deterministic_random_and_per_class(roots, tmp_path):
    a = _open("caltech101", "train", roots["caltech101"])
    b = _open("caltech101", "train", roots["caltech101"])
    assert a.files == b.files and a.identity() == b.identity()
    assert a.identity() != _open("caltech101", "val", roots["caltech101"]).identity()
    picked = sorted(int(f.stem.split("_")[1]) for f, y in zip(a.files, a.labels.tolist()) if y == 0)
    assert picked != list(range(1, 26))  # drawn at random within the class, not the first 25
    # a class's split depends only on its own images: another class set leaves Leopards' unchanged
    other = caltech101(tmp_path / "other", classes={"Leopards": 33, "zebra": 40}, seed=20)
    mine = {f.name for f, y in zip(a.files, a.labels.tolist()) if a.classes[y] == "Leopards"}
    theirs = _open("caltech101", "train", other)
    assert mine == {f.name for f, y in zip(theirs.files, theirs.labels.tolist()) if theirs.classes[y] == "Leopards"}
    # the rule itself, on labels alone
    labels = np.repeat(np.arange(4), [31, 40, 60, 800])
    s1, s2 = caltech101_split(labels, list("abcd")), caltech101_split(labels, list("abcd"))
    assert all(np.array_equal(s1[k], s2[k]) for k in s1)
    assert [np.bincount(labels[s1[k]]).tolist() for k in ("train", "val", "test")] == \
        [[25] * 4, [5] * 4, [1, 10, 30, 770]]
    with pytest.raises(DatasetError, match="class 'a' has 30 images"):
        caltech101_split(np.zeros(30, dtype=np.int64), ["a"])


# ---------------------------------------------------------------- Stanford Cars, FGVC-Aircraft

def test_stanford_cars(roots):
    for split, n in (("train", 3), ("test", 2)):
        src = _open("stanford_cars", split, roots["stanford_cars"])
        assert src.classes == CARS_CLASSES
        assert src.labels.tolist() == [0, 1, 2] * n  # the annotations' class, from 1, less one
        assert src[0][0].shape == (3, 16, 16)
    assert _open("stanford_cars", "test", roots["stanford_cars"]).identity() == \
        _open("stanford_cars", "test", roots["stanford_cars"]).identity()


def test_fgvc_aircraft_variants(roots):
    sizes = {}
    for split in ("train", "val", "trainval", "test"):
        src = _open("fgvc_aircraft", split, roots["fgvc_aircraft"])
        assert src.classes == AIRCRAFT_VARIANTS  # 'Boeing 717': the class name keeps its space
        assert np.bincount(src.labels.numpy(), minlength=3).tolist() == [len(src) // 3] * 3
        sizes[split] = len(src)
    assert sizes == {"train": 6, "val": 3, "trainval": 9, "test": 6}


# ---------------------------------------------------------------- SUN397

def _listed(root: Path, stem: str) -> list[str]:
    return (root / "SUN397" / "Partitions" / f"{stem}.txt").read_text().split()


def test_sun397_split1_membership(roots):
    root = roots["sun397"]
    for split, stem in (("train", "Training_01"), ("test", "Testing_01")):
        src = _open("sun397", split, root)
        assert src.classes == ["abbey", "airport_terminal", "bakery/shop"]
        rel = ["/" + f.relative_to(src.root).as_posix() for f in src.files]
        assert rel == _listed(root, stem)  # exactly partition 1's list, in its order (not partition 2's)
        assert src.labels.tolist() == [SUN_CLASSES.index(r.rsplit("/", 1)[0]) for r in rel]
        assert np.bincount(src.labels.numpy()).tolist() == [3] * 3
    everything = {p.name for p in (root / "SUN397").rglob("sun_*.jpg")}
    used = {Path(r).name for r in _listed(root, "Training_01") + _listed(root, "Testing_01")}
    assert len(everything - used) == 3  # the unlisted image of each class is in no split


def test_sun397_other_placements(tmp_path):
    """root may be the SUN397 folder itself, and the partition files may lie beside ClassName.txt
    (where CASSLE's reader looks)."""
    root = sun397(tmp_path / "s")
    data = root / "SUN397"
    for stem in ("Training_01", "Testing_01"):
        (data / "Partitions" / f"{stem}.txt").rename(data / f"{stem}.txt")
    assert len(_open("sun397", "train", data)) == 9 and len(_open("sun397", "test", root)) == 9


# ---------------------------------------------------------------- errors

def test_wrong_roots_say_the_layout(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match=r"caltech101: no folder .*101_ObjectCategories.*BACKGROUND_Google"):
        _open("caltech101", "train", empty)
    with pytest.raises(DatasetError, match=r"stanford_cars \(train\): could not open.*devkit/cars_meta\.mat"):
        _open("stanford_cars", "train", empty)
    with pytest.raises(DatasetError, match=r"fgvc_aircraft \(test\): could not open.*images_variant_"):
        _open("fgvc_aircraft", "test", empty)
    with pytest.raises(DatasetError, match=r"sun397: no ClassName\.txt.*Partitions/\{Training,Testing\}_01"):
        _open("sun397", "train", empty)
    assert not any(empty.iterdir())  # nothing created as a side effect
    for name in ("caltech101", "sun397", "stanford_cars", "fgvc_aircraft"):
        with pytest.raises(DatasetError, match=rf"{name}: no root folder given"):
            open_source(name, split="test", image_size=16)
    with pytest.raises(DatasetError, match=r"stanford_cars: download is not possible"):
        _open("stanford_cars", "test", empty, download=True)
    with pytest.raises(DatasetError, match=r"sun397: download is not possible"):
        _open("sun397", "test", empty, download=True)
    with pytest.raises(DatasetError, match=r"sun397: unknown split 'val'; valid splits: train, test"):
        _open("sun397", "val", empty)


def test_sun397_partition_naming_an_unknown_class(tmp_path):
    root = sun397(tmp_path / "s")
    listing = root / "SUN397" / "Partitions" / "Testing_01.txt"
    listing.write_text(listing.read_text() + "/z/zoo/sun_nothere.jpg\n")
    with pytest.raises(DatasetError, match=r"lists '/z/zoo/sun_nothere\.jpg', whose class '/z/zoo'"):
        _open("sun397", "test", root)
    (root / "SUN397" / "Partitions" / "Training_01.txt").unlink()
    with pytest.raises(DatasetError, match=r"sun397 \(train\): no .*Training_01\.txt"):
        _open("sun397", "train", root)


def test_caltech101_class_too_small(tmp_path):
    root = caltech101(tmp_path / "c", classes={"Faces": 31, "tiny": 12})
    with pytest.raises(DatasetError, match="class 'tiny' has 12 images"):
        _open("caltech101", "train", root)


def test_fakes_take_cars_and_aircraft_options(tmp_path):
    assert len(_open("stanford_cars", "train", stanford_cars(tmp_path / "c", per_class=(1, 1)))) == 3
    assert len(_open("fgvc_aircraft", "val", fgvc_aircraft(tmp_path / "a", {"train": 1, "val": 2, "test": 1}))) == 6
