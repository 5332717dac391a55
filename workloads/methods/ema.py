"""Momentum towers (MoCo's key encoder, BYOL's target): copies of online modules that follow
them by an exponential moving average whose momentum rises to 1 on a cosine schedule."""
from __future__ import annotations

import math

import torch
from torch import nn

MOMENTUM_SCHEDULES = ("cosine", "constant")


def cosine_momentum(base: float, progress: float) -> float:
    """BYOL/MoCo v3 schedule: ``base`` at the start of training, 1.0 at the end."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1.0) / 2.0


class MomentumSchedule:
    """The momentum at a point of training; validates its fields."""

    def __init__(self, base: float, schedule: str = "cosine"):
        if not 0.0 <= base <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {base!r}")
        if schedule not in MOMENTUM_SCHEDULES:
            raise ValueError(f"momentum_schedule must be one of {', '.join(MOMENTUM_SCHEDULES)}; got {schedule!r}")
        self.base, self.schedule = base, schedule

    def at(self, progress: float) -> float:
        return cosine_momentum(self.base, progress) if self.schedule == "cosine" else self.base


@torch.no_grad()
def ema_update(pairs: list[tuple[nn.Module, nn.Module]], momentum: float, foreach: bool = True) -> None:
    """target ← m·target + (1 − m)·online for every parameter (as a lerp: one pass over memory,
    exactly the target at m = 1); buffers (BN statistics) copied. ``foreach``: as multi-tensor
    kernels (a few launches instead of one per tensor on a GPU); False: a tensor at a time, the
    same arithmetic (tests compare the two, benchmarks/optim_foreach.py times them)."""
    online_p, target_p, online_b, target_b = [], [], [], []
    for online, target in pairs:
        online_p += [p.detach() for p in online.parameters()]
        target_p += list(target.parameters())
        online_b += list(online.buffers())
        target_b += list(target.buffers())
    if foreach and target_p:
        torch._foreach_lerp_(target_p, online_p, 1.0 - momentum)
        if target_b:
            torch._foreach_copy_(target_b, online_b)
        return
    for po, pt in zip(online_p, target_p):
        pt.lerp_(po, 1.0 - momentum)
    for bo, bt in zip(online_b, target_b):
        bt.copy_(bo)
