"""`sassl rehearse`: every distinct piece of an experiment run for a few steps at its real
settings, through the code the run uses, before a cluster is booked.

1. Every dataset and style root is opened with its real reader, counted, and its first images
   decoded (a wrong path or layout is a ConfigError naming the field, the root and the reader).
2. Each distinct pretraining configuration (the cells that differ only in seed or evaluation
   are one piece) trains a few steps in a Ray task with one worker's resources (the device a
   cell's worker gets), at the per-worker batch, with its stylizer and a style bank of a few
   images; each stylizer stage embeds a few style images (or trains a few steps); each target's
   evaluation is timed as its pipeline says (workloads/rehearse/evaluation.py). The steps run
   through the entries the run calls (workloads/cell.py, via workloads/rehearse/steps.py).
3. The full grid's wall time is estimated from those figures (cells × epochs × steps per epoch
   × seconds per step, evaluation, a fixed per-cell start-up cost), with the cells scheduled on
   the cluster's slots, and everything is logged to MLflow as a run with role `rehearsal`.
Nothing is trained to completion, and no cell, backbone or stylizer of a real run is written."""
from __future__ import annotations

import heapq
import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ray

from results.throughput import THROUGHPUT_FILE
from workloads.spec import CellSpec, DatasetRef, TargetSpec, build, to_dict

from . import provenance, tracking
from .experiment import ConfigError, Experiment, cell_hash, pretrain_hash
from .input_checks import check_inputs, distinct_dataset_refs
from .pipelines import pipeline
from .ray_exec import cell_slots, connect
from .search import concurrent_trials
from .train_job import resolve

# wall seconds a cell costs before any work: its Ray Train run's start and teardown, measured
# at 11.6 s on a 2-core machine (benchmarks/train_run_overhead.py), plus the evaluation task's
CELL_OVERHEAD_S = 15.0
DECODE_CHECK = 2   # images decoded per dataset by the data check


@dataclass
class Piece:
    kind: str                     # data, stylizer, pretraining, evaluation
    name: str
    figures: dict[str, float] = field(default_factory=dict)
    note: str = ""


@dataclass
class Report:
    pieces: list[Piece]
    estimate_s: float
    slots: int
    cells: int
    run_id: str = ""
    unit: str = "cells"   # what the estimate counts: a search's are trials
    # per pretraining piece: its row, whether it stylizes, what else makes it, the augmentation's
    # and the training step's images/s on one worker (SASSL's Table 9: results/throughput.py)
    throughput: list[dict[str, Any]] = field(default_factory=list)


class SharedPieces:
    """The pieces already started in this process, by everything their figures depend on:
    rehearsing several files in one go (`sassl rehearse A.yaml B.yaml`) times each distinct
    piece once, and the tables of a paper share many (table 6 is table 1's rows, every SASSL
    table the same stylizer and targets)."""

    def __init__(self) -> None:
        self.refs: dict[str, Any] = {}
        self.reused = 0
        self.startup_s: float | None = None   # joining Ray: paid once

    def start(self, key: str, launch) -> Any:
        """The piece ``key`` names (its kind and a hash of all it depends on), launched if new."""
        if key in self.refs:
            self.reused += 1
        else:
            self.refs[key] = launch()
        return self.refs[key]


# ---------------------------------------------------------------- 1. the data
def check_data(exp: Experiment) -> list[Piece]:
    """Open every dataset the cells name with its real reader, count it, decode its first images."""
    from workloads.data import DatasetError
    from workloads.data.lazy import LazyImages
    from workloads.data.prepare import open_ref
    pieces = []
    for where, ref, size in distinct_dataset_refs(exp):
        reader = f"reader {ref['name']!r}, split {ref['split']!r}, root {ref['root'] or '(built in)'}"
        try:
            src = open_ref(build(DatasetRef, ref), size)
            if len(src) == 0:
                raise DatasetError("no images")
            t0 = time.perf_counter()
            batch = LazyImages(src)[:min(DECODE_CHECK, len(src))]
            seconds = (time.perf_counter() - t0) / len(batch)
        except (DatasetError, OSError, ValueError) as e:
            raise ConfigError(f"{where}: {reader}: {e}") from None
        if tuple(batch.shape[1:]) != (3, size, size):
            raise ConfigError(f"{where}: {reader}: decoded to {tuple(batch.shape[1:])}, not 3×{size}×{size}")
        classes = len(getattr(src, "classes", []) or [])
        pieces.append(Piece("data", f"{where}: {ref['name']}/{ref['split']}",
                            {"images": float(len(src)), "classes": float(classes), "decode_s_per_image": seconds}))
    return pieces


