"""MLflow → pandas. Reads the tracking store only, never the cluster."""
from __future__ import annotations

import pandas as pd
from mlflow.tracking import MlflowClient

from orchestrator import tracking

STATUS_ORDER = {"FINISHED": 0, "RUNNING": 1, "SCHEDULED": 1, "FAILED": 2, "KILLED": 3}


class NoRunsError(LookupError):
    pass


def cell_runs(tracking_uri: str, experiment: str) -> pd.DataFrame:
    """One row per cell (its newest finished run, else its newest run of any status):
    cell_id, row, seed, status, error, run_id, start_time, and every final metric."""
    c = MlflowClient(tracking_uri=tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        known = ", ".join(sorted(e.name for e in c.search_experiments())) or "none"
        raise NoRunsError(f"no experiment named {experiment!r} in {tracking_uri} (experiments there: {known})")
    runs = c.search_runs([exp.experiment_id], filter_string=f"tags.`{tracking.TAG_ROLE}` = 'cell'",
                         max_results=50_000)
    if not runs:
        raise NoRunsError(f"experiment {experiment!r} in {tracking_uri} has no cell runs yet; run it with `sassl run`")
    records = []
    for r in runs:
        t = r.data.tags
        records.append({"cell_id": t.get(tracking.TAG_CELL), "row": t.get(tracking.TAG_ROW),
                        "seed": int(t.get(tracking.TAG_SEED, -1)), "status": r.info.status,
                        "error": t.get(tracking.TAG_ERROR, ""), "run_id": r.info.run_id,
                        "start_time": r.info.start_time, **r.data.metrics})
    df = pd.DataFrame.from_records(records)
    df["_rank"] = df["status"].map(STATUS_ORDER).fillna(9)
    df = df.sort_values(["_rank", "start_time"], ascending=[True, False])
    df = df.drop_duplicates("cell_id").drop(columns="_rank")
    return df.sort_values(["start_time", "seed"]).reset_index(drop=True)
