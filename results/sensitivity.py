"""Augmentation sensitivity across a grid's rows (CASSLE §4.2, Figure 6), from MLflow alone.

Each cell with ``evaluation.sensitivity`` on logs ``sensitivity/<augmentation>/<stage>``: the
InfoNCE of matching images to their augmented versions (high: the features change under the
augmentation; low: invariant). The table puts the rows side by side at the backbone's output
(the features the linear evaluation sees); the plot shows every stage, one line per row."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from .figures import save
from .tables import Table, metric_table

METRIC = re.compile(r"^sensitivity/([^/]+)/([^/]+)$")
BACKBONE_OUTPUT = ("layer4", "backbone")  # ResNet's last stage, or a backbone without stages


def _present(cells: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(augmentations, stages) with a value in any cell, in first-logged order."""
    augs, stages = {}, {}
    for col in cells.columns:
        if (m := METRIC.match(str(col))) and cells[col].notna().any():
            augs.setdefault(m.group(1))
            stages.setdefault(m.group(2))
    return list(augs), list(stages)


def has_sensitivity(cells: pd.DataFrame) -> bool:
    return bool(_present(cells)[0])


def sensitivity_table(cells: pd.DataFrame, title: str) -> Table:
    """Rows × augmentations: InfoNCE at the backbone's output (mean ± std over seeds)."""
    augs, stages = _present(cells)
    stage = next((s for s in BACKBONE_OUTPUT if s in stages), stages[-1])
    return metric_table(cells, {a: f"sensitivity/{a}/{stage}" for a in augs}, title)


def sensitivity_plot(cells: pd.DataFrame, path: Path, experiment: str) -> Path | None:
    """:func:`sensitivity_figure` as a PNG at ``path``; None without sensitivity metrics."""
    fig = sensitivity_figure(cells, experiment)
    return None if fig is None else save(fig, path)


def sensitivity_curves(cells: pd.DataFrame) -> dict[str, dict[str, list[float]]]:
    """augmentation → row (in the cells' order) → InfoNCE per stage (mean over finished seeds; NaN
    where a row did not log the stage), the stages in :func:`_present`'s order."""
    done = cells[cells["status"] == "FINISHED"]
    augs, stages = _present(done)
    return {aug: {row: [group[f"sensitivity/{aug}/{s}"].mean() if f"sensitivity/{aug}/{s}" in group else float("nan")
                        for s in stages]
                  for row, group in done.groupby("row", sort=False)}
            for aug in augs}


def sensitivity_figure(cells: pd.DataFrame, experiment: str) -> Figure | None:
    """One panel per augmentation: InfoNCE against stage, one line per row (mean over finished seeds)."""
    curves = sensitivity_curves(cells)
    if not curves:
        return None
    stages = _present(cells[cells["status"] == "FINISHED"])[1]
    fig = Figure(figsize=(3.2 * len(curves), 3.4), dpi=120)
    axes = fig.subplots(1, len(curves), squeeze=False)
    for ax, (aug, rows) in zip(axes[0], curves.items()):
        for row, ys in rows.items():
            ax.plot(range(len(stages)), ys, marker="o", label=row)
        ax.set_xticks(range(len(stages)), stages, rotation=45, fontsize=7)
        ax.set_title(aug)
    axes[0][0].set_ylabel("InfoNCE (higher: less invariant)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))  # off the panels
    fig.suptitle(f"{experiment}: augmentation sensitivity")
    fig.tight_layout()
    return fig
