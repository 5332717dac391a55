"""MLflow → pandas. Reads the tracking store only, never the cluster."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from mlflow.tracking import MlflowClient

from orchestrator import provenance, tracking

STATUS_ORDER = {"FINISHED": 0, "RUNNING": 1, "SCHEDULED": 1, "FAILED": 2, "KILLED": 3}
STYLE_PARAM = "augmentation.style.enabled"
MAX_RUNS = 50_000


class NoRunsError(LookupError):
    pass


def experiment_id(c: MlflowClient, tracking_uri: str, experiment: str) -> str:
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        known = ", ".join(sorted(e.name for e in c.search_experiments())) or "none"
        raise NoRunsError(f"no experiment named {experiment!r} in {tracking_uri} (experiments there: {known})")
    return exp.experiment_id


def tables_settings(tracking_uri: str, experiment: str) -> str | None:
    """The JSON of the experiment's `tables` block as its last `sassl run` recorded it (None: never)."""
    c = MlflowClient(tracking_uri=tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    return None if exp is None else exp.tags.get(tracking.TAG_TABLES)


def _runs(c: MlflowClient, exp_id: str, role: str) -> list:
    return c.search_runs([exp_id], filter_string=f"tags.`{tracking.TAG_ROLE}` = '{role}'", max_results=MAX_RUNS)


def _targets(tag: str | None) -> list[tuple[str, str]] | None:
    try:
        return [(str(k), str(label)) for k, label in json.loads(tag)] if tag else None
    except (ValueError, TypeError):
        return None  # a malformed tag must not hide the run's metrics


def _target_metrics(tag: str | None) -> dict[str, str]:
    """{target key: the metric its tables report} for the targets that name one (CASSLE's
    mean per-class accuracy, 300W's R²); the others report top-1."""
    try:
        return {str(k): str(v) for k, v in json.loads(tag).items()} if tag else {}
    except (ValueError, TypeError, AttributeError):
        return {}


def _config_id(params: dict[str, str]) -> str:
    """For cells logged before sassl tagged provenance.TAG_CONFIG: a hash of their config params
    without the seed (and the machine params, which say where, not what)."""
    keep = {k: v for k, v in params.items() if k != "seed" and not k.startswith("machine.")
            and not k.endswith(provenance.RESUMED) and k != "cluster.num_workers"}
    return "params:" + hashlib.sha256(json.dumps(sorted(keep.items())).encode()).hexdigest()[:12]


def _code(tags: dict[str, str]) -> str:
    """The code's identity: the hash of its files, else (older runs) commit and diff."""
    if provenance.TAG_PACKAGE in tags:
        return tags[provenance.TAG_PACKAGE]
    commit = tags.get(provenance.TAG_COMMIT)
    return f"commit:{commit}{':' + tags.get(provenance.TAG_DIFF, '') if tags.get(provenance.TAG_DIFF) else ''}" \
        if commit else "unrecorded"


def _machine(params: dict[str, str]) -> str:
    """Where the cell trained: its GPU model, else its CPU's kernel set (what changes numbers)."""
    for prefix in ("machine.train", "machine.evaluation"):
        if f"{prefix}.gpu" in params:
            return params[f"{prefix}.gpu"]
        if f"{prefix}.cpu_capability" in params:
            return f"CPU {params[f'{prefix}.cpu_capability']}"
    return "unrecorded"


def invocations(c: MlflowClient, exp_id: str) -> list:
    """The experiment's invocation parent runs (grids and searches), newest first."""
    runs = [r for role in ("experiment", "search") for r in _runs(c, exp_id, role)]
    return sorted(runs, key=lambda r: r.info.start_time, reverse=True)


def cell_runs(tracking_uri: str, experiment: str, allow_empty: bool = False,
              profile: str | None = None) -> pd.DataFrame:
    """One row per cell of one profile (its newest finished run, else its newest run of any
    status; per (row, seed) only the newest cell):
    cell_id, row, seed, row_index (the row's position in the YAML), status, error, run_id,
    start_time, style (True/False/None from augmentation.style.enabled), targets (list of (key,
    label) or None), params (dict), the provenance columns (profile, config_id, code, commit,
    dirty, lock, data, machine: results/provenance.py) and every final metric as a column; rows
    in the YAML's order. ``profile``: default the profile of the experiment's newest invocation;
    the frame's attrs say which (``profile``) and which others the store holds (``profiles``)."""
    c = MlflowClient(tracking_uri=tracking_uri)
    exp_id = experiment_id(c, tracking_uri, experiment)
    runs = _runs(c, exp_id, "cell")
    if not runs and not allow_empty:
        raise NoRunsError(f"experiment {experiment!r} in {tracking_uri} has no cell runs yet; run it with `sassl run`")
    parents = invocations(c, exp_id)
    parent_profile = {r.info.run_id: r.data.tags.get(provenance.TAG_PROFILE, "default") for r in parents}
    records = []
    for r in runs:
        t, p = r.data.tags, r.data.params
        style = p.get(STYLE_PARAM)
        cell = t.get(tracking.TAG_CELL, r.info.run_id)
        records.append({"cell_id": cell, "row": t.get(tracking.TAG_ROW) or cell,
                        "seed": int(t.get(tracking.TAG_SEED, -1)),
                        "row_index": int(t[tracking.TAG_ROW_INDEX]) if tracking.TAG_ROW_INDEX in t else None,
                        "status": r.info.status,
                        "error": t.get(tracking.TAG_ERROR, ""), "run_id": r.info.run_id,
                        "start_time": r.info.start_time, "style": None if style is None else style.lower() == "true",
                        "targets": _targets(t.get(tracking.TAG_TARGETS)), "params": dict(p),
                        "target_metrics": _target_metrics(t.get(tracking.TAG_TARGET_METRICS)),
                        "profile": t.get(provenance.TAG_PROFILE) or parent_profile.get(t.get(tracking.TAG_PARENT, ""),
                                                                                       "default"),
                        "config_id": t.get(provenance.TAG_CONFIG) or _config_id(p), "code": _code(t),
                        "commit": t.get(provenance.TAG_COMMIT, "unrecorded"),
                        "dirty": t.get(provenance.TAG_DIRTY, "unknown"), "lock": t.get(provenance.TAG_LOCK, "unrecorded"),
                        "data": t.get(provenance.TAG_DATA, "unrecorded"), "machine": _machine(p), **r.data.metrics})
    columns = ["cell_id", "row", "seed", "row_index", "status", "error", "run_id", "start_time", "style", "targets",
               "target_metrics", "params", "profile", "config_id", "code", "commit", "dirty", "lock", "data", "machine"]
    df = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=columns)
    profiles = sorted(set(df["profile"])) if records else []
    chosen = profile or (parents[0].data.tags.get(provenance.TAG_PROFILE, "default") if parents else None)
    if profile is not None and profile not in profiles and (records or not allow_empty):
        raise NoRunsError(f"experiment {experiment!r} in {tracking_uri} has no cells of profile {profile!r} "
                          f"(profiles there: {', '.join(profiles) or 'none'})")
    if chosen is not None and records:
        df = df[df["profile"] == chosen]
    if not df.empty:
        # a (row, seed) whose config changed since (an edited YAML) is the newest config's cell, so
        # superseded cells never count as extra seeds (results/provenance.py marks a row that mixes)
        newest = df.sort_values("start_time", ascending=False).drop_duplicates(["row", "seed"])["cell_id"]
        df = df[df["cell_id"].isin(set(newest))]
        df["_rank"] = df["status"].map(STATUS_ORDER).fillna(9)
        df = df.sort_values(["_rank", "start_time"], ascending=[True, False])
        df = df.drop_duplicates("cell_id").drop(columns="_rank")
        # the YAML's row order; runs logged before the row index existed follow, oldest first
        df = df.sort_values(["row_index", "start_time", "seed"], na_position="last").reset_index(drop=True)
    df.attrs.update(profile=chosen, profiles=profiles)
    return df