# ---------------------------------------------------------------- 2. the pieces, as Ray tasks
def _threads(cpus: float) -> int:
    return max(1, int(cpus))


def _device(gpus: float):
    import torch
    return torch.device("cuda" if gpus > 0 and torch.cuda.is_available() else "cpu")


# The pieces reuse Ray's worker processes, each resetting its peak memory when it starts
# (_on_worker). A fresh process per piece (max_calls=1) made Ray start workers, ~3 s of
# imports each, while other pieces were timing their steps: on 2 cores the quickstart's SASSL
# piece then timed 0.69-0.85 s/step instead of 0.42-0.46 (docs/measurements.md#rehearsal).
def _on_worker(cpus: float, gpus: float, work) -> dict[str, Any]:
    """``work(device)``'s figures, run with one worker's threads and device, and its own peak memory."""
    import torch

    from workloads.rehearse import peak_memory_mb, reset_peak_memory
    torch.set_num_threads(_threads(cpus))
    device = _device(gpus)
    reset_peak_memory(device)
    return {**work(device), "peak_mb": peak_memory_mb(device)}


@ray.remote
def _pretraining_task(rehearse: str, spec: CellSpec, cache_dir: str, steps: int, cpus: float,
                      gpus: float) -> dict[str, float]:
    """``rehearse``: the pipeline's step function (Pipeline.rehearse)."""
    return _on_worker(cpus, gpus, lambda device: resolve(rehearse)(spec, cache_dir, steps, _threads(cpus), device))


@ray.remote
def _stylizer_task(spec: CellSpec, banks: list[DatasetRef], cache_dir: str, steps: int, cpus: float,
                   gpus: float) -> dict[str, float]:
    from workloads.rehearse.steps import stylizer_steps
    return _on_worker(cpus, gpus, lambda device: stylizer_steps(spec, banks, cache_dir, steps, device))


@ray.remote
def _evaluation_task(rehearse: str, spec: CellSpec, target: TargetSpec, first: bool, cpus: float,
                     gpus: float) -> dict[str, Any]:
    """One target's evaluation in a cell, as its pipeline times it (Pipeline.rehearse_evaluation)."""
    return _on_worker(cpus, gpus, lambda device: resolve(rehearse)(spec, target, first, device))


# ---------------------------------------------------------------- 3. the estimate
def schedule(jobs: list[tuple[float, float]], slots: int) -> float:
    """Wall time of ``jobs`` [(ready time, duration)] started in this order, each on the first
    slot to free up but not before it is ready, ``slots`` at a time: how the runner starts cells
    (SASSL cells first, once their stylizer stage is done; then the others, in grid order)."""
    lanes = [0.0] * max(1, slots)
    for ready, duration in jobs:
        start = max(heapq.heappop(lanes), ready)
        heapq.heappush(lanes, start + duration)
    return max(lanes)


