"""SSL method registry: name -> constructor taking (backbone, **method fields).

Every method accepts ``forward(v1, v2, omega1=None, omega2=None) -> {"loss": ...}`` and
``after_step(progress)``, plus the augmentation-awareness fields of :mod:`.base`
(``aug_mode``: vanilla / augself / cassle, ``omega_parts``, ``cond_mode``, ``encoder_depth``,
``encoder_width``, ``encoder_out_dim``, ``encoder_last_bn``, ``augself_weight``,
``augself_hidden_dim``)."""
from __future__ import annotations

from torch import nn

from .barlow_twins import BarlowTwins
from .base import AUG_MODES
from .byol import BYOL
from .moco import MoCoV2
from .moco_v3 import MoCoV3
from .simclr import SimCLR

METHODS = {"moco_v2": MoCoV2, "moco_v3": MoCoV3, "simclr": SimCLR, "byol": BYOL, "barlow_twins": BarlowTwins}

__all__ = ["AUG_MODES", "METHODS", "build_method", "BarlowTwins", "BYOL", "MoCoV2", "MoCoV3", "SimCLR"]


def build_method(name: str, backbone: nn.Module, **fields) -> nn.Module:
    if name not in METHODS:
        raise ValueError(f"unknown SSL method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name](backbone, **fields)
