"""SASSL A.2: t-SNE (PCA init) of style embeddings, one colour per style dataset.

The embeddings are the style banks logged on the stylizer's MLflow run."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient
from sklearn.manifold import TSNE

from orchestrator import tracking

from .collect import NoRunsError
from .figures import UNCROPPED, save

BANK_FOLDER = "style_banks"


def stylizer_runs(tracking_uri: str, experiment: str) -> list:
    c = MlflowClient(tracking_uri)
    exp = c.get_experiment_by_name(experiment)
    if exp is None:
        raise NoRunsError(f"no experiment named {experiment!r} in {tracking_uri}")
    runs = c.search_runs([exp.experiment_id], f"tags.`{tracking.TAG_ROLE}` = 'stylizer' and attributes.status = 'FINISHED'",
                         order_by=["attributes.start_time DESC"])
    if not runs:
        raise NoRunsError(f"experiment {experiment!r} has no finished stylizer run (run a SASSL experiment first)")
    return runs


def download_banks(tracking_uri: str, run_id: str, dest: Path) -> dict[str, np.ndarray]:
    c = MlflowClient(tracking_uri)
    files = [a.path for a in c.list_artifacts(run_id, BANK_FOLDER) if a.path.endswith(".pt")]
    banks = {}
    for f in files:
        local = c.download_artifacts(run_id, f, str(dest))
        banks[Path(f).stem] = torch.load(local, map_location="cpu", weights_only=True).numpy()
    return banks


def plot_style_embeddings(banks: dict[str, np.ndarray], path: str | Path, *, seed: int = 0,
                          max_per_dataset: int = 1800, title: str = "Style embeddings (t-SNE, PCA init)") -> Path:
    """:func:`style_embeddings_figure` as a PNG at ``path``."""
    fig = style_embeddings_figure(banks, seed=seed, max_per_dataset=max_per_dataset, title=title)
    return save(fig, path, **UNCROPPED)


def style_embeddings_figure(banks: dict[str, np.ndarray], *, seed: int = 0, max_per_dataset: int = 1800,
                            title: str = "Style embeddings (t-SNE, PCA init)") -> Figure:
    """One scatter per style dataset (sorted by name, labelled "name (points)"): the t-SNE of the
    banks together, each bank subsampled to at most ``max_per_dataset`` embeddings."""
    if not banks:
        raise ValueError("no style banks to plot")
    rng = np.random.default_rng(seed)
    names, parts = [], []
    for name, z in sorted(banks.items()):
        if len(z) > max_per_dataset:
            z = z[rng.choice(len(z), max_per_dataset, replace=False)]
        names += [name] * len(z)
        parts.append(z)
    z = np.concatenate(parts).astype(np.float64)
    perplexity = float(min(30.0, max(2.0, (len(z) - 1) / 4)))
    xy = TSNE(n_components=2, init="pca", random_state=seed, perplexity=perplexity).fit_transform(z)
    fig = Figure(figsize=(6.5, 5.5), dpi=120)
    ax = fig.subplots()
    labels = np.array(names)
    for name in sorted(banks):
        pts = xy[labels == name]
        ax.scatter(pts[:, 0], pts[:, 1], s=6, alpha=0.7, label=f"{name} ({len(pts)})")
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(markerscale=3, fontsize=8)
    fig.tight_layout()
    return fig
