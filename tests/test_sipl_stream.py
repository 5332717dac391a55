"""SIPL's pretext read from packed shards (workloads/sipl/data.py): the images and the train/val
split of the in-memory path, every training image once per epoch in an order fixed by
(seed, epoch), damaged rows skipped and counted, and a resumed run that trains as the
uninterrupted one."""
import copy

import numpy as np
import pytest
import torch

from workloads.callbacks import Callback
from workloads.data import open_source
from workloads.data.memory import load_in_memory
from workloads.data.shards import PackedShards, pack_split
from specs import cell_spec
from workloads.sipl.data import InMemoryPretext, StreamedPretext, sipl_pretext_data
from workloads.sipl.train import pretrain_sipl

from test_stream import pack_with_a_damaged_row

SIZE = 48


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    """dtd-kit's 240 validation images in 6 shards of 40 (shorter side 48 px, aspect kept)."""
    root = tmp_path_factory.mktemp("packed")
    pack_split(open_source("dtd-kit", split="val", image_size=32), root, shard_size=40, max_side=SIZE)
    return PackedShards(root, "val")


def in_memory(packed, limit=None):
    images, _ = load_in_memory(open_source("packed", split="val", image_size=SIZE, root=packed.root),
                               progress=False)
    if limit:
        from workloads.data.prepare import limited_positions
        images = images[limited_positions(len(images), limit)]
    return images


def epoch_positions(stream, epoch, batch=32):
    return [p for _, pos in stream.decoded(epoch, batch) for p in pos]


def test_an_epoch_reads_every_training_image_once_in_an_order_fixed_by_seed_and_epoch(packed):
    s = StreamedPretext(packed, image_size=SIZE, val_fraction=0.1, seed=3)
    val = set(s.val.indices.tolist())
    e0, e1 = epoch_positions(s, 0), epoch_positions(s, 1)
    assert len(val) == 24 and s.train_size == 216 and s.steps(32) == 7
    assert sorted(e0) == sorted(e1) == sorted(set(range(240)) - val)
    assert e0 != e1
    # a new stream (a restarted worker) reads epoch 1 again, in the same order
    assert epoch_positions(StreamedPretext(packed, image_size=SIZE, val_fraction=0.1, seed=3), 1) == e1
    assert epoch_positions(StreamedPretext(packed, image_size=SIZE, val_fraction=0.1, seed=4), 1) != e1


@pytest.mark.parametrize("limit", [None, 100])
def test_the_stream_holds_out_and_trains_on_the_in_memory_paths_images(packed, limit):
    """Same held-out images, same training images, same pixels: only the order differs."""
    images = in_memory(packed, limit)
    memory = InMemoryPretext(images, val_fraction=0.1, seed=3)
    stream = StreamedPretext(packed, image_size=SIZE, val_fraction=0.1, seed=3, limit=limit)
    # both sets of validation images, compared as sets of pixel arrays (the stream's are in pack order)
    key = lambda x: x.numpy().tobytes()  # noqa: E731
    assert sorted(map(key, stream.val[:len(stream.val)])) == sorted(map(key, memory.val))
    streamed = [img for batch in stream.batches(0, 32) for img in batch]
    remembered = [img for batch in memory.batches(0, 32) for img in batch]
    assert stream.train_size == memory.train_size == len(streamed) == len(remembered)
    assert sorted(map(key, streamed)) == sorted(map(key, remembered))
    assert streamed[0].shape == (3, SIZE, SIZE) and streamed[0].dtype == torch.uint8


def test_a_damaged_row_is_skipped_and_counted(tmp_path):
    s = StreamedPretext(pack_with_a_damaged_row(tmp_path), image_size=32, val_fraction=0.0, seed=0)
    batches = list(s.decoded(0, 4))
    assert [len(p) for _, p in batches] == [4, 4, 3] and s.skipped == 1
    assert 5 not in [p for _, pos in batches for p in pos]


class Recorder(Callback):
    def __init__(self):
        self.epochs, self.states = [], []

    def on_epoch_end(self, stage, epoch, metrics, state):
        self.epochs.append(metrics)
        self.states.append(copy.deepcopy(state()))


SPEC = cell_spec(seed=3, backbone={"arch": "resnet18", "width": 0.125, "stem": "imagenet"},
                 method={"name": "sipl", "variant": "siplv1", "embed_dim": 32, "head_hidden": 64, "val_fraction": 0.1,
                         "geometry": {"image_size": SIZE, "patch_size": 12, "input_size": 32, "jitter": 1}},
                 optim={"optimizer": "adam", "epochs": 2, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.0})


def stream_of(packed, seed=3):
    return StreamedPretext(packed, image_size=SIZE, val_fraction=0.1, seed=seed, threads=2)


def test_pretraining_on_the_stream_reports_and_resumes_exactly(packed):
    whole, resumed = Recorder(), Recorder()
    a = pretrain_sipl(SPEC, stream_of(packed), callback=whole)
    assert len(whole.epochs) == 2 and all(m["skipped_images"] == 0 for m in whole.epochs)
    assert all(np.isfinite(m["loss"]) and 0 <= m["val_pretext_acc"] <= 100 for m in whole.epochs)
    # a new process resuming from epoch 1's checkpoint: a fresh stream, the saved state
    b = pretrain_sipl(SPEC, stream_of(packed), callback=resumed, resume=whole.states[0])
    assert resumed.epochs[0]["loss"] == whole.epochs[1]["loss"]
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def cell(packed, **data):
    return cell_spec(seed=3, method={"name": "sipl", "val_fraction": 0.1}, optim={"optimizer": "adam"},
                     data={"pretrain": {"name": "packed", "root": str(packed.root), "split": "val"},
                           "image_size": SIZE, **data})


def test_the_cell_reads_as_data_loader_says(packed):
    assert isinstance(sipl_pretext_data(cell(packed, loader="stream"), None), StreamedPretext)
    decoded = sipl_pretext_data(cell(packed, loader="memory"), None)
    assert isinstance(decoded, torch.Tensor) and decoded.shape == (240, 3, SIZE, SIZE)
    # auto: streamed only when the decoded split exceeds the budget (240 x 3 x 48² bytes = 1.6 MB)
    assert isinstance(sipl_pretext_data(cell(packed, loader="auto", memory_budget_gb=0.001), None), StreamedPretext)
    assert isinstance(sipl_pretext_data(cell(packed, loader="auto", memory_budget_gb=0.01), None), torch.Tensor)
