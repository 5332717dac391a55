"""Ray execution: the invocation's context every task receives, joining or starting a
cluster, how many cells fit on it at once, and the Ray Train wrapper every pretraining
(a cell, a stylizer, a search trial) goes through."""
from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from .experiment import ConfigError, Experiment


@dataclass
class RunContext:
    """What every cell task needs to know about the invocation (plain, picklable)."""
    experiment: str
    experiment_id: str
    parent_run_id: str
    tracking_uri: str
    run_dir: str
    num_workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    max_failures: int
    rerun: bool
    interrupted: dict[str, str] = field(default_factory=dict)  # cell_id -> run id left RUNNING by a dead driver

    @property
    def cache_dir(self) -> str:
        return str(Path(self.run_dir) / "cache")

    @property
    def ray_storage(self) -> Path:
        """Ray Train runs (and their per-epoch checkpoints), one folder per run name."""
        return Path(self.run_dir) / "ray" / self.experiment


def connect(address: str | None, local_num_cpus: int | None) -> None:
    """Join ``address`` (else the cluster in $RAY_ADDRESS, as Ray's own tools do), or start a
    local Ray with ``local_num_cpus`` CPUs (default: all)."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None  # its token: orchestrator/ray_auth.py
    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level="ERROR")
    if address:
        ray.init(address=address, **kwargs)
    else:
        # the dashboard serves the state API, which Ray Train's placement-group cleaner needs to
        # free the CPUs of a run whose controller was killed (a trial stopped early by ASHA). The
        # cleaner, in a worker, finds the API by RAY_API_SERVER_ADDRESS, else by looking for Ray
        # on the machine, which fails ("multiple active Ray instances") when another Ray runs
        # there: the search then waits for ever. So the port is chosen here and exported to the
        # cluster's processes, which inherit this driver's environment.
        port = free_port()
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        ray.init(num_cpus=local_num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
                 dashboard_port=port, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cell_slots(exp: Experiment) -> int:
    """How many cells fit on the cluster at once (each needs num_workers × per-worker resources)."""
    cl = exp.config.cluster
    total = ray.cluster_resources()
    fits = [math.floor(total.get("CPU", 0) / (cl.num_workers * cl.cpus_per_worker))]
    if cl.gpus_per_worker > 0:
        fits.append(math.floor(total.get("GPU", 0) / (cl.num_workers * cl.gpus_per_worker)))
    slots = min(fits)
    if slots < 1:
        raise ConfigError(f"cluster: one cell needs {cl.num_workers} worker(s) × {cl.cpus_per_worker} CPU "
                          f"× {cl.gpus_per_worker} GPU but the Ray cluster has {dict(total)}")
    return min(slots, cl.max_concurrent_cells or slots)


def fit_trainer(loop, loop_config: dict[str, Any], ctx: RunContext, *, name: str, num_workers: int,
                callbacks: list | None = None) -> None:
    """One Ray Train run (a cell's pretraining or a stylizer) with the invocation's per-worker
    resources, retries and storage (checkpoints in ctx.ray_storage / name)."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    use_gpu = ctx.gpus_per_worker > 0
    resources = {"CPU": ctx.cpus_per_worker, **({"GPU": ctx.gpus_per_worker} if use_gpu else {})}
    TorchTrainer(
        loop,
        train_loop_config={**loop_config, "tracking_uri": ctx.tracking_uri, "cache_dir": ctx.cache_dir,
                           "cpus_per_worker": ctx.cpus_per_worker, "use_gpu": use_gpu},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(name=name, storage_path=str(ctx.ray_storage), callbacks=callbacks,
                             failure_config=FailureConfig(max_failures=ctx.max_failures))).fit()
