"""Decode a whole source once into one uint8 tensor (small datasets: augment on GPU from RAM).

Measured on the 2-core dev box: the CIFAR kit decodes at ~0.1 ms/image sequentially and
DataLoader workers did not make it faster (process start-up + IPC ate the gain), so the
default is sequential; pass num_workers for large images on machines with spare cores.
"""
from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .sources import ImageSource


def _cache_paths(source: ImageSource, cache_dir: str | Path) -> tuple[Path, Path]:
    stem = re.sub(r"[^A-Za-z0-9_.+-]", "_", f"{source.name}-{source.split}-{source.image_size}px")
    key = f"{stem}-{source.identity()}"
    d = Path(cache_dir).expanduser()
    return d / f"{key}.images.npy", d / f"{key}.labels.npy"


def _save_atomic(path: Path, array: np.ndarray) -> None:
    # tmp + rename: parallel trials sharing a cache never read a half-written file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    os.replace(tmp, path)


def load_in_memory(source: ImageSource, *, progress: bool = True, cache_dir: str | None = None,
                   num_workers: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of `source` as uint8 N x 3 x S x S, and its labels (int64 N; a regression
    target's float N×K).

    With cache_dir, the result is stored as two .npy files keyed by the source's identity and
    image size, and later calls just load them.
    """
    n, s = len(source), source.image_size
    if cache_dir is not None:
        img_path, lab_path = _cache_paths(source, cache_dir)
        if img_path.exists() and lab_path.exists():
            images = np.load(img_path, allow_pickle=False)
            labels = np.load(lab_path, allow_pickle=False)
            # class labels are int64 (N); a regression target's (300W's landmarks) float32 N×K
            want = source.labels
            if images.shape == (n, 3, s, s) and images.dtype == np.uint8 and labels.shape == tuple(want.shape):
                return torch.from_numpy(images), torch.from_numpy(labels.astype(want.numpy().dtype))

    images = torch.empty((n, 3, s, s), dtype=torch.uint8)
    from tqdm.auto import tqdm  # here: the data package imports without it (benchmarks/gpu_check.py)
    with tqdm(total=n, disable=not progress, desc=f"decode {source.name}/{source.split}",
              unit="img", leave=False) as bar:
        if num_workers > 0:
            loader = DataLoader(source, batch_size=256, num_workers=num_workers)
            start = 0
            for batch, _ in loader:
                images[start:start + len(batch)] = batch
                start += len(batch)
                bar.update(len(batch))
        else:
            for i in range(n):
                images[i] = source[i][0]
                bar.update(1)
    labels = source.labels.clone()

    if cache_dir is not None:
        img_path.parent.mkdir(parents=True, exist_ok=True)
        _save_atomic(lab_path, labels.numpy())
        _save_atomic(img_path, images.numpy())
    return images, labels
