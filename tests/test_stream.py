"""The streaming data path (workloads/data/stream.py): packed shards read epoch by epoch, each
view cropped from the original image, in an order fixed by (seed, epoch, rank)."""
import io
from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from specs import view1, view2
from workloads.callbacks import Callback
from workloads.augment import CroppedViews, TwoViewAugment
from workloads.data import DatasetError, open_source
from workloads.data.prepare import choose_loader, pretrain_data
from workloads.data.shards import PackedShards, pack_split
from workloads.data.device_decode import DeviceDecodeStream
from workloads.data.stream import ShardStream, decode_rows, epoch_plan
from workloads.pretrain import pretrain
from workloads.spec import DatasetRef, MonitorSpec, TargetSpec

from test_methods_pretrain import cell

VIEWS = (view1(), view2())


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """dtd-kit's 240 validation images in 6 shards of 40."""
    root = tmp_path_factory.mktemp("packed")
    pack_split(open_source("dtd-kit", split="val", image_size=32), root, shard_size=40, max_side=48)
    return PackedShards(root, "val")


def stream(shards, **kw):
    args = dict(views=VIEWS, size=32, seed=0, rank=0, world=1, batch_per_rank=48)
    return ShardStream(shards, **{**args, **kw})


def packed_target(packed, test_split: str = "test") -> TargetSpec:
    """A target on the packed split: 25 % of it carved off for validation."""
    return TargetSpec(key="dtd", label="dtd", data=DatasetRef(name="packed", split="val", root=str(packed.root),
                                                               download=False),
                      test_split=test_split, test_data=None, val_split=None, val_fraction=0.25, split_seed=0,
                      label_fraction=1.0, metric=None, ten_crop=False)


def indices(batches) -> list[int]:
    return [i for b in batches for i in b.index.tolist()]


def test_two_epochs_see_every_image_once_each_in_different_orders(packed):
    s = stream(packed)
    e0, e1 = list(s.epoch(0)), list(s.epoch(1))
    assert len(e0) == len(e1) == s.plan(0).steps == 5 and all(b.shape == (48, 3, 32, 32) for b in e0)
    assert sorted(indices(e0)) == sorted(indices(e1)) == list(range(240))
    assert indices(e0) != indices(e1)


def test_an_epoch_is_the_same_after_a_restart(packed):
    """What a resumed worker reads: a new stream (a new process) gives epoch 3 exactly as the
    first one did, views and crop boxes alike."""
    first = list(stream(packed).epoch(3))
    again = list(stream(packed).epoch(3))
    for a, b in zip(first, again):
        assert torch.equal(a.index, b.index) and torch.equal(a.view1, b.view1) and torch.equal(a.crop2, b.crop2)


def test_ranks_read_disjoint_shards_and_take_the_same_number_of_steps(packed):
    plans = [epoch_plan(packed, seed=0, epoch=2, rank=r, world=2, batch_per_rank=24) for r in (0, 1)]
    assert not set(plans[0].files) & set(plans[1].files) and len(plans[0].files) + len(plans[1].files) == 6
    assert plans[0].steps == plans[1].steps == 5
    got = [indices(stream(packed, rank=r, world=2, batch_per_rank=24).epoch(2)) for r in (0, 1)]
    assert len(got[0]) == len(got[1]) == 120 and not set(got[0]) & set(got[1])
    with pytest.raises(DatasetError, match="6 shard.*for 8 workers"):
        epoch_plan(packed, seed=0, epoch=0, rank=0, world=8, batch_per_rank=4)
    # data.limit keeps the first shards up to that many rows; one beyond the split keeps them all
    whole = epoch_plan(packed, seed=0, epoch=2, rank=0, world=1, batch_per_rank=24)
    assert epoch_plan(packed, seed=0, epoch=2, rank=0, world=1, batch_per_rank=24, limit=10 ** 6) == whole
    assert epoch_plan(packed, seed=0, epoch=2, rank=0, world=1, batch_per_rank=24, limit=1).rows < whole.rows


