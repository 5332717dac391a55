"""LARS step and the momentum tower's EMA update: multi-tensor (foreach) kernels against the
per-parameter loops they replaced, in one run, on the paper's model (MoCo v2 on ResNet-50:
~320 parameters in the online towers, as many in the key tower).

    .venv/bin/python benchmarks/optim_foreach.py [--arch resnet50] [--repeats 20] [--device cpu]

On a GPU the loops launch ~10 small kernels per parameter for LARS and 2 for the EMA, and the
launch overhead is what foreach removes; on a CPU the gain is the Python and dispatch overhead.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, when not installed

from workloads.methods import build_method  # noqa: E402
from workloads.methods.ema import ema_update  # noqa: E402
from workloads.models.backbones import build_backbone  # noqa: E402
from workloads.optim import build_optimizer  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(models: dict, device: torch.device, repeats: int) -> dict[bool, tuple[float, float]]:
    """{foreach: (median seconds of one LARS step, of one EMA update)}, the two variants on
    copies of one model, alternating step by step so that both see the same machine load."""
    opts, times = {}, {fe: ([], []) for fe in models}
    for fe, model in models.items():
        opts[fe] = build_optimizer(model, "lars", 0.3, 0.9, 1e-6)
        opts[fe].foreach = fe
        g = torch.Generator(device=device).manual_seed(0)
        for p in model.parameters():
            if p.requires_grad:
                p.grad = torch.randn(p.shape, generator=g, device=device) * 1e-3
    for i in range(repeats + 2):
        for fe, model in models.items():
            _sync(device)
            t = time.perf_counter()
            opts[fe].step()
            _sync(device)
            t1 = time.perf_counter()
            ema_update(model.momentum_pairs(), 0.99, foreach=fe)
            _sync(device)
            if i >= 2:  # the first steps create the momentum buffers
                times[fe][0].append(t1 - t)
                times[fe][1].append(time.perf_counter() - t1)
    return {fe: tuple(sorted(v)[repeats // 2] for v in vs) for fe, vs in times.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_method("moco_v2", build_backbone(args.arch, 1.0, "imagenet"), proj_hidden_dim=2048,
                         proj_dim=128, predictor=False).to(device)
    n = sum(1 for p in model.parameters() if p.requires_grad)
    results = time_steps({False: model, True: copy.deepcopy(model)}, device, args.repeats)
    for name, i in (("LARS step", 0), ("EMA update", 1)):
        loop, fe = results[False][i] * 1e3, results[True][i] * 1e3
        print(f"{args.arch} MoCo v2 ({n} trained parameters) on {device.type}: {name} loop {loop:.1f} ms, "
              f"foreach {fe:.1f} ms; ratio loop / foreach = {loop / fe:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
