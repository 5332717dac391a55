"""Time of the pretrained stylizer's two passes as SASSL runs them (BN folded, channels-last, no
grad): P (style embedding of the content) and T (the transformer), for one batch of crops at each
working size, on one thread; median and min of 5 after a warm-up.

    .venv/bin/python benchmarks/stylizer_passes.py [--crops 205] [--sizes 64 32]
"""
from __future__ import annotations

import argparse
import time

import torch

from workloads.stylize.magenta import architecture, pretrained_checkpoint
from workloads.stylize.model import fold_batch_norms, load_stylizer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crops", type=int, default=205, help="stylized crops per batch (p = 0.8 of 256)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 32])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    net = load_stylizer(pretrained_checkpoint(), architecture()).eval()
    net = fold_batch_norms(net).requires_grad_(False).to(memory_format=torch.channels_last)
    for size in args.sizes:
        x = torch.rand(args.crops, 3, size, size).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            z = net.embed(x)
            net.transformer(x, z)
            p, t = [], []
            for _ in range(5):
                t0 = time.perf_counter()
                net.embed(x)
                p.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                net.transformer(x, z)
                t.append(time.perf_counter() - t0)
        print(f"{size} px, {args.crops} crops: P median {sorted(p)[2]:.3f} s (min {min(p):.3f}); "
              f"T median {sorted(t)[2]:.3f} s (min {min(t):.3f})")


if __name__ == "__main__":
    main()
