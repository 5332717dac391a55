"""What data a number was computed on, as a short digest that does not depend on where the data
lies: the same dataset on two machines (other paths, other mtimes) gets the same digest, another
copy with a file added, removed or resized does not.

- an embedded kit: the SHA-256 of its pack file, with the split;
- a packed split (`sassl pack`): the hash of its manifest's shard list (every shard's hash);
- a folder of images, or a torchvision root: a cheap fingerprint, not a content hash (hashing
  ImageNet's 150 GB per invocation would cost minutes): the number of files, their total size,
  and a hash of the relative names and sizes of a fixed sample of them.
Sources (registry.open_source) are opened, never decoded, to compute it."""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .sources import (ImageFolderSource, ImageSource, PackedShardsSource, PackSource, StyleFolderSource,
                      TinyImageNetSource, TorchvisionSource)

SAMPLE = 1000  # files whose names and sizes enter a folder's digest (evenly spaced in sorted order)


@dataclass(frozen=True)
class Fingerprint:
    kind: str        # "kit", "packed", "folder"
    digest: str      # 16 hex digits
    files: int | None = None
    bytes: int | None = None

    def text(self) -> str:
        """"kit:1a2b…", "folder:1a2b… (1,234 files, 56.7 MB)": the tag value a reader sees."""
        out = f"{self.kind}:{self.digest}"
        if self.files is not None:
            out += f" ({self.files:,} files, {self.bytes / 1e6:.1f} MB)"
        return out


def _hash(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(str(p).encode())
        h.update(b"\0")
    return h.hexdigest()[:16]


def folder_fingerprint(entries: list[tuple[str, int]]) -> Fingerprint:
    """From (relative name, size) of every file."""
    entries = sorted(entries)
    step = max(1, len(entries) // SAMPLE)
    sample = entries[::step][:SAMPLE]
    total = sum(size for _, size in entries)
    return Fingerprint("folder", _hash(len(entries), total, *(f"{n}:{s}" for n, s in sample)), len(entries), total)


def walk(root: str | Path) -> list[tuple[str, int]]:
    """(relative name, size) of every file under ``root``, hidden files and folders left out."""
    root = str(root)
    out = []
    for here, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for f in files:
            if not f.startswith("."):
                path = os.path.join(here, f)
                try:
                    out.append((os.path.relpath(path, root), os.path.getsize(path)))
                except OSError:  # vanished while walking
                    pass
    return out


def fingerprint(src: ImageSource) -> Fingerprint:
    """The digest of an opened source (see the module docstring)."""
    if isinstance(src, PackSource):
        return Fingerprint("kit", _hash(src.pack.sha256, src.name, src.split))
    if isinstance(src, PackedShardsSource):
        return Fingerprint("packed", _hash(src.shards.identity(), src.split))
    if isinstance(src, (ImageFolderSource, StyleFolderSource, TinyImageNetSource)):  # files listed when opened
        fp = folder_fingerprint([(str(f.relative_to(src.root)), f.stat().st_size) for f in src.files])
        return Fingerprint("folder", _hash(fp.digest, src.name), fp.files, fp.bytes)
    if isinstance(src, TorchvisionSource):
        fp = folder_fingerprint(walk(src.root))
        return Fingerprint("folder", _hash(fp.digest, src.name, src.split), fp.files, fp.bytes)
    raise TypeError(f"no fingerprint for {type(src).__name__}")
