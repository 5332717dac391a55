"""A ``search:`` block as a Ray Tune study: Optuna TPE (seeded) behind a concurrency limiter,
ASHA stopping trials on the per-epoch validation objective, each trial a Ray Train run inside
a Tune function trainable (Ray 2.60 Train V2), each an MLflow child run of the search run."""
from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from workloads.spec import CellSpec, MonitorSpec, build, to_dict

from . import provenance, stylizer_stage, tracking
from .config import CellConfig
from .experiment import Cell, ConfigError, Experiment, apply_overrides, flatten, validate
from .errors import short_error
from .input_checks import cell_data_keys
from .pipelines import pipeline
from .progress import LiveProgress, ProgressBoard
from .ray_exec import RunContext, fit_trainer, on_driver_node
from .runner import start_invocation
from .train_job import TrainJob

from .tracking import TAG_SEARCH_ID, TAG_SEARCH_METRIC as TAG_METRIC, TAG_SEARCH_MODE as TAG_MODE  # noqa: E402
from .tracking import TAG_SEARCH_SPACE as TAG_SPACE, TAG_STOPPED_EARLY as TAG_STOPPED, TAG_TRIAL_ID as TAG_TRIAL  # noqa: E402

RESOLVED_ARTIFACT = "search/experiment.yaml"
TAG_TRIAL_ERROR = "sassl.trial_exit"  # how fit() ended when Tune stopped or lost the trial


@dataclass
class SearchSummary:
    search_run_id: str
    tracking_uri: str
    best_params: dict[str, Any] = field(default_factory=dict)
    best_value: float | None = None
    trials: int = 0
    stopped_early: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def trial_config(base: dict[str, Any], sampled: dict[str, Any]) -> dict[str, Any]:
    """The base cell with a trial's sampled values, validated. When both bounds of a range
    (``….0`` and ``….1``) are searched and come out inverted, the trial uses them sorted."""
    cfg = apply_overrides(base, sampled, "search")
    for path in sampled:
        head, _, last = path.rpartition(".")
        if last == "0" and f"{head}.1" in sampled:
            node = cfg
            for part in head.split("."):
                node = node[part]
            node[:] = sorted(node)
    return validate(cfg, CellConfig, prefix="search trial:").model_dump(mode="json")


def trial_cell(cell: Cell, sampled: dict[str, Any]) -> Cell:
    """``cell`` with a trial's sampled values (trial_config), its spec built from them with the
    experiment's stylizer (which the cell's config drops when its style is off)."""
    config = trial_config(cell.config, sampled)
    spec = CellSpec.from_dict(trial_config({**cell.config, "stylizer": to_dict(cell.spec.stylizer)}, sampled))
    return replace(cell, config=config, spec=spec)


def concurrent_trials(search: dict[str, Any], slots: int) -> int:
    """Trials at once: max_concurrent if set, never more than the cluster's slots or the trials."""
    return min(search["max_concurrent"] or slots, slots, search["num_samples"])


def _tune_space(space: dict[str, Any]):
    from ray import tune
    make = {"uniform": lambda s: tune.uniform(s["low"], s["high"]),
            "loguniform": lambda s: tune.loguniform(s["low"], s["high"]),
            "int": lambda s: tune.randint(int(s["low"]), int(s["high"]) + 1),  # randint excludes high
            "categorical": lambda s: tune.choice(s["values"])}
    return {path: make[s["type"]](s) for path, s in space.items()}


