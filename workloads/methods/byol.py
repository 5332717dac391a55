"""BYOL (Grill et al. 2020): online encoder + projector + predictor regress the target
network's projection of the other view; the target follows the online weights by EMA whose
momentum goes from ``momentum`` to 1.0 on a cosine schedule (``after_step(progress)``).

Defaults (BYOL / the AugSelf code): projector and predictor of depth 2, hidden 4096,
output 256; base momentum 0.996. CASSLE conditions the online and the target projector
(each view on its own ω); the predictor is not conditioned."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .base import AugAwareMethod
from .heads import mlp
from .moco import cosine_momentum

MOMENTUM_SCHEDULES = ("cosine", "constant")


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ‖p̂ − ẑ‖² = 2 − 2·cos(p, z) (z is the target: no gradient)."""
    return (2.0 - 2.0 * F.cosine_similarity(p, z.detach(), dim=-1)).mean()


class BYOL(AugAwareMethod):
    """BYOL; ``aug_mode`` vanilla / augself / cassle and its fields: see :mod:`.base`."""

    def __init__(self, backbone: nn.Module, *, proj_hidden_dim: int = 4096, proj_dim: int = 256,
                 proj_layers: int = 2, pred_hidden_dim: int = 4096, momentum: float = 0.996,
                 momentum_schedule: str = "cosine", **aug_fields):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be in [0, 1], got {momentum!r}")
        if momentum_schedule not in MOMENTUM_SCHEDULES:
            raise ValueError(f"momentum_schedule must be one of {', '.join(MOMENTUM_SCHEDULES)}; "
                             f"got {momentum_schedule!r}")
        self.backbone = backbone
        self._init_aug(backbone.out_dim, **aug_fields)
        self.projector = self._make_projector(backbone.out_dim, proj_hidden_dim, proj_dim, proj_layers)
        self.predictor = mlp(proj_dim, pred_hidden_dim, proj_dim, 2)
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.base_momentum = momentum
        self.momentum_schedule = momentum_schedule
        self.current_momentum = momentum

    @torch.no_grad()
    def _target(self, x: torch.Tensor, omega: torch.Tensor | None) -> torch.Tensor:
        return self._project(self.target_projector, self.target_backbone(x), omega)

    def forward(self, v1: torch.Tensor, v2: torch.Tensor, omega1: torch.Tensor | None = None,
                omega2: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self._check_omega(omega1, omega2, v1.shape[0])
        y1, y2 = self.backbone(v1), self.backbone(v2)
        p1 = self.predictor(self._project(self.projector, y1, omega1))
        p2 = self.predictor(self._project(self.projector, y2, omega2))
        t1, t2 = self._target(v1, omega1), self._target(v2, omega2)
        loss = byol_loss(p1, t2) + byol_loss(p2, t1)
        out: dict[str, torch.Tensor] = {}
        return self._finish(loss, self._aux_loss(y1, y2, omega1, omega2, out), out)

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """EMA update of the target network; progress in [0, 1] is the fraction of training done."""
        m = cosine_momentum(self.base_momentum, progress) if self.momentum_schedule == "cosine" else self.base_momentum
        self.current_momentum = m
        for online, target in ((self.backbone, self.target_backbone), (self.projector, self.target_projector)):
            for po, pt in zip(online.parameters(), target.parameters()):
                pt.mul_(m).add_(po.detach(), alpha=1.0 - m)
            for bo, bt in zip(online.buffers(), target.buffers()):
                bt.copy_(bo)
