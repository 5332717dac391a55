"""BYOL (Grill et al. 2020): online encoder + projector + predictor regress the target
network's projection of the other view; the target follows the online weights by EMA whose
momentum goes from ``momentum`` to 1.0 on a cosine schedule (``after_step(progress)``).

Defaults (BYOL / the AugSelf code): projector and predictor of depth 2, hidden 4096,
output 256; base momentum 0.996. CASSLE conditions the online and the target projector
(each view on its own ω); the predictor is not conditioned."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .base import AugAwareMethod
from .heads import mlp
from .losses import byol_loss


class BYOL(AugAwareMethod):
    """BYOL; ``aug_mode`` vanilla / augself / cassle and its fields: see :mod:`.base`."""

    def __init__(self, backbone: nn.Module, *, proj_hidden_dim: int = 4096, proj_dim: int = 256,
                 proj_layers: int = 2, pred_hidden_dim: int = 4096, momentum: float = 0.996,
                 momentum_schedule: str = "cosine", **aug_fields):
        super().__init__()
        self._init_momentum(momentum, momentum_schedule)  # first: a bad value fails before any layer is built
        self.backbone = backbone
        self._init_aug(backbone.out_dim, **aug_fields)
        self.projector = self._make_projector(backbone.out_dim, proj_hidden_dim, proj_dim, proj_layers)
        self.predictor = mlp(proj_dim, pred_hidden_dim, proj_dim, 2)
        self.target_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.target_projector = copy.deepcopy(self.projector).requires_grad_(False)

    @torch.no_grad()
    def _target(self, x: torch.Tensor, omega: torch.Tensor | None) -> torch.Tensor:
        return self._project(self.target_projector, self.target_backbone(x), omega)

    def ssl_loss(self, v1, v2, omega1, omega2):
        y1, y2 = self.backbone(v1), self.backbone(v2)
        p1 = self.predictor(self._project(self.projector, y1, omega1))
        p2 = self.predictor(self._project(self.projector, y2, omega2))
        t1, t2 = self._target(v1, omega1), self._target(v2, omega2)
        return byol_loss(p1, t2) + byol_loss(p2, t1), y1, y2

    def momentum_pairs(self):
        return [(self.backbone, self.target_backbone), (self.projector, self.target_projector)]
