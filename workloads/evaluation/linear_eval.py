"""A cell's linear evaluation: probe the pretrained backbone and, as a control, a
randomly initialised backbone of the same architecture on the same splits."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..data.prepare import probe_splits
from ..models.backbones import build_backbone
from .features import extract_features
from .probe import linear_probe


def evaluate_linear_probe(cfg: dict[str, Any], backbone_state: dict[str, torch.Tensor], *,
                          cache_dir: str | Path | None, device: str = "cpu") -> tuple[dict[str, float], Path | None]:
    """Returns (metrics, path of the saved val split)."""
    pc = cfg["evaluation"]["linear_probe"]
    size = cfg["data"]["image_size"]
    mean, std = cfg["augmentation"]["mean"], cfg["augmentation"]["std"]
    splits = probe_splits(pc["target"], test_split=pc["test_split"], val_fraction=pc["val_fraction"],
                          split_seed=pc["split_seed"], image_size=size, cache_dir=cache_dir)

    def probe(backbone) -> dict[str, float]:
        feats = [(extract_features(backbone, x, mean, std, device=device), y)
                 for x, y in (splits.train, splits.val, splits.test)]
        return linear_probe(*feats, splits.num_classes, lrs=pc["lrs"], epochs=pc["epochs"],
                            batch_size=pc["batch_size"], momentum=pc["momentum"], seed=cfg["seed"])

    backbone = build_backbone(**cfg["backbone"])
    backbone.load_state_dict(backbone_state)
    metrics = probe(backbone).as_metrics("probe")
    if pc["random_init_control"]:
        torch.manual_seed(cfg["seed"])
        metrics.update(probe(build_backbone(**cfg["backbone"])).as_metrics("random_init_probe"))
    return metrics, splits.split_file
