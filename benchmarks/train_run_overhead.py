"""Fixed cost of one Ray Train run (what every cell, stylizer and search trial pays before and
after its own work): a training function that does nothing, run through Ray Train's plain
TorchTrainer and through the project's lean one (orchestrator/ray_exec.py: no DatasetManager
without Ray Datasets, no preemption watcher on one node), alternated, on one local Ray.

Prints, per trainer, the median wall time and the median CPU time the whole machine spent
(from /proc/stat: every Ray process counts, the controller, its helper actors and the worker),
and the lean / plain ratios. Run it on an idle machine:

    .venv/bin/python benchmarks/train_run_overhead.py [--runs 4]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time


def machine_cpu_seconds() -> float:
    """user + nice + system time of all CPUs since boot."""
    with open("/proc/stat") as f:
        fields = f.readline().split()[1:4]
    return sum(int(x) for x in fields) / os.sysconf("SC_CLK_TCK")


def noop(config) -> None:
    import torch  # noqa: F401 - what a real loop imports first


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=4, help="runs per trainer (alternated)")
    args = ap.parse_args()
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from orchestrator import ray_exec

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    time.sleep(5)  # let the fresh cluster's own start-up finish before measuring
    storage = tempfile.mkdtemp(prefix="sassl-overhead-")
    results: dict[str, list[tuple[float, float]]] = {"plain": [], "lean": []}
    for i in range(args.runs):
        for kind in ("plain", "lean"):
            trainer_cls = ray_exec.lean_trainer_class() if kind == "lean" else TorchTrainer
            settings = ray_exec.lean_train_settings() if kind == "lean" else contextlib.nullcontext()
            cpu0, t0 = machine_cpu_seconds(), time.perf_counter()
            with settings:
                trainer_cls(noop, scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 1}),
                            run_config=RunConfig(name=f"{kind}-{i}", storage_path=storage)).fit()
            results[kind].append((time.perf_counter() - t0, machine_cpu_seconds() - cpu0))
            print(f"run {i} {kind:5s}: wall {results[kind][-1][0]:5.1f} s, machine CPU {results[kind][-1][1]:5.1f} s",
                  flush=True)
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in results.items()}
    for k, (w, c) in med.items():
        print(f"{k:5s}: median wall {w:.1f} s, median machine CPU {c:.1f} s")
    print(f"lean / plain: wall {med['lean'][0] / med['plain'][0]:.2f}, CPU {med['lean'][1] / med['plain'][1]:.2f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