def _trial(config: dict[str, Any], *, base: dict[str, Any], ctx: RunContext, search: dict[str, Any],
           search_run_id: str, style_inputs: dict[str, str] | None, board) -> None:
    """One Tune trial: resolve the sampled config, open its MLflow run, run Ray Train."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    c = tracking.client(ctx.tracking_uri)
    run = tracking.create_run(c, ctx.experiment_id, f"trial {trial_id}", tags={
        **ctx.provenance, **provenance.data_tags(ctx.data, cell_data_keys(base)),
        tracking.TAG_PARENT: search_run_id, tracking.TAG_ROLE: "trial", TAG_SEARCH_ID: search_run_id,
        TAG_TRIAL: trial_id})
    run_id = run.info.run_id
    board.update.remote(trial_id, {"row": f"trial {trial_id}", "seed": base["seed"], "status": "starting",
                                   "run_id": run_id})
    tracking.log_params(c, run_id, {f"trial.{k}": v for k, v in config.items()})
    try:
        cfg = trial_config(base, config)
        tracking.log_params(c, run_id, flatten(cfg))
        spec = CellSpec.from_dict(cfg)
        job = TrainJob(pipeline(cfg).train, spec, trial_id, run_id, spec.optim.epochs, board=board,
                       monitor=build(MonitorSpec, search["monitor"]), objective_key=search["metric"],
                       backbone_key=f"search/{search_run_id}/{trial_id}.pt", **(style_inputs or {}))
        fit_trainer(job, ctx, name=f"search-{search_run_id[:8]}-{trial_id}", num_workers=ctx.num_workers,
                    callbacks=[TuneReportCallback()])
    except Exception as e:  # noqa: BLE001 - re-raised for Tune
        # Tune also ends trials it stops (ASHA, or max_t reached) through an error inside fit();
        # only Tune's own record says whether the trial failed, so _close_trial_runs decides
        tracking.set_tags(c, run_id, {TAG_TRIAL_ERROR: short_error(e)})
        raise
    board.update.remote(trial_id, {"status": "finished"})


def _trial_id(result, i: int) -> str:
    if result.metrics and "trial_id" in result.metrics:
        return result.metrics["trial_id"]
    parts = Path(result.path or "").name.split("_")  # Tune's folder _trial_<id>_<n>_…, even if it never reported
    return parts[2] if len(parts) > 2 else f"#{i}"


def _close_trial_runs(c, ctx: RunContext, search_run_id: str, results, metric: str, epochs: int) -> SearchSummary:
    """Tune ends a trial stopped by ASHA by killing its actor, so its MLflow run is finished
    here, from Tune's record of it (last objective, stopped early or not)."""
    summary = SearchSummary(search_run_id, ctx.tracking_uri)
    runs = c.search_runs([ctx.experiment_id], f"tags.`{TAG_SEARCH_ID}` = '{search_run_id}'", max_results=10_000)
    by_trial = {r.data.tags.get(TAG_TRIAL): r for r in runs}
    for i, result in enumerate(results):
        summary.trials += 1
        trial_id = _trial_id(result, i)
        run = by_trial.get(trial_id)
        if result.error is not None:
            summary.failed[trial_id] = short_error(result.error)
            if run is not None and run.info.status == "RUNNING":
                tracking.mark_failed(c, run.info.run_id, summary.failed[trial_id])
            continue
        if run is None:
            continue
        last = (result.metrics or {}).get(metric)
        stopped = int((result.metrics or {}).get("epoch", epochs)) < epochs
        summary.stopped_early += stopped
        tracking.set_tags(c, run.info.run_id, {TAG_STOPPED: str(stopped).lower()})
        if last is not None:
            tracking.log_metrics(c, run.info.run_id, {"objective_final": last})
        if run.info.status == "RUNNING":
            tracking.retry(c.set_terminated, run.info.run_id, "FINISHED")
    return summary


def run_search(exp: Experiment, *, address: str | None = None, console: Console | None = None) -> SearchSummary:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    console = console or Console()
    cfg = exp.config
    search = cfg.search.model_dump(mode="json")
    cell = exp.cells[0]
    base = {**cell.config, "stylizer": to_dict(cell.spec.stylizer)}  # a trial may turn the style on
    c, ctx, _, slots = start_invocation(exp, address=address, rerun=True, role="search", tags={
        TAG_METRIC: search["metric"], TAG_MODE: search["mode"], TAG_SPACE: json.dumps(search["space"])})
    with tempfile.TemporaryDirectory() as tmp:  # what `sassl run --from-search` starts from
        p = Path(tmp) / "experiment.yaml"
        p.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        tracking.retry(c.log_artifact, ctx.parent_run_id, str(p), "search")
    concurrent = concurrent_trials(search, slots)
    tracking.log_params(c, ctx.parent_run_id, {"num_samples": search["num_samples"], "max_concurrent": concurrent,
                                               "seed": search["seed"]})
    board = ProgressBoard.options(**on_driver_node()).remote()
    t0 = time.perf_counter()
    status = "FAILED"
    try:
        with LiveProgress(board, [], f"{cfg.name}: search, {search['num_samples']} trials, {concurrent} at a time",
                          console) as live:
            style_inputs = None
            if cell.spec.augmentation.style.enabled:
                stylizers = stylizer_stage.prepare([cell], ctx, board, c)
                style_inputs = stylizer_stage.style_inputs(cell, stylizers)
            live.refresh()
            trainable = tune.with_parameters(_trial, base=base, ctx=ctx, search=search,
                                             search_run_id=ctx.parent_run_id, style_inputs=style_inputs, board=board)
            searcher = ConcurrencyLimiter(OptunaSearch(metric=search["metric"], mode=search["mode"],
                                                       seed=search["seed"]), max_concurrent=concurrent)
            scheduler = ASHAScheduler(time_attr="training_iteration", max_t=cell.spec.optim.epochs,
                                      grace_period=search["grace_period"],
                                      reduction_factor=search["reduction_factor"])
            # the trial function only drives Ray Train: its workers hold the CPUs, so trials
            # reserve no CPU (a token of memory: Tune needs a non-empty bundle) and cannot starve
            # their own workers (no deadlock on 2 cores)
            tuner = tune.Tuner(
                tune.with_resources(trainable, {"cpu": 0, "memory": 64 * 2**20}),
                param_space=_tune_space(search["space"]),
                tune_config=tune.TuneConfig(metric=search["metric"], mode=search["mode"], search_alg=searcher,
                                            scheduler=scheduler, num_samples=search["num_samples"],
                                            max_concurrent_trials=concurrent),
                run_config=tune.RunConfig(name=f"search-{ctx.parent_run_id[:8]}",
                                          **ctx.store.ray_train(f"{ctx.ray_storage}/tune"), verbose=0))
            future = _fit_in_thread(tuner)
            while not future.done():
                live.refresh()
                time.sleep(0.5)
            results = future.result()
            live.refresh()
        summary = _close_trial_runs(c, ctx, ctx.parent_run_id, results, search["metric"],
                                    cell.spec.optim.epochs)
        ok = [r for r in results if r.error is None and r.metrics and search["metric"] in r.metrics]
        if not ok:
            raise RuntimeError(f"every trial failed: {next(iter(summary.failed.values()), 'no result')}")
        best = best_result(ok, search["metric"], search["mode"])
        if best is None:
            raise RuntimeError(f"no trial reported a finite {search['metric']} (NaN or infinite in all)")
        summary.best_params = {k: best.config[k] for k in search["space"]}
        summary.best_value = float(best.metrics[search["metric"]])
        tracking.log_params(c, ctx.parent_run_id, {f"best.{k}": v for k, v in summary.best_params.items()})
        tracking.log_metrics(c, ctx.parent_run_id, {"best_value": summary.best_value, "trials": summary.trials,
                                                    "trials_stopped_early": summary.stopped_early,
                                                    "trials_failed": len(summary.failed)})
        status = "FINISHED"
        return summary
    finally:
        tracking.log_metrics(c, ctx.parent_run_id, {"wall_seconds": time.perf_counter() - t0})
        tracking.retry(c.set_terminated, ctx.parent_run_id, status)
        if "summary" in locals():
            summary.seconds = time.perf_counter() - t0


