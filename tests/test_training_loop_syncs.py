"""The pretraining loop as a GPU runs it, checked on CPU: no host synchronisation per step (each
one stalls a GPU's queue of kernels), a non-finite loss still stops the cell naming its step, and
the process-wide backend flags of optim.deterministic."""
import itertools
import threading
import types
from collections import Counter

import pytest
import torch

import workloads.pretrain as pretrain_module
from workloads.backends import configure_backends
from workloads.callbacks import Callback, NonFiniteLossError

from specs import changed
from test_methods_pretrain import cell

READS = ("item", "__bool__", "__float__", "__int__", "tolist")  # a tensor's value on the host


def _count_reads(monkeypatch) -> Counter:
    counts = Counter()
    for name in READS:
        real = getattr(torch.Tensor, name)

        def read(self, *a, _real=real, _name=name, **kw):
            if threading.current_thread() is threading.main_thread():
                counts[_name] += 1
            return _real(self, *a, **kw)
        monkeypatch.setattr(torch.Tensor, name, read)
    # a clock that never passes the half-second report interval: reports at the first and last step only
    tick = itertools.count()
    monkeypatch.setattr(pretrain_module, "time", types.SimpleNamespace(perf_counter=lambda: 1.0 + next(tick) * 1e-9))
    return counts


@pytest.mark.parametrize("variant", ["moco_v2-queue-cassle", "simclr", "byol-augself"])
def test_host_reads_do_not_grow_with_the_steps(variant, monkeypatch):
    """Counted on the training thread, with views made on the prefetch thread as on a GPU (there
    the augmentation reads each view's jitter order from the device: a wait on the side stream
    in that thread, not on the training stream)."""
    method, *rest = variant.split("-")
    fields = {"queue_size": 32} if "queue" in rest else {}
    if rest and rest[-1] in ("cassle", "augself"):
        fields.update(aug_mode=rest[-1], encoder_depth=2, encoder_width=16, augself_hidden_dim=16)
    counts = _count_reads(monkeypatch)
    reads = []
    for n in (32, 64):  # 4 and 8 steps of 8
        cfg = cell(method, **fields)
        cfg = changed(cfg, {"optim.batch_size": 8, "augmentation.prefetch": "on"})
        counts.clear()
        pretrain_module.pretrain(cfg, torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8))
        reads.append(dict(counts))
    assert reads[0] == reads[1], reads  # a read per step would add 4
    assert sum(reads[0].values()) <= 6, reads  # two reports x (loss, first bad step); construction


def test_a_non_finite_loss_stops_the_epoch_naming_its_first_step():
    cfg = changed(cell("simclr"), {"optim.batch_size": 8})
    calls = itertools.count(1)

    def poison(model):
        def forward(*a, **kw):
            out = model(*a, **kw)
            if next(calls) >= 3:
                out["loss"] = out["loss"] * float("nan")
            return out
        return forward
    ends = []

    class Rec(Callback):
        def on_epoch_end(self, *a):
            ends.append(a)
    with pytest.raises(NonFiniteLossError, match=r"pretraining loss became nan at epoch 1, step 3 "):
        pretrain_module.pretrain(cfg, torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8),
                                 wrap_model=poison, callback=Rec())
    assert ends == []  # no checkpoint of the poisoned epoch


def test_backend_flags_fast_on_gpus_and_reproducible_when_asked(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    try:
        fast = configure_backends(torch.device("cuda"))
        assert fast["tf32"] and torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
        assert not torch.are_deterministic_algorithms_enabled() and fast["cublas_workspace"] is None
        exact = configure_backends(torch.device("cuda"), deterministic=True)
        assert not exact["tf32"] and not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert exact["cublas_workspace"] == ":4096:8"
        cpu = configure_backends(torch.device("cpu"))
        assert not cpu["tf32"] and not cpu["cudnn.benchmark"]
    finally:
        configure_backends(torch.device("cpu"))  # the suite's other tests run with the defaults
        monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
