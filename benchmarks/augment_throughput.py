"""SASSL's cost (paper table 9), all measured in one run on real CIFAR-10 kit images:

  augmentation  augmented images/s of the default two-view pipeline vs the SASSL one
                (mean over repeated batches, as the paper measures)
  steps         pretraining steps/s with SASSL / without, stylization inline or prefetched
                one batch ahead in a thread (on a GPU: a separate CUDA stream)
  bound         the CPU compute bound of a SASSL step: default step time + the stylizer's
                time alone on the same images; the SASSL step should cost <= 1.1 x that

MoCo v2 step on ResNet-18 (ImageNet stem), 32 px, batch 256, p = 0.8, external style bank.
Stylizers: the pretrained Magenta port (the default of every SASSL YAML) at each working size
(32 = the crops stylized directly; 64 = upsampled, stylized, brought back: the default), and
optionally randomly initialised self-trained architectures of the given widths.

    .venv/bin/python benchmarks/augment_throughput.py [--steps 10] [--work-sizes 32 64] [--widths 1.0]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from workloads.augment import TwoViewAugment
from workloads.augment.prefetch import Prefetcher, make_views
from workloads.data import load_in_memory, open_source

from common import default_views, make_moco_v2, train_step  # noqa: E402 - benchmarks/common.py
from workloads.stylize import magenta
from workloads.stylize.augment import StyleAugment
from workloads.stylize.model import StyleTransferNet, load_stylizer


def seconds_per_step(batches, augment, hook, model, opt, prefetch: bool, warmup: int) -> float:
    gen = torch.Generator().manual_seed(0)
    work = lambda x: make_views(augment, x, gen, hook)  # noqa: E731
    it = Prefetcher(batches, work, torch.device("cpu")) if prefetch else (work(x) for x in batches)
    times, last = [], None
    for i, (_, v1, v2, _) in enumerate(it):
        if i == warmup:
            last = time.perf_counter()
        train_step(model, opt, v1, v2)
        if i >= warmup:
            now = time.perf_counter()
            times.append(now - last)
            last = now
    return statistics.mean(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--aug-repeats", type=int, default=20)
    ap.add_argument("--work-sizes", type=int, nargs="*", default=[32, 64])
    ap.add_argument("--widths", type=float, nargs="*", default=[])
    ap.add_argument("--cache-dir", default="~/.cache/sassl/weights")
    ap.add_argument("--backbone-width", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    b, size = args.batch, 32
    images, _ = load_in_memory(open_source("cifar10-kit", split="train", image_size=size), progress=False)
    n = args.steps + args.warmup
    batches = [images[(torch.arange(b) + i * b) % len(images)] for i in range(max(n, args.aug_repeats))]
    augment = TwoViewAugment(*default_views(), out_size=size)
    bank = torch.randn(300, 100)

    def aug_rate(hook) -> float:
        gen = torch.Generator().manual_seed(0)
        make_views(augment, batches[0], gen, hook)
        t = []
        for x in batches[:args.aug_repeats]:
            t0 = time.perf_counter()
            make_views(augment, x, gen, hook)
            t.append(b / (time.perf_counter() - t0))
        return statistics.mean(t)

    model, opt = make_moco_v2(args.backbone_width)
    default_step = seconds_per_step(batches[:n], augment, None, model, opt, False, args.warmup)
    default_aug = aug_rate(None)
    print(f"MoCo v2 step, ResNet-18 width {args.backbone_width} (ImageNet stem), {size} px, batch {b}, "
          f"{args.threads} threads; {args.steps} timed steps after {args.warmup} warm-up; "
          f"augmentation mean over {args.aug_repeats} batches")
    print(f"default: {1 / default_step:.2f} steps/s ({b / default_step:.0f} images/s); "
          f"augmentation {default_aug:.0f} images/s")
    stylizers = [(f"pretrained {magenta.MAGENTA_V1}, working size {ws} px",
                  load_stylizer(magenta.pretrained_checkpoint(cache_dir=args.cache_dir), magenta.architecture()),
                  None if ws == size else ws) for ws in args.work_sizes]
    for w in args.widths:
        torch.manual_seed(0)
        stylizers.append((f"random self-trained architecture, width {w}", StyleTransferNet(width=w), None))
    for label, net, work in stylizers:
        net = net.eval()
        hook = StyleAugment(net, p=0.8, source="external", bank=bank, generator=torch.Generator().manual_seed(0),
                            size=work)
        sassl_aug = aug_rate(hook)
        # the stylizer alone on the p·B images it would stylize (resizing included), for the compute bound
        x01 = batches[0][: int(0.8 * b)].float() / 255
        with torch.no_grad():
            def stylize_alone():
                xw = hook.resize(x01)
                z = net.embed(xw)
                hook.resize(net.transformer(xw, z, z_content=z), x01.shape[-2:])
            stylize_alone()
            t0 = time.perf_counter()
            for _ in range(3):
                stylize_alone()
            stylizer_s = (time.perf_counter() - t0) / 3
        model, opt = make_moco_v2(args.backbone_width)
        inline = seconds_per_step(batches[:n], augment, hook, model, opt, False, args.warmup)
        model, opt = make_moco_v2(args.backbone_width)
        ahead = seconds_per_step(batches[:n], augment, hook, model, opt, True, args.warmup)
        bound = default_step + stylizer_s
        best = min(inline, ahead)
        print(f"{label}:")
        print(f"  augmentation images/s  SASSL {sassl_aug:.0f} vs default {default_aug:.0f}: "
              f"ratio {sassl_aug / default_aug:.3f}")
        print(f"  steps/s  SASSL inline {1 / inline:.2f}, prefetched {1 / ahead:.2f}, default {1 / default_step:.2f}: "
              f"ratio SASSL/default = {default_step / best:.2f} (inline {default_step / inline:.2f}, "
              f"prefetched {default_step / ahead:.2f})")
        print(f"  compute bound: default step {default_step * 1000:.0f} ms + stylizer alone {stylizer_s * 1000:.0f} ms "
              f"= {bound * 1000:.0f} ms; SASSL step {best * 1000:.0f} ms = {best / bound:.2f} x bound "
              f"({'within' if best <= 1.1 * bound else 'OVER'} the 1.1 x goal)")


if __name__ == "__main__":
    main()
