"""Make the next batch's views while the current training step runs.

A single producer thread runs augmentation (and SASSL's stylization) one batch ahead;
on a GPU it uses its own CUDA stream, so stylization overlaps the step instead of adding
to it. With one producer, the random stream is consumed in the same order as without
prefetching, so a seed gives the same views either way."""
from __future__ import annotations

import queue
import threading
from typing import Callable, Iterable, Iterator

import torch


def make_views(augment, x: torch.Tensor, generator, hook):
    v1, v2, info = augment(x, generator=generator, left_hook=hook)
    return (x, v1.contiguous(memory_format=torch.channels_last),
            v2.contiguous(memory_format=torch.channels_last), info)


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
                    if self.stream is not None:
                        self.stream.synchronize()
                    self.queue.put(("item", item))
            self.queue.put(("end", None))
        except BaseException as e:  # noqa: BLE001 - re-raised in the consumer
            self.queue.put(("error", e))

    def __iter__(self) -> Iterator[tuple]:
        self.thread.start()
        try:
            while True:
                kind, payload = self.queue.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise payload
                yield payload
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
