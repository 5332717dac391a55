"""Prefetching views one batch ahead changes nothing but timing."""
import pytest
import torch

from workloads.augment import TwoViewAugment
from workloads.augment.prefetch import Prefetcher, make_views


def batches():
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.uint8) for _ in range(5)]


def run(prefetch: bool):
    aug = TwoViewAugment(out_size=32)
    gen = torch.Generator().manual_seed(7)
    work = lambda x: make_views(aug, x, gen, None)  # noqa: E731
    it = Prefetcher(batches(), work, torch.device("cpu")) if prefetch else (work(x) for x in batches())
    return [(v1, v2) for _, v1, v2, _ in it]


def test_same_views_with_and_without_prefetch():
    a, b = run(True), run(False)
    assert len(a) == len(b) == 5
    assert all(torch.equal(x1, y1) and torch.equal(x2, y2) for (x1, x2), (y1, y2) in zip(a, b))


def test_producer_errors_reach_the_consumer_and_early_exit_stops_the_thread():
    def work(x):
        raise RuntimeError("bad batch")
    with pytest.raises(RuntimeError, match="bad batch"):
        list(Prefetcher(batches(), lambda x: work(x), torch.device("cpu")))
    p = Prefetcher(batches(), lambda x: (x,), torch.device("cpu"))
    for _ in p:
        break
    p.thread.join(timeout=2)
    assert not p.thread.is_alive()
