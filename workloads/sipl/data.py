"""SIPL's pretext images: the decoded split in memory, or packed shards streamed epoch by epoch.

Both hold out the same validation images (the same seeded split of the same images, decoded
the same way: shorter side to ``image_size``, centre crop) and give every training image once
per epoch in batches, in an order fixed by (seed, epoch), so a resumed run reads its epoch
again. They differ in that order only. The streamed one keeps JPEG bytes until a batch is
decoded (threads; PIL releases the GIL), so memory does not grow with the dataset: the paper's
pretext set (ImageNet's validation split, 9.8 GB decoded at 256 px) need not fit in RAM.
"""
from __future__ import annotations

import io
import math
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import numpy as np
import torch
from PIL import Image

from ..data.errors import DatasetError
from ..data.lazy import LazyImages
from ..data.prepare import choose_loader, limited_positions, pretrain_images
from ..data.shards import PackedShards
from ..data.sources import PackedShardsSource, to_square_tensor
from ..data.stream import seed_of, shuffled
from ..spec import CellSpec

__all__ = ["split_pretext", "PretextImages", "InMemoryPretext", "StreamedPretext", "pretext_images",
           "sipl_pretext_data"]


def split_pretext(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded (train, val) index split of the pretext images."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 31 + 5))
    n_val = math.ceil(n * val_fraction) if val_fraction > 0 else 0
    if n - n_val < 2:
        raise ValueError(f"{n} images leave {n - n_val} for pretext training after val_fraction "
                         f"{val_fraction}; need >= 2")
    return perm[n_val:], perm[:n_val]


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """Positions 0..n-1 in an epoch's order, in batches; a last batch of one image is dropped
    (it breaks batch norm)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
    batches = list(perm.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches.pop()
    return batches


def steps_per_epoch(n: int, batch_size: int) -> int:
    full, rest = divmod(n, batch_size)
    return full + (1 if rest >= 2 or (rest and not full) else 0)


class PretextImages:
    """What pretrain_sipl reads: ``val`` (held-out images, uint8 N×3×S×S, indexable by slices),
    ``train_size``, ``steps(batch_size)`` and ``batches(epoch, batch_size)`` (uint8 batches);
    ``skipped`` counts images that could not be decoded."""
    val: "torch.Tensor | LazyImages"
    train_size: int
    skipped: int = 0

    def steps(self, batch_size: int) -> int:
        return steps_per_epoch(self.train_size, batch_size)

    def batches(self, epoch: int, batch_size: int) -> Iterator[torch.Tensor]:
        raise NotImplementedError


class InMemoryPretext(PretextImages):
    """The decoded split (uint8 N×3×S×S, already limited to data.limit)."""

    def __init__(self, images: torch.Tensor, *, val_fraction: float, seed: int):
        self.images, self.seed = images, seed
        self.train_idx, val_idx = split_pretext(len(images), val_fraction, seed)
        self.val = images[val_idx]
        self.train_size = len(self.train_idx)

    def batches(self, epoch: int, batch_size: int) -> Iterator[torch.Tensor]:
        for b in epoch_batches(self.train_size, batch_size, self.seed, epoch):
            yield self.images[self.train_idx[b]]


class StreamedPretext(PretextImages):
    """A packed split read shard by shard. The images (data.limit's subset) and their train/val
    split are those the in-memory path would use; each epoch reads the shards in a seeded order
    through a seeded shuffle buffer of JPEG bytes and decodes a batch at a time on ``threads``
    threads. The validation images are decoded batch by batch when evaluated (in pack order)."""

    def __init__(self, shards: PackedShards, *, image_size: int, val_fraction: float, seed: int,
                 limit: int | None = None, threads: int = 2):
        self.shards, self.size, self.seed, self.threads = shards, image_size, seed, max(1, threads)
        keep = limited_positions(len(shards), limit)
        train_idx, val_idx = split_pretext(len(keep), val_fraction, seed)
        self.is_train = np.zeros(len(shards), bool)
        self.is_train[keep[train_idx].numpy()] = True
        self.train_size = len(train_idx)
        source = PackedShardsSource(shards.root, shards.split, image_size)
        # in pack order: PackedShards keeps the shard last read, so a sorted pass reads each file once
        self.val = LazyImages(source, np.sort(keep[val_idx].numpy()), threads=self.threads)

    def rows(self, epoch: int) -> Iterator[tuple[bytes, int]]:
        """(JPEG, position in the pack) of the epoch's training images, in reading order."""
        rng = np.random.default_rng(seed_of(self.seed, epoch, 13))
        order = rng.permutation(len(self.shards.files))  # drawn first: the buffer's draws follow

        def rows() -> Iterator[tuple[bytes, int]]:
            for k in order:
                start = int(self.shards.offsets[k])
                jpegs = self.shards.read(self.shards.files[k], ["jpeg"])["jpeg"].to_pylist()
                for pos in np.flatnonzero(self.is_train[start:start + len(jpegs)]):
                    yield jpegs[pos], start + int(pos)
        return shuffled(rows(), rng)

    def _decode(self, jpeg: bytes) -> torch.Tensor | None:
        try:
            return to_square_tensor(Image.open(io.BytesIO(jpeg)), self.size)
        except Exception:  # a damaged row: skipped and counted
            return None

    def decoded(self, epoch: int, batch_size: int) -> Iterator[tuple[torch.Tensor, list[int]]]:
        """The epoch's batches with the pack positions of their images (damaged rows left out)."""
        ready: list[tuple[torch.Tensor, int]] = []
        chunk: list[tuple[bytes, int]] = []
        with ThreadPoolExecutor(self.threads) as pool:
            def take(rows: list[tuple[bytes, int]]) -> None:
                for img, (_, pos) in zip(pool.map(self._decode, [r[0] for r in rows]), rows):
                    if img is None:
                        self.skipped += 1
                    else:
                        ready.append((img, pos))

            for row in self.rows(epoch):
                chunk.append(row)
                if len(chunk) == batch_size:
                    take(chunk)
                    chunk = []
                    while len(ready) >= batch_size:
                        out, ready[:] = ready[:batch_size], ready[batch_size:]
                        yield torch.stack([i for i, _ in out]), [p for _, p in out]
            take(chunk)
        while ready:
            out, ready[:] = ready[:batch_size], ready[batch_size:]
            if len(out) >= 2:  # a one-image batch breaks batch norm
                yield torch.stack([i for i, _ in out]), [p for _, p in out]

    def batches(self, epoch: int, batch_size: int) -> Iterator[torch.Tensor]:
        for images, _ in self.decoded(epoch, batch_size):
            yield images


def pretext_images(images: "torch.Tensor | PretextImages", *, val_fraction: float, seed: int) -> PretextImages:
    """pretrain_sipl's input: a decoded tensor is split here; a stream comes split already."""
    if isinstance(images, PretextImages):
        return images
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise DatasetError(f"SIPL pretext images must be uint8 N×3×S×S or a PretextImages, got {type(images).__name__}")
    return InMemoryPretext(images, val_fraction=val_fraction, seed=seed)


def sipl_pretext_data(spec: CellSpec, cache_dir: Any, threads: int = 2) -> "torch.Tensor | StreamedPretext":
    """A SIPL cell's pretext images as data.loader says: a packed split streamed, or the
    decoded split in memory (data.limit applied either way)."""
    data, ref = spec.data, spec.data.pretrain
    if ref.name == "packed":
        shards = PackedShards(ref.root, ref.split)
        if choose_loader(data, len(shards)) == "stream":
            return StreamedPretext(shards, image_size=data.image_size, val_fraction=float(spec.method.val_fraction),
                                   seed=spec.seed, limit=data.limit, threads=threads)
    return pretrain_images(data, cache_dir)
