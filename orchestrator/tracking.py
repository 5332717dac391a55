"""MLflow bookkeeping: one parent run per invocation, one child run per cell.

Only the explicit client API is used (no global "active run"), because cells log
from several Ray processes at once."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

# tags that identify what a run is; results/ reads exactly these
TAG_ROLE = "sassl.role"            # "experiment" (parent) or "cell"
TAG_CELL = "sassl.cell_id"         # hash of the cell's resolved config
TAG_ROW = "sassl.row"              # table row label
TAG_ROW_INDEX = "sassl.row_index"  # the row's position in the YAML's grid (table row order)
TAG_SEED = "sassl.seed"
TAG_PROFILE = "sassl.profile"
TAG_ERROR = "sassl.error"
TAG_PARENT = "mlflow.parentRunId"
TAG_NOTE = "mlflow.note.content"   # the run's description in the UI
TAG_TARGETS = "sassl.targets"      # JSON [[key, label], ...] of the cell's evaluation targets
TAG_TARGET_METRICS = "sassl.target_metrics"  # JSON {key: metric} of the targets with their own metric
TAG_PRETRAIN = "sassl.pretrain_id" # hash of the pretraining config (shared backbone)
TAG_BACKBONE_REUSED = "sassl.backbone_reused"  # the backbone file a cell reused instead of training
TAG_RESUMED_BY = "sassl.resumed_by"  # cell: parent runs of invocations that continued it after an interruption
TAG_TABLES = "sassl.tables"        # experiment (not run) tag: JSON of the YAML's `tables` block, as last run
BATCH = 100


def resolve_tracking_uri(uri: str | None, run_dir: str | Path) -> str:
    """Explicit URI, else $MLFLOW_TRACKING_URI, else a SQLite file in the run directory."""
    if uri:
        return uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    run_dir = Path(run_dir).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{run_dir / 'mlflow.db'}"


def client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri)


def retry(fn, *args, attempts: int = 5, **kwargs):
    """SQLite allows one writer at a time; parallel cells occasionally collide."""
    for i in range(attempts):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - MLflow wraps sqlite errors in several types
            if "locked" not in str(e).lower() or i == attempts - 1:
                raise
            time.sleep(0.2 * 2 ** i)


# MLflow 3's UI opens an experiment on its GenAI overview (traces, token usage) unless the
# experiment says it is about model training: then it opens on the runs
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")


def get_or_create_experiment(c: MlflowClient, name: str, artifact_root: str | Path | None) -> str:
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:  # made by an older sassl
            retry(c.set_experiment_tag, exp.experiment_id, *EXPERIMENT_KIND)
        return exp.experiment_id
    location = Path(artifact_root).resolve().as_uri() if artifact_root and "://" not in str(artifact_root) else artifact_root
    return c.create_experiment(name, artifact_location=str(location) if location else None,
                               tags=dict([EXPERIMENT_KIND]))


def create_run(c: MlflowClient, experiment_id: str, name: str, tags: dict[str, Any]):
    """A new run with its tags. Tag values go over the wire as strings: MLflow's SQLite store
    converts an int seed silently, its REST store (an `http://` server) raises a TypeError."""
    return retry(c.create_run, experiment_id, run_name=name, tags={k: str(v) for k, v in tags.items()})


def log_params(c: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    items = [Param(k, str(v)[:6000]) for k, v in params.items()]
    for i in range(0, len(items), BATCH):
        retry(c.log_batch, run_id, params=items[i:i + BATCH])


def log_params_once(c: MlflowClient, run_id: str, params: dict[str, Any]) -> None:
    """Params are write-once: a run continued elsewhere (a retried worker on another node, a
    resumed invocation) keeps its first values, and what differs is added under a `.resumed` key."""
    have = c.get_run(run_id).data.params
    new = {k: v for k, v in params.items() if k not in have}
    new.update({f"{k}.resumed": v for k, v in params.items() if k in have and have[k] != str(v)
                and f"{k}.resumed" not in have})
    if new:
        log_params(c, run_id, new)


def log_metrics(c: MlflowClient, run_id: str, metrics: dict[str, float], step: int = 0) -> None:
    now = int(time.time() * 1000)
    items = [Metric(k, float(v), now, step) for k, v in metrics.items()]
    retry(c.log_batch, run_id, metrics=items)


def set_tags(c: MlflowClient, run_id: str, tags: dict[str, Any]) -> None:
    retry(c.log_batch, run_id, tags=[RunTag(k, str(v)[:5000]) for k, v in tags.items()])


def mark_failed(c: MlflowClient, run_id: str, reason: str) -> None:
    """FAILED, with the reason where tables and the UI show it."""
    set_tags(c, run_id, {TAG_ERROR: reason})
    retry(c.set_terminated, run_id, "FAILED")


def finished_cell_runs(c: MlflowClient, experiment_id: str) -> dict[str, str]:
    """cell_id -> run_id of the newest FINISHED cell run."""
    runs = c.search_runs([experiment_id], filter_string=f"tags.`{TAG_ROLE}` = 'cell' and attributes.status = 'FINISHED'",
                         order_by=["attributes.start_time DESC"], max_results=5000)
    out: dict[str, str] = {}
    for r in runs:
        out.setdefault(r.data.tags.get(TAG_CELL, ""), r.info.run_id)
    return out


def interrupted_cell_runs(c: MlflowClient, experiment_id: str) -> dict[str, tuple[str, str]]:
    """cell_id -> (run_id, parent run id) of the newest cell run still RUNNING: its driver died
    (killed, machine lost), or it belongs to a live invocation (claims.py tells which). The next
    invocation continues a dead driver's run, so no logged metric is lost."""
    runs = c.search_runs([experiment_id], filter_string=f"tags.`{TAG_ROLE}` = 'cell' and attributes.status = 'RUNNING'",
                         order_by=["attributes.start_time DESC"], max_results=5000)
    out: dict[str, tuple[str, str]] = {}
    for r in runs:
        out.setdefault(r.data.tags.get(TAG_CELL, ""), (r.info.run_id, r.data.tags.get(TAG_PARENT, "")))
    return out


# search bookkeeping (read by results/)
TAG_SEARCH_METRIC = "sassl.search_metric"  # search parent: the metric optimised
TAG_SEARCH_MODE = "sassl.search_mode"      # search parent: "max" or "min"
TAG_SEARCH_SPACE = "sassl.search_space"    # search parent: JSON {dotted path: {type, low, high | values}}
TAG_SEARCH_ID = "sassl.search_id"          # trial: run id of its search parent
TAG_TRIAL_ID = "sassl.trial_id"
TAG_STOPPED_EARLY = "sassl.stopped_early"  # trial: "true" when the scheduler stopped it