def rehearse(exp: Experiment, *, steps: int = 3, address: str | None = None, console=None,
             shared: SharedPieces | None = None) -> Report:
    """``shared``: the pieces earlier rehearsals in this process started (each distinct one is
    timed once); the estimate counts Ray's start-up once per file all the same."""
    say = console.print if console is not None else (lambda *a, **k: None)
    shared = shared if shared is not None else SharedPieces()
    reused_before = shared.reused
    cfg = exp.config
    say(f"[bold]{exp.name}[/]: {len(exp.cells)} cells; checking the data")
    pieces = check_data(exp)
    if shared.startup_s is None:
        start = time.perf_counter()
        connect(address or cfg.cluster.address, cfg.cluster.local_num_cpus)
        shared.startup_s = time.perf_counter() - start
    startup = shared.startup_s
    slots = cell_slots(exp)
    cache_dir = str(Path(cfg.tracking.run_dir).resolve() / "cache")
    cpus, gpus, workers = cfg.cluster.cpus_per_worker, cfg.cluster.gpus_per_worker, cfg.cluster.num_workers
    opts = {"num_cpus": cpus, "num_gpus": gpus}

    search = cfg.search.model_dump(mode="json") if cfg.search is not None else None
    to_run = costliest_trials(exp) if search else exp.cells  # what the run trains
    # the distinct pretraining configurations, at the per-worker batch (DDP splits the global one)
    distinct: dict[str, list] = {}
    for cell in to_run:
        distinct.setdefault(pretrain_hash({**cell.config, "seed": 0}), []).append(cell)
    stylizers: dict[str, Any] = {}   # stylizer id -> the spec of its first cell
    banks: dict[str, dict[str, Any]] = {}  # stylizer -> its external style sets
    for cells in distinct.values():
        c, spec = cells[0].config, cells[0].spec
        if c["augmentation"]["style"]["enabled"]:
            sid = cell_hash(c["stylizer"])  # a section, not a cell: no evaluation to drop
            stylizers.setdefault(sid, spec)
            if c["augmentation"]["style"]["source"] == "external":
                ref = c["augmentation"]["style"]["style_data"]
                banks.setdefault(sid, {})[cell_hash(ref)] = spec.augmentation.style.style_data
    run_as = {"steps": steps, "cache_dir": cache_dir, **opts}   # what every piece's figures depend on
    pre_refs = {}
    for pid, cells in distinct.items():
        c, spec = cells[0].config, cells[0].spec
        one = {**c, "seed": 0, "optim": {**c["optim"], "batch_size": c["optim"]["batch_size"] // workers}}
        spec = replace(spec, seed=0, optim=replace(spec.optim, batch_size=spec.optim.batch_size // workers))
        pre_refs[pid] = shared.start(f"pretraining {pretrain_hash({**one, **run_as})}",  # evaluation left out
                                     lambda spec=spec, c=c: _pretraining_task.options(**opts).remote(
                                         pipeline(c).rehearse, spec, cache_dir, steps, cpus, gpus))
    sty_refs = {}
    for sid, spec in stylizers.items():
        bank_refs = list(banks.get(sid, {}).values())
        stage = cell_hash({"stylizer": to_dict(spec.stylizer), "banks": to_dict(bank_refs), **run_as})
        sty_refs[sid] = shared.start(f"stylizer {stage}", lambda spec=spec, b=bank_refs: _stylizer_task.options(
            **opts).remote(spec, b, cache_dir, steps, cpus, gpus))
    targets: dict[str, tuple] = {}   # one evaluation piece per (target, protocols, backbone, size)
    for cell in to_run if not search else []:  # a trial is judged by its monitor, not the targets
        for i, t in enumerate(cell.config["evaluation"]["targets"]):
            targets.setdefault(_evaluation_key(cell.config, t, i == 0),
                               (cell.spec.evaluation.targets[i], cell, i == 0))
    ev_refs = {key: shared.start(f"evaluation {cell_hash({'target': key, **run_as})}",
                                 lambda cell=cell, t=t, first=first: _evaluation_task.options(**opts).remote(
                                     pipeline(cell.config).rehearse_evaluation, cell.spec, t, first, cpus, gpus))
               for key, (t, cell, first) in targets.items()}
    reused = shared.reused - reused_before
    say(f"{len(distinct)} pretraining piece(s), {len(stylizers)} stylizer stage(s), {len(targets)} evaluation "
        f"piece(s); {steps} timed steps each" + (f"; {reused} timed for an earlier file" if reused else ""))

    stylizer_s = 0.0
    for sid, ref in sty_refs.items():
        res = _get(ref, f"stylizer stage {sid}")
        total = res.get("bank_s", 0.0) + res.get("seconds_per_step", 0.0) * res.get("steps_per_epoch", 0.0)
        stylizer_s += total
        pieces.append(Piece("stylizer", f"stylizer {sid} ({stylizers[sid].stylizer.pretrained or 'trained'})",
                            {**res, "estimate_s": total}))
    pre_s: dict[str, float] = {}
    throughput = []
    for pid, ref in pre_refs.items():
        cells = distinct[pid]
        c = cells[0].config
        res = _get(ref, f"pretraining of '{cells[0].row}'")
        pre_s[pid] = res["seconds_per_step"] * res["steps_per_epoch"] * c["optim"]["epochs"]
        batch = c["optim"]["batch_size"] // workers
        setup = (f"{c['method']['name']}, {c['backbone']['arch']} ×{c['backbone']['width']:g}, "
                 f"{c['data']['image_size']} px, batch {batch}/worker")
        pieces.append(Piece("pretraining", f"{cells[0].row} ({setup})",
                            {**res, "estimate_s": pre_s[pid], "cells": float(len(cells))}))
        if "augment_images_per_s" in res:
            throughput.append({
                "row": cells[0].row, "style": bool(c["augmentation"]["style"]["enabled"]), "setup": setup,
                "augment_images_per_s": res["augment_images_per_s"],
                "train_images_per_s": batch / res["seconds_per_step"]})
    ev_s: dict[str, float] = {}
    for key, ref in ev_refs.items():
        t = targets[key][0]
        res = _get(ref, f"evaluation on {t.key}")
        ev_s[key] = res["estimate_s"]
        protocols, note = res.pop("timed"), res.pop("note")
        pieces.append(Piece("evaluation", f"{t.key} ({protocols})", res, note=note))
    duration = {cell.cell_id: pre_s[pid] + CELL_OVERHEAD_S + sum(
                    ev_s.get(_evaluation_key(cell.config, t, i == 0), 0.0)
                    for i, t in enumerate(cell.config["evaluation"]["targets"]))
                for pid, cells in distinct.items() for cell in cells}
    order = sorted(to_run, key=lambda c: not c.spec.augmentation.style.enabled)  # as the runner
    jobs = [(stylizer_s if c.spec.augmentation.style.enabled else 0.0, duration[c.cell_id]) for c in order]
    if search:  # every trial as long as the costliest, run to its last epoch: an upper bound
        slots = concurrent_trials(search, slots)
        jobs = jobs[:1] * search["num_samples"]
        pieces.append(Piece("search", f"{search['num_samples']} trials, {slots} at a time", note=(
            "each timed at the top of every searched range and run to its last epoch (ASHA stops some "
            "early: an upper bound); the monitor's per-epoch probe is not timed")))
    estimate = startup + schedule(jobs, slots)
    report = Report(pieces, estimate, slots, len(jobs), unit="trials" if search else "cells", throughput=throughput)
    report.run_id = _log(exp, report, steps)
    return report


def costliest_trials(exp: Experiment) -> list:
    """A search's cells with every searched value at the top of its range (the largest choice of a
    numeric categorical, else its first): for the spaces shipped the slowest, largest-memory trial
    (p = 1 stylizes every image; the deepest, widest encoder; the largest batch)."""
    from .search import trial_cell
    top = {}
    for path, space in exp.config.search.space.items():
        if space.type == "categorical":
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in space.values)
            top[path] = max(space.values) if numeric else space.values[0]
        else:
            top[path] = int(space.high) if space.type == "int" else space.high
    return [replace(trial_cell(c, top), row=f"{c.row} (top of the search space)") for c in exp.cells]


def _evaluation_key(cfg: dict[str, Any], target: dict[str, Any], first: bool) -> str:
    """What one target's evaluation cost depends on: the cells that share it share one timing."""
    ev = {k: v for k, v in cfg["evaluation"].items() if k != "targets"}
    method = {k: cfg["method"][k] for k in pipeline(cfg).evaluation_reads}
    if first and (ev["sensitivity"]["enabled"] or ev["conditioning_check"]["enabled"]):  # on the first target: the whole method, projector included
        method = cfg["method"]
    return cell_hash({"target": target, "evaluation": ev, "backbone": cfg["backbone"],
                      "size": cfg["data"]["image_size"], "first": first, "method": method})


def _get(ref, what: str) -> dict[str, Any]:
    try:
        return ray.get(ref)
    except Exception as e:  # noqa: BLE001 - the piece that failed, named, with its root cause
        from .errors import short_error
        raise ConfigError(f"rehearsal of the {what} failed: {short_error(e)}") from None


def table(report: Report) -> list[list[str]]:
    rows = []
    for p in report.pieces:
        f = p.figures
        if p.kind == "data":
            what = f"{int(f['images'])} images" + (f", {int(f['classes'])} classes" if f.get("classes") else "") + \
                f", {1000 * f['decode_s_per_image']:.1f} ms/image"
            rows.append([p.kind, p.name, what, "", "", ""])
            continue
        per_step = f"{f['seconds_per_step']:.3f}" if "seconds_per_step" in f else ""
        timed_steps = f"{int(f['steps_timed'])} × {int(f['steps_per_epoch'])}/epoch" if "steps_timed" in f else ""
        rows.append([p.kind, p.name + (f" [{p.note}]" if p.note else ""), timed_steps, per_step,
                     f"{f['peak_mb']:.0f}" if "peak_mb" in f else "",
                     f"{f['estimate_s']:.0f}" if "estimate_s" in f else ""])
    return rows


def _log(exp: Experiment, report: Report, steps: int) -> str:
    cfg = exp.config
    data = check_inputs(exp)  # the datasets' fingerprints (opened, not decoded, again)
    run_dir = Path(cfg.tracking.run_dir).resolve()
    uri = tracking.resolve_tracking_uri(cfg.tracking.uri, run_dir)
    c = tracking.client(uri)
    exp_id = tracking.get_or_create_experiment(c, cfg.name, run_dir / "artifacts" if uri.startswith("sqlite") else None)
    run = tracking.create_run(c, exp_id, f"rehearsal {time.strftime('%Y-%m-%d %H:%M:%S')}", tags={
        **provenance.code_tags(exp.profile, exp.sets, str(exp.path) if exp.path else None),
        **provenance.data_tags(data, list(data)), tracking.TAG_ROLE: "rehearsal"})
    rid = run.info.run_id
    tracking.log_params(c, rid, {"steps": steps, "cells": report.cells, "slots": report.slots,
                                 "experiment_file": str(exp.path), "profile": exp.profile or "default"})
    metrics = {"estimated_wall_s": report.estimate_s}
    for i, p in enumerate(report.pieces):
        if p.kind != "data":
            metrics.update({f"{p.kind}{i}/{k}": v for k, v in p.figures.items() if isinstance(v, float)})
    tracking.log_metrics(c, rid, metrics)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rehearsal.md"
        header = "| piece | what | steps timed | s/step | peak MB | est. s per cell |\n|---|---|---|---|---|---|\n"
        out.write_text(header + "".join("| " + " | ".join(r) + " |\n" for r in table(report)) +
                       f"\nestimated wall time: {report.estimate_s:.0f} s for {report.cells} {report.unit} on "
                       f"{report.slots} slot(s)\n")
        tracking.retry(c.log_artifact, rid, str(out))
        if report.throughput:
            (Path(tmp) / THROUGHPUT_FILE).write_text(json.dumps(report.throughput, indent=1))
            tracking.retry(c.log_artifact, rid, str(Path(tmp) / THROUGHPUT_FILE))
    tracking.retry(c.set_terminated, rid, "FINISHED")
    return rid
