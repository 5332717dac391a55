"""What a cell needs from the dataset layer: pretraining images, and a probe target
split into train / val (carved from train, seeded, saved) / test."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..spec import CellSpec, DatasetRef, DataSpec, TargetSpec
from .errors import DatasetError
from .lazy import LazyImages
from .memory import load_in_memory
from .registry import open_source
from .shards import PackedShards
from .sources import ImageSource
from .splits import class_balanced_subset, stratified_split
from .stream import ShardStream


def open_ref(ref: DatasetRef, image_size: int) -> ImageSource:
    """A dataset reference opened (nothing decoded)."""
    return open_source(ref.name, split=ref.split, image_size=image_size, root=ref.root, download=ref.download)


def load_images(ref: DatasetRef, image_size: int, cache_dir: str | Path | None,
                progress: bool = False, lazy: bool = False) -> tuple["torch.Tensor | LazyImages", torch.Tensor,
                                                                      ImageSource]:
    """A dataset reference decoded into memory:
    (uint8 N×3×S×S, labels, the source); with ``lazy``, decoded batch by batch when used."""
    src = open_ref(ref, image_size)
    if lazy:
        return LazyImages(src), src.labels.clone(), src
    images, labels = load_in_memory(src, progress=progress, cache_dir=str(cache_dir) if cache_dir else None)
    return images, labels, src


def take(images: "torch.Tensor | LazyImages", idx: torch.Tensor) -> "torch.Tensor | LazyImages":
    """images[idx], without decoding when the images are lazy."""
    return images.subset(idx) if isinstance(images, LazyImages) else images[idx]


def pretrain_images(data: DataSpec, cache_dir: str | Path | None, progress: bool = False) -> torch.Tensor:
    """uint8 N×3×S×S of the pretraining split (labels are never used)."""
    src = open_ref(data.pretrain, data.image_size)
    if data.loader != "memory":
        choose_loader(data, len(src))  # auto: refuses a split too large to hold (and not packed)
    images, _ = load_in_memory(src, progress=progress, cache_dir=str(cache_dir) if cache_dir else None)
    keep = limited_positions(len(images), data.limit)
    return images if len(keep) == len(images) else images[keep]


def limited_positions(n: int, limit: int | None) -> torch.Tensor:
    """The images data.limit keeps: a fixed random subset, in order (the packed kits are sorted
    by class, so the first N would hold only a few classes); all of them without a limit."""
    if not limit or limit >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:limit].sort().values


def fits_in_memory(data: DataSpec, n: int, image_size: int | None = None) -> bool:
    """Whether n images decoded at ``image_size`` (default data.image_size) fit
    data.memory_budget_gb (per worker)."""
    return n * 3 * (image_size or data.image_size) ** 2 <= data.memory_budget_gb * 2**30


def choose_loader(data: DataSpec, source_len: int) -> str:
    """data.loader resolved: ``auto`` is memory while the decoded split fits the per-worker
    budget, stream beyond it (which needs packed shards)."""
    if data.loader != "auto":
        return data.loader
    n = min(source_len, data.limit or source_len)
    if fits_in_memory(data, n):
        return "memory"
    if data.pretrain.name != "packed":
        gb = n * 3 * data.image_size ** 2 / 2**30
        raise DatasetError(f"data.pretrain: {n} images at {data.image_size} px take {gb:.1f} GB decoded, over "
                           f"data.memory_budget_gb ({data.memory_budget_gb:g}); pack the split with "
                           f"`sassl pack` and read it with {{name: packed}} (streamed), or raise the budget")
    return "stream"


def pretrain_data(spec: CellSpec, cache_dir: str | Path | None, *, rank: int = 0, world: int = 1,
                  threads: int = 2) -> "torch.Tensor | ShardStream":
    """What pretrain() trains on, as data.loader says: the decoded split in memory, or this
    rank's stream of packed shards."""
    data, ref = spec.data, spec.data.pretrain
    if ref.name == "packed":
        shards = PackedShards(ref.root, ref.split)
        if choose_loader(data, len(shards)) == "stream":
            aug = spec.augmentation
            return ShardStream(shards, views=(aug.view1, aug.view2), size=data.image_size, seed=spec.seed,
                               rank=rank, world=world, batch_per_rank=spec.optim.batch_size // world,
                               limit=data.limit, threads=threads)
    return pretrain_images(data, cache_dir)


