"""Projector/predictor MLPs shared by the SSL methods."""
from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, last_bn: bool = False,
        last_bias: bool | None = None) -> nn.Sequential:
    """Linear-BN-ReLU blocks, then a final Linear (SimCLR/MoCo v2/BYOL head shape); with
    ``last_bn`` a non-affine batch norm after it. The final Linear has a bias unless a batch norm
    follows (``last_bias`` overrides: MoCo v3's heads have no bias anywhere)."""
    if layers < 1:
        raise ValueError("an MLP head needs at least 1 layer")
    mods: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        mods += [nn.Linear(dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        dim = hidden_dim
    mods.append(nn.Linear(dim, out_dim, bias=not last_bn if last_bias is None else last_bias))
    if last_bn:
        mods.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*mods)
