"""Micro-benchmark of the batched two-view augmentation vs per-image torchvision v2.

    .venv/bin/python benchmarks/augment_micro.py [--batch 256] [--size 32] [--iters 50]

Prints milliseconds per batch (uint8 B x 3 x S x S -> two normalised float
views) after warm-up, with torch.set_num_threads(--threads, default 2):

* batched TwoViewAugment (both views), each view alone, and with an identity
  left_hook (flip no longer folded into the crop);
* the crop+resize backends (interpolation-matrix einsum used by the module,
  torchvision.ops.roi_align(aligned=True), F.grid_sample) with their max/mean
  error against torchvision's per-image resized_crop(antialias=True);
* per-image torchvision.transforms.v2 pipelines on the same batch (uint8 tensors,
  and PIL images as a DataLoader worker would see CIFAR), both views.

Timings are median and min over --iters runs: on a shared machine the median
moves with the load of other processes; the min is the uncontended cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Callable

import torch
import torch.nn.functional as F

from workloads.augment import TwoViewAugment
from workloads.augment import kernels as A
from workloads.augment.two_views import augment_view
from workloads.spec import ViewConfig

from common import default_views  # noqa: E402 - benchmarks/common.py


def timeit(fn: Callable[[], object], iters: int, warmup: int) -> tuple[float, float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3, min(ts) * 1e3


def row(name: str, med: float, mn: float, extra: str = "") -> None:
    print(f"  {name:44s} median {med:8.2f} ms   min {mn:8.2f} ms {extra}")


def torchvision_pipeline(cfg: ViewConfig, size: int, uint8: bool):
    from torchvision.transforms import v2

    k = cfg.blur_kernel_size(size)
    # uint8 solarize compares raw values: 0.5 -> 128 (x/255 >= 0.502)
    thr = round(cfg.solarize_threshold * 255) if uint8 else cfg.solarize_threshold
    steps = [
        v2.RandomResizedCrop(size, scale=cfg.crop_scale, ratio=cfg.crop_ratio, antialias=True),
        v2.RandomHorizontalFlip(cfg.flip_p),
        v2.RandomApply([v2.ColorJitter(cfg.brightness, cfg.contrast, cfg.saturation, cfg.hue)], p=cfg.jitter_p),
        v2.RandomGrayscale(cfg.grayscale_p),
        v2.RandomApply([v2.GaussianBlur(k, sigma=cfg.blur_sigma)], p=cfg.blur_p),
        v2.RandomSolarize(thr, p=cfg.solarize_p),
        v2.ToImage(),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(A.IMAGENET_MEAN, A.IMAGENET_STD),
    ]
    return v2.Compose(steps)


# ------------------------------------------------------- alternative crop backends
def crop_roi_align(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    from torchvision.ops import roi_align

    b = boxes.float()
    idx = torch.arange(x.shape[0], dtype=torch.float32)
    rois = torch.stack([idx, b[:, 1], b[:, 0], b[:, 1] + b[:, 3], b[:, 0] + b[:, 2]], dim=1)
    xf = x.float() / 255.0 if x.dtype == torch.uint8 else x
    return roi_align(xf, rois, (size, size), spatial_scale=1.0, sampling_ratio=-1, aligned=True)


def crop_grid_sample(x: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    B, _, H, W = x.shape
    b = boxes.float()
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = b[:, 3] / W
    theta[:, 0, 2] = (2 * b[:, 1] + b[:, 3]) / W - 1
    theta[:, 1, 1] = b[:, 2] / H
    theta[:, 1, 2] = (2 * b[:, 0] + b[:, 2]) / H - 1
    grid = F.affine_grid(theta, [B, 3, size, size], align_corners=False)
    xf = x.float() / 255.0 if x.dtype == torch.uint8 else x
    return F.grid_sample(xf, grid, mode="bilinear", padding_mode="border", align_corners=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32, help="input and output size (CIFAR: 32)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--baseline-iters", type=int, default=5)
    ap.add_argument("--no-baseline", action="store_true", help="skip the per-image torchvision pipelines")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    B, S = args.batch, args.size
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (B, 3, S, S), dtype=torch.uint8, generator=g)
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {B}x3x{S}x{S} uint8, "
        f"load average {os.getloadavg()[0]:.2f}"
    )

    aug = TwoViewAugment(*default_views(), out_size=S)
    print("batched (this module):")
    med, mn = timeit(lambda: aug(x, generator=g), args.iters, args.warmup)
    row("TwoViewAugment, both views", med, mn, f"({mn / 2:.2f} ms/view at min)")
    for name, cfg in (("view 1 only (blur p 1)", aug.view1), ("view 2 only (blur 0.1, solarize 0.2)", aug.view2)):
        med, mn = timeit(lambda: augment_view(x, cfg, S, generator=g), args.iters, args.warmup)
        row(name, med, mn)
    med, mn = timeit(lambda: aug(x, generator=g, left_hook=lambda t: t), args.iters, args.warmup)
    row("both views, identity left_hook", med, mn)

    print("crop + resize backends (same boxes; error vs torchvision resized_crop antialias=True, in [0,1] units):")
    import torchvision.transforms.v2.functional as TF

    boxes = A.sample_crop_boxes(B, S, S, generator=g)
    ref = torch.stack(
        [TF.resized_crop(xi.float() / 255.0, *bx.tolist(), [S, S], antialias=True) for xi, bx in zip(x, boxes)]
    )
    for name, fn in (
        ("interpolation matrices (einsum) [used]", lambda: A.resized_crop(x, boxes, S)),
        ("torchvision.ops.roi_align aligned=True", lambda: crop_roi_align(x, boxes, S)),
        ("F.grid_sample bilinear border", lambda: crop_grid_sample(x, boxes, S)),
    ):
        err = (fn() - ref).abs()
        med, mn = timeit(fn, args.iters, args.warmup)
        row(name, med, mn, f"err max {err.max():.1e} mean {err.mean():.1e}")

    if args.no_baseline:
        return
    print("per-image torchvision.transforms.v2 (two views, same batch):")
    tv1, tv2 = torchvision_pipeline(aug.view1, S, True), torchvision_pipeline(aug.view2, S, True)

    def per_image_tensor():
        return (torch.stack([tv1(xi) for xi in x]), torch.stack([tv2(xi) for xi in x]))

    med, mn = timeit(per_image_tensor, args.baseline_iters, 1)
    row("uint8 tensors, per image", med, mn)

    from torchvision.transforms.v2.functional import to_pil_image

    pils = [to_pil_image(xi) for xi in x]
    pv1, pv2 = torchvision_pipeline(aug.view1, S, True), torchvision_pipeline(aug.view2, S, True)

    def per_image_pil():
        return (torch.stack([pv1(p) for p in pils]), torch.stack([pv2(p) for p in pils]))

    med, mn = timeit(per_image_pil, args.baseline_iters, 1)
    row("PIL images, per image", med, mn)


if __name__ == "__main__":
    main()