@dataclass
class Search:
    """A search parent run: what it optimises, over which space, and its recorded best."""
    run_id: str
    name: str
    status: str
    start_time: int
    metric: str
    mode: str                       # "max" or "min"
    space: dict[str, dict]          # dotted path -> {"type", "low", "high"} or {"type": "categorical", "values"}
    best_params: dict[str, Any] = field(default_factory=dict)
    best_value: float | None = None


def parse_value(text: str, spec: dict | None) -> Any:
    """MLflow stores params as strings; give them back the type the space declares."""
    kind = (spec or {}).get("type")
    try:
        if kind in ("uniform", "loguniform", "float"):
            return float(text)
        if kind == "int":
            return int(float(text))
    except ValueError:
        return text
    if kind == "categorical":
        for v in spec.get("values", []):
            if str(v) == text or json.dumps(v) == text:
                return v
        return text
    for cast in (int, float):  # no space entry: best effort
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _objective(c: MlflowClient, run) -> float:
    """A trial's final objective: "objective_final" if logged, else "objective" at step 0 (the
    per-epoch values sit at steps 1..N and MLflow's "latest" value is the highest step, so read
    the history), else the last per-epoch value."""
    m = run.data.metrics
    if "objective_final" in m:
        return float(m["objective_final"])
    if "objective" not in m:
        return math.nan
    history = c.get_metric_history(run.info.run_id, "objective")
    final = [h for h in history if h.step == 0]
    if final:
        return float(max(final, key=lambda h: h.timestamp).value)
    return float(max(history, key=lambda h: (h.step, h.timestamp)).value)


