"""CASSLE's evaluations as tables, from MLflow alone: the conditioning check (Eq. 2), rotation
prediction (table 7), weather corruptions (table 8) and retrieval (figure 5), plus the metric
each target reports in the L-BFGS table (mean per-class accuracy, 300W's R²).

Metric keys: conditioning/{difference, share_true_better}; rotation/T/top1;
corruption/T/{clean, <name>/<severity>, <name>/mean}; retrieval/T/{recall@k, map_at_r};
lbfgs/T/{top1, mean_per_class}; ridge/T/r2."""
from __future__ import annotations

import re

import pandas as pd

from .tables import Table, metric_table
from .transfer import targets

CORRUPTION = re.compile(r"^corruption/([^/]+)/([^/]+)/mean$")
RECALL = re.compile(r"^retrieval/([^/]+)/recall_at_(\d+)$")
METRIC_NAMES = {"top1": "top-1", "mean_per_class": "mean per-class", "r2": "R²"}


def _has(cells: pd.DataFrame, key: str) -> bool:
    return key in cells and cells[key].notna().any()


def target_metric(cells: pd.DataFrame, key: str) -> str:
    """The metric target ``key`` reports (its `metric` field as the cells recorded it): top1 by default."""
    for metrics in cells.get("target_metrics", pd.Series(dtype=object)).dropna():
        if key in metrics:
            return metrics[key]
    return "r2" if _has(cells, f"ridge/{key}/r2") else "top1"


def metric_key(cells: pd.DataFrame, key: str) -> str:
    """The L-BFGS table's metric key of target ``key``."""
    m = target_metric(cells, key)
    return f"ridge/{key}/r2" if m == "r2" else f"lbfgs/{key}/{m}"


def conditioning_table(cells: pd.DataFrame, title: str) -> Table | None:
    if not _has(cells, "conditioning/difference"):
        return None
    cols = {"sim(own ω) − sim(another's ω)": "conditioning/difference",
            "Own ω better (% of images)": "conditioning/share_true_better",
            "sim(own ω)": "conditioning/sim_true", "sim(another's ω)": "conditioning/sim_false"}
    table = metric_table(cells[cells["conditioning/difference"].notna() | (cells["status"] != "FINISHED")],
                         cols, title)
    table.keys = {}  # no paired part: the baseline (vanilla) row has no ω to check
    return table


def rotation_table(cells: pd.DataFrame, title: str) -> Table | None:
    cols = {label: f"rotation/{key}/top1" for key, label in targets(cells) if _has(cells, f"rotation/{key}/top1")}
    return metric_table(cells, cols, title, bold=True) if cols else None


def corruption_table(cells: pd.DataFrame, title: str) -> Table | None:
    cols, groups = {}, []
    for key, label in targets(cells):
        names = [m.group(2) for c in cells.columns if (m := CORRUPTION.match(str(c))) and m.group(1) == key]
        if not names:
            continue
        for name in ["clean", *names]:
            metric = f"corruption/{key}/clean" if name == "clean" else f"corruption/{key}/{name}/mean"
            cols[f"{label} · {name}"] = metric
            groups.append((label, name))
    return metric_table(cells, cols, title, bold=True, groups=groups) if cols else None


def retrieval_table(cells: pd.DataFrame, title: str) -> Table | None:
    cols, groups = {}, []
    for key, label in targets(cells):
        ks = sorted({int(m.group(2)) for c in cells.columns if (m := RECALL.match(str(c))) and m.group(1) == key})
        for k in ks:
            cols[f"{label} · R@{k}"] = f"retrieval/{key}/recall_at_{k}"
            groups.append((label, f"R@{k}"))
        if ks:
            cols[f"{label} · mAP@R"] = f"retrieval/{key}/map_at_r"
            groups.append((label, "mAP@R"))
    return metric_table(cells, cols, title, bold=True, groups=groups) if cols else None


def cassle_tables(cells: pd.DataFrame, experiment: str) -> dict[str, Table]:
    """The tables the cells have metrics for, keyed by file stem."""
    made = {
        "conditioning": conditioning_table(
            cells, f"{experiment}: CASSLE's conditioning check (Eq. 2): cosine similarity of the original's "
                   "projection to an augmented view's, projected with its own ω or another image's (mean ± std "
                   "over seeds)"),
        "rotation": rotation_table(
            cells, f"{experiment}: rotation prediction (0/90/180/270°), L-BFGS top-1 on frozen features "
                   "(mean ± std over seeds; best in bold)"),
        "corruptions": corruption_table(
            cells, f"{experiment}: top-1 under weather corruptions (mean over severities; classifier fit on "
                   "clean features; mean ± std over seeds)"),
        "retrieval": retrieval_table(
            cells, f"{experiment}: retrieval by cosine similarity of frozen features, every test image a query "
                   "(Recall@k and mAP@R, %; mean ± std over seeds)"),
    }
    return {f"{experiment}-{name}": table for name, table in made.items() if table is not None}


def retrieval_figure(cells: pd.DataFrame, tracking_uri: str, path, experiment: str):
    """Figure 5's layout: each row's picture (its lowest finished seed's `pictures/retrieval.png`:
    queries and their nearest neighbours) one under the other; None when no cell logged one."""
    import tempfile

    from matplotlib.figure import Figure
    from mlflow.tracking import MlflowClient
    from PIL import Image

    from .figures import save
    client = MlflowClient(tracking_uri=tracking_uri)
    pictures = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, group in cells.groupby("row", sort=False):
            done = group[group["status"] == "FINISHED"].sort_values("seed")
            for _, cell in done.iterrows():
                try:
                    local = client.download_artifacts(cell["run_id"], "pictures/retrieval.png", tmp)
                except Exception:  # noqa: BLE001 - a cell without the picture (retrieval off, older run)
                    continue
                pictures.append((f"{label} (seed {cell['seed']})", Image.open(local).convert("RGB").copy()))
                break
    if not pictures:
        return None
    width = max(p.width for _, p in pictures)
    heights = [p.height * width / p.width for _, p in pictures]
    fig = Figure(figsize=(width / 110, sum(heights) / 110 + 0.35 * len(pictures)), layout="constrained")
    axes = fig.subplots(len(pictures), 1, squeeze=False, height_ratios=heights)[:, 0]
    for ax, (title, picture) in zip(axes, pictures):
        ax.imshow(picture)
        ax.set_axis_off()
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"{experiment}: nearest neighbours (green: same class)", fontsize=10)
    return save(fig, path)
