"""Reader for the packed JPEG kits written by scripts/build_data_kit.py.

A pack is an .npz (no pickles) holding all JPEG files concatenated in `data` with their
boundaries in `offsets`, so ~20k tiny images cost one file open instead of 20k.
"""
from __future__ import annotations

import hashlib
import io
from functools import cached_property
from pathlib import Path

import numpy as np
from PIL import Image


class PackedImages:
    """Random access to the images of one pack; decodes lazily with PIL."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with np.load(self.path, allow_pickle=False) as z:
            self._data = z["data"]
            self._offsets = z["offsets"]
            self.labels: np.ndarray = z["labels"]          # int64, -1 when unlabelled
            self.split: np.ndarray = z["split"]            # uint8, 0 train / 1 test
            self.classes: list[str] = [str(c) for c in z["classes"]]
            self.names: np.ndarray = z["names"]            # source path of each image
        if len(self._offsets) != len(self.labels) + 1:
            raise ValueError(f"{self.path}: offsets/labels length mismatch (corrupt pack?)")

    def __len__(self) -> int:
        return len(self.labels)

    def raw(self, i: int) -> bytes:
        """The stored JPEG bytes of image i."""
        return self._data[self._offsets[i]:self._offsets[i + 1]].tobytes()

    def decode(self, i: int) -> Image.Image:
        return Image.open(io.BytesIO(self.raw(i))).convert("RGB")

    @cached_property
    def sha256(self) -> str:
        """Content digest of the pack file (identity for caches)."""
        return file_sha256(self.path)


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
