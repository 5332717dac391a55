"""Streamed pretraining throughput with the JPEG decoding done by Ray Data tasks
(data.stream_decode: ray_data) against the worker's own threads (data.stream_decode: worker),
in one run, on a local Ray of --cpus CPUs.

A synthetic ImageFolder of 256-px JPEGs is packed (`sassl pack`'s code); each row then trains
MoCo v2 (ResNet-18, ImageNet stem) on streamed batches, both views cropped from the originals
at --size px:

  ceiling      the step alone on views decoded beforehand, 1 torch thread
  in line, 1   a 1-CPU worker: 1 torch thread, decoding on 1 thread between steps
  Ray Data     the same 1-CPU worker, decoding in Ray Data tasks on another CPU (1 each)
  in line, 2   a 2-CPU worker: 2 torch threads, decoding on 2 threads (the same 2 CPUs)

    .venv/bin/python benchmarks/ray_data_decode.py [--size 128] [--images 1500] [--steps 12]
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
from pathlib import Path

import torch

from workloads.augment import TwoViewAugment
from workloads.data import open_source
from workloads.data.shards import PackedShards, pack_split
from workloads.data.stream import ShardStream

from common import default_views, make_moco_v2, timed, train_step  # benchmarks/common.py
from data_memory import make_folder  # benchmarks/data_memory.py

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128, help="crop size (px)")
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray (the worker's and decoding's)")
    args = ap.parse_args()
    import ray

    from orchestrator.ray_data_stream import RayDataShardStream

    views = default_views()
    augment = TwoViewAugment(*views, out_size=args.size, mean=MEAN, std=STD)
    g = torch.Generator().manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        raw, packed = Path(tmp) / "raw", Path(tmp) / "packed"
        make_folder(raw, args.images)
        src = open_source("imagefolder", split="all", image_size=32, root=str(raw))
        src.split = "train"
        pack_split(src, packed, max_side=256, shard_size=250)
        shards = PackedShards(packed, "train")

        def stream(cls=ShardStream, threads=1, **kw):
            s = cls(shards, views=views, size=args.size, seed=0, rank=0, world=1, batch_per_rank=args.batch,
                    threads=threads, **kw)
            return itertools.chain.from_iterable(s.epoch(e) for e in itertools.count())

        def run(batches, threads: int) -> float:
            torch.set_num_threads(threads)
            model, opt = make_moco_v2(args.width)

            def step(x):
                with torch.no_grad():
                    v1, v2, _ = augment(x, generator=g)
                train_step(model, opt, v1, v2)
            return timed(step, ((x,) for x in batches), args.warmup, args.steps, args.batch)

        n = args.warmup + args.steps
        ready = list(itertools.islice(stream(), n))
        ceiling = run(ready, 1)
        inline1 = run(stream(threads=1), 1)
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        try:
            by_ray = run(stream(RayDataShardStream, threads=1, decode_cpus=1.0), 1)
        finally:
            ray.shutdown()
        inline2 = run(stream(threads=args.cpus), args.cpus)

    print(f"MoCo v2 step, ResNet-18 width {args.width}, {args.size}-px crops of 256-px JPEGs, batch {args.batch}, "
          f"{args.steps} timed steps after {args.warmup} warm-up; local Ray with {args.cpus} CPUs")
    print(f"  ceiling (views decoded beforehand), 1 thread : {ceiling:7.1f} images/s")
    print(f"  in line, 1-CPU worker (stream_decode worker) : {inline1:7.1f} images/s")
    print(f"  1-CPU worker + Ray Data decode tasks (1 CPU)  : {by_ray:7.1f} images/s")
    print(f"  in line, {args.cpus}-CPU worker                       : {inline2:7.1f} images/s")
    print(f"ratio Ray Data / in line on the worker's 1 CPU = {by_ray / inline1:.2f}")
    print(f"ratio Ray Data / in line on the same {args.cpus} CPUs    = {by_ray / inline2:.2f}")
    print(f"ratio in line 1 CPU / ceiling               = {inline1 / ceiling:.2f}")


if __name__ == "__main__":
    main()
