"""MoCo v2 pretraining throughput (images/s) on real CIFAR-10 kit images, in one run:

  compute   model step only, on views augmented once beforehand (the ceiling)
  batched   sassl's step: both views augmented as whole batches on the training device
  per-image torchvision.transforms.v2 per image in DataLoader workers (the usual recipe)
  streamed  sassl's step fed by data.loader: stream (packed shards, crops from the originals)

Step = query forward + backward on view 1, key-encoder forward on view 2, InfoNCE,
optimizer step, EMA update. ResNet-18, ImageNet stem, 32 px, batch 256 by default.

    .venv/bin/python benchmarks/pretrain_throughput.py [--steps 20] [--width 1.0]
"""
from __future__ import annotations

import argparse
import itertools
import tempfile
import time

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from workloads.augment import TwoViewAugment
from workloads.data import load_in_memory, open_source
from workloads.data.shards import PackedShards, pack_split
from workloads.data.stream import ShardStream

from common import default_views, make_moco_v2, timed, train_step  # noqa: E402 - benchmarks/common.py

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def per_image_pipeline(size: int, blur_p: float, solarize_p: float):
    k = max(3, int(0.1 * size) | 1)
    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(0.08, 1.0), antialias=True), v2.RandomHorizontalFlip(),
        v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8), v2.RandomGrayscale(0.2),
        v2.RandomApply([v2.GaussianBlur(k, (0.1, 2.0))], p=blur_p), v2.RandomSolarize(0.5, p=solarize_p),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])


class TwoViews(Dataset):
    def __init__(self, images, size):
        self.images, self.t1, self.t2 = images, per_image_pipeline(size, 1.0, 0.0), per_image_pipeline(size, 0.1, 0.2)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.images[i]
        return self.t1(x), self.t2(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--loader-workers", type=int, default=2)
    ap.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    size, b, n = 32, args.batch, args.steps + args.warmup
    images, _ = load_in_memory(open_source("cifar10-kit", split="train", image_size=size), progress=False)
    g = torch.Generator().manual_seed(0)
    augment = TwoViewAugment(*default_views(), out_size=size, mean=MEAN, std=STD)

    def batch_indices(i):
        return torch.arange(i * b, (i + 1) * b) % len(images)

    # 1. compute ceiling: views prepared before timing
    model, opt = make_moco_v2(args.width, args.channels_last)
    pre = []
    with torch.no_grad():
        for i in range(n):
            v1, v2_, _ = augment(images[batch_indices(i)], generator=g)
            pre.append((v1, v2_))
    compute = timed(lambda v1, v2_: train_step(model, opt, v1, v2_), pre, args.warmup, args.steps, b)

    # 2. sassl: batched augmentation inside the step
    model, opt = make_moco_v2(args.width, args.channels_last)

    def batched_step(x):
        with torch.no_grad():
            v1, v2_, _ = augment(x, generator=g)
        train_step(model, opt, v1, v2_)
    batched = timed(batched_step, [(images[batch_indices(i)],) for i in range(n)], args.warmup, args.steps, b)

    # 3. per-image transforms in DataLoader workers
    model, opt = make_moco_v2(args.width, args.channels_last)
    loader = DataLoader(TwoViews(images, size), batch_size=b, shuffle=True, drop_last=True,
                        num_workers=args.loader_workers, persistent_workers=args.loader_workers > 0)
    per_image = timed(lambda v1, v2_: train_step(model, opt, v1, v2_), iter(loader), args.warmup, args.steps, b)

    # 4. streamed (data.loader: stream): packed shards, both views cropped from the original on
    # the fly by the stream's threads, in line with the step (as pretrain does on a CPU)
    with tempfile.TemporaryDirectory() as tmp:
        pack_split(open_source("cifar10-kit", split="train", image_size=size), tmp, shard_size=1000, max_side=size)
        stream = ShardStream(PackedShards(tmp, "train"), views=(augment.view1, augment.view2), size=size, seed=0,
                             rank=0, world=1, batch_per_rank=b, threads=args.threads)
        model, opt = make_moco_v2(args.width, args.channels_last)
        batches = itertools.chain.from_iterable(stream.epoch(e) for e in itertools.count())
        streamed = timed(batched_step, ((v,) for v in batches), args.warmup, args.steps, b)

    # augmentation alone (both views), for the overhead figure
    t0 = time.perf_counter()
    with torch.no_grad():
        for i in range(args.steps):
            augment(images[batch_indices(i)], generator=g)
    aug_only = args.steps * b / (time.perf_counter() - t0)

    print(f"MoCo v2 step, ResNet-18 (width {args.width}, ImageNet stem, channels_last {args.channels_last}), {size} px, batch {b}, "
          f"{args.threads} threads, {args.steps} timed steps after {args.warmup} warm-up")
    print(f"  compute ceiling (pre-augmented views) : {compute:8.1f} images/s")
    print(f"  sassl batched on-device augmentation  : {batched:8.1f} images/s")
    print(f"  per-image v2 transforms, {args.loader_workers} workers   : {per_image:8.1f} images/s")
    print(f"  streamed from packed shards           : {streamed:8.1f} images/s")
    print(f"  augmentation alone (two views)        : {aug_only:8.1f} images/s")
    print(f"ratio batched / compute ceiling   = {batched / compute:.2f}")
    print(f"ratio batched / per-image loader  = {batched / per_image:.2f}")
    print(f"ratio streamed / batched in memory = {streamed / batched:.2f}")
    print(f"goal >= 600 images/s batched: {'met' if batched >= 600 else 'NOT met'}")
    print(f"goal streamed >= 0.8 x batched: {'met' if streamed >= 0.8 * batched else 'NOT met'}")


if __name__ == "__main__":
    main()
