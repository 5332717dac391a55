"""Prefetching views one batch ahead changes nothing but timing."""
import pytest
import torch

from specs import view1, view2
from workloads.augment import TwoViewAugment
from workloads.augment.prefetch import Prefetcher, make_views


def batches():
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, 256, (8, 3, 32, 32), generator=g, dtype=torch.uint8) for _ in range(5)]


def run(prefetch: bool):
    aug = TwoViewAugment(view1(), view2(), out_size=32)
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


def test_on_a_gpu_the_streams_wait_on_each_other_and_handed_tensors_are_recorded(monkeypatch):
    """The CUDA protocol with the CUDA calls replaced by recorders (no GPU here): the side stream
    waits for the consumer's queued work before the first batch, the consumer's stream waits on
    each batch's event before the step sees it, and every tensor handed over, nested ones too,
    is recorded on the consumer's stream, all without a host synchronisation."""
    from contextlib import nullcontext

    import workloads.augment.prefetch as prefetch
    log = []

    class Stream:
        def __init__(self, name="side"):
            self.name = name

        def wait_stream(self, other):
            log.append(("wait_stream", self.name, other.name))

        def wait_event(self, event):
            log.append(("wait_event", self.name, event.n))

        def synchronize(self):
            log.append(("host sync", self.name))

    class Event:
        count = 0

        def __init__(self):
            Event.count += 1
            self.n = Event.count

        def record(self, stream):
            log.append(("record", stream.name, self.n))

        def synchronize(self):
            log.append(("host sync", self.n))

    consumer = Stream("consumer")
    monkeypatch.setattr(torch.cuda, "Stream", lambda device: Stream())
    monkeypatch.setattr(torch.cuda, "Event", Event)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: consumer)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: nullcontext())
    monkeypatch.setattr(prefetch, "record_on", lambda t, s: log.append(("record_stream", id(t), s.name)))

    def work(x):
        log.append(("work",))
        return x, x + 1, x + 2, {"view1": {"omega": x.float()}, "list": [x[:1]]}
    seen = []
    for item in Prefetcher(batches()[:2], work, torch.device("cuda")):
        seen.append(item)
        log.append(("step",))
    assert log[0] == ("wait_stream", "side", "consumer") and ("work",) in log[1:]
    assert not [e for e in log if e[0] == "host sync"]
    steps = [i for i, e in enumerate(log) if e == ("step",)]
    for n, (item, at) in enumerate(zip(seen, steps), start=1):
        recorded = {e[1] for e in log[:at] if e[0] == "record_stream" and e[2] == "consumer"}
        assert {id(t) for t in prefetch.tensors_in(item)} <= recorded and len(list(prefetch.tensors_in(item))) == 5
        made = log.index(("record", "side", n))
        assert made < log.index(("wait_event", "consumer", n)) < at