def jpeg_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def test_views_are_cropped_from_the_original_image():
    """A 2:1 image, red on the left half and blue on the right: each crop's redness is the
    share of its box (in the original's coordinates) that lies on the left half."""
    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :100, 0] = 255
    img[:, 100:, 2] = 255
    views, bad = decode_rows([jpeg_bytes(img)] * 16, list(range(16)), views=VIEWS, size=32, seed=0, epoch=0)
    assert bad == 0 and views.view1.shape == (16, 3, 32, 32)
    for v, boxes in ((views.view1, views.crop1), (views.view2, views.crop2)):
        for x, (y0, x0, h, w) in zip(v.float() / 255, boxes.tolist()):
            assert 0 <= y0 and 0 <= x0 and y0 + h <= 1 + 1e-6 and x0 + w <= 1 + 1e-6
            left = min(max(0.5 - x0, 0.0), w) / w
            assert abs(float(x[0].mean()) - left) < 0.05
            aspect = (w * 200) / (h * 100)  # the box's aspect in pixels of the original: within the crop ratio
            assert 3 / 4 - 0.05 < aspect < 4 / 3 + 0.05
    # the augmentation takes the boxes as the views' crop (ω's first four entries: centre, size;
    # the centre's x mirrored where the view was flipped)
    aug = TwoViewAugment(*VIEWS, out_size=32, omega=True)
    _, _, info = aug(views, generator=torch.Generator().manual_seed(0))
    box, flip = views.crop1, info["view1"]["flip"]
    cx = box[:, 1] + box[:, 3] / 2
    assert torch.equal(info["view1"]["crop"], box) and flip.any() and not flip.all()
    assert torch.allclose(info["view1"]["omega"][:, :4], torch.stack(
        [box[:, 0] + box[:, 2] / 2, torch.where(flip, 1 - cx, cx), box[:, 2], box[:, 3]], 1))


def pack_with_a_damaged_row(tmp_path, good: int = 11) -> PackedShards:
    """One shard of ``good`` + 1 rows; row 5 is not a JPEG."""
    ok = [jpeg_bytes(np.full((40, 60, 3), k * 20, np.uint8)) for k in range(good)]
    rows, n = ok[:5] + [b"\xff\xd8 not a jpeg"] + ok[5:], good + 1
    folder = tmp_path / "p" / "train"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"index": list(range(n)), "label": [0] * n, "jpeg": pa.array(rows, pa.binary()),
                             "height": [40] * n, "width": [60] * n}), folder / "shard-00000.parquet")
    (folder / "manifest.json").write_text(
        '{"format": "sassl-shards/1", "classes": ["a"], "shards": [{"file": "shard-00000.parquet", "rows": %d}]}' % n)
    return PackedShards(tmp_path / "p", "train")


def test_a_damaged_row_is_skipped_and_counted(tmp_path):
    s = stream(pack_with_a_damaged_row(tmp_path), batch_per_rank=4)
    batches = list(s.epoch(0))
    assert len(batches) == 3 and s.skipped == 1 and 5 not in indices(batches)


def test_decoding_on_the_device_reads_the_same_rows_and_boxes(packed, tmp_path):
    """data.stream_decode: device, here on the CPU (torchvision's decoder; nvJPEG on a GPU runs
    the same code): the thread path's rows in its order, the same crop boxes, pixels within the
    two resize implementations' difference; a damaged row skipped and counted."""
    threads = stream(packed)
    on_device = DeviceDecodeStream.like(threads, device=torch.device("cpu"))
    a, b = list(threads.epoch(2)), list(on_device.epoch(2))
    assert len(a) == len(b) == 5
    for x, y in zip(a, b):
        assert torch.equal(x.index, y.index) and torch.equal(x.crop1, y.crop1) and torch.equal(x.crop2, y.crop2)
        for v, w in ((x.view1, y.view1), (x.view2, y.view2)):
            diff = (v.float() - w.float()).abs()
            assert v.shape == w.shape and w.dtype == torch.uint8 and diff.mean() < 2.0 and diff.max() < 64
    damaged = DeviceDecodeStream.like(stream(pack_with_a_damaged_row(tmp_path), batch_per_rank=4),
                                      device=torch.device("cpu"))
    batches = list(damaged.epoch(0))
    assert len(batches) == 3 and damaged.skipped == 1 and 5 not in indices(batches)


