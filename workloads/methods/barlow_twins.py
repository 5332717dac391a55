"""Barlow Twins (Zbontar et al. 2021): the cross-correlation matrix of the two views'
standardised projections is pushed to the identity,
``L = Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²``.

Defaults (Barlow Twins / CASSLE Table 5): projector of depth 3, hidden 8192, output 8192,
λ = 0.0051. The standardisation over the batch (per dimension, biased variance + 1e-5, as
BatchNorm without affine in training mode) is the "final BN without affine" of Table 5.
With several processes C is averaged over ranks (each rank standardises with its own
batch statistics)."""
from __future__ import annotations

import math

from torch import nn

from .base import AugAwareMethod
from .losses import barlow_twins_loss


class BarlowTwins(AugAwareMethod):
    """Barlow Twins; ``aug_mode`` vanilla / augself / cassle and its fields: see :mod:`.base`."""

    def __init__(self, backbone: nn.Module, *, proj_hidden_dim: int = 8192, proj_dim: int = 8192,
                 proj_layers: int = 3, lambd: float = 0.0051, **aug_fields):
        super().__init__()
        if isinstance(lambd, bool) or not isinstance(lambd, (int, float)) or not math.isfinite(lambd) or lambd < 0:
            raise ValueError(f"lambd must be a finite number >= 0, got {lambd!r}")
        self.backbone = backbone
        self._init_aug(backbone.out_dim, **aug_fields)
        self.projector = self._make_projector(backbone.out_dim, proj_hidden_dim, proj_dim, proj_layers)
        self.lambd = float(lambd)

    def ssl_loss(self, v1, v2, omega1, omega2):
        y1, y2 = self.backbone(v1), self.backbone(v2)
        z1 = self._project(self.projector, y1, omega1)
        z2 = self._project(self.projector, y2, omega2)
        return barlow_twins_loss(z1, z2, self.lambd), y1, y2
