"""What a cell needs from the dataset layer: pretraining images, and a probe target
split into train / val (carved from train, seeded, saved) / test."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .memory import load_in_memory
from .registry import open_source
from .sources import ImageSource
from .splits import class_balanced_subset, stratified_split


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
    if not limit or limit >= len(images):
        return images
    # a fixed random subset: the packed kits are sorted by class, so the first N would hold only a few
    keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:limit].sort().values
    return images[keep]


@dataclass
class LabelledSplits:
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor] | None   # None when the caller must not see it
    num_classes: int
    split_file: Path | None


def target_splits(target: dict[str, Any], *, image_size: int, cache_dir: str | Path | None,
                  with_test: bool = True) -> LabelledSplits:
    """A config target ({key, data, test_split, val_split, val_fraction, split_seed,
    label_fraction}) as train / val / test.

    Val is the dataset's own ``val_split`` if it names one, else carved from the training split
    (stratified, seeded). ``label_fraction`` < 1 keeps that class-balanced share of train and of
    val (the "1 %" targets). The indices are saved to ``<cache_dir>/splits/`` so a run can log
    exactly what it used; ``with_test=False`` never opens the test split (search objectives)."""
    data, seed, frac = target["data"], target["split_seed"], target["label_fraction"]
    images, labels, src = load_images(data, image_size, cache_dir)
    if target["val_split"]:
        val_images, val_labels, _ = load_images({**data, "split": target["val_split"]}, image_size, cache_dir)
        parts = {"train": np.arange(len(labels))}
        val_parts = {"val": np.arange(len(val_labels))}
    else:
        parts = stratified_split(labels, {"train": 1.0 - target["val_fraction"], "val": target["val_fraction"]},
                                 seed=seed)
        val_images, val_labels, val_parts = images, labels, {"val": parts.pop("val")}
    if frac < 1:
        parts["train"] = parts["train"][class_balanced_subset(labels[parts["train"]], float(frac), seed)]
        val_parts["val"] = val_parts["val"][class_balanced_subset(val_labels[val_parts["val"]], float(frac), seed)]
    split_file = None
    if cache_dir is not None:
        stem = f"{target['key']}-{data['name']}-{data['split']}-{target['val_split'] or target['val_fraction']}" \
               f"-frac{frac:g}-seed{seed}"
        split_file = Path(cache_dir) / "splits" / f"{stem}.json"
        # train and val may index different splits (val_split), so they are saved as named lists
        split_file.parent.mkdir(parents=True, exist_ok=True)
        split_file.write_text(json.dumps({f"train ({data['split']})": parts["train"].tolist(),
                                          f"val ({target['val_split'] or data['split']})": val_parts["val"].tolist()})
                              + "\n")
    tr, va = torch.as_tensor(parts["train"]), torch.as_tensor(val_parts["val"])
    test = None
    if with_test:
        test_ref = target.get("test_data") or {**data, "split": target["test_split"]}
        test_images, test_labels, _ = load_images(test_ref, image_size, cache_dir)
        test = (test_images, test_labels)
    return LabelledSplits((images[tr], labels[tr]), (val_images[va], val_labels[va]), test,
                          num_classes=len(src.classes), split_file=split_file)
