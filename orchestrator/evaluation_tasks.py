"""A cell's evaluation as Ray tasks: one per target, in parallel, each cached on disk by
(pretraining, target, evaluation settings) so a re-run redoes only what is missing."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import ray

from workloads.spec import CellSpec

from .experiment import Cell, cell_hash
from .pipelines import METHOD_FILE, pipeline
from .ray_exec import RunContext
from .storage import Storage
from .train_job import resolve


def _with_files(out: dict[str, Any]) -> dict[str, Any]:
    """The result with its files' contents, [(artifact folder, file name, bytes)]: the cell task
    that logs them may run on another node, which cannot open this node's paths."""
    named = [("splits", out["split_file"])] if out.get("split_file") else []
    named += [("pictures", p) for p in out.get("artifacts", [])]
    return {**out, "files": [(folder, Path(p).name, Path(p).read_bytes()) for folder, p in named]}


@ray.remote(num_cpus=0)
def _evaluate_target(evaluate_fn: str, spec: CellSpec, index: int, storage: str, backbone_key: str, cache_dir: str,
                     threads: int, cache_file: str, board=None, cell_id: str = ""):
    """One evaluation node of the DAG: (pretrained backbone, target) → metrics, cached on this
    node's disk so a re-run after a failure elsewhere redoes only what is missing. ``index``: the
    target's position in the cell's list (the first is the one pictures are made on);
    ``evaluate_fn``: the pipeline's evaluation (Pipeline.evaluate)."""
    if Path(cache_file).is_file():
        return _with_files(json.loads(Path(cache_file).read_text()))
    import torch  # here, not at the top: the cell task that imports this module needs no PyTorch
    torch.set_num_threads(max(1, threads))
    device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
    from workloads.backends import configure_backends
    configure_backends(torch.device(device), deterministic=spec.optim.deterministic)
    store = Storage(storage)
    state = torch.load(store.fetch(backbone_key, cache_dir), map_location="cpu", weights_only=True)
    method_key = f"{backbone_key.rsplit('/', 1)[0]}/{METHOD_FILE}"
    method_state = torch.load(store.fetch(method_key, cache_dir), map_location="cpu", weights_only=True) \
        if (spec.evaluation.sensitivity.enabled or spec.evaluation.conditioning_check.enabled) \
        and store.exists(method_key) else None

    def progress(msg: str) -> None:
        if board is not None:
            board.update.remote(cell_id, {"status": "evaluating", "result": msg})
    art_dir = Path(cache_file).with_suffix("")  # kept beside the cached result, logged by the cell
    out = resolve(evaluate_fn)(spec, spec.evaluation.targets[index], state, cache_dir=cache_dir, device=device,
                               progress=progress, artifact_dir=art_dir if index == 0 else None,
                               method_state=method_state)
    out["split_file"] = str(out["split_file"]) if out["split_file"] else None
    from workloads.machine import machine_params
    out["machine"] = machine_params("machine.evaluation")
    Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{cache_file}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, cache_file)
    return _with_files(out)


def _eval_cache_file(ctx: RunContext, cell: Cell, target: dict[str, Any]) -> str:
    ev = {k: v for k, v in cell.config["evaluation"].items() if k != "targets"}
    return str(Path(ctx.cache_dir) / "evaluations" / f"{cell.pretrain_id}-{cell_hash({'target': target, **ev})}.json")


def evaluate_cell(cell: Cell, ctx: RunContext, backbone_key: str, board):
    """→ (final metrics, per-epoch curves by metric name, [(artifact folder, file name, bytes)],
    the machine params of the node(s) that evaluated)."""
    # every target of a cell in parallel, each a Ray task with one worker's resources
    targets = cell.config["evaluation"]["targets"]
    refs = [_evaluate_target.options(num_cpus=ctx.cpus_per_worker, num_gpus=ctx.gpus_per_worker).remote(
        pipeline(cell.config).evaluate, cell.spec, i, ctx.storage, backbone_key, ctx.cache_dir,
        max(1, int(ctx.cpus_per_worker)), _eval_cache_file(ctx, cell, t), board, cell.cell_id)
        for i, t in enumerate(targets)]
    metrics: dict[str, float] = {}
    history: dict[str, list[float]] = {}
    files, machine = [], {}
    for out in ray.get(refs):
        machine.update(out.get("machine", {}))  # a result cached by an older version has none
        metrics.update(out["metrics"])
        history.update(out.get("history", {}))
        files += out["files"]
    return metrics, history, files, machine
