"""Images decoded when a batch is asked for, not before: how evaluation reads a split that is
too large to hold decoded (data.loader: stream, or auto beyond the memory budget). Feature
extraction walks it in batches, so ImageNet's 50,000 validation images never sit decoded in
memory; the features themselves are cached as before."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from .sources import ImageSource


class LazyImages:
    """uint8 N×3×S×S images of ``source`` (at ``indices``), decoded per indexing call on
    ``threads`` threads. Indexing with an int gives one image, with a slice or an index array a
    stacked batch; :meth:`subset` selects without decoding."""
    dtype = torch.uint8  # what indexing returns: code that checks a decoded split's type accepts this
    ndim = 4

    def __init__(self, source: ImageSource, indices: Any = None, threads: int = 2):
        self.source = source
        self.indices = np.arange(len(source)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.threads = max(1, threads)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def shape(self) -> tuple[int, int, int, int]:
        s = self.source.image_size
        return (len(self), 3, s, s)

    def subset(self, idx: Any) -> "LazyImages":
        idx = idx.numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)
        return LazyImages(self.source, self.indices[idx], self.threads)

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, (int, np.integer)):
            return self.source[int(self.indices[key])][0]
        rows = self.indices[key.numpy() if isinstance(key, torch.Tensor) else key]
        if len(rows) == 0:
            return torch.zeros((0, *self.shape[1:]), dtype=torch.uint8)
        with ThreadPoolExecutor(self.threads) as pool:  # PIL's decode and resize release the GIL
            return torch.stack(list(pool.map(lambda i: self.source[int(i)][0], rows)))


class ConcatImages:
    """Splits joined without decoding them (fine-tuning's refit on train + val, two splits that
    may come from two sources): ``len``, and indexing with a slice or an index array, which
    decodes only the rows asked for."""
    dtype = torch.uint8
    ndim = 4

    def __init__(self, parts: list["LazyImages | torch.Tensor"]):
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.parts[0].shape[1:])

    def __getitem__(self, key: Any) -> torch.Tensor:
        if isinstance(key, slice):
            rows = np.arange(*key.indices(len(self)))
        else:
            rows = np.atleast_1d(key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)).astype(np.int64)
        out = torch.empty((len(rows), *self.shape[1:]), dtype=torch.uint8)
        part = np.searchsorted(self.starts, rows, side="right") - 1
        for k in np.unique(part):
            here = np.flatnonzero(part == k)
            out[torch.from_numpy(here)] = self.parts[k][torch.from_numpy(rows[here] - self.starts[k])]
        return out


def concat_images(parts: list["LazyImages | torch.Tensor"]) -> "torch.Tensor | ConcatImages":
    """torch.cat for decoded splits; lazy ones are joined without decoding."""
    if all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat(parts)
    return ConcatImages(parts)
