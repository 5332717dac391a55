"""SimCLR (Chen et al. 2020): one encoder, an MLP projector, NT-Xent over the 2B views.

Defaults follow the CASSLE/AugSelf setup (docs/methods.md, CASSLE Table 5): projector of depth 2,
hidden 2048, output 128; temperature 0.2 (the AugSelf code's). With several processes the
negatives are the views of every rank (gathered with gradients)."""
from __future__ import annotations

from torch import nn

from .base import AugAwareMethod
from .losses import nt_xent, unit_rows


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

    def ssl_loss(self, v1, v2, omega1, omega2):
        y1, y2 = self.backbone(v1), self.backbone(v2)
        z1 = unit_rows(self._project(self.projector, y1, omega1))
        z2 = unit_rows(self._project(self.projector, y2, omega2))
        return nt_xent(z1, z2, self.temperature), y1, y2
