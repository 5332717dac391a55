"""Plots rebuilt from MLflow alone: Δ top-1 heat maps for transfer experiments and
objective / importance charts for searches."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .collect import cell_runs, search_runs
from .figures import save
from .paired import experiment_mapping, paired_means
from .sipl import downstream_curves, is_sipl, plot_downstream_curves
from .sensitivity import has_sensitivity, sensitivity_plot
from .search import SearchSummary, search_stems, summarize
from .transfer import KINDS, kinds, needs_transfer_table, targets


def build_plots(experiment: str, tracking_uri: str, out_dir: str | Path,
                baselines: list[str] | None = None, profile: str | None = None) -> list[Path]:
    """Every plot the runs support (of one profile's cells, as the tables), as PNGs in out_dir;
    [] when none applies."""
    out_dir = Path(out_dir)
    cells = cell_runs(tracking_uri, experiment, allow_empty=True, profile=profile)
    searches, trials = search_runs(tracking_uri, experiment)
    paths = []
    mapping, _ = experiment_mapping(cells, tracking_uri, experiment, baselines)
    if not cells.empty and needs_transfer_table(cells) and mapping:
        path = transfer_heatmap(cells, mapping, out_dir / f"{experiment}-transfer-delta.png", experiment)
        paths += [path] if path else []
    if not cells.empty and is_sipl(cells):
        path = plot_downstream_curves(downstream_curves(tracking_uri, cells), out_dir / f"{experiment}-sipl-curves.png",
                                      experiment)
        paths += [path] if path else []
    if not cells.empty and has_sensitivity(cells):
        path = sensitivity_plot(cells, out_dir / f"{experiment}-sensitivity.png", experiment)
        paths += [path] if path else []
    if not cells.empty and any(str(c).startswith("retrieval/") for c in cells.columns):
        from .cassle import retrieval_figure
        path = retrieval_figure(cells, tracking_uri, out_dir / f"{experiment}-retrieval.png", experiment)
        paths += [path] if path else []
    for stem, search in search_stems(experiment, searches):  # same stems as build_tables
        path = search_plot(summarize(search, trials), out_dir / f"{stem}.png", experiment)
        paths += [path] if path else []
    return paths


def transfer_heatmap(cells: pd.DataFrame, mapping: dict[str, str], path: Path, experiment: str) -> Path | None:
    """:func:`transfer_figure` as a PNG at ``path``; None when there is nothing to draw."""
    fig = transfer_figure(cells, mapping, experiment)
    return None if fig is None else save(fig, path)


def transfer_deltas(cells: pd.DataFrame, mapping: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Panel title (evaluation kind) → rows × target labels: Δ top-1 of each row against its
    baseline row (mean over seeds of the paired differences, as the tables' paired part)."""
    panels = {}
    for kind in kinds(cells):
        delta = pd.DataFrame({label: paired_means(cells, f"{kind}/{key}/top1", mapping)
                              for key, label in targets(cells)}, index=list(mapping), dtype=float)
        if not delta.empty:
            panels[KINDS[kind][0]] = delta
    return panels


def transfer_figure(cells: pd.DataFrame, mapping: dict[str, str], experiment: str) -> Figure | None:
    """One heat map panel per evaluation kind of :func:`transfer_deltas` (a cell's text is its
    value; grey: no pairs), on one colour scale symmetric about 0."""
    panels = transfer_deltas(cells, mapping)
    if not panels:
        return None
    finite = np.concatenate([d.to_numpy(float).ravel() for d in panels.values()])
    finite = finite[np.isfinite(finite)]
    lim = float(np.abs(finite).max()) if finite.size and np.abs(finite).max() > 0 else 1.0
    bases = sorted(set(mapping.values()))
    norm = Normalize(-lim, lim)  # symmetric limits keep 0 at the colormap's neutral centre
    n_rows, n_cols = max(len(d) for d in panels.values()), max(d.shape[1] for d in panels.values())
    fig = Figure(figsize=(2.5 + 1.3 * n_cols * len(panels) + 1.0, 1.5 + 0.5 * n_rows), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)
    for i, (ax, (name, delta)) in enumerate(zip(axes[0], panels.items())):
        values = delta.to_numpy(float)
        image = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu", norm=norm, aspect="auto")
        ax.set_facecolor("0.85")  # missing (unfinished) cells show grey, never a colour for 0
        for (r, c), v in np.ndenumerate(values):
            ax.text(c, r, "–" if np.isnan(v) else f"{v:+.2f}", ha="center", va="center", fontsize=8,
                    color="white" if np.isfinite(v) and abs(v) > 0.6 * lim else "black")
        ax.set_xticks(range(values.shape[1]), delta.columns, rotation=30, ha="right")
        labels = [row if len(bases) == 1 else f"{row} (vs {mapping[row]})" for row in delta.index]
        ax.set_yticks(range(values.shape[0]), labels if i == 0 else [])  # same rows: label them once
        ax.set_title(name)
    fig.colorbar(image, ax=axes[0].tolist(), label=f"Δ top-1 vs {bases[0] if len(bases) == 1 else 'the row’s baseline'}"
                 " (mean of per-seed differences)")
    fig.suptitle(f"{experiment}: top-1 change against the baseline row")
    return fig


def search_plot(s: SearchSummary, path: Path, experiment: str) -> Path | None:
    """:func:`search_figure` as a PNG at ``path``; None when no trial finished with a value."""
    fig = search_figure(s, experiment)
    return None if fig is None else save(fig, path)


def search_figure(s: SearchSummary, experiment: str) -> Figure | None:
    """Objective per trial (in start order) with the running best, and importances when known."""
    t = s.trials.sort_values("number")
    done = t[t["status"] == "FINISHED"]
    if done["objective"].dropna().empty:
        return None
    panels = 2 if s.importances is not None else 1
    fig = Figure(figsize=(5.5 * panels, 4), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)
    ax = axes[0][0]
    for label, part, marker in (("completed", done[~done["stopped_early"].astype(bool)], "o"),
                                ("stopped early", done[done["stopped_early"].astype(bool)], "x")):
        if len(part):
            ax.scatter(part["number"], part["objective"], marker=marker, label=label)
    running = done.set_index("number")["objective"].dropna()
    running = running.cummax() if s.search.mode == "max" else running.cummin()
    ax.step(running.index, running.to_numpy(), where="post", color="k", lw=1, label="best so far")
    ax.set_xlabel("trial (start order)")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # trials are whole numbers
    ax.set_ylabel(s.search.metric)
    ax.legend(fontsize=8)
    ax.set_title(f"search {s.search.name}")
    if s.importances is not None:
        imp = s.importances.iloc[::-1]  # largest at the top of a horizontal bar chart
        axes[0][1].barh(imp.index, imp.to_numpy())
        axes[0][1].set_xlabel("importance (fANOVA)")
        axes[0][1].set_title("parameter importances")
    fig.suptitle(f"{experiment}: search objective")
    return fig
