"""Bytes autograd keeps for backward: plain batch norm against backbone.sync_bn's SyncBatchNorm,
in one run, on CPU. The stored activations are what a GPU's memory holds between forward and
backward, so their ratio carries over to a GPU at any batch size.

    .venv/bin/python benchmarks/sync_bn_memory.py [--arch resnet50] [--size 224] [--batch 4]

The synchronised path runs on one process (``sync_alone``): its collectives are
skipped, what it saves is the same as with several ranks.
"""
from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when not installed

from workloads.models.backbones import build_backbone  # noqa: E402
from workloads.models.sync_bn import convert_sync_bn, sync_alone  # noqa: E402


def saved_bytes(model: torch.nn.Module, x: torch.Tensor, dtype: torch.dtype | None) -> dict[torch.dtype, int]:
    """Bytes of every tensor autograd saves during ``model(x)`` under autocast at ``dtype``
    (None: fp32), by dtype."""
    total: dict[torch.dtype, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        total[t.dtype] = total.get(t.dtype, 0) + t.numel() * t.element_size()
        return t
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast(x.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            model(x)
    return total


def compare(arch: str, size: int, batch: int, dtype: torch.dtype | None, width: float = 1.0) -> dict:
    """{"plain": bytes by dtype, "sync": bytes by dtype} for one backbone forward in training mode."""
    torch.manual_seed(0)
    plain = build_backbone(arch, width, "imagenet").train().to(memory_format=torch.channels_last)
    synced = convert_sync_bn(copy.deepcopy(plain))
    x = torch.randn(batch, 3, size, size).to(memory_format=torch.channels_last)
    with sync_alone():
        return {"plain": saved_bytes(plain, x, dtype), "sync": saved_bytes(synced, x, dtype)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=4)
    args = ap.parse_args(argv)
    for name, dtype in (("bf16", torch.bfloat16), ("fp32", None)):
        r = compare(args.arch, args.size, args.batch, dtype)
        mib = {k: sum(v.values()) / 2**20 for k, v in r.items()}
        parts = ", ".join(f"{str(d).removeprefix('torch.')} {b / 2**20:.1f}" for d, b in r["sync"].items())
        print(f"{args.arch} {args.size} px batch {args.batch} {name}: plain BN {mib['plain']:.1f} MiB, "
              f"sync BN {mib['sync']:.1f} MiB ({parts}); ratio sync / plain = {mib['sync'] / mib['plain']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
