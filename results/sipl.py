"""SIPL table 4 (pretext and downstream accuracy per variant) and figure 3 (downstream
validation accuracy per epoch), from MLflow alone."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from mlflow.tracking import MlflowClient

from .figures import UNCROPPED, save
from .tables import Table, metric_table
from .transfer import targets

PRETEXT = "sipl/best_val_pretext_acc"


def is_sipl(cells: pd.DataFrame) -> bool:
    return PRETEXT in cells or any(str(c).startswith("mlp/") for c in cells.columns)


def sipl_table(cells: pd.DataFrame, title: str) -> Table:
    """Paper layout: best validation accuracy of the pretext task and of the downstream head;
    plus the downstream head's test accuracy at its best validation epoch."""
    key, label = targets(cells)[0] if targets(cells) else ("?", "?")
    columns = {"Pretext accuracy (%)": PRETEXT, f"Downstream accuracy (%) · {label} val": f"mlp/{key}/val_top1",
               f"Downstream test top-1 · {label}": f"mlp/{key}/top1"}
    return metric_table(cells, columns, title, bold=True)


def downstream_curves(tracking_uri: str, cells: pd.DataFrame) -> dict[str, np.ndarray]:
    """Row label → mean over finished seeds of the per-epoch downstream validation accuracy."""
    key = targets(cells)[0][0]
    c = MlflowClient(tracking_uri)
    out: dict[str, list] = {}
    for _, r in cells[cells["status"] == "FINISHED"].iterrows():
        hist = sorted(c.get_metric_history(r["run_id"], f"downstream/{key}/val_acc"), key=lambda m: m.step)
        if hist:
            out.setdefault(r["row"], []).append([m.value for m in hist])
    return {row: np.mean([h[:min(map(len, hs))] for h in hs], axis=0) for row, hs in out.items()}


def plot_downstream_curves(curves: dict[str, np.ndarray], path: Path, experiment: str) -> Path | None:
    """:func:`downstream_figure` as a PNG at ``path``; None without curves."""
    fig = downstream_figure(curves, experiment)
    return None if fig is None else save(fig, path, **UNCROPPED)


def downstream_figure(curves: dict[str, np.ndarray], experiment: str) -> Figure | None:
    """Figure 3: one line per row, validation accuracy against downstream epoch (1, 2, …)."""
    if not curves:
        return None
    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    for row, ys in curves.items():
        ax.plot(np.arange(1, len(ys) + 1), ys, label=row)
    ax.set_xlabel("downstream epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title(f"{experiment}: frozen encoder + MLP head (mean over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