def test_pretrain_on_a_stream_and_the_loader_switch(packed):
    cfg = cell("simclr", aug_mode="cassle", encoder_depth=1, encoder_width=8)
    ref = DatasetRef(name="packed", split="val", root=str(packed.root), download=False)
    cfg = replace(cfg, data=replace(cfg.data, pretrain=ref, loader="stream"))
    data = pretrain_data(cfg, None)
    assert isinstance(data, ShardStream) and data.batch == cfg.optim.batch_size
    losses = []

    class Rec(Callback):
        def on_progress(self, *a): pass
        def on_artifact(self, *a): pass
        def on_epoch_end(self, stage, epoch, metrics, state): losses.append(metrics)
    pretrain(cfg, data, callback=Rec())
    assert len(losses) == 1 and np.isfinite(losses[0]["loss"]) and losses[0]["skipped_images"] == 0
    # auto: memory while the decoded split fits the budget, stream beyond it
    cfg = replace(cfg, data=replace(cfg.data, loader="auto"))
    assert choose_loader(cfg.data, 240) == "memory" and isinstance(pretrain_data(cfg, None), torch.Tensor)
    cfg = replace(cfg, data=replace(cfg.data, memory_budget_gb=240 * 3 * 32 * 32 / 2**30 / 2))
    assert choose_loader(cfg.data, 240) == "stream" and isinstance(pretrain_data(cfg, None), ShardStream)
    cfg = replace(cfg, data=replace(cfg.data, pretrain=DatasetRef(name="dtd-kit", split="val", root=None,
                                                                   download=False)))
    with pytest.raises(DatasetError, match="over data.memory_budget_gb.*sassl pack"):
        pretrain_data(cfg, None)


def test_cropped_views_keep_their_index_on_the_host():
    v = CroppedViews(*(torch.zeros(2, 3, 8, 8, dtype=torch.uint8),) * 2, torch.zeros(2, 4), torch.zeros(2, 4),
                     torch.tensor([4, 7]))
    assert v.to("cpu").index.tolist() == [4, 7] and v.shape == (2, 3, 8, 8)


def test_evaluation_reads_a_split_batch_by_batch(packed):
    """data.loader: stream: the probe's features come from batches decoded as they are read, equal
    to those of the decoded split."""
    from workloads.data.lazy import LazyImages
    from workloads.data.prepare import evaluation_is_lazy, target_splits
    from workloads.evaluation.features import extract_features
    from workloads.models.backbones import build_backbone
    target = packed_target(packed, test_split="val")
    data = cell("simclr").data
    assert evaluation_is_lazy(replace(data, loader="stream"), target)
    assert not evaluation_is_lazy(replace(data, loader="auto"), target)  # 240 images at 32 px fit the default budget
    lazy = target_splits(target, image_size=32, cache_dir=None, lazy=True)
    dense = target_splits(target, image_size=32, cache_dir=None)
    assert isinstance(lazy.train[0], LazyImages) and len(lazy.train[0]) == len(dense.train[0]) == 180
    assert torch.equal(lazy.train[1], dense.train[1]) and torch.equal(lazy.val[0][:], dense.val[0])
    backbone = build_backbone("resnet18", 0.125, "imagenet").eval()
    mean, std = (0.5,) * 3, (0.25,) * 3
    assert torch.allclose(extract_features(backbone, lazy.train[0], mean, std, batch_size=64),
                          extract_features(backbone, dense.train[0], mean, std, batch_size=64), atol=1e-5)


