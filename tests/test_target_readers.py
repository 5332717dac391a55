"""CASSLE's targets read from their published layouts (workloads/data/target_readers.py), on the
tiny copies of tests/fake_targets.py: ImageNet-100 (class folders or packed), MIT-67, CUB-200, 300W."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fake_targets as fake
from workloads.data import DatasetError, open_source
from workloads.data.shards import pack_split
from workloads.data.sources import ImageFolderSource, to_square_tensor
from workloads.data.target_readers import (IMAGENET100_LIST, W300Source, imagenet100_wnids, read_pts,
                                           square_geometry, w300_split_indices)

# sha256 of HobbitLong/CMC imagenet100.txt (commit bc687a2), byte-identical to splits/imagenet100.txt
# of hankook/AugSelf and gmum/CASSLE (the same git blob 6dccf9be)
IMAGENET100_SHA256 = "79f3f1552ccc478ce24bd934b4573625db584ddc1f4643ae23c994a94cb11397"


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory) -> tuple[Path, Path]:
    """(fake ImageNet root with the 100 classes and one more, the same packed)."""
    base = tmp_path_factory.mktemp("imagenet")
    folders = fake.imagenet100_folders(base / "folders")
    return folders, fake.imagenet100_packed(folders, base / "packed")


# --- ImageNet-100 ----------------------------------------------------------------------------

def test_the_shipped_imagenet100_list_is_cmcs():
    raw = IMAGENET100_LIST.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == IMAGENET100_SHA256
    wnids = imagenet100_wnids()
    assert len(wnids) == 100 == len(set(wnids)) == raw.count(b"\n")
    assert wnids[:3] == ["n02869837", "n01749939", "n02488291"]
    assert all(re.fullmatch(r"n\d{8}", w) for w in wnids)
    assert fake.NOT_IN_IMAGENET100 not in wnids
    prov = json.loads((IMAGENET100_LIST.parent / "PROVENANCE.json").read_text())["lists"]["imagenet100"]
    assert prov["sha256"] == IMAGENET100_SHA256 and "BSD-2-Clause" in prov["upstream"]["licence"]


@pytest.mark.parametrize("split", ["train", "val"])
def test_imagenet100_folders_and_packed_give_the_same_images_and_drop_other_classes(imagenet, split):
    folders, packed = imagenet
    wnids = imagenet100_wnids()
    a = open_source("imagenet100", split=split, image_size=24, root=str(folders))
    b = open_source("imagenet100", split=split, image_size=24, root=str(packed))
    assert type(a).__name__ == "ImageNet100Folders" and type(b).__name__ == "ImageNet100Packed"
    assert a.classes == b.classes == wnids and a.split == b.split == split
    # every listed class once (one image each), labelled by its line in the list; the 101st dropped
    assert len(a) == len(b) == 100
    assert sorted(a.labels.tolist()) == sorted(b.labels.tolist()) == list(range(100))
    assert all(wnids[int(lab)] == f.parent.name for f, lab in zip(a.files, a.labels))
    assert not any(fake.NOT_IN_IMAGENET100 in a.describe(i) for i in range(len(a)))
    # the packed rows are the same files (the pack's index column points into the folder it was made from)
    whole = ImageFolderSource(folders / split, 24)
    packed_files = {whole.files[k].name: int(lab) for k, lab in zip(b.source_index(), b.labels)}
    assert packed_files == {f.name: int(lab) for f, lab in zip(a.files, a.labels)}
    by_name = {f.name: i for i, f in enumerate(a.files)}
    for i in (0, 37, 99):
        j = by_name[whole.files[b.source_index()[i]].name]
        assert b.labels[i] == a.labels[j]
        diff = (b[i][0].float() - a[j][0].float()).abs().mean().item()
        assert diff < 4, diff  # the pack re-encodes the JPEG (quality 90)
    assert a.identity() != b.identity() and a.identity() == open_source(
        "imagenet100", split=split, image_size=24, root=str(folders)).identity()


def test_imagenet100_errors_name_what_is_missing(tmp_path):
    some = imagenet100_wnids()[:3]
    fake.imagenet100_folders(tmp_path / "few", wnids=some)
    with pytest.raises(DatasetError, match=r"97 of the 100 class folders are missing .*n\d{8}, n\d{8}, n\d{8} \.\.\."):
        open_source("imagenet100", split="train", image_size=24, root=str(tmp_path / "few"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="holds neither .*train/<wnid>/ nor .*manifest.json"):
        open_source("imagenet100", split="train", image_size=24, root=str(tmp_path / "empty"))
    with pytest.raises(DatasetError, match="does not exist"):
        open_source("imagenet100", split="val", image_size=24, root=str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match="needs root"):
        open_source("imagenet100", split="val", image_size=24)
    # packs: one of only 3 of the classes, one whose classes are not wnids
    few = ImageFolderSource(tmp_path / "few" / "train", 24)
    few.split = "train"  # as `sassl pack` names a folder's split
    pack_split(few, tmp_path / "few-packed")
    with pytest.raises(DatasetError, match=r"97 of the 100 classes are not in the pack"):
        open_source("imagenet100", split="train", image_size=24, root=str(tmp_path / "few-packed"))
    words = ImageFolderSource(tmp_path / "few" / "train", 24)
    words.split = "train"
    words.classes = ["tench", "goldfish", "great white shark", "tiger shark"]
    pack_split(words, tmp_path / "words-packed")
    with pytest.raises(DatasetError, match="not WordNet ids .*tench.*sassl pack imagefolder"):
        open_source("imagenet100", split="train", image_size=24, root=str(tmp_path / "words-packed"))


# --- MIT-67, CUB-200 ---------------------------------------------------------------------------

def test_mit67_splits_come_from_its_lists(tmp_path):
    root = fake.mit67(tmp_path / "mit67")
    train = open_source("mit67", split="train", image_size=32, root=str(root))
    test = open_source("mit67", split="test", image_size=32, root=str(root))
    assert train.classes == test.classes == ["airport_inside", "bar", "kitchen"]
    for src, listed in ((train, "TrainImages.txt"), (test, "TestImages.txt")):
        rows = (root / listed).read_text().split()
        assert [f"{f.parent.name}/{f.name}" for f in src.files] == rows  # the list's images, in its order
        assert [src.classes[int(lab)] for lab in src.labels] == [r.split("/")[0] for r in rows]
    assert (len(train), len(test)) == (9, 6)  # the 3 unlisted images are in neither
    assert train[0][0].shape == (3, 32, 32) and train.split == "train"
    with pytest.raises(DatasetError, match="unknown split 'val'"):
        open_source("mit67", split="val", image_size=32, root=str(root))
    (root / "Images" / "bar" / "bar_000.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 of the 9 images .*TrainImages.txt lists are missing: .*bar_000.jpg"):
        open_source("mit67", split="train", image_size=32, root=str(root))
    (root / "TestImages.txt").unlink()
    with pytest.raises(DatasetError, match=r"TestImages.txt is missing; expected .*Images/<class>/<file>.jpg"):
        open_source("mit67", split="train", image_size=32, root=str(root))


def test_cub200_splits_and_labels_come_from_its_files(tmp_path):
    root = fake.cub200(tmp_path / "cub")
    base = root / "CUB_200_2011"
    ids = dict(line.split() for line in (base / "images.txt").read_text().splitlines())
    cls = dict(line.split() for line in (base / "image_class_labels.txt").read_text().splitlines())
    is_train = dict(line.split() for line in (base / "train_test_split.txt").read_text().splitlines())
    for split, flag in (("train", "1"), ("test", "0")):
        for where in (root, base):  # the folder holding CUB_200_2011/, or that folder itself
            src = open_source("cub200", split=split, image_size=32, root=str(where))
            want = sorted((ids[i], int(cls[i]) - 1) for i in ids if is_train[i] == flag)
            assert [(f"{f.parent.name}/{f.name}", int(lab)) for f, lab in zip(src.files, src.labels)] == want
            assert src.classes == ["001.Bird_A", "002.Bird_B", "003.Bird_C"] and len(src) == 6
    (base / "train_test_split.txt").unlink()
    with pytest.raises(DatasetError, match=r"train_test_split.txt is missing; expected .*classes.txt"):
        open_source("cub200", split="test", image_size=32, root=str(root))


# --- 300W ----------------------------------------------------------------------------------------

def test_square_geometry_is_what_to_square_tensor_does():
    img = np.zeros((60, 100, 3), np.uint8)
    img[30:32, 70:72] = 255  # a 2 px dot at x 70..72, y 30..32
    out = to_square_tensor(Image.fromarray(img), 30)[0].numpy()
    sx, sy, left, top = square_geometry(100, 60, 30)
    assert (sx, sy, left, top) == (0.5, 0.5, 10, 0)
    assert np.unravel_index(out.argmax(), out.shape) == (int(30 * sy - top), int(70 * sx - left)) == (15, 25)
    assert square_geometry(30, 30, 30) == (1.0, 1.0, 0, 0)


def _expected(k: int, size: int) -> np.ndarray:
    """By hand for the fake: landmarks span exactly 60 × 40 px from (20 + k/4, 10 + k/8), so the face
    crop is 60 × 60 and to_square_tensor at 30 px halves it; then L2-normalised."""
    pts = np.loadtxt(_as_written(fake.w300_points(k))).astype(np.float32).astype(np.float64)
    rel = (pts - [20 + k / 4, 10 + k / 8]) * (size / 60)
    v = rel.reshape(-1)
    return v / np.linalg.norm(v)


def _as_written(points: np.ndarray) -> list[str]:
    return [f"{x:.3f} {y:.3f}" for x, y in points]  # as the fake writes them


def test_w300_labels_are_the_transformed_normalised_landmarks(tmp_path):
    root = fake.w300(tmp_path / "300w")
    place = {p.name: k for k, p in enumerate(sorted(root.glob("0*/*.png"), key=str))}
    seen = 0
    for split in ("train", "val", "test"):
        src = open_source("w300", split=split, image_size=30, root=str(root))
        assert isinstance(src, W300Source) and src.task == "regression" and src.classes == []
        assert src.labels.dtype == torch.float32 and src.labels.shape == (len(src), 136)
        for i, f in enumerate(src.files):
            np.testing.assert_allclose(src.labels[i].numpy(), _expected(place[f.name], 30), atol=1e-6)
            x, y = src[i]
            assert x.shape == (3, 30, 30) and torch.equal(y, src.labels[i])
            seen += 1
        # the image is CASSLE's face crop: PIL rounds the box's corners (half to even)
        k = place[src.files[0].name]
        left, top = round(20 + k / 4), round(10 + k / 8)
        with Image.open(src.files[0]) as im:
            want = im.convert("RGB").crop((left, top, left + 60, top + 60))
        assert src.image(0).size == (60, 60) and np.array_equal(np.array(src.image(0)), np.array(want))
    assert seen == 10
    cls = open_source("mit67", split="test", image_size=30, root=str(fake.mit67(tmp_path / "mit")))
    assert getattr(cls, "task", "classification") == "classification"


def test_w300_split_is_cassles(tmp_path):
    # CASSLE (gmum/CASSLE datasets.py, FacesInTheWild300W) as written there: the global numpy seed
    state = np.random.get_state()
    try:
        for n in (10, 599):
            np.random.seed(0)
            idxs = np.arange(n)
            np.random.shuffle(idxs)
            split1, split2 = int(n * 0.3), int(n * sum([0.3, 0.3]))
            ours = w300_split_indices(n)
            for name, want in (("train", idxs[:split1]), ("val", idxs[split1:split2]), ("test", idxs[split2:])):
                assert np.array_equal(ours[name], want)
    finally:
        np.random.set_state(state)
    assert [len(v) for v in w300_split_indices(599).values()] == [179, 180, 240]  # 300W: 600 images, last dropped
    root = fake.w300(tmp_path / "300w")  # 11 images: the last (02_Outdoor/outdoor_005.png) is dropped
    srcs = {s: open_source("w300", split=s, image_size=30, root=str(root)) for s in ("train", "val", "test")}
    assert [len(s) for s in srcs.values()] == [3, 3, 4]
    images = sorted(root.glob("0*/*.png"), key=str)
    for name, src in srcs.items():
        assert src.files == [images[i] for i in w300_split_indices(10)[name]]
    assert images[-1].name == "outdoor_005.png" and all(images[-1] not in s.files for s in srcs.values())
    assert len({s.identity() for s in srcs.values()}) == 3


def test_w300_errors(tmp_path):
    root = fake.w300(tmp_path / "300w")
    shutil.rmtree(root / "02_Outdoor")
    with pytest.raises(DatasetError, match=r"02_Outdoor is missing; expected the published layout: root/01_Indoor/\*.png"):
        open_source("w300", split="train", image_size=30, root=str(root))
    root = fake.w300(tmp_path / "300w-b")
    (root / "01_Indoor" / "indoor_002.pts").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) have no same-named .pts file: .*indoor_002.png"):
        open_source("w300", split="train", image_size=30, root=str(root))
    bad = tmp_path / "bad.pts"
    bad.write_text("version: 1\nn_points: 2\n{\n1 2\n3 4\n}\n")
    with pytest.raises(DatasetError, match="holds 2 points"):
        read_pts(bad)
