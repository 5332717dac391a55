"""SASSL's Table 9 (A.8): the throughput of the default augmentation against SASSL's, built from a
`sassl rehearse` run (its throughput.json artifact, written by orchestrator/rehearsal.py): per
pretraining row, augmented images/s of the two-view augmentation alone (the paper's measure) and
images/s of the whole training step, both on one worker, and each SASSL row's change relative to
the default-augmentation row of the same method, backbone, crop size and batch."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd

from orchestrator import tracking

from .tables import Table

THROUGHPUT_FILE = "throughput.json"


def latest_throughput(tracking_uri: str, experiment: str) -> tuple[list[dict], str] | None:
    """(the newest rehearsal's rows, its run id), or None when the experiment has none."""
    c = tracking.client(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        return None
    for run in c.search_runs([exp.experiment_id], f"tags.`{tracking.TAG_ROLE}` = 'rehearsal'",
                             order_by=["attributes.start_time DESC"], max_results=20):
        if THROUGHPUT_FILE in {a.path for a in c.list_artifacts(run.info.run_id)}:
            with tempfile.TemporaryDirectory() as tmp:
                path = c.download_artifacts(run.info.run_id, THROUGHPUT_FILE, tmp)
                return json.loads(Path(path).read_text()), run.info.run_id
    return None


def throughput_table(rows: list[dict], title: str) -> Table:
    """Rows in the rehearsal's order; "Relative change" against the default-augmentation row with
    the same setup ("" for the default rows and where there is none)."""
    base = {r["setup"]: r for r in rows if not r["style"]}
    numeric, shown = {}, {}
    for r in rows:
        ref = base.get(r["setup"]) if r["style"] else None
        change = {k: 100.0 * (r[k] / ref[k] - 1.0) for k in ("augment_images_per_s", "train_images_per_s")} if ref else {}
        numeric[r["row"]] = {"augment_images_per_s": r["augment_images_per_s"],
                             "train_images_per_s": r["train_images_per_s"],
                             "augment_change_pct": change.get("augment_images_per_s", float("nan")),
                             "train_change_pct": change.get("train_images_per_s", float("nan"))}
        shown[r["row"]] = {
            "Setup": r["setup"],
            "Augmented images/s": f"{r['augment_images_per_s']:.0f}",
            "Relative change": f"{change['augment_images_per_s']:+.1f} %" if ref else "",
            "Training images/s": f"{r['train_images_per_s']:.1f}",
            "Training relative change": f"{change['train_images_per_s']:+.1f} %" if ref else ""}
    table = Table(title, pd.DataFrame.from_dict(shown, orient="index"), pd.DataFrame.from_dict(numeric, orient="index"))
    table.notes.append("one worker as `sassl rehearse` ran it (its cluster settings and device); augmentation "
                       "alone on random images at the crop size, a batch of at most 128")
    return table
