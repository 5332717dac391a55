"""Streaming pretraining data: packed shards (data/shards.py) read epoch by epoch, each view's
random resized crop taken from the original image, never the whole split in memory.

The pieces are pure functions of (seed, epoch, rank), so an epoch's order and crops are the
same however the work is spread and whether or not the run was resumed:

* :func:`epoch_plan` — which shard files a rank reads in an epoch, in which order, and the
  epoch's step count (equal on every rank: DDP needs the same number of steps);
* :func:`decode_rows` — JPEG bytes to the two views' crops (uint8, ``image_size``) and their
  boxes in the original's coordinates (CASSLE's ω), the boxes drawn per image from a seeded
  generator with torchvision's RandomResizedCrop rule (:func:`crop_box`);
* :class:`ShardStream` — one rank's batches for an epoch, shards read with pyarrow, rows
  shuffled in a seeded buffer, decoding spread over threads (PIL and libjpeg release the GIL).

The orchestrator may spread :func:`decode_rows` over a Ray cluster instead (Ray Data); the
workloads never import Ray.
"""
from __future__ import annotations

import io
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from ..augment.two_views import CroppedViews
from ..spec import ViewConfig
from .errors import DatasetError
from .shards import PackedShards

SHUFFLE_BUFFER = 2048  # rows: with shards that already mix the classes, a small buffer suffices


