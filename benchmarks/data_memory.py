"""Peak memory of one pretraining epoch as the dataset grows: in memory vs streamed.

Builds two synthetic ImageFolders of 256-px JPEGs (by default 2,000 and 8,000 images), packs
each with `sassl pack`'s code, and runs one epoch of SimCLR pretraining (ResNet-18 at width
0.25, so the data path dominates) on each, once with data.loader: memory and once with
data.loader: stream, every run in a fresh process. Prints the peak RSS of each run and the
ratios large / small. Goal (issue 14): streaming's peak grows by at most 15 % from the small
folder to the large one, while the in-memory path grows with the data.

    .venv/bin/python benchmarks/data_memory.py [--sizes 2000 8000] [--image-size 64] [--work DIR]
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_folder(root: Path, n: int, side: int = 256, classes: int = 10) -> None:
    rng = np.random.default_rng(n)
    for k in range(n):
        d = root / f"c{k % classes}"
        d.mkdir(parents=True, exist_ok=True)
        # smooth noise (upsampled): compresses like a photo, not like white noise
        small = rng.integers(0, 256, (side // 8, side // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((side, side), Image.BILINEAR).save(d / f"{k}.jpg", quality=90)


def one_run(packed: str, loader: str, image_size: int) -> None:
    """In a fresh process: one epoch, then print the peak RSS (MB) as JSON."""
    from test_methods_pretrain import cell  # tests/: the small-config helper

    from workloads.data.prepare import pretrain_data
    from workloads.pretrain import pretrain
    from specs import changed  # tests/: specs with dotted fields replaced
    from workloads.spec import DatasetRef
    # width 0.25: at 0.125 the stem leaves 8 channels, and torch 2.14.1's CPU backward of the
    # strided 1x1 downsample conv on 8 channels-last channels at >= 48 px crashes (SIGSEGV)
    cfg = changed(cell("simclr"), {"data.pretrain": DatasetRef(name="packed", split="train", root=packed, download=False),
                                   "data.loader": loader, "data.image_size": image_size, "optim.batch_size": 128,
                                   "backbone.width": 0.25})
    t0 = time.perf_counter()
    pretrain(cfg, pretrain_data(cfg, None, threads=2))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"peak_mb": peak, "seconds": time.perf_counter() - t0}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs=2, default=[2000, 8000])
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--work", type=Path, default=None, help="keep the folders here (default: a temp dir)")
    ap.add_argument("--one-run", nargs=2, metavar=("PACKED", "LOADER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one_run:
        sys.path.insert(0, str(ROOT / "tests"))
        one_run(*args.one_run, args.image_size)
        return
    from workloads.data import open_source
    from workloads.data.shards import pack_split
    work = args.work or Path(tempfile.mkdtemp(prefix="data_memory-"))
    peaks: dict[tuple[str, int], float] = {}
    for n in args.sizes:
        raw, packed = work / f"raw{n}", work / f"packed{n}"
        if not (packed / "train" / "manifest.json").is_file():
            make_folder(raw, n)
            src = open_source("imagefolder", split="all", image_size=32, root=str(raw))
            src.split = "train"
            pack_split(src, packed, max_side=256, shard_size=500)
        for loader in ("memory", "stream"):
            out = subprocess.run([sys.executable, __file__, "--one-run", str(packed), loader, "--image-size",
                                  str(args.image_size)], capture_output=True, text=True, check=True, cwd=ROOT)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            peaks[(loader, n)] = r["peak_mb"]
            print(f"{loader:6s} {n:6d} images: peak RSS {r['peak_mb']:7.0f} MB, epoch {r['seconds']:6.1f} s", flush=True)
    small, large = args.sizes
    for loader in ("memory", "stream"):
        print(f"{loader}: peak RSS large / small = {peaks[(loader, large)] / peaks[(loader, small)]:.3f}")
    print(f"goal: stream ratio <= 1.15 -> {'met' if peaks[('stream', large)] / peaks[('stream', small)] <= 1.15 else 'NOT met'}")


if __name__ == "__main__":
    main()
