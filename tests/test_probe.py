"""Linear probe: learns a separable problem; chooses its lr on val, never on test."""
import torch

from workloads.evaluation.probe import linear_probe, topk_accuracy


def _blobs(n, seed, flip=False):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 4, (n,), generator=g)
    centres = torch.eye(4, 16) * 6
    x = centres[y] + torch.randn(n, 16, generator=g)
    return x, (3 - y) if flip else y


def test_probe_separates_blobs():
    res = linear_probe(_blobs(400, 0), _blobs(100, 1), _blobs(200, 2), 4, lrs=[0.1], epochs=20, batch_size=64)
    assert res.top1 > 97 and res.top5 == 100.0


def test_lr_is_chosen_on_val_only():
    kw = dict(lrs=[1e-6, 0.1], epochs=10, batch_size=64)
    good = linear_probe(_blobs(400, 0), _blobs(100, 1), _blobs(200, 2), 4, **kw)
    # a test split with inverted labels cannot change which lr was chosen
    bad_test = linear_probe(_blobs(400, 0), _blobs(100, 1), _blobs(200, 2, flip=True), 4, **kw)
    assert good.chosen_lr == bad_test.chosen_lr == 0.1
    assert good.val_top1 == bad_test.val_top1
    assert bad_test.top1 < 10


def test_topk_accuracy():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1]])
    y = torch.tensor([0, 0])
    assert topk_accuracy(logits, y, 1) == 50.0
    assert topk_accuracy(logits, y, 2) == 100.0
