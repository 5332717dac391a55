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

import torch
from torch import nn

from .base import AugAwareMethod
from .distributed import mean_over_ranks_with_grad

BN_EPS = 1e-5


def standardize(z: torch.Tensor, eps: float = BN_EPS) -> torch.Tensor:
    """Per-dimension (z − mean) / sqrt(biased var + eps) over the batch."""
    z = z.float()
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """C = std(z1)ᵀ std(z2) / B, (D, D)."""
    c = standardize(z1).t() @ standardize(z2) / z1.shape[0]
    return mean_over_ranks_with_grad(c)


def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.0051) -> torch.Tensor:
    c = cross_correlation(z1, z2)
    on = (torch.diagonal(c) - 1.0).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + lambd * off


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

    def forward(self, v1: torch.Tensor, v2: torch.Tensor, omega1: torch.Tensor | None = None,
                omega2: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self._check_omega(omega1, omega2, v1.shape[0])
        y1, y2 = self.backbone(v1), self.backbone(v2)
        z1 = self._project(self.projector, y1, omega1)
        z2 = self._project(self.projector, y2, omega2)
        loss = barlow_twins_loss(z1, z2, self.lambd)
        out: dict[str, torch.Tensor] = {}
        return self._finish(loss, self._aux_loss(y1, y2, omega1, omega2, out), out)
