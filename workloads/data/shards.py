"""Packed shards: a dataset split as Parquet files of re-encoded JPEG bytes (`sassl pack`).

Large datasets (ImageNet's 1.28 M images) do not fit decoded in memory, and millions of small
files are slow to list and open on shared filesystems. A packed split is a folder

    <root>/<split>/shard-00000.parquet ...   rows: index (in the source), label, jpeg, height, width
    <root>/<split>/manifest.json             source, settings, counts per class, shard hashes

The rows are written in a seeded random order, so every shard mixes the classes (a streaming
reader that shuffles shards and a small buffer then sees a well-mixed stream), and each image
is re-encoded with its shorter side at most ``max_side`` (the random resized crop is later taken
from this image, not from a square thumbnail). Packing is resumable: shards are written
atomically, in order, and a rerun keeps the finished ones whose hash matches the progress file
(or, after a finished pack, the manifest).
"""
from __future__ import annotations

import bisect
import hashlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from .errors import DatasetError
from .packed import file_sha256
from .remote import filesystem, is_uri

FORMAT = "sassl-shards/1"
MANIFEST = "manifest.json"
PROGRESS = ".progress.json"
COLUMNS = ("index", "label", "jpeg", "height", "width")


def encode_jpeg(img: Image.Image, max_side: int, quality: int) -> tuple[bytes, int, int]:
    """RGB JPEG bytes of ``img`` with its shorter side at most ``max_side`` (aspect kept)."""
    img = img.convert("RGB") if img.mode != "RGB" else img
    w, h = img.size
    if min(w, h) > max_side:
        scale = max_side / min(w, h)
        img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC, reducing_gap=3.0)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), img.size[1], img.size[0]


@dataclass
class PackReport:
    written: int            # shards written by this call
    reused: int             # shards kept from an earlier, interrupted call
    images: int             # rows in the split
    skipped: list[str]      # images that could not be read (their reason)
    folder: Path


def check_settings(max_side: int, quality: int, shard_size: int) -> None:
    if max_side < 8 or not 1 <= quality <= 100 or shard_size < 1:
        raise ValueError(f"pack: needs max_side >= 8, quality in 1..100 and shard_size >= 1 "
                         f"(got {max_side}, {quality}, {shard_size})")


