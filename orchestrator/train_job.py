"""What a Ray Train run is handed: one frozen job (the cell's typed spec, its ids, where its
inputs and outputs live in the storage, the search's monitor, the worker's environment),
built by the cell task, a search trial or the stylizer stage, read by orchestrator/train_worker.py."""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from workloads.spec import CellSpec, MonitorSpec

SSL_LOOP = "orchestrator.train_worker:ssl_loop"
SIPL_LOOP = "orchestrator.train_worker:sipl_loop"
STYLIZER_LOOP = "orchestrator.train_worker:stylizer_loop"


def resolve(target: str) -> Callable[..., Any]:
    """A ``module:function`` name imported (so a caller need not import the module itself)."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@dataclass(frozen=True)
class WorkerEnv:
    """The invocation's settings every worker reads (set by ray_exec.fit_trainer)."""
    tracking_uri: str
    cache_dir: str              # this node's caches: never read by another node
    storage: str                # where hand-offs between processes live (orchestrator/storage.py)
    cpus_per_worker: float
    use_gpu: bool

    @property
    def threads(self) -> int:
        return max(1, int(self.cpus_per_worker))


@dataclass(frozen=True)
class TrainJob:
    loop: str                   # "module:function" of the training loop (the pipeline's, or the stylizer's)
    spec: CellSpec
    name: str                   # the id the progress board shows (a cell, a trial, a stylizer)
    run_id: str                 # the MLflow run its metrics and files go to
    epochs: int                 # how many epochs the board counts to
    board: Any = None           # the progress board actor, or None
    env: WorkerEnv | None = None
    backbone_key: str | None = None     # storage key of the trained backbone (its folder: the method too)
    stylizer_key: str | None = None     # storage key of the stylizer: read by SASSL cells, written by the stylizer stage
    style_bank_key: str | None = None   # storage key of the external style bank
    monitor: MonitorSpec | None = None  # a search's per-epoch objective
    objective_key: str | None = None    # the metric a search logs as "objective"