def test_search_monitor_reads_a_large_target_batch_by_batch(packed):
    """The search's per-epoch objective with data.loader: stream: its class-balanced subset and
    the validation split stay undecoded (LazyImages) and it scores what the in-memory monitor does."""
    from workloads.data.lazy import LazyImages
    from workloads.evaluation.monitor import ValidationMonitor
    from workloads.models.backbones import build_backbone
    cfg = cell("simclr")
    cfg = replace(cfg, evaluation=replace(cfg.evaluation, targets=(packed_target(packed),)))
    backbone = build_backbone("resnet18", 0.125, "imagenet").eval()
    scores = {}
    for loader in ("memory", "stream"):
        monitor = ValidationMonitor(replace(cfg, data=replace(cfg.data, loader=loader)),
                                    MonitorSpec(train_size=90, lr=0.1, epochs=3), cache_dir=None)
        assert isinstance(monitor.train[0], LazyImages) == isinstance(monitor.val[0], LazyImages) == (loader == "stream")
        assert len(monitor.train[0]) == len(monitor.train[1]) == 90
        scores[loader] = monitor(backbone)["val_top1"]
    assert scores["stream"] == pytest.approx(scores["memory"], abs=1e-6)


def test_crop_box_follows_the_batched_rule(monkeypatch):
    """The stream's per-image box (numpy, 10x cheaper per image) and the batched augmentation's
    boxes (torch) are the same rule: fed the same uniforms, they give the same boxes."""
    import workloads.augment.kernels as kernels
    from workloads.data.stream import crop_box
    rng = np.random.default_rng(0)
    for h, w in ((32, 32), (100, 240), (300, 90), (7, 5)):
        u = rng.random((64, 22))
        monkeypatch.setattr(kernels, "rand_uniform", lambda shape, generator, device: torch.as_tensor(u, dtype=torch.float32))
        ref = kernels.sample_crop_boxes(64, h, w, (0.08, 1.0), (3 / 4, 4 / 3)).tolist()

        class Fixed:
            def __init__(self, row):
                self.row = row

            def random(self, n):
                return self.row.astype(np.float32).astype(np.float64)
        mine = [list(crop_box(h, w, (0.08, 1.0), (3 / 4, 4 / 3), Fixed(row))) for row in u]
        assert mine == ref, (h, w)


def test_rows_the_device_decoder_refuses_fall_back_to_pil_as_on_the_thread_path():
    """ImageNet has CMYK JPEGs and PNG bytes under a .JPEG name: PIL reads them, so the device
    path must keep them too (decoded on the CPU, moved to the device), skipping only what
    neither reads, so both paths train on the same rows with the same boxes."""
    from workloads.data.device_decode import decode_rows_on_device
    g = np.random.default_rng(0)
    rows = []
    for fmt, mode in (("JPEG", "RGB"), ("PNG", "RGB"), ("JPEG", "CMYK"), ("JPEG", "L")):
        buf = io.BytesIO()
        Image.fromarray(g.integers(0, 256, (40, 48, 3), dtype=np.uint8)).convert(mode).save(buf, fmt)
        rows.append(buf.getvalue())
    rows.append(b"\xff\xd8 not an image")
    kw = dict(views=VIEWS, size=32, seed=0, epoch=0)
    cpu, bad_cpu = decode_rows(rows, list(range(5)), **kw)
    dev, bad_dev = decode_rows_on_device(rows, list(range(5)), device=torch.device("cpu"), **kw)
    assert bad_cpu == bad_dev == 1 and cpu.index.tolist() == dev.index.tolist() == [0, 1, 2, 3]
    assert torch.equal(cpu.crop1, dev.crop1) and torch.equal(cpu.crop2, dev.crop2)
    assert (cpu.view1.float() - dev.view1.float()).abs().mean() < 3.0
