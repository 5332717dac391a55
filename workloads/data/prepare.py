"""What a cell needs from the dataset layer: pretraining images, and a probe target
split into train / val (carved from train, seeded, saved) / test."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .memory import load_in_memory
from .registry import open_source
from .sources import ImageSource
from .splits import save_split, stratified_split


def load_images(ref: dict[str, Any], image_size: int, cache_dir: str | Path | None,
                progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, ImageSource]:
    """A config's dataset reference ({name, split, root, download}) decoded into memory:
    (uint8 N×3×S×S, labels, the source)."""
    src = open_source(ref["name"], split=ref["split"], image_size=image_size, root=ref["root"],
                      download=ref["download"])
    images, labels = load_in_memory(src, progress=progress, cache_dir=str(cache_dir) if cache_dir else None)
    return images, labels, src


def pretrain_images(cfg: dict[str, Any], cache_dir: str | Path | None, progress: bool = False) -> torch.Tensor:
    """uint8 N×3×S×S of the pretraining split (labels are never used)."""
    images, _, _ = load_images(cfg["data"]["pretrain"], cfg["data"]["image_size"], cache_dir, progress)
    limit = cfg["data"].get("limit")
    return images[:limit] if limit else images


@dataclass
class LabelledSplits:
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    num_classes: int
    split_file: Path | None


def probe_splits(target: dict[str, Any], *, test_split: str, val_fraction: float, split_seed: int,
                 image_size: int, cache_dir: str | Path | None) -> LabelledSplits:
    """Train/val from the target's training split (stratified, seeded); test from its test split.

    The val indices are written to ``<cache_dir>/splits/`` so a run can log exactly what it used."""
    images, labels, src = load_images(target, image_size, cache_dir)
    test_images, test_labels, _ = load_images({**target, "split": test_split}, image_size, cache_dir)
    parts = stratified_split(labels, {"train": 1.0 - val_fraction, "val": val_fraction}, seed=split_seed)
    split_file = None
    if cache_dir is not None:
        split_file = Path(cache_dir) / "splits" / f"{target['name']}-{target['split']}-val{val_fraction:g}-seed{split_seed}.json"
        split_file.parent.mkdir(parents=True, exist_ok=True)
        save_split(parts, split_file)
    tr, va = torch.as_tensor(parts["train"]), torch.as_tensor(parts["val"])
    return LabelledSplits((images[tr], labels[tr]), (images[va], labels[va]), (test_images, test_labels),
                          num_classes=len(src.classes), split_file=split_file)
