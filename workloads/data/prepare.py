"""What a cell needs from the dataset layer: pretraining images, and a probe target
split into train / val (carved from train, seeded, saved) / test."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..augment.params import ViewConfig
from .errors import DatasetError
from .lazy import LazyImages
from .memory import load_in_memory
from .registry import open_source
from .shards import PackedShards
from .sources import ImageSource
from .splits import class_balanced_subset, stratified_split
from .stream import ShardStream


def open_ref(ref: dict[str, Any], image_size: int) -> ImageSource:
    """A config's dataset reference ({name, split, root, download}) opened (nothing decoded)."""
    return open_source(ref["name"], split=ref["split"], image_size=image_size, root=ref["root"],
                       download=ref["download"])


def load_images(ref: dict[str, Any], image_size: int, cache_dir: str | Path | None,
                progress: bool = False, lazy: bool = False) -> tuple["torch.Tensor | LazyImages", torch.Tensor,
                                                                      ImageSource]:
    """A config's dataset reference ({name, split, root, download}) decoded into memory:
    (uint8 N×3×S×S, labels, the source); with ``lazy``, decoded batch by batch when used."""
    src = open_ref(ref, image_size)
    if lazy:
        return LazyImages(src), src.labels.clone(), src
    images, labels = load_in_memory(src, progress=progress, cache_dir=str(cache_dir) if cache_dir else None)
    return images, labels, src


def take(images: "torch.Tensor | LazyImages", idx: torch.Tensor) -> "torch.Tensor | LazyImages":
    """images[idx], without decoding when the images are lazy."""
    return images.subset(idx) if isinstance(images, LazyImages) else images[idx]


def pretrain_images(cfg: dict[str, Any], cache_dir: str | Path | None, progress: bool = False) -> torch.Tensor:
    """uint8 N×3×S×S of the pretraining split (labels are never used)."""
    ref = cfg["data"]["pretrain"]
    src = open_ref(ref, cfg["data"]["image_size"])
    if cfg["data"]["loader"] != "memory":  # no default here: the schema's (auto) is the only one
        choose_loader(cfg, len(src))  # auto: refuses a split too large to hold (and not packed)
    images, _ = load_in_memory(src, progress=progress, cache_dir=str(cache_dir) if cache_dir else None)
    keep = limited_positions(len(images), cfg["data"].get("limit"))
    return images if len(keep) == len(images) else images[keep]


def limited_positions(n: int, limit: int | None) -> torch.Tensor:
    """The images data.limit keeps: a fixed random subset, in order (the packed kits are sorted
    by class, so the first N would hold only a few classes); all of them without a limit."""
    if not limit or limit >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit].sort().values


def fits_in_memory(cfg: dict[str, Any], n: int) -> bool:
    """Whether n images decoded at the config's size fit data.memory_budget_gb (per worker)."""
    return n * 3 * cfg["data"]["image_size"] ** 2 <= cfg["data"].get("memory_budget_gb", 2.0) * 2**30


def choose_loader(cfg: dict[str, Any], source_len: int) -> str:
    """data.loader resolved: ``auto`` is memory while the decoded split fits the per-worker
    budget, stream beyond it (which needs packed shards)."""
    data = cfg["data"]
    if data["loader"] != "auto":
        return data["loader"]
    n = min(source_len, data.get("limit") or source_len)
    if fits_in_memory(cfg, n):
        return "memory"
    if data["pretrain"]["name"] != "packed":
        gb = n * 3 * data["image_size"] ** 2 / 2**30
        raise DatasetError(f"data.pretrain: {n} images at {data['image_size']} px take {gb:.1f} GB decoded, over "
                           f"data.memory_budget_gb ({data.get('memory_budget_gb', 2.0):g}); pack the split with "
                           f"`sassl pack` and read it with {{name: packed}} (streamed), or raise the budget")
    return "stream"


def pretrain_data(cfg: dict[str, Any], cache_dir: str | Path | None, *, rank: int = 0, world: int = 1,
                  threads: int = 2) -> "torch.Tensor | ShardStream":
    """What pretrain() trains on, as data.loader says: the decoded split in memory, or this
    rank's stream of packed shards."""
    ref = cfg["data"]["pretrain"]
    if ref["name"] == "packed":
        shards = PackedShards(ref["root"], ref["split"])
        if choose_loader(cfg, len(shards)) == "stream":
            aug = cfg["augmentation"]
            views = (ViewConfig(**aug["view1"]), ViewConfig(**aug["view2"]))
            return ShardStream(shards, views=views, size=cfg["data"]["image_size"], seed=int(cfg["seed"]),
                               rank=rank, world=world, batch_per_rank=int(cfg["optim"]["batch_size"]) // world,
                               limit=cfg["data"].get("limit"), threads=threads)
    return pretrain_images(cfg, cache_dir)


def reads_lazily(data: dict[str, Any], ref: dict[str, Any], image_size: int) -> bool:
    """Whether the split ``ref`` is read batch by batch (data.loader: stream, or auto when it
    decoded at ``image_size`` exceeds data.memory_budget_gb) instead of decoded first; ``data``
    is the cell's data section."""
    loader = data["loader"]  # no default here: the schema's (auto) is the only one
    if loader != "auto":
        return loader == "stream"
    n = len(open_ref(ref, image_size))
    return not fits_in_memory({"data": {**data, "image_size": image_size}}, n)


def evaluation_is_lazy(cfg: dict[str, Any], target: dict[str, Any], image_size: int | None = None) -> bool:
    """Whether evaluation reads a target's splits batch by batch (see reads_lazily): when its
    training split, or a test set of its own (test_data), is too large to decode first.
    ``image_size``: the size evaluation reads at (default data.image_size)."""
    size = image_size or cfg["data"]["image_size"]
    refs = [target["data"]] + ([target["test_data"]] if target.get("test_data") else [])
    return any(reads_lazily(cfg["data"], ref, size) for ref in refs)


@dataclass
class LabelledSplits:
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor] | None   # None when the caller must not see it
    num_classes: int
    split_file: Path | None


def target_splits(target: dict[str, Any], *, image_size: int, cache_dir: str | Path | None,
                  with_test: bool = True, lazy: bool = False) -> LabelledSplits:
    """A config target ({key, data, test_split, val_split, val_fraction, split_seed,
    label_fraction}) as train / val / test.

    Val is the dataset's own ``val_split`` if it names one, else carved from the training split
    (stratified, seeded). ``label_fraction`` < 1 keeps that class-balanced share of train and of
    val (the "1 %" targets). The indices are saved to ``<cache_dir>/splits/`` so a run can log
    exactly what it used; ``with_test=False`` never opens the test split (search objectives);
    ``lazy`` leaves the images undecoded until a batch is read (LazyImages)."""
    data, seed, frac = target["data"], target["split_seed"], target["label_fraction"]
    images, labels, src = load_images(data, image_size, cache_dir, lazy=lazy)
    if target["val_split"]:
        val_images, val_labels, _ = load_images({**data, "split": target["val_split"]}, image_size, cache_dir,
                                                lazy=lazy)
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
        test_images, test_labels, _ = load_images(test_ref, image_size, cache_dir, lazy=lazy)
        test = (test_images, test_labels)
    return LabelledSplits((take(images, tr), labels[tr]), (take(val_images, va), val_labels[va]), test,
                          num_classes=len(src.classes), split_file=split_file)
