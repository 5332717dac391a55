"""MoCo v3 (Chen, Xie & He 2021; docs/methods.md): both views are queries, each against the
momentum keys of the other view in the (global) batch; no queue. The loss is
2T · [InfoNCE(q1, k2) + InfoNCE(q2, k1)] as in its code; the momentum tower (backbone and
projector) follows the online one with a momentum that rises on a cosine from its base to 1.

Heads as MoCo v3 builds them: the projector is ``proj_layers`` Linear layers (3 for a ViT, 2
for a ResNet) with BN + ReLU between them and a non-affine BN at the end; the predictor is 2
layers, hidden ``pred_hidden_dim``, no batch norm at the end; no Linear has a bias. CASSLE
conditions the online and the momentum projector (each view on its own ω), as for BYOL."""
from __future__ import annotations

import copy

import torch
from torch import nn

from .base import AugAwareMethod
from .heads import mlp
from .losses import moco_v3_loss


class MoCoV3(AugAwareMethod):
    """MoCo v3; ``aug_mode`` vanilla / augself / cassle and its fields: see :mod:`.base`."""

    def __init__(self, backbone: nn.Module, *, proj_hidden_dim: int = 4096, proj_dim: int = 256,
                 proj_layers: int = 3, pred_hidden_dim: int = 4096, temperature: float = 0.2,
                 momentum: float = 0.99, momentum_schedule: str = "cosine", **aug_fields):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self._init_momentum(momentum, momentum_schedule)
        self.backbone = backbone
        self._init_aug(backbone.out_dim, **aug_fields)
        self.projector = self._make_projector(backbone.out_dim, proj_hidden_dim, proj_dim, proj_layers, last_bn=True)
        self.predictor = mlp(proj_dim, pred_hidden_dim, proj_dim, 2, last_bias=False)
        self.momentum_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.momentum_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.temperature = temperature

    @torch.no_grad()
    def _key(self, x: torch.Tensor, omega: torch.Tensor | None) -> torch.Tensor:
        return self._project(self.momentum_projector, self.momentum_backbone(x), omega)

    def ssl_loss(self, v1, v2, omega1, omega2):
        y1, y2 = self.backbone(v1), self.backbone(v2)
        q1 = self.predictor(self._project(self.projector, y1, omega1))
        q2 = self.predictor(self._project(self.projector, y2, omega2))
        k1, k2 = self._key(v1, omega1), self._key(v2, omega2)
        t = self.temperature
        return moco_v3_loss(q1, k2, t) + moco_v3_loss(q2, k1, t), y1, y2

    def momentum_pairs(self):
        return [(self.backbone, self.momentum_backbone), (self.projector, self.momentum_projector)]