def pack_split(source, out_root: str | Path, *, max_side: int = 320, quality: int = 90,
               shard_size: int = 1024, seed: int = 0, describe: dict[str, Any] | None = None,
               progress: Callable[[int], None] | None = None) -> PackReport:
    """Write ``source`` (an ImageSource: its ``image(i)`` gives the original picture) as packed
    shards under ``out_root/<source.split>``; ``describe`` (the dataset reference) goes into the
    manifest. ``progress(n)`` is called as images are done (a progress bar's update)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_settings(max_side, quality, shard_size)
    folder = Path(out_root).expanduser() / source.split
    folder.mkdir(parents=True, exist_ok=True)
    settings = {"max_side": max_side, "quality": quality, "shard_size": shard_size, "seed": seed,
                "source_identity": source.identity(), "count": len(source)}
    progress_file = folder / PROGRESS
    done: dict[str, dict] = {}
    # an interrupted pack left its progress file; a finished one its manifest
    for state_file in (progress_file, folder / MANIFEST):
        state = json.loads(state_file.read_text()) if state_file.is_file() else {}
        if state.get("settings") == settings:  # same source and settings: keep what was finished
            done = {s["file"]: s for s in state["shards"]
                    if (folder / s["file"]).is_file() and file_sha256(folder / s["file"]) == s["sha256"]}
            break
    order = np.random.default_rng(seed).permutation(len(source))
    shards, skipped, written = [], [], 0
    for k, start in enumerate(range(0, len(order), shard_size)):
        name = f"shard-{k:05d}.parquet"
        rows = order[start:start + shard_size]
        if name in done:
            shards.append(done[name])
            skipped += done[name]["skipped"]
            if progress:
                progress(len(rows))
            continue
        cols: dict[str, list] = {c: [] for c in COLUMNS}
        bad = []
        for i in rows.tolist():
            try:
                data, h, w = encode_jpeg(source.image(i), max_side, quality)
            except Exception as e:  # a corrupt or truncated file: counted, not fatal
                bad.append(f"{source.describe(i)}: {e}")
                continue
            finally:
                if progress:
                    progress(1)
            cols["index"].append(i)
            cols["label"].append(int(source.labels[i]))
            cols["jpeg"].append(data)
            cols["height"].append(h)
            cols["width"].append(w)
        table = pa.table({"index": pa.array(cols["index"], pa.int64()), "label": pa.array(cols["label"], pa.int64()),
                          "jpeg": pa.array(cols["jpeg"], pa.binary()), "height": pa.array(cols["height"], pa.int32()),
                          "width": pa.array(cols["width"], pa.int32())})
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        pq.write_table(table, tmp, row_group_size=256, compression="none")  # JPEG is compressed already
        os.replace(tmp, folder / name)
        shards.append({"file": name, "rows": table.num_rows, "sha256": file_sha256(folder / name), "skipped": bad})
        skipped += bad
        written += 1
        _write_json(progress_file, {"settings": settings, "shards": shards})
    labels = np.concatenate([pq.read_table(folder / s["file"], columns=["label"])["label"].to_numpy()
                             for s in shards]) if shards else np.zeros(0, np.int64)
    classes = list(source.classes)
    per_class = {(classes[c] if 0 <= c < len(classes) else str(c)): int(n)
                 for c, n in zip(*np.unique(labels, return_counts=True))}
    _write_json(folder / MANIFEST, {
        "format": FORMAT, "source": describe or {"name": source.name, "split": source.split},
        "settings": settings, "classes": classes, "images": int(len(labels)), "per_class": per_class,
        "skipped": skipped, "shards": shards})
    progress_file.unlink(missing_ok=True)
    return PackReport(written, len(shards) - written, int(len(labels)), skipped, folder)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


class PackedShards:
    """Read access to one packed split: labels up front, JPEG bytes shard by shard (the shard
    last read stays in memory, so a sequential pass reads each file once). ``root`` is a folder
    or an object-store URI (``s3://bucket/prefix``, through pyarrow's filesystems and their usual
    variables): the shards are then read from the store as they are needed, as from a folder."""

    def __init__(self, root: str | Path, split: str):
        import pyarrow.fs as pafs
        self.root, self.split = str(root), split
        self.fs, base = filesystem(self.root)
        where = f"{base}/{split}"
        self.folder = f"{self.root.rstrip('/')}/{split}" if is_uri(self.root) else where  # how messages name it
        if self.fs.get_file_info(f"{where}/{MANIFEST}").type != pafs.FileType.File:
            listed = self.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True))
            have = sorted(i.base_name for i in listed if i.type == pafs.FileType.Directory
                          and self.fs.get_file_info(f"{i.path}/{MANIFEST}").type == pafs.FileType.File)
            hint = f"packed splits there: {', '.join(have)}" if have else "run `sassl pack` to make one"
            raise DatasetError(f"packed: no packed split {split!r} at {self.folder} (no {MANIFEST}); {hint}")
        with self.fs.open_input_stream(f"{where}/{MANIFEST}") as f:
            self.manifest = json.loads(f.read())
        if self.manifest.get("format") != FORMAT:
            raise DatasetError(f"packed: {self.folder}/{MANIFEST} is not a {FORMAT} manifest")
        self.files = [f"{where}/{s['file']}" for s in self.manifest["shards"]]
        missing = [i.path for i in self.fs.get_file_info(self.files) if i.type != pafs.FileType.File]
        if missing:
            raise DatasetError(f"packed: {len(missing)} shard file(s) listed in {self.folder}/{MANIFEST} are "
                               f"missing: {', '.join(missing[:3])}")
        self.classes: list[str] = list(self.manifest["classes"])
        self.offsets = np.cumsum([0] + [s["rows"] for s in self.manifest["shards"]])
        self._cached: tuple[int, list[bytes]] | None = None

    def read(self, file: str, columns: list[str]):
        """One shard's columns (a pyarrow Table), from the folder or the store."""
        import pyarrow.parquet as pq
        return pq.read_table(file, columns=columns, filesystem=self.fs)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def column(self, name: str) -> np.ndarray:
        parts = [self.read(f, [name])[name].to_numpy() for f in self.files]
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def jpeg(self, i: int) -> bytes:
        k = bisect.bisect_right(self.offsets, i) - 1
        cached = self._cached  # read once: another thread (LazyImages decodes on several) may replace it
        if cached is None or cached[0] != k:
            cached = (k, self.read(self.files[k], ["jpeg"])["jpeg"].to_pylist())
            self._cached = cached
        return cached[1][i - int(self.offsets[k])]

    def identity(self) -> str:
        """Changes whenever a shard does (the manifest lists every shard's hash)."""
        return hashlib.sha256(json.dumps(self.manifest["shards"], sort_keys=True).encode()).hexdigest()[:16]
