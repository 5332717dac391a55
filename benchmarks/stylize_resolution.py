"""At which size should the pretrained stylizer work on the kit's 32-px crops?

For each working size S (32 = stylize the crops directly; larger = upsample, stylize,
downsample back with antialiasing), on real CIFAR-10 kit test images and the kit's
paintings as external styles (embedded at 64 px, their stored size), all in one run:

  keep α=0    PSNR / SSIM of the output against the content when z = P(content): what the
              stylizer destroys even with the image's own style
  keep α=0.2  the same at SASSL's typical feature blending (α ~ U(0.1, 0.3))
  style α=1   colour-statistics distance (per-channel mean and std) of the output to the
              style image, as a fraction of the content's own distance to it (lower =
              colours moved further towards the style)
  images/s    stylizer throughput at that size (p = 1, all images stylized)

    .venv/bin/python benchmarks/stylize_resolution.py [--n 512] [--sizes 32 64 96 128]
"""
from __future__ import annotations

import argparse
import time

import torch

from workloads.data.prepare import load_images
from workloads.spec import DatasetRef
from workloads.stylize import magenta
from workloads.stylize.augment import StyleAugment
from workloads.stylize.model import load_stylizer
from workloads.stylize.quality import colour_distance, psnr, ssim


def kit(name: str, split: str, size: int) -> torch.Tensor:
    return load_images(DatasetRef(name=name, split=split, root=None, download=False), size, None)[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=512, help="content images")
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 96, 128])
    ap.add_argument("--style-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache-dir", default="~/.cache/sassl/weights")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = load_stylizer(magenta.pretrained_checkpoint(cache_dir=args.cache_dir), magenta.architecture()).eval()
    g = torch.Generator().manual_seed(0)
    content = kit("cifar10-kit", "test", 32)
    content = content[torch.randperm(len(content), generator=g)[:args.n]].float() / 255
    styles = kit("paintings-kit", "all", args.style_size).float() / 255
    with torch.no_grad():
        bank = net.embed(styles)
    pick = torch.randint(len(styles), (len(content),), generator=g)
    style_images = torch.nn.functional.interpolate(styles[pick], size=(32, 32), mode="bilinear",
                                                   antialias=True, align_corners=False)
    base = colour_distance(content, style_images)
    print(f"{len(content)} CIFAR-10 kit test images at 32 px; styles: {len(styles)} kit paintings "
          f"embedded at {args.style_size} px; {args.threads} threads")
    print("| working size | PSNR α=0 | SSIM α=0 | PSNR α=0.2 | SSIM α=0.2 | colour distance to style α=1 "
          "(fraction of content's) | images/s |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        # the same resize path as training (StyleAugment.resize); pairs image i with style i
        hook = StyleAugment(net, p=1.0, source="in_batch", size=None if size == 32 else size)
        row = []
        for alpha in (0.0, 0.2, 1.0):
            t0 = time.perf_counter()
            out = torch.cat([_stylize(hook, content[i:i + 128], bank[pick[i:i + 128]], alpha)
                             for i in range(0, len(content), 128)])
            seconds = time.perf_counter() - t0
            if alpha < 1:
                row += [f"{psnr(out, content).mean():.2f}", f"{ssim(out, content).mean():.3f}"]
            else:
                row.append(f"{(colour_distance(out, style_images) / base).mean():.3f}")
                row.append(f"{len(content) / seconds:,.0f}")
        print(f"| {size} px | " + " | ".join(row) + " |")


@torch.no_grad()
def _stylize(hook: StyleAugment, x: torch.Tensor, z_s: torch.Tensor, alpha: float) -> torch.Tensor:
    work = hook.resize(x)
    z_c = hook.net.embed(work)
    y = hook.net.transformer(work, alpha * z_s + (1 - alpha) * z_c)
    return hook.resize(y, x.shape[-2:]).clamp(0, 1)


if __name__ == "__main__":
    main()
