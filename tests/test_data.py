"""Dataset layer: embedded packs, sources, registry errors, splits, in-memory loading."""
from __future__ import annotations

import importlib.util
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import PIL
import pytest
import torch
from PIL import Image

from workloads.data import (DATASETS, DatasetError, ImageSource, class_balanced_subset, load_in_memory,
                            load_split, open_source, save_split, stratified_split)
from workloads.data import registry
from workloads.data.packed import PackedImages

REPO = Path(__file__).resolve().parents[1]
ASSETS = REPO / "workloads" / "data" / "assets"
SHARED = REPO.parent / "shared" / "data"


def _build_script():
    spec = importlib.util.spec_from_file_location("build_data_kit", REPO / "scripts" / "build_data_kit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def packs() -> dict[str, PackedImages]:
    return {k: PackedImages(ASSETS / f"{k}.npz") for k in ("cifar10", "dtd", "paintings")}


# --- packs -------------------------------------------------------------------------------------

def test_pack_counts_and_classes(packs):
    cifar, dtd, paint = packs["cifar10"], packs["dtd"], packs["paintings"]
    assert len(cifar) == 20_000 and len(dtd) == 1_200 and len(paint) == 300
    assert (cifar.split == 0).sum() == 10_000 and (cifar.split == 1).sum() == 10_000
    assert cifar.classes == ["airplane", "automobile", "bird", "cat", "deer",
                             "dog", "frog", "horse", "ship", "truck"]
    assert len(dtd.classes) == 10
    for p, per_class in ((cifar, 2_000), (dtd, 120)):
        assert np.bincount(p.labels).tolist() == [per_class] * 10
    assert (paint.labels == -1).all() and paint.classes == []
    assert (dtd.split == 0).all() and (paint.split == 0).all()
    prov = json.loads((ASSETS / "PROVENANCE.json").read_text())
    assert {k: v["file_count"] for k, v in prov["packs"].items()} == {"cifar10": 20_000, "dtd": 1_200,
                                                                      "paintings": 300}


def test_pack_loads_without_pickle_and_names_sorted(packs):
    with np.load(ASSETS / "cifar10.npz", allow_pickle=False) as z:
        assert z["offsets"].dtype == np.int64 and z["data"].dtype == np.uint8
        assert z["offsets"][-1] == len(z["data"]) and (np.diff(z["offsets"]) > 0).all()
    for p in packs.values():
        assert list(p.names) == sorted(p.names)


def test_style_packs_are_small(packs):
    for key in ("dtd", "paintings"):
        p = packs[key]
        for i in (0, len(p) // 2, len(p) - 1):
            assert min(p.decode(i).size) == 64
    assert (ASSETS / "dtd.npz").stat().st_size < 6 * 2**20


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared source data not available")
def test_decode_round_trip_matches_source(packs):
    rng = np.random.default_rng(0)
    cifar = packs["cifar10"]
    for i in [0, len(cifar) - 1, *rng.choice(len(cifar), 200, replace=False).tolist()]:
        src = SHARED / str(cifar.names[i])
        assert cifar.raw(i) == src.read_bytes()  # byte-for-byte copy
        assert np.array_equal(np.array(cifar.decode(i)), np.array(Image.open(src).convert("RGB")))
    build = _build_script()
    same_pillow = json.loads((ASSETS / "PROVENANCE.json").read_text())["pillow_version"] == PIL.__version__
    for key in ("dtd", "paintings"):
        p = packs[key]
        for i in rng.choice(len(p), 20, replace=False).tolist():
            src = SHARED / str(p.names[i])
            expected = Image.open(io.BytesIO(build.downscale_jpeg(src.read_bytes(), 64))).convert("RGB")
            if same_pillow:  # the JPEG encoder output can differ between Pillow builds
                assert np.array_equal(np.array(p.decode(i)), np.array(expected))
            assert p.decode(i).size == expected.size


# --- open_source ----------------------------------------------------------------------------------

@pytest.mark.parametrize("size", [32, 64])
def test_open_source_shapes(size):
    for name, split, n, n_classes in [("cifar10-kit", "train", 10_000, 10), ("cifar10-kit", "test", 10_000, 10),
                                      ("dtd-kit", "train", 720, 10), ("dtd-kit", "all", 1_200, 10),
                                      ("paintings-kit", "all", 300, 0)]:
        src = open_source(name, split=split, image_size=size)
        assert isinstance(src, ImageSource) and len(src) == n and len(src.classes) == n_classes
        assert src.name == name and src.image_size == size
        assert src.labels.dtype == torch.int64 and src.labels.shape == (n,)
        x, y = src[len(src) - 1]
        assert x.dtype == torch.uint8 and x.shape == (3, size, size)
        assert isinstance(y, int) and y == int(src.labels[-1])
        assert (y == -1) == (name == "paintings-kit")


def test_cifar_kit_at_native_size_is_not_resampled(packs):
    src = open_source("cifar10-kit", split="test", image_size=32)
    i = int(np.flatnonzero(packs["cifar10"].split == 1)[5])
    assert torch.equal(src[5][0], torch.from_numpy(np.array(packs["cifar10"].decode(i))).permute(2, 0, 1))


def test_dtd_kit_splits_fixed_and_stratified():
    parts = {s: open_source("dtd-kit", split=s, image_size=32) for s in ("train", "val", "test")}
    idx = {s: set(p.indices.tolist()) for s, p in parts.items()}
    assert [len(idx[s]) for s in ("train", "val", "test")] == [720, 240, 240]
    assert not (idx["train"] & idx["val"]) and not (idx["train"] & idx["test"]) and not (idx["val"] & idx["test"])
    assert set().union(*idx.values()) == set(range(1_200))
    assert np.bincount(parts["val"].labels.numpy()).tolist() == [24] * 10
    again = open_source("dtd-kit", split="val", image_size=32)
    assert np.array_equal(again.indices, parts["val"].indices)


def test_registry_errors(tmp_path):
    assert "cifar10-kit" in DATASETS and "imagenet" in DATASETS
    with pytest.raises(DatasetError, match=r"unknown dataset 'nope'.*cifar10-kit"):
        open_source("nope", split="train", image_size=32)
    with pytest.raises(DatasetError, match=r"cifar10-kit: unknown split 'val'.*train, test"):
        open_source("cifar10-kit", split="val", image_size=32)
    with pytest.raises(DatasetError, match=r"cifar10: no root folder given.*download: true"):
        open_source("cifar10", split="train", image_size=32)
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetError) as e:
        open_source("flowers102", split="val", image_size=32, root=str(missing))
    assert "flowers102" in str(e.value) and str(missing) in str(e.value) and "download: true" in str(e.value)
    assert not missing.exists()  # nothing created as a side effect
    # Root exists but holds no data: torchvision's own error is wrapped.
    with pytest.raises(DatasetError, match=r"cifar10 \(test\): could not open it from .*download: true") as e:
        open_source("cifar10", split="test", image_size=32, root=str(tmp_path))
    assert isinstance(e.value.__cause__, Exception)
    with pytest.raises(DatasetError, match=r"imagenet.*image-net\.org"):
        open_source("imagenet", split="val", image_size=32, root=str(tmp_path))
    with pytest.raises(DatasetError, match=r"imagenet: download is not possible"):
        open_source("imagenet", split="val", image_size=32, root=str(tmp_path), download=True)
    with pytest.raises(DatasetError, match="positive int"):
        open_source("paintings-kit", split="all", image_size=0)


def test_torchvision_source_offline(tmp_path):
    """A tiny folder in torchvision's DTD layout goes through the torchvision path without network."""
    data = tmp_path / "dtd" / "dtd"
    lines = []
    for cls in ("banded", "zigzagged"):
        for k in range(2):
            _image(data / "images" / cls / f"{cls}_{k}.jpg", size=(70, 50))
            lines.append(f"{cls}/{cls}_{k}.jpg")
    (data / "labels").mkdir()
    (data / "labels" / "val1.txt").write_text("\n".join(lines) + "\n")
    src = open_source("dtd", split="val", image_size=24, root=str(tmp_path))
    assert src.classes == ["banded", "zigzagged"] and src.labels.tolist() == [0, 0, 1, 1]
    x, y = src[3]
    assert x.shape == (3, 24, 24) and x.dtype == torch.uint8 and y == 1


def test_missing_pack_tells_how_to_build(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "ASSETS_DIR", tmp_path)
    registry._pack.cache_clear()
    try:
        with pytest.raises(DatasetError, match=r"scripts/build_data_kit.py"):
            open_source("paintings-kit", split="all", image_size=32)
    finally:
        registry._pack.cache_clear()


# --- folders ----------------------------------------------------------------------------------

def _image(path: Path, size=(40, 30), color=(200, 10, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_imagefolder_skips_corrupt(tmp_path):
    for cls in ("cats", "dogs"):
        for k in range(3):
            _image(tmp_path / cls / f"{k}.jpg")
    _image(tmp_path / "dogs" / "sub" / "deep.png")
    bad = tmp_path / "cats" / "broken.jpg"
    bad.write_bytes(b"this is not a jpeg" * 10)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image.*broken\.jpg"):
        src = open_source("imagefolder", split="all", image_size=16, root=str(tmp_path))
    assert src.skipped == [str(bad.resolve())]
    assert src.classes == ["cats", "dogs"] and len(src) == 7
    assert src.labels.tolist() == [0, 0, 0, 1, 1, 1, 1]
    x, y = src[6]
    assert x.shape == (3, 16, 16) and x.dtype == torch.uint8 and y == 1
    assert x[0].float().mean() > 150  # still the red image after resize + crop


def test_folder_of_only_corrupt_images_fails(tmp_path):
    (tmp_path / "a").mkdir()
    for k in range(2):
        (tmp_path / "a" / f"{k}.jpg").write_bytes(b"\x00garbage")
    with pytest.raises(DatasetError, match=re.escape(f"{tmp_path} (2 candidate files, 2 unreadable)")):
        open_source("imagefolder", split="all", image_size=16, root=str(tmp_path))
    with pytest.raises(DatasetError, match=re.escape(f"no readable images in folder {tmp_path}")):
        open_source("stylefolder", split="all", image_size=16, root=str(tmp_path))


def test_stylefolder_recursive_unlabelled(tmp_path):
    _image(tmp_path / "x.jpg")
    _image(tmp_path / "deep" / "y.PNG", size=(16, 16))
    _image(tmp_path / "deep" / "z.webp", size=(50, 20))
    (tmp_path / "notes.txt").write_text("not an image")
    src = open_source("stylefolder", split="all", image_size=24, root=str(tmp_path))
    assert len(src) == 3 and src.classes == [] and src.labels.tolist() == [-1, -1, -1] and src.skipped == []
    assert all(src[i][0].shape == (3, 24, 24) for i in range(3))
    with pytest.raises(DatasetError, match="needs root"):
        open_source("stylefolder", split="all", image_size=24)


# --- splits -----------------------------------------------------------------------------------

def test_stratified_split_properties():
    labels = np.repeat(np.arange(5), [100, 50, 30, 20, 10])
    fr = {"train": 0.6, "val": 0.2, "test": 0.2}
    a, b = stratified_split(labels, fr, seed=1), stratified_split(torch.as_tensor(labels), fr, seed=1)
    c = stratified_split(labels, fr, seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in fr)
    assert any(not np.array_equal(a[k], c[k]) for k in fr)
    assert sum(len(v) for v in a.values()) == len(labels)
    assert len(np.unique(np.concatenate(list(a.values())))) == len(labels)  # disjoint
    for k, f in fr.items():
        assert np.all(np.diff(a[k]) > 0)  # sorted
        assert np.bincount(labels[a[k]], minlength=5).tolist() == [round(n * f) for n in (100, 50, 30, 20, 10)]
    part = stratified_split(labels, {"train": 0.5}, seed=0)["train"]
    assert np.bincount(labels[part]).tolist() == [50, 25, 15, 10, 5]


def test_stratified_split_unlabelled_and_bad_fractions():
    s = stratified_split(np.full(100, -1), {"train": 0.9, "val": 0.1}, seed=0)
    assert len(s["train"]) == 90 and len(s["val"]) == 10 and not set(s["train"]) & set(s["val"])
    assert not np.array_equal(s["val"], np.arange(90, 100))  # shuffled, not a prefix cut
    with pytest.raises(ValueError):
        stratified_split(np.zeros(10), {"a": 0.7, "b": 0.7}, seed=0)


def test_class_balanced_subset():
    labels = open_source("cifar10-kit", split="train", image_size=32).labels
    one_pct = class_balanced_subset(labels, 0.01, seed=0)
    assert np.bincount(labels.numpy()[one_pct]).tolist() == [10] * 10
    assert np.array_equal(one_pct, class_balanced_subset(labels, 0.01, seed=0))
    assert not np.array_equal(one_pct, class_balanced_subset(labels, 0.01, seed=1))
    five = class_balanced_subset(labels, 5, seed=0)
    assert np.bincount(labels.numpy()[five]).tolist() == [5] * 10 and np.all(np.diff(five) > 0)
    with pytest.raises(ValueError, match="only"):
        class_balanced_subset(labels, 1001, seed=0)
    mixed = np.array([0, 0, 1, 1, -1, -1])
    assert set(class_balanced_subset(mixed, 1, seed=0).tolist()) <= {0, 1, 2, 3}


def test_save_load_split(tmp_path):
    s = stratified_split(np.repeat(np.arange(3), 10), {"train": 0.9, "val": 0.1}, seed=3)
    save_split(s, tmp_path / "s" / "split.json")
    back = load_split(tmp_path / "s" / "split.json")
    assert back.keys() == s.keys() and all(np.array_equal(back[k], s[k]) for k in s)
    with pytest.raises(ValueError, match="overlap"):
        save_split({"a": np.array([1, 2]), "b": np.array([2, 3])}, tmp_path / "bad.json")
    (tmp_path / "bad.json").write_text(json.dumps({"a": [1, 2], "b": [2]}))
    with pytest.raises(ValueError, match="overlap"):
        load_split(tmp_path / "bad.json")


# --- memory -----------------------------------------------------------------------------------

def test_load_in_memory_cache(tmp_path):
    src = open_source("cifar10-kit", split="test", image_size=32)
    t0 = time.perf_counter()
    x1, y1 = load_in_memory(src, progress=False, cache_dir=str(tmp_path))
    first = time.perf_counter() - t0
    assert x1.shape == (10_000, 3, 32, 32) and x1.dtype == torch.uint8
    assert torch.equal(y1, src.labels) and torch.equal(x1[123], src[123][0])
    t0 = time.perf_counter()
    x2, y2 = load_in_memory(open_source("cifar10-kit", split="test", image_size=32), progress=False,
                            cache_dir=str(tmp_path))
    second = time.perf_counter() - t0
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert second < 0.5 and second < first / 3
    # A different size is a different cache entry.
    x3, _ = load_in_memory(open_source("paintings-kit", split="all", image_size=16), progress=False,
                           cache_dir=str(tmp_path))
    assert x3.shape == (300, 3, 16, 16)
    assert len(list(tmp_path.glob("*.npy"))) == 4 and not list(tmp_path.glob(".*tmp"))


def test_data_layer_imports_neither_ray_nor_mlflow():
    code = "import sys, workloads.data; assert not {'ray', 'mlflow'} & set(sys.modules), 'heavy import'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_tiny_imagenet_val_is_labelled_by_its_annotations_not_read_as_one_folder(tmp_path):
    """Its val/ has no class subfolders: as an image folder it was one class, 'images'."""
    from fake_datasets import tiny_imagenet

    from workloads.data import DatasetError, open_source
    root = tiny_imagenet(tmp_path / "tiny-imagenet-200", classes=3, per_class=2)
    train = open_source("tinyimagenet", split="train", image_size=16, root=str(root))
    val = open_source("tinyimagenet", split="val", image_size=16, root=str(root))
    assert len(train) == len(val) == 6 and list(train.classes) == list(val.classes) and len(val.classes) == 3
    assert sorted(val.labels.tolist()) == [0, 0, 1, 1, 2, 2]
    assert len(open_source("imagefolder", split="all", image_size=16, root=str(root / "val")).classes) == 1
    (root / "val" / "val_annotations.txt").unlink()
    with pytest.raises(DatasetError, match="val_annotations.txt is missing"):
        open_source("tinyimagenet", split="val", image_size=16, root=str(root))