def seed_of(*parts: int) -> int:
    """A 63-bit seed from integers (numpy's SeedSequence mixes them well)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def shuffled(rows: Iterator[Any], rng: np.random.Generator, size: int = SHUFFLE_BUFFER) -> Iterator[Any]:
    """``rows`` through a seeded shuffle buffer of ``size``: once full, each new row swaps into
    a random place and the row there is given out; what is left goes out in a random order."""
    buffer: list[Any] = []
    for row in rows:
        buffer.append(row)
        if len(buffer) >= size:
            k = int(rng.integers(len(buffer)))
            buffer[k], buffer[-1] = buffer[-1], buffer[k]
            yield buffer.pop()
    for k in rng.permutation(len(buffer)):
        yield buffer[k]


@dataclass(frozen=True)
class EpochPlan:
    files: list[str]       # this rank's shards (paths in the split's filesystem), in reading order
    rows: int              # rows in them
    steps: int             # batches every rank trains on this epoch


def epoch_plan(shards: PackedShards, *, seed: int, epoch: int, rank: int, world: int,
               batch_per_rank: int, limit: int | None = None) -> EpochPlan:
    """The shards are dealt to the ranks in a seeded order that changes every epoch; every
    rank takes the same number of steps (the smallest share's full batches). ``limit`` keeps
    the first shards of the pack (in pack order, fixed) up to that many rows (data.limit)."""
    counts = [s["rows"] for s in shards.manifest["shards"]]
    keep = len(counts)
    if limit:
        # the first shard whose running total reaches the limit; a limit beyond the split keeps all
        keep = min(len(counts), max(1, int(np.searchsorted(np.cumsum(counts), limit)) + 1))
    order = np.random.default_rng(seed_of(seed, epoch, 7)).permutation(keep)
    if keep < world:
        raise DatasetError(f"packed: {shards.folder} has {keep} shard(s) for {world} workers; "
                           f"pack it with a smaller --shard-size")
    mine = order[rank::world]
    per_rank = [sum(counts[i] for i in order[r::world]) for r in range(world)]
    steps = min(per_rank) // batch_per_rank
    if steps == 0:
        raise DatasetError(f"packed: {shards.folder}: a worker's share ({min(per_rank)} images) is smaller "
                           f"than its batch ({batch_per_rank})")
    return EpochPlan([shards.files[i] for i in mine], int(per_rank[rank]), steps)


def crop_box(h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float],
             rng: np.random.Generator, attempts: int = 10) -> tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box (top, left, height, width) in an h x w image: up to
    ``attempts`` tries of (area ~ U[scale], log-aspect ~ U[log ratio]); else the centre crop
    clamped to the ratio range (augment.kernels.sample_crop_boxes, for one image of its own size)."""
    area = h * w
    lo, hi = math.log(ratio[0]), math.log(ratio[1])
    u = rng.random(2 * attempts + 2)
    for k in range(attempts):
        target = area * (scale[0] + (scale[1] - scale[0]) * u[k])
        aspect = math.exp(lo + (hi - lo) * u[attempts + k])
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 1 <= cw <= w and 1 <= ch <= h:
            top = min(int(u[-2] * (h - ch + 1)), h - ch)
            left = min(int(u[-1] * (w - cw + 1)), w - cw)
            return top, left, ch, cw
    if w / h < ratio[0]:
        cw, ch = w, round(w / ratio[0])
    elif w / h > ratio[1]:
        cw, ch = round(h * ratio[1]), h
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def open_rgb(data: bytes) -> Image.Image:
    """A row's bytes as a loaded RGB image (any format PIL reads: CMYK JPEGs, PNGs under a .JPEG
    name, as ImageNet has); raises on damaged data."""
    img = Image.open(io.BytesIO(data))
    img = img.convert("RGB") if img.mode != "RGB" else img
    img.load()
    return img


def decode_rows(jpegs: Sequence[bytes], indices: Sequence[int], *, views: tuple[ViewConfig, ViewConfig],
                size: int, seed: int, epoch: int) -> tuple[CroppedViews, int]:
    """Both views' crops of each row (decoded once), and how many rows could not be decoded
    (skipped). Each image's crop boxes come from a generator seeded by (seed, epoch, its
    index); PIL crops and resizes in one call (bilinear, antialiased when shrinking, as the
    in-memory path's square resize)."""
    n = len(jpegs)
    out = np.empty((2, n, size, size, 3), np.uint8)
    boxes = np.empty((2, n, 4), np.float32)
    kept, bad = [], 0
    for data, index in zip(jpegs, indices):
        try:
            img = open_rgb(data)
        except Exception:  # a damaged row: skipped and counted, as the in-memory path does
            bad += 1
            continue
        w, h = img.size
        rng = np.random.default_rng(seed_of(seed, epoch, int(index)))
        k = len(kept)
        for v, cfg in enumerate(views):
            top, left, ch, cw = crop_box(h, w, cfg.crop_scale, cfg.crop_ratio, rng)
            out[v, k] = np.asarray(img.resize((size, size), Image.BILINEAR, box=(left, top, left + cw, top + ch)))
            boxes[v, k] = (top / h, left / w, ch / h, cw / w)
        kept.append(int(index))
    m = len(kept)
    views_t = torch.from_numpy(out[:, :m]).permute(0, 1, 4, 2, 3)  # 2 x m x 3 x S x S
    return CroppedViews(views_t[0].contiguous(), views_t[1].contiguous(), torch.from_numpy(boxes[0, :m].copy()),
                        torch.from_numpy(boxes[1, :m].copy()), torch.tensor(kept, dtype=torch.long)), bad


class ShardStream:
    """One rank's pretraining batches from a packed split: ``epoch(e)`` yields exactly
    ``steps(e)`` :class:`CroppedViews` batches of ``batch_per_rank`` images."""

    def __init__(self, shards: PackedShards, *, views: tuple[ViewConfig, ViewConfig], size: int, seed: int,
                 rank: int, world: int, batch_per_rank: int, limit: int | None = None, threads: int = 2):
        self.shards, self.views, self.size, self.seed = shards, views, size, seed
        self.rank, self.world, self.batch, self.limit = rank, world, batch_per_rank, limit
        self.threads = max(1, threads)
        self.skipped = 0  # rows that could not be decoded, over the stream's life

    @classmethod
    def like(cls, stream: "ShardStream", **extra) -> "ShardStream":
        """A stream of this class over what ``stream`` reads, plus the subclass's own arguments."""
        return cls(stream.shards, views=stream.views, size=stream.size, seed=stream.seed, rank=stream.rank,
                   world=stream.world, batch_per_rank=stream.batch, limit=stream.limit, threads=stream.threads,
                   **extra)

    def plan(self, epoch: int) -> EpochPlan:
        return epoch_plan(self.shards, seed=self.seed, epoch=epoch, rank=self.rank, world=self.world,
                          batch_per_rank=self.batch, limit=self.limit)

    def _rows(self, plan: EpochPlan, epoch: int) -> Iterator[tuple[bytes, int]]:
        """(jpeg, index) of this rank's shards, through a seeded shuffle buffer."""
        rng = np.random.default_rng(seed_of(self.seed, epoch, self.rank, 11))

        def rows() -> Iterator[tuple[bytes, int]]:
            for f in plan.files:
                table = self.shards.read(f, ["jpeg", "index"])
                yield from zip(table["jpeg"].to_pylist(), table["index"].to_pylist())
        return shuffled(rows(), rng)

    def chunks(self, plan: EpochPlan, epoch: int, attempt: int) -> Iterator[list[tuple[bytes, int]]]:
        """The epoch's (jpeg, index) rows in reading order, a batch's worth at a time (the last
        one shorter); ``attempt`` 1 is a second pass over the shards in another order."""
        rows: list[tuple[bytes, int]] = []
        for row in self._rows(plan, epoch + attempt * 1_000_003):
            rows.append(row)
            if len(rows) == self.batch:
                yield rows
                rows = []
        if rows:
            yield rows

    def decoded(self, plan: EpochPlan, epoch: int, attempt: int) -> Iterator[CroppedViews]:
        """The epoch's rows decoded, in reading order, damaged ones left out (and counted in
        ``skipped``), in parts of about a batch. Here threads of this process decode; subclasses
        decode on the training device (data/device_decode.py) or in Ray Data tasks
        (orchestrator/ray_data_stream.py)."""
        with ThreadPoolExecutor(self.threads) as pool:
            def decode(rows: list[tuple[bytes, int]]) -> CroppedViews:
                parts = [p for p in np.array_split(np.arange(len(rows)), self.threads) if len(p)]
                done = list(pool.map(lambda p: decode_rows([rows[i][0] for i in p], [rows[i][1] for i in p],
                                                           views=self.views, size=self.size, seed=self.seed,
                                                           epoch=epoch), parts))
                self.skipped += sum(bad for _, bad in done)
                return cat_views([v for v, _ in done])

            for rows in self.chunks(plan, epoch, attempt):
                yield decode(rows)

    def epoch(self, epoch: int) -> Iterator[CroppedViews]:
        plan = self.plan(epoch)
        ready: CroppedViews | None = None
        produced = 0
        # a second pass over the shards only if damaged rows left too few for the epoch's steps
        # (every rank must take the same number of steps)
        for attempt in range(2):
            for part in self.decoded(plan, epoch, attempt):
                ready = part if ready is None else cat_views([ready, part])
                while ready.shape[0] >= self.batch and produced < plan.steps:
                    yield slice_views(ready, 0, self.batch)
                    ready = slice_views(ready, self.batch, None)
                    produced += 1
                if produced == plan.steps:
                    return
        raise DatasetError(f"packed: {self.shards.folder}: too many unreadable images to fill an epoch")


FIELDS = ("view1", "view2", "crop1", "crop2", "index")


def cat_views(parts: list[CroppedViews]) -> CroppedViews:
    return CroppedViews(*(torch.cat([getattr(p, k) for p in parts]) for k in FIELDS))


def slice_views(v: CroppedViews, start: int, stop: int | None) -> CroppedViews:
    return CroppedViews(*(getattr(v, k)[start:stop] for k in FIELDS))
