"""AugSelf (Lee et al. 2021), the augmentation-aware baseline CASSLE compares with (docs/methods.md).

For every selected part of ω one auxiliary MLP head (3 layers, hidden 512, as the AugSelf
code's ``load_ss_predictor``) reads the backbone features of both views, ``[y1, y2]``, and
predicts the difference of the views' augmentation parameters:

* regression parts — crop c (4), colour jitter j (4), colour difference d (3), blur b (1):
  target ω1 − ω2 of that part, loss MSE(tanh(prediction), target);
* binary parts — flip f, grayscale g: target 1 when both views agree, loss BCE with logits.

The loss is symmetric (both orders [y1, y2] and [y2, y1], targets negated / unchanged),
each part's loss weighs 1, and the method adds ``augself_weight`` × their sum to its SSL
loss. AugSelf's paper uses {crop, colour} (parts "cj"), the default here.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..augment.omega import OMEGA_DIM, OMEGA_SLICES, parse_parts
from .heads import mlp
from .losses import full_precision

__all__ = ["AUGSELF_DEFAULT_PARTS", "BINARY_PARTS", "augself_targets", "AugSelfHeads"]

AUGSELF_DEFAULT_PARTS = "cj"
BINARY_PARTS = ("f", "g")


def augself_targets(omega1: torch.Tensor, omega2: torch.Tensor, parts="cj") -> dict[str, torch.Tensor]:
    """Per part: ω1 − ω2 (regression parts) or 1[ω1 == ω2] (flip, grayscale), each ``B x size``."""
    for o in (omega1, omega2):
        if o.ndim != 2 or o.shape[1] != OMEGA_DIM:
            raise ValueError(f"expected a full B x {OMEGA_DIM} ω, got shape {tuple(o.shape)}")
    out = {}
    for p in parse_parts(parts):
        lo, hi = OMEGA_SLICES[p]
        a, b = omega1[:, lo:hi].float(), omega2[:, lo:hi].float()
        out[p] = (a == b).float() if p in BINARY_PARTS else a - b
    return out


class AugSelfHeads(nn.Module):
    """One MLP head per part on ``[y1, y2]``; ``loss(y1, y2, omega1, omega2) -> (total, per part)``."""

    def __init__(self, feat_dim: int, parts="cj", hidden_dim: int = 512, layers: int = 3):
        super().__init__()
        if not isinstance(hidden_dim, int) or isinstance(hidden_dim, bool) or hidden_dim < 1:
            raise ValueError(f"augself_hidden_dim must be an int >= 1, got {hidden_dim!r}")
        self.parts = parse_parts(parts, field="omega_parts")
        self.heads = nn.ModuleDict({
            p: mlp(2 * feat_dim, hidden_dim, OMEGA_SLICES[p][1] - OMEGA_SLICES[p][0], layers)
            for p in self.parts})

    def forward(self, y1: torch.Tensor, y2: torch.Tensor) -> dict[str, torch.Tensor]:
        z = torch.cat([y1, y2], dim=1)
        return {p: head(z) for p, head in self.heads.items()}

    @full_precision  # the heads and their MSE/BCE in fp32 under autocast (small MLPs: cheap)
    def loss(self, y1: torch.Tensor, y2: torch.Tensor, omega1: torch.Tensor, omega2: torch.Tensor,
             symmetric: bool = True) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        t12 = augself_targets(omega1.to(y1.device), omega2.to(y1.device), self.parts)
        if symmetric:
            preds = self(torch.cat([y1, y2]), torch.cat([y2, y1]))
            t21 = augself_targets(omega2.to(y1.device), omega1.to(y1.device), self.parts)
            targets = {p: torch.cat([t12[p], t21[p]]) for p in self.parts}
        else:
            preds, targets = self(y1, y2), t12
        losses = {}
        for p in self.parts:
            # at least fp32 (bf16/fp16 predictions cast up; fp64 kept)
            pred, tgt = preds[p].to(torch.promote_types(preds[p].dtype, torch.float32)), targets[p]
            if p in BINARY_PARTS:
                losses[p] = F.binary_cross_entropy_with_logits(pred, tgt)
            else:
                losses[p] = F.mse_loss(torch.tanh(pred), tgt)
        return torch.stack(list(losses.values())).sum(), losses
