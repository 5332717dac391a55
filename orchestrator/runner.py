"""Run an expanded experiment on Ray: the invocation (inputs checked, MLflow parent run,
cluster joined) and the scheduler loop that starts cells as slots free up, SASSL cells
once their stylizer stage is ready. The jobs themselves live in inputs, ray_exec, cells,
evaluation_tasks and stylizer_stage."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from rich.console import Console

from . import claims, provenance, staleness, stylizer_stage, tracking
from .cell_task import run_cell
from .experiment import Experiment
from .input_checks import check_inputs
from .progress import LiveProgress, ProgressBoard
from .storage import Storage
from .ray_exec import RunContext, cell_slots, check_shared_storage, connect, on_driver_node


@dataclass
class RunSummary:
    parent_run_id: str
    tracking_uri: str
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def start_invocation(exp: Experiment, *, address: str | None, rerun: bool, role: str,
                     tags: dict[str, Any] | None = None, claim_cells: list[str] | None = None,
                     wait: bool = False, rerun_stale: bool = False, console: Console | None = None):
    """Check inputs, open the MLflow store, join/start Ray and create the invocation's parent
    run, with its provenance (orchestrator/provenance.py). ``claim_cells``: the cell ids this
    invocation will run, claimed in the store (orchestrator/claims.py) so that a second live
    invocation of them refuses, or waits with ``wait``. Finished cells made by other code or
    another lock are listed; ``rerun_stale`` runs them again. Returns (MLflow client, RunContext,
    finished cell runs by cell id, cell slots)."""
    cfg = exp.config
    data = check_inputs(exp)
    run_dir = Path(cfg.tracking.run_dir).resolve()
    Storage(cfg.cluster.storage or run_dir).check_writable()
    uri = tracking.resolve_tracking_uri(cfg.tracking.uri, run_dir)
    c = tracking.client(uri)
    exp_id = tracking.get_or_create_experiment(c, cfg.name, run_dir / "artifacts" if uri.startswith("sqlite") else None)
    # the tables read how to compare rows from the store (results/ never reads the YAML)
    tracking.retry(c.set_experiment_tag, exp_id, tracking.TAG_TABLES, cfg.tables.model_dump_json())
    done = {} if rerun else tracking.finished_cell_runs(c, exp_id)
    say = (console or Console()).print
    prov = provenance.code_tags(exp.profile, exp.sets, str(exp.path) if exp.path else None)
    stale = staleness.stale_runs(c, exp_id, done, prov, {cell.cell_id for cell in exp.cells})
    for cid, why in stale.items():
        say(f"[yellow]stale:[/] cell {cid} was finished by {why}; "
            + ("running it again (--rerun-stale)" if rerun_stale else "kept (--rerun-stale runs it again)"),
            highlight=False)
    if rerun_stale:
        done = {cid: rid for cid, rid in done.items() if cid not in stale}
    claim_cells = [cid for cid in (claim_cells or []) if cid not in done]
    if claim_cells and not wait:  # refuse before a Ray cluster is started for nothing
        found = claims.conflicts(c, exp_id, claim_cells)
        if found:
            raise claims.ClaimError(claims.refusal(cfg.name, found, claim_cells))
    connect(address or cfg.cluster.address, cfg.cluster.local_num_cpus)
    check_shared_storage(cfg.cluster.storage, uri, run_dir)
    slots = cell_slots(exp)
    parent = tracking.create_run(c, exp_id, f"{cfg.name} {time.strftime('%Y-%m-%d %H:%M:%S')}", tags={
        **prov, **provenance.data_tags(data, list(data)), tracking.TAG_ROLE: role,
        **({"mlflow.note.content": cfg.description} if cfg.description else {}), **(tags or {})})
    run_id = parent.info.run_id
    try:
        if claim_cells:
            claims.claim(c, cfg.name, exp_id, run_id, claim_cells, wait=wait, log=say)
    except claims.ClaimError as e:
        tracking.mark_failed(c, run_id, f"refused: {e}")
        raise
    tracking.log_params(c, run_id, {"experiment_file": str(exp.path), "cells": len(exp.cells),
                                    "profile": exp.profile or "default", "cell_slots": slots})
    if exp.path:
        tracking.retry(c.log_artifact, run_id, str(exp.path))
    # read after the claim: a cell another live invocation runs is not "interrupted"
    mine, live = {cell.cell_id for cell in exp.cells}, {lc.run_id for lc in claims.live_claims(c, exp_id, run_id)}
    interrupted = {} if rerun else {cid: v for cid, v in tracking.interrupted_cell_runs(c, exp_id).items()
                                    if cid in mine and v[1] not in live}
    ctx = RunContext(cfg.name, exp_id, run_id, uri, str(run_dir), cfg.cluster.num_workers,
                     cfg.cluster.cpus_per_worker, cfg.cluster.gpus_per_worker, cfg.cluster.max_failures, rerun,
                     storage=cfg.cluster.storage or str(run_dir),
                     interrupted={cid: rid for cid, (rid, _) in interrupted.items() if cid not in done},
                     provenance=prov, data=data, fresh=sorted(stale) if rerun_stale else [])
    for old_parent in {p for _, p in interrupted.values() if p and p != run_id}:
        if c.get_run(old_parent).info.status == "RUNNING":  # its driver died: it will never end by itself
            tracking.set_tags(c, old_parent, {tracking.TAG_ERROR: f"interrupted; continued by {run_id}"})
            tracking.retry(c.set_terminated, old_parent, "KILLED")
    return c, ctx, done, slots


def run_experiment(exp: Experiment, *, address: str | None = None, rerun: bool = False,
                   console: Console | None = None, rerun_stale: bool = False, wait: bool = False) -> RunSummary:
    """``rerun_stale``: also run again the finished cells made by other code or another lock
    (by default they are listed and skipped). ``wait``: wait for another live invocation of the
    same cells to finish instead of refusing."""
    console = console or Console()
    cfg = exp.config
    c, ctx, done, slots = start_invocation(exp, address=address, rerun=rerun, role="experiment",
                                           claim_cells=[cell.cell_id for cell in exp.cells], wait=wait,
                                           rerun_stale=rerun_stale, console=console)
    summary = RunSummary(ctx.parent_run_id, ctx.tracking_uri)
    uri = ctx.tracking_uri

    board = ProgressBoard.options(**on_driver_node()).remote()
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
    heartbeat = claims.Heartbeat(uri, ctx.parent_run_id).start()  # the claim stays live while this driver is
    title = f"{cfg.name}: {len(exp.cells)} cells, {slots} at a time ({uri})"
    try:
        with LiveProgress(board, stage_rows + [cell.cell_id for cell in exp.cells], title, console) as live:
            stage = stylizer_stage.StylizerStage(todo, ctx, board, c)
            while todo or pending:
                free = slots - len(pending) - (1 if stage.busy else 0)  # a training stylizer holds a slot
                # SASSL cells first: they cost the most, so starting them early keeps every slot busy
                # to the end (row order in the tables is the YAML's whatever the start order); then
                # seed by seed across the rows, so an interrupted run leaves whole seeds (paired rows)
                for cell in sorted(todo, key=lambda c: (not c.spec.augmentation.style.enabled, c.seed)):
                    is_style = cell.spec.augmentation.style.enabled
                    if free <= 0 or (is_style and stage.busy):
                        continue
                    todo.remove(cell)
                    stylizers, style_error = stage.outcome() if is_style else ({}, None)
                    pending.append(run_cell.options(**on_driver_node()).remote(
                        cell, ctx, board, stylizer_stage.style_inputs(cell, stylizers), style_error))
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
        heartbeat.stop()
        if "stage" in locals():
            stage.close()
        summary.seconds = time.perf_counter() - t0
        tracking.log_metrics(c, ctx.parent_run_id, {"wall_seconds": summary.seconds,
                                                    "cells_failed": len(summary.failed),
                                                    "cells_finished": len(summary.finished)})
        tracking.retry(c.set_terminated, ctx.parent_run_id, "FAILED" if summary.failed or pending else "FINISHED")
    return summary
