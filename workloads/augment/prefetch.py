"""Make the next batch's views while the current training step runs.

A single producer thread runs augmentation (and SASSL's stylization) one batch ahead;
on a GPU it uses its own CUDA stream, so stylization overlaps the step instead of adding
to it. With one producer, the random stream is consumed in the same order as without
prefetching, so a seed gives the same views either way.

Stream safety on a GPU, with no host synchronisation:

* the side stream first waits for everything the consumer's stream had queued when iteration
  began (the stylizer's weights folded and converted there, the style bank copied there);
* each batch's views carry an event recorded on the side stream after they were made, and
  the consumer's stream waits on it before the step reads them;
* every tensor handed over is ``record_stream``-ed on the consumer's stream, so the caching
  allocator does not give its memory back to the side stream while the step still reads it
  (without this, only a host sync every step, such as ``loss.item()``, kept it safe).
"""
from __future__ import annotations

import dataclasses
import queue
import threading
from typing import Any, Callable, Iterable, Iterator

import torch


def make_views(augment, x: torch.Tensor, generator, hook):
    v1, v2, info = augment(x, generator=generator, left_hook=hook)
    return (x, v1.contiguous(memory_format=torch.channels_last),
            v2.contiguous(memory_format=torch.channels_last), info)


def tensors_in(item: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a (nested) tuple / list / dict / dataclass, as the views' ``info`` is."""
    if isinstance(item, torch.Tensor):
        yield item
    elif isinstance(item, dict):
        for v in item.values():
            yield from tensors_in(v)
    elif isinstance(item, (tuple, list)):
        for v in item:
            yield from tensors_in(v)
    elif dataclasses.is_dataclass(item) and not isinstance(item, type):
        for f in dataclasses.fields(item):
            yield from tensors_in(getattr(item, f.name))


def record_on(t: torch.Tensor, stream) -> None:
    """Tell the caching allocator that ``stream`` uses ``t`` (device tensors only)."""
    if t.is_cuda:
        t.record_stream(stream)


class Prefetcher:
    """Iterates (x, v1, v2, info) for each uint8 batch of ``batches``, one batch ahead."""

    def __init__(self, batches: Iterable[torch.Tensor], work: Callable[[torch.Tensor], tuple], device: torch.device):
        self.batches, self.work, self.device = batches, work, device
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.thread = threading.Thread(target=self._produce, daemon=True, name="sassl-prefetch")
        self.stop = threading.Event()

    def _produce(self) -> None:
        try:
            with torch.no_grad(), (torch.cuda.stream(self.stream) if self.stream else _null()):
                for x in self.batches:
                    if self.stop.is_set():
                        return
                    item = self.work(x)
                    done = None
                    if self.stream is not None:
                        done = torch.cuda.Event()
                        done.record(self.stream)
                    self.queue.put(("item", (item, done)))
            self.queue.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            self.queue.put(("error", e))

    def __iter__(self) -> Iterator[tuple]:
        consumer = torch.cuda.current_stream(self.device) if self.stream is not None else None
        if consumer is not None:
            self.stream.wait_stream(consumer)  # work queued before iteration (weights, bank) first
        self.thread.start()
        try:
            while True:
                kind, payload = self.queue.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise payload
                item, done = payload
                if consumer is not None:
                    consumer.wait_event(done)
                    for t in tensors_in(item):
                        record_on(t, consumer)
                yield item
        finally:
            self.stop.set()
            while self.thread.is_alive():  # unblock a producer waiting on a full queue
                try:
                    self.queue.get_nowait()
                except queue.Empty:
                    pass
                self.thread.join(timeout=0.05)


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
