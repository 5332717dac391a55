"""MoCo v2 as SASSL uses it (docs/methods.md): a momentum key encoder, InfoNCE over the
batch's keys (and an optional queue), an MLP projector, an optional predictor on the
query tower, and a momentum that follows a cosine schedule up to 1.0."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .base import AugAwareMethod
from .distributed import gather_no_grad
from .heads import mlp
from .losses import info_nce, unit_rows


class MoCoV2(AugAwareMethod):
    """MoCo v2; ``aug_mode`` vanilla / augself / cassle and its fields: see :mod:`.base`.

    CASSLE conditions the query projector on the query view's ω and the key projector on
    the key view's ω. AugSelf's heads read the online features of the query view and,
    as in the AugSelf code, the key tower's features of the key view (the online ones of
    both views when ``symmetric``)."""

    def __init__(self, backbone: nn.Module, *, proj_hidden_dim: int = 2048, proj_dim: int = 128,
                 proj_layers: int = 2, predictor: bool = True, pred_hidden_dim: int = 2048,
                 temperature: float = 0.1, momentum: float = 0.99, momentum_schedule: str = "cosine",
                 queue_size: int = 0, symmetric: bool = False, **aug_fields):
        super().__init__()
        self.backbone = backbone
        self._init_aug(backbone.out_dim, **aug_fields)
        self.projector = self._make_projector(backbone.out_dim, proj_hidden_dim, proj_dim, proj_layers)
        self.predictor = mlp(proj_dim, pred_hidden_dim, proj_dim, 2) if predictor else nn.Identity()
        # the key tower never receives gradients; it follows the online weights by EMA
        self.key_backbone = copy.deepcopy(backbone).requires_grad_(False)
        self.key_projector = copy.deepcopy(self.projector).requires_grad_(False)
        self.temperature = temperature
        self._init_momentum(momentum, momentum_schedule)
        self.symmetric = symmetric
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def _query(self, y: torch.Tensor, omega: torch.Tensor | None = None) -> torch.Tensor:
        return unit_rows(self.predictor(self._project(self.projector, y, omega)))

    @torch.no_grad()
    def _key(self, x: torch.Tensor, omega: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(key tower's backbone features, normalised key)."""
        y = self.key_backbone(x)
        return y, unit_rows(self._project(self.key_projector, y, omega))

    def ssl_loss(self, v1, v2, omega1, omega2):
        y1 = self.backbone(v1)
        q1 = self._query(y1, omega1)
        ky2, k2 = self._key(v2, omega2)
        k2_all = gather_no_grad(k2)
        queue = self.queue.clone().detach() if self.queue.numel() else None
        loss = info_nce(q1, k2, self.temperature, queue, k2_all)
        y2 = ky2
        if self.symmetric:
            y2 = self.backbone(v2)
            q2 = self._query(y2, omega2)
            _, k1 = self._key(v1, omega1)
            loss = 0.5 * (loss + info_nce(q2, k1, self.temperature, queue, gather_no_grad(k1)))
        self._enqueue(k2_all)
        return loss, y1, y2

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        n = self.queue.shape[0]
        if n == 0:
            return
        idx = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % n
        self.queue[idx] = keys[: n].to(self.queue.dtype)  # keys of a half-precision tower, too
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % n)

    def momentum_pairs(self):
        return [(self.backbone, self.key_backbone), (self.projector, self.key_projector)]