def reads_lazily(data: DataSpec, ref: DatasetRef, image_size: int) -> bool:
    """Whether the split ``ref`` is read batch by batch (data.loader: stream, or auto when it
    decoded at ``image_size`` exceeds data.memory_budget_gb) instead of decoded first; ``data``
    is the cell's data section."""
    if data.loader != "auto":
        return data.loader == "stream"
    return not fits_in_memory(data, len(open_ref(ref, image_size)), image_size)


def evaluation_is_lazy(data: DataSpec, target: TargetSpec, image_size: int | None = None) -> bool:
    """Whether evaluation reads a target's splits batch by batch (see reads_lazily): when its
    training split, or a test set of its own (test_data), is too large to decode first.
    ``image_size``: the size evaluation reads at (default data.image_size)."""
    size = image_size or data.image_size
    refs = [target.data] + ([target.test_data] if target.test_data else [])
    return any(reads_lazily(data, ref, size) for ref in refs)


@dataclass
class LabelledSplits:
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor] | None   # None when the caller must not see it
    num_classes: int
    split_file: Path | None


def target_splits(target: TargetSpec, *, image_size: int, cache_dir: str | Path | None,
                  with_test: bool = True, lazy: bool = False) -> LabelledSplits:
    """An evaluation target as train / val / test.

    Val is the dataset's own ``val_split`` if it names one, else carved from the training split
    (stratified, seeded). ``label_fraction`` < 1 keeps that class-balanced share of train and of
    val (the "1 %" targets). The indices are saved to ``<cache_dir>/splits/`` so a run can log
    exactly what it used; ``with_test=False`` never opens the test split (search objectives);
    ``lazy`` leaves the images undecoded until a batch is read (LazyImages)."""
    data, seed, frac = target.data, target.split_seed, target.label_fraction
    images, labels, src = load_images(data, image_size, cache_dir, lazy=lazy)
    if target.val_split:
        val_images, val_labels, _ = load_images(data.with_split(target.val_split), image_size, cache_dir, lazy=lazy)
        parts = {"train": np.arange(len(labels))}
        val_parts = {"val": np.arange(len(val_labels))}
    else:
        parts = stratified_split(labels, {"train": 1.0 - target.val_fraction, "val": target.val_fraction},
                                 seed=seed)
        val_images, val_labels, val_parts = images, labels, {"val": parts.pop("val")}
    if frac < 1:
        parts["train"] = parts["train"][class_balanced_subset(labels[parts["train"]], float(frac), seed)]
        val_parts["val"] = val_parts["val"][class_balanced_subset(val_labels[val_parts["val"]], float(frac), seed)]
    split_file = None
    if cache_dir is not None:
        stem = f"{target.key}-{data.name}-{data.split}-{target.val_split or target.val_fraction}" \
               f"-frac{frac:g}-seed{seed}"
        split_file = Path(cache_dir) / "splits" / f"{stem}.json"
        # train and val may index different splits (val_split), so they are saved as named lists
        split_file.parent.mkdir(parents=True, exist_ok=True)
        split_file.write_text(json.dumps({f"train ({data.split})": parts["train"].tolist(),
                                          f"val ({target.val_split or data.split})": val_parts["val"].tolist()})
                              + "\n")
    tr, va = torch.as_tensor(parts["train"]), torch.as_tensor(val_parts["val"])
    test = None
    if with_test:
        test_images, test_labels, _ = load_images(target.test_ref, image_size, cache_dir, lazy=lazy)
        test = (test_images, test_labels)
    return LabelledSplits((take(images, tr), labels[tr]), (take(val_images, va), val_labels[va]), test,
                          num_classes=len(src.classes), split_file=split_file)
