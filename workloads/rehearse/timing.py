"""Timing the pieces of a run for a few steps, through the code the run uses (`sassl rehearse`).

Every training loop reports each optimisation step to its Callback (``on_step``); StepTimer
records when they end and stops the loop after ``warmup + steps`` of them by raising
Rehearsed, so nothing is trained to completion. The first steps (``warmup``) pay for lazy
initialisation, pictures and caches, and are not timed."""
from __future__ import annotations

import ctypes
import gc
import resource
import statistics
import time
from typing import Any

import torch

from ..callbacks import Callback

SAMPLE = 128  # images decoded / features extracted / style images embedded to time a piece


class Rehearsed(Exception):
    """Raised by StepTimer once it has timed enough steps: the loop stops there."""


class StepTimer(Callback):
    def __init__(self, steps: int, warmup: int = 1):
        self.steps, self.warmup = steps, warmup
        self.ends: list[float] = []
        self.steps_per_epoch = 0
        self.start = time.perf_counter()

    def on_step(self, stage, epoch, step, steps):
        self.ends.append(time.perf_counter())
        self.steps_per_epoch = steps
        if len(self.ends) >= self.warmup + self.steps:
            raise Rehearsed

    def result(self) -> dict[str, float]:
        """Median seconds per timed step, the steps timed, steps per epoch."""
        times = [b - a for a, b in zip(self.ends[self.warmup - 1:], self.ends[self.warmup:])] if self.warmup else \
            [b - a for a, b in zip([self.start] + self.ends, self.ends)]
        if not times:
            raise RuntimeError(f"rehearsal: only {len(self.ends)} step(s) ran (an epoch shorter than "
                               f"{self.warmup + 1} steps: too few images for the batch size?)")
        return {"seconds_per_step": statistics.median(times), "steps_timed": float(len(times)),
                "steps_per_epoch": float(self.steps_per_epoch)}


def run_steps(train, timer: StepTimer) -> dict[str, float]:
    """``train()`` (a training loop given ``timer`` as its callback) until the timer stops it."""
    try:
        train()
    except Rehearsed:
        pass
    return timer.result()


def reset_peak_memory(device: torch.device | str) -> None:
    """Start a piece's peak here: a process times several pieces one after another. On a CPU the
    freed heap goes back to the system first (else the last piece's garbage counts as this one's),
    then Linux resets the resident set's high-water mark (/proc/self/clear_refs, since 4.0)."""
    if torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return
    gc.collect()
    try:
        ctypes.CDLL(None).malloc_trim(0)   # glibc only
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:   # not Linux, or not allowed: the peak is then the process's whole life's
        pass


def peak_memory_mb(device: torch.device | str) -> float:
    """The peak since reset_peak_memory: the device's allocations on a GPU, the resident set on a CPU."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 1024  # KiB
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def timed(fn, *args, repeat: int = 1, **kwargs) -> tuple[float, Any]:
    """(seconds per call after one warm-up call, the last result)."""
    out = fn(*args, **kwargs)
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = fn(*args, **kwargs)
    return (time.perf_counter() - t0) / repeat, out
