"""A cell's linear evaluation: probe the pretrained backbone and, as a control, a
randomly initialised backbone of the same architecture on the same splits."""
from __future__ import annotations

import hashlib
import json
import os
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
        metrics.update(_cached_control(cfg, cache_dir, lambda: _control(cfg, probe)))
    return metrics, splits.split_file


def _control(cfg: dict[str, Any], probe) -> dict[str, float]:
    torch.manual_seed(cfg["seed"])
    return probe(build_backbone(**cfg["backbone"])).as_metrics("random_init_probe")


def _cached_control(cfg: dict[str, Any], cache_dir: str | Path | None, compute) -> dict[str, float]:
    """The random-init control depends only on architecture, seed, data and probe settings,
    so variants that differ in pretraining (say, with and without SASSL) share one."""
    if cache_dir is None:
        return compute()
    key = {k: cfg[k] for k in ("seed", "backbone")}
    key.update(image_size=cfg["data"]["image_size"], mean=cfg["augmentation"]["mean"],
               std=cfg["augmentation"]["std"], probe=cfg["evaluation"]["linear_probe"])
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "controls" / f"random_init-{digest}.json"
    if path.is_file():
        return json.loads(path.read_text())
    metrics = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(metrics))
    os.replace(tmp, path)  # parallel cells may race; either result is the same
    return metrics
