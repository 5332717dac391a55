"""A rank's streamed pretraining batches with the JPEG decoding spread over the Ray cluster by
Ray Data (``data.stream_decode: ray_data``), instead of threads inside the Ray Train worker.

Each epoch the worker builds one Ray Dataset of its own shards (workloads/data/stream.py's
``epoch_plan``: the same shards, in the same order, as the thread path), read and decoded by
Ray Data tasks (``read_parquet`` → ``map_batches(decode_rows)``) anywhere on the cluster, with
the order preserved, then mixed in a seeded local shuffle buffer. Why a dataset per rank and
epoch rather than one handed to ``TorchTrainer(datasets=...)``: a trainer-level dataset is
split among the workers as they ask for blocks, so an epoch's images (and a resumed worker's
epoch) would depend on timing; here they are a function of (seed, epoch, rank), and a worker
retried by Ray Train simply builds the epoch it resumes at.

Every image's crops come from ``decode_rows`` with the generator seeded by (seed, epoch, index),
so a given image's two views are the same pixels on both paths; the paths differ only in the
order of the rows (Ray's shuffle buffer, not the thread path's)."""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import ray
import torch

from workloads.augment.two_views import CroppedViews
from workloads.data.stream import FIELDS, SHUFFLE_BUFFER, EpochPlan, ShardStream, decode_rows, seed_of

DECODE_ROWS = 64  # rows per decode call: small enough that a few tasks keep every free CPU busy


def decode_batch(batch: dict[str, np.ndarray], *, views, size: int, seed: int, epoch: int) -> dict[str, np.ndarray]:
    """Ray Data's map_batches function: every row comes back, damaged ones with ``ok`` False
    and blank pixels, so the consumer can count them (a batch of nothing but damaged rows would
    otherwise vanish without a trace)."""
    index = batch["index"].astype(np.int64)
    decoded, _ = decode_rows(list(batch["jpeg"]), index.tolist(), views=views, size=size, seed=seed, epoch=epoch)
    ok = np.isin(index, decoded.index.numpy())  # decode_rows keeps the good rows in their order
    out = {"index": index, "ok": ok}
    for key in FIELDS[:4]:  # the two views and their boxes (index is above)
        kept = getattr(decoded, key).numpy()
        out[key] = np.zeros((len(index), *kept.shape[1:]), dtype=kept.dtype)
        out[key][ok] = kept
    return out


class RayDataShardStream(ShardStream):
    """ShardStream whose epochs are read and decoded by Ray Data. ``decode_cpus`` is what
    each Ray Data task asks for; the cluster needs that much free beside the Ray Train workers
    (orchestrator/ray_exec.cell_slots keeps it free)."""

    def __init__(self, *args: Any, decode_cpus: float = 1.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.decode_cpus = decode_cpus

    def _dataset(self, files, epoch: int) -> "ray.data.Dataset":
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # blocks in file order: the epoch is reproducible
        ctx.enable_progress_bars = False             # the cell's own progress board reports
        ds = ray.data.read_parquet(list(files), filesystem=self.shards.fs, shuffle=None, num_cpus=self.decode_cpus)
        return ds.select_columns(["jpeg", "index"]).map_batches(
            decode_batch, batch_size=DECODE_ROWS, batch_format="numpy", num_cpus=self.decode_cpus,
            fn_kwargs={"views": self.views, "size": self.size, "seed": self.seed, "epoch": epoch})

    def decoded(self, plan: EpochPlan, epoch: int, attempt: int) -> Iterator[CroppedViews]:
        e = epoch + attempt * 1_000_003  # the crops are the epoch's; the second pass mixes anew
        batches = self._dataset(plan.files, epoch).iter_batches(
            batch_size=self.batch, batch_format="numpy", local_shuffle_buffer_size=SHUFFLE_BUFFER,
            local_shuffle_seed=seed_of(self.seed, e, self.rank, 11) % 2**32)
        for b in batches:
            ok = b["ok"]
            self.skipped += int((~ok).sum())
            yield CroppedViews(*(torch.from_numpy(np.ascontiguousarray(b[k][ok])) for k in FIELDS))
