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
def ema_update(pairs: list[tuple[nn.Module, nn.Module]], momentum: float) -> None:
    """target ← m·target + (1 − m)·online for every parameter; buffers (BN statistics) copied."""
    for online, target in pairs:
        for po, pt in zip(online.parameters(), target.parameters()):
            pt.mul_(momentum).add_(po.detach(), alpha=1.0 - momentum)
        for bo, bt in zip(online.buffers(), target.buffers()):
            bt.copy_(bo)
