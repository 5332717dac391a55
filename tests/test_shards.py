"""`sassl pack` and the `packed` dataset: Parquet shards of re-encoded JPEGs (workloads/data/shards.py)."""
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from workloads.data import DatasetError, load_in_memory, open_source
from workloads.data.shards import MANIFEST, PROGRESS, pack_split

CLASSES = ("cats", "dogs", "owls")


def _folder(root: Path, per_class: int = 7) -> Path:
    """An ImageFolder of noisy images of varied sizes (some larger than max_side), plus one
    truncated JPEG that passes PIL's header check but cannot be decoded."""
    rng = np.random.default_rng(0)
    for c, cls in enumerate(CLASSES):
        (root / cls).mkdir(parents=True)
        for k in range(per_class):
            w, h = int(rng.integers(40, 200)), int(rng.integers(40, 200))
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            pixels[..., c] = 255  # the class shows in the colour: labels can be checked by pixels
            Image.fromarray(pixels).save(root / cls / f"{k}.jpg", quality=95)
    whole = (root / "dogs" / "0.jpg").read_bytes()
    (root / "dogs" / "truncated.jpg").write_bytes(whole[: len(whole) // 3])
    return root


def test_pack_writes_mixed_shards_with_a_manifest_and_skips_the_corrupt_image(tmp_path):
    src = open_source("imagefolder", split="all", image_size=32, root=str(_folder(tmp_path / "raw")))
    src.split = "train"
    report = pack_split(src, tmp_path / "packed", max_side=64, shard_size=8, seed=3)
    folder = tmp_path / "packed" / "train"
    manifest = json.loads((folder / MANIFEST).read_text())
    assert report.images == manifest["images"] == 21 and len(report.skipped) == 1
    assert "truncated.jpg" in report.skipped[0] and manifest["skipped"] == report.skipped
    assert manifest["per_class"] == {c: 7 for c in CLASSES} and manifest["classes"] == list(CLASSES)
    slots = [8, 8, 6]  # 22 files in shards of 8; the corrupt one's row is missing from its shard
    assert [slot - s["rows"] for slot, s in zip(slots, manifest["shards"])].count(1) == 1
    assert not (folder / PROGRESS).exists()
    rows = pq.read_table(folder / "shard-00000.parquet").to_pydict()
    assert len(set(rows["label"])) > 1  # a seeded shuffle: the first shard is not one class
    for jpeg, h, w, i in zip(rows["jpeg"], rows["height"], rows["width"], rows["index"]):
        img = Image.open(io.BytesIO(jpeg))
        ow, oh = src.image(i).size
        assert img.size == (w, h) and min(w, h) == min(64, ow, oh)  # shorter side capped, never enlarged
        assert abs(w / h - ow / oh) < 0.05  # aspect kept: crops later come from this image

    packed = open_source("packed", split="train", image_size=32, root=str(tmp_path / "packed"))
    images, labels = load_in_memory(packed, progress=False)
    assert images.shape == (21, 3, 32, 32) and labels.tolist() == rows["label"] + pq.read_table(
        folder / "shard-00001.parquet")["label"].to_pylist() + pq.read_table(folder / "shard-00002.parquet")[
        "label"].to_pylist()
    # the label is right: each class's own channel is saturated
    assert all(int(images[k].float().mean((1, 2)).argmax()) == int(labels[k]) for k in range(21))


def test_an_interrupted_pack_resumes_and_ends_as_an_uninterrupted_one(tmp_path):
    src = open_source("dtd-kit", split="val", image_size=32)
    whole = pack_split(src, tmp_path / "once", shard_size=40, max_side=32)

    seen = []

    def stop_in_shard_three(n):
        seen.append(n)
        if len(seen) == 100:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        pack_split(src, tmp_path / "twice", shard_size=40, max_side=32, progress=stop_in_shard_three)
    assert not (tmp_path / "twice" / "val" / MANIFEST).exists()  # not readable as a finished pack
    again = pack_split(src, tmp_path / "twice", shard_size=40, max_side=32)
    assert (again.reused, again.written) == (2, whole.written - 2)
    hashes = [json.loads((tmp_path / d / "val" / MANIFEST).read_text())["shards"] for d in ("once", "twice")]
    assert hashes[0] == hashes[1]
    # other settings: nothing is reused
    third = pack_split(src, tmp_path / "twice", shard_size=40, max_side=24)
    assert third.reused == 0


def test_packed_errors_name_the_missing_split_and_the_missing_shard(tmp_path):
    src = open_source("dtd-kit", split="val", image_size=32)
    pack_split(src, tmp_path / "p", shard_size=100, max_side=32)
    with pytest.raises(DatasetError, match=r"no packed split 'train' at .*p/train .*packed splits there: val"):
        open_source("packed", split="train", image_size=32, root=str(tmp_path / "p"))
    (tmp_path / "p" / "val" / "shard-00001.parquet").unlink()
    with pytest.raises(DatasetError, match="1 shard file.*missing.*shard-00001.parquet"):
        open_source("packed", split="val", image_size=32, root=str(tmp_path / "p"))
    with pytest.raises(DatasetError, match="needs root"):
        open_source("packed", split="val", image_size=32)


def test_identity_follows_the_content(tmp_path):
    src = open_source("dtd-kit", split="val", image_size=32)
    pack_split(src, tmp_path / "a", shard_size=100, max_side=32)
    pack_split(src, tmp_path / "b", shard_size=100, max_side=24)
    ids = {open_source("packed", split="val", image_size=32, root=str(tmp_path / d)).identity() for d in "ab"}
    assert len(ids) == 2


def test_sassl_pack_cli(tmp_path):
    _folder(tmp_path / "raw", per_class=3)
    cmd = [sys.executable, "-m", "orchestrator", "pack", "imagefolder", str(tmp_path / "out"), "--root",
           str(tmp_path / "raw"), "--max-side", "48", "--shard-size", "4"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "9 images in 3 shards (0 kept from an earlier run), 1 unreadable skipped" in res.stdout
    assert "truncated.jpg" in res.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert "9 images in 3 shards (3 kept from an earlier run), 1 unreadable skipped" in again.stdout
    bad = subprocess.run([*cmd[:5], str(tmp_path / "x"), "--root", str(tmp_path / "nowhere")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "folder" in bad.stderr and "nowhere" in bad.stderr
    img = torch.as_tensor(np.array(Image.open(io.BytesIO(pq.read_table(
        tmp_path / "out" / "train" / "shard-00000.parquet")["jpeg"][0].as_py()))))
    assert min(img.shape[:2]) <= 48


def test_a_row_is_read_from_its_own_shard_when_another_thread_swaps_the_cached_one(tmp_path):
    """PackedShards keeps the shard last read; LazyImages reads rows on several threads. The
    interleaving "this thread checks the cache holds its shard, another swaps in another shard,
    this thread reads its row" must still give this thread's row (played here deterministically)."""
    from workloads.data.shards import PackedShards
    pack_split(open_source("dtd-kit", split="val", image_size=32), tmp_path, shard_size=40, max_side=32)
    shards = PackedShards(tmp_path, "val")
    expected = [shards.jpeg(i) for i in (0, 45)]  # shard 0, then shard 1 (now cached)
    other = shards._cached

    class SwappedAfterTheCheck(tuple):
        def __getitem__(self, j):
            if j == 0:  # the check: another thread replaces the cache right after it
                shards._cached = other
            return tuple.__getitem__(self, j)

    shards._cached = SwappedAfterTheCheck((0, pq.read_table(shards.files[0], columns=["jpeg"])["jpeg"].to_pylist()))
    assert shards.jpeg(0) == expected[0]
    assert shards.jpeg(45) == expected[1]