def best_result(results: list, metric: str, mode: str):
    """The best of the trials that trained longest. ASHA lets only the best of each rung train
    on, so a trial it stopped lost at that rung; its last value is from fewer epochs and is not
    comparable with the finalists' (an objective can fall as training goes on). None when no
    trial has a finite value."""
    finite = [r for r in results if math.isfinite(float(r.metrics.get(metric, math.nan)))]
    if not finite:
        return None
    longest = max(int(r.metrics.get("epoch", 0)) for r in finite)
    finalists = [r for r in finite if int(r.metrics.get("epoch", 0)) == longest]
    return (max if mode == "max" else min)(finalists, key=lambda r: float(r.metrics[metric]))


def _fit_in_thread(tuner):
    """Tuner.fit blocks; the live table keeps refreshing from this thread meanwhile."""
    from concurrent.futures import ThreadPoolExecutor
    pool = ThreadPoolExecutor(1)
    future = pool.submit(tuner.fit)
    pool.shutdown(wait=False)
    return future


def best_experiment(tracking_uri: str, search_run_id: str, seeds: list[int] | None) -> dict[str, Any]:
    """The searched experiment (as resolved when the search ran) with the best configuration
    applied, as a plain grid of one variant: what `sassl run --from-search` runs."""
    c = tracking.client(tracking_uri)
    try:
        run = c.get_run(search_run_id)
    except Exception:  # noqa: BLE001 - MLflow raises several types for an unknown id
        raise ConfigError(f"--from-search {search_run_id}: no such run in {tracking_uri}") from None
    if run.data.tags.get(tracking.TAG_ROLE) != "search":
        raise ConfigError(f"--from-search {search_run_id}: run is not a search (role "
                          f"{run.data.tags.get(tracking.TAG_ROLE)!r})")
    best = {k[len("best."):]: v for k, v in run.data.params.items() if k.startswith("best.")}
    if not best:
        raise ConfigError(f"--from-search {search_run_id}: the search has no best configuration "
                          f"(status {run.info.status})")
    space = json.loads(run.data.tags[TAG_SPACE])
    with tempfile.TemporaryDirectory() as tmp:
        raw = yaml.safe_load(Path(c.download_artifacts(search_run_id, RESOLVED_ARTIFACT, tmp)).read_text())
    raw.pop("search", None)
    raw.pop("profiles", None)
    values = {k: _parse(v, space[k]["type"]) for k, v in best.items()}
    raw["grid"] = {"variants": [{"name": f"best of search {search_run_id[:8]}", "set": values}], "axes": {}}
    raw["name"] = f"{raw['name']}_best"
    if seeds:
        raw["seeds"] = seeds
    return raw


def _parse(value: str, kind: str) -> Any:
    """MLflow keeps params as strings."""
    if kind == "int":
        return int(float(value))
    if kind in ("uniform", "loguniform"):
        return float(value)
    return yaml.safe_load(value)
