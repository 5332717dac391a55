"""How much GPU memory a MoCo v3 step on a Vision Transformer needs per image, measured on CPU:
the bytes autograd keeps for backward in one training step (both views through the online
backbone, projector and predictor; the momentum tower runs without gradients) under bf16
autocast, per image, and what that makes at a per-GPU batch, plus the weights, gradients and
AdamW's two moments. It sizes the paper profiles' `cluster.num_workers` (SASSL table 11's ViT-B/16,
CASSLE's MoCo-v3 rows' ViT-S/16) without a GPU.

    .venv/bin/python benchmarks/vit_memory.py [--arch vit_base] [--size 224] [--batch 2] [--per-gpu 256 512]

Caveats: CPU kernels may keep other tensors than CUDA's (attention in particular); the count adds
every saved tensor, so a storage saved twice counts twice (an upper bound); the allocator's
overhead and the stylizer are not in it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when not installed

from workloads.methods import build_method  # noqa: E402
from workloads.models.backbones import build_backbone  # noqa: E402

HEADS = dict(proj_hidden_dim=4096, proj_dim=256, proj_layers=3, pred_hidden_dim=4096, temperature=0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="vit_base", choices=["vit_tiny", "vit_small", "vit_base"])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--patch", type=int, default=16)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--per-gpu", type=int, nargs="+", default=[256, 512])
    args = ap.parse_args()
    torch.manual_seed(0)
    model = build_method("moco_v3", build_backbone(args.arch, image_size=args.size, patch_size=args.patch), **HEADS)
    x1, x2 = (torch.randn(args.batch, 3, args.size, args.size) for _ in range(2))
    saved = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal saved
        saved += t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            model(x1, x2)
    per_image = saved / args.batch
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    states = (trained * (4 + 4 + 8) + frozen * 4) / 2**30  # fp32 weights, grads, AdamW moments; momentum tower
    print(f"{args.arch}/{args.patch} at {args.size} px, MoCo v3 step in bf16: {per_image / 2**20:.1f} MiB saved for "
          f"backward per image; weights, gradients and AdamW states {states:.2f} GiB")
    for b in args.per_gpu:
        print(f"  per-GPU batch {b}: {per_image * b / 2**30:.1f} GiB of activations + {states:.2f} GiB "
              f"= {per_image * b / 2**30 + states:.1f} GiB")


if __name__ == "__main__":
    main()
