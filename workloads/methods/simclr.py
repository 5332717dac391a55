"""SimCLR (Chen et al. 2020): one encoder, an MLP projector, NT-Xent over the 2B views.

Defaults follow the CASSLE/AugSelf setup (docs/methods.md, CASSLE Table 5): projector of depth 2,
hidden 2048, output 128; temperature 0.2 (the AugSelf code's). With several processes the
negatives are the views of every rank (gathered with gradients)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import AugAwareMethod
from .distributed import gather_with_grad, rank, world_size


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent: for each of the 2B views, cross-entropy of picking its partner among the other 2B − 1.

    z1, z2: L2-normalised (B, D), row i of z1 and z2 are the two views of image i."""
    b = z1.shape[0]
    z1_all, z2_all = gather_with_grad(z1), gather_with_grad(z2)
    n_all = z1_all.shape[0]
    cols = torch.cat([z1_all, z2_all])  # (2·B·W, D): all view-1s, then all view-2s
    rows = torch.cat([z1, z2])  # (2B, D)
    logits = rows @ cols.t() / temperature
    idx = torch.arange(b, device=z1.device) + rank() * b
    self_cols = torch.cat([idx, idx + n_all])
    partner = torch.cat([idx + n_all, idx])
    logits[torch.arange(2 * b, device=z1.device), self_cols] = float("-inf")
    return F.cross_entropy(logits, partner)


class SimCLR(AugAwareMethod):
    """SimCLR; ``aug_mode`` vanilla / augself / cassle and its fields: see :mod:`.base`."""

    def __init__(self, backbone: nn.Module, *, proj_hidden_dim: int = 2048, proj_dim: int = 128,
                 proj_layers: int = 2, temperature: float = 0.2, **aug_fields):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.backbone = backbone
        self._init_aug(backbone.out_dim, **aug_fields)
        self.projector = self._make_projector(backbone.out_dim, proj_hidden_dim, proj_dim, proj_layers)
        self.temperature = temperature

    def forward(self, v1: torch.Tensor, v2: torch.Tensor, omega1: torch.Tensor | None = None,
                omega2: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        self._check_omega(omega1, omega2, v1.shape[0])
        y1, y2 = self.backbone(v1), self.backbone(v2)
        z1 = F.normalize(self._project(self.projector, y1, omega1), dim=1)
        z2 = F.normalize(self._project(self.projector, y2, omega2), dim=1)
        loss = nt_xent(z1, z2, self.temperature)
        out: dict[str, torch.Tensor] = {}
        return self._finish(loss, self._aux_loss(y1, y2, omega1, omega2, out), out)