def search_runs(tracking_uri: str, experiment: str) -> tuple[list[Search], pd.DataFrame]:
    """Search parents (oldest first) and one row per trial run: search_id, trial_id, number
    (1.. in start order within its search), run_id, status, stopped_early, objective, error,
    start_time, and one column "trial.<dotted path>" per sampled parameter (typed by the space)."""
    c = MlflowClient(tracking_uri=tracking_uri)
    exp_id = experiment_id(c, tracking_uri, experiment)
    searches = []
    for r in _runs(c, exp_id, "search"):
        t = r.data.tags
        try:
            space = json.loads(t.get(tracking.TAG_SEARCH_SPACE) or "{}")
        except ValueError:
            space = {}
        best = {k[len("best."):]: v for k, v in r.data.params.items() if k.startswith("best.")}
        searches.append(Search(
            run_id=r.info.run_id, name=r.info.run_name or r.info.run_id[:8], status=r.info.status,
            start_time=r.info.start_time, metric=t.get(tracking.TAG_SEARCH_METRIC, "objective"),
            mode=t.get(tracking.TAG_SEARCH_MODE, "max").lower(), space=space,
            best_params={k: parse_value(v, space.get(k)) for k, v in best.items()},
            best_value=r.data.metrics.get("best_value")))
    searches.sort(key=lambda s: s.start_time)
    spaces = {s.run_id: s.space for s in searches}
    records = []
    for r in _runs(c, exp_id, "trial"):
        t = r.data.tags
        space = spaces.get(t.get(tracking.TAG_SEARCH_ID), {})
        params = {k: parse_value(v, space.get(k[len("trial."):]))
                  for k, v in r.data.params.items() if k.startswith("trial.")}
        records.append({"search_id": t.get(tracking.TAG_SEARCH_ID, ""),
                        "trial_id": t.get(tracking.TAG_TRIAL_ID, r.info.run_id[:8]),
                        "run_id": r.info.run_id, "status": r.info.status,
                        "stopped_early": t.get(tracking.TAG_STOPPED_EARLY, "").lower() == "true",
                        "objective": _objective(c, r), "error": t.get(tracking.TAG_ERROR, ""),
                        "start_time": r.info.start_time, **params})
    cols = ["search_id", "trial_id", "number", "run_id", "status", "stopped_early", "objective", "error", "start_time"]
    if not records:
        return searches, pd.DataFrame(columns=cols)
    trials = pd.DataFrame.from_records(records).sort_values(["search_id", "start_time", "trial_id"])
    trials["number"] = trials.groupby("search_id").cumcount() + 1
    return searches, trials.reset_index(drop=True)
