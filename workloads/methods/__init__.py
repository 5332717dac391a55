"""SSL method registry: name -> constructor taking (backbone, **method fields)."""
from __future__ import annotations

from torch import nn

from .moco import MoCoV2

METHODS = {"moco_v2": MoCoV2}


def build_method(name: str, backbone: nn.Module, **fields) -> nn.Module:
    if name not in METHODS:
        raise ValueError(f"unknown SSL method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name](backbone, **fields)
