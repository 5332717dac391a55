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
