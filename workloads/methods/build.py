"""A cell's whole SSL model from its spec: the backbone and the method around it (what
pretraining trains and the sensitivity analysis reloads)."""
from __future__ import annotations

from torch import nn

from ..models.backbones import build_backbone
from ..models.sync_bn import convert_sync_bn
from ..spec import CellSpec
from . import build_method
from .distributed import world_size


def build_model(spec: CellSpec) -> nn.Module:
    """A cell's backbone and SSL method; with ``backbone.sync_bn`` and several processes, batch
    norms synchronised across them."""
    backbone = build_backbone(**spec.backbone.architecture(spec.data.image_size))
    model = build_method(spec.method.name, backbone, **spec.method.arguments())
    if spec.backbone.sync_bn and world_size() > 1:
        model = convert_sync_bn(model)  # before the optimiser and any copy (the same parameters)
    return model
