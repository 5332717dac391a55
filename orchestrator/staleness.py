"""Finished cells made by other code: which they are, and each cell's state against the store.

A finished cell is stale when the code (provenance.TAG_PACKAGE, the hash of the code files) or
the lock that made it differ from this checkout's, or when it carries no provenance at all (run
before sassl recorded it). Stale cells are still skipped by default, since one may have cost a
GPU-day; `sassl run` lists them before it starts, `--rerun-stale` runs them again, and `sassl
validate` shows each cell as finished, stale, running or to run."""
from __future__ import annotations

import os

from mlflow.tracking import MlflowClient

from . import provenance, tracking


def why_stale(tags: dict[str, str], now: dict[str, str]) -> str | None:
    """Why a finished run with ``tags`` was made differently from ``now`` (code_tags), or None."""
    if provenance.TAG_PACKAGE not in tags:
        return "unrecorded code (run before sassl recorded provenance)"
    parts = []
    if tags[provenance.TAG_PACKAGE] != now.get(provenance.TAG_PACKAGE):
        commit = tags.get(provenance.TAG_COMMIT, "unknown")[:10]
        dirty = " with uncommitted changes" if tags.get(provenance.TAG_DIRTY) == "true" else ""
        parts.append(f"other code (commit {commit}{dirty}; now {now.get(provenance.TAG_COMMIT, 'unknown')[:10]}"
                     + (" with uncommitted changes" if now.get(provenance.TAG_DIRTY) == "true" else "") + ")")
    if tags.get(provenance.TAG_LOCK) != now.get(provenance.TAG_LOCK):
        parts.append(f"another lock ({tags.get(provenance.TAG_LOCK)}; now {now.get(provenance.TAG_LOCK)})")
    return " and ".join(parts) or None


def _finished_tags(c: MlflowClient, experiment_id: str) -> dict[str, dict[str, str]]:
    runs = c.search_runs([experiment_id], filter_string=f"tags.`{tracking.TAG_ROLE}` = 'cell' and "
                         "attributes.status = 'FINISHED'", max_results=50_000)
    return {r.info.run_id: r.data.tags for r in runs}


def stale_runs(c: MlflowClient, experiment_id: str, done: dict[str, str], now: dict[str, str],
               cell_ids: set[str] | None = None) -> dict[str, str]:
    """cell id -> why, for the finished cells (``done``: cell id -> run id) made differently."""
    if not done:
        return {}
    tags = _finished_tags(c, experiment_id)
    out = {}
    for cid, rid in done.items():
        if cell_ids is not None and cid not in cell_ids:
            continue
        why = why_stale(tags.get(rid, {}), now)
        if why:
            out[cid] = why
    return out


def cell_states(exp) -> dict[str, str]:
    """cell id -> "finished", "stale: <why>", "running (<owner>)", "interrupted (resumes)" or
    "to run", read from the experiment's store without creating one (`sassl validate`)."""
    from pathlib import Path

    from . import claims
    cfg = exp.config
    run_dir = Path(cfg.tracking.run_dir).resolve()
    uri = cfg.tracking.uri or os.environ.get("MLFLOW_TRACKING_URI") or None
    states = {cell.cell_id: "to run" for cell in exp.cells}
    if uri is None and not (run_dir / "mlflow.db").is_file():
        return states  # nothing has run here yet (and validating must not create a store)
    try:
        c = tracking.client(tracking.resolve_tracking_uri(uri, run_dir))
        found = c.get_experiment_by_name(cfg.name)
        if found is None:
            return states
        done = tracking.finished_cell_runs(c, found.experiment_id)
        stale = stale_runs(c, found.experiment_id, done, provenance.code_tags(exp.profile, exp.sets), set(states))
        live = claims.live_claims(c, found.experiment_id)
        interrupted = tracking.interrupted_cell_runs(c, found.experiment_id)
    except Exception as e:  # noqa: BLE001 - an unreachable server must not fail validation
        return {cid: f"unknown (store: {type(e).__name__})" for cid in states}
    for cid in states:
        owner = next((lc.owner for lc in live if cid in lc.cells), None)
        if cid in stale:
            states[cid] = f"stale: {stale[cid]}"
        elif cid in done:
            states[cid] = "finished"
        elif owner:
            states[cid] = f"running ({owner})"
        elif cid in interrupted:
            states[cid] = "interrupted (resumes)"
    return states
