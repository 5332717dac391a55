"""Embedding-space analysis of paper section 4.1 (Figure 4): images of two classes, each
shown in two styles, embedded by the frozen encoder and projected to 2-D.

A "style" is one ReLIC transform sampled once and applied to every image (the paper:
"two distinct augmentations ... apply each to both sets"), so a style-invariant encoder
puts the two renderings of an image together while a style-sensitive one clusters by style.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .augment import SiplAugment, apply_relic, finalize, repeat_params, sample_relic_params
from .patches import resize_images

__all__ = ["style_pairs_embeddings", "plot_style_embeddings_2d", "style_pairs_figure"]


@torch.no_grad()
def style_pairs_embeddings(encoder: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                           classes: Sequence[int] = (0, 1), n_per_class: int = 50, *, augment: SiplAugment,
                           seed: int = 0, input_size: int = 32,
                           device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """Embeddings of n images per class under styles A1 and A2.

    Returns {"embeddings": float (4n)×D, "class": long (class id), "style": long (0/1),
    "image": long (index into ``images``)}; rows are style-major, then class.
    """
    if len(classes) != 2:
        raise ValueError(f"classes must name two classes, got {classes!r}")
    g = torch.Generator().manual_seed(seed)
    picked = []
    for c in classes:
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) < n_per_class:
            raise ValueError(f"class {c} has {len(idx)} images, fewer than n_per_class {n_per_class}")
        picked.append(idx[torch.randperm(len(idx), generator=g)[:n_per_class]])
    index = torch.cat(picked)
    cls = labels[index].long()
    x = resize_images(images[index].to(device), input_size)
    encoder = encoder.to(device).eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    embs, styles = [], []
    for s in range(2):
        # one transform for all images: the style is shared, the content differs
        params = repeat_params(sample_relic_params(1, input_size, augment, gen, device), len(x))
        v = finalize(apply_relic(x, params, augment), augment).contiguous(memory_format=torch.channels_last)
        embs.append(encoder(v).float().cpu())
        styles.append(torch.full((len(x),), s))
    return {"embeddings": torch.cat(embs), "class": torch.cat((cls, cls)).cpu(), "style": torch.cat(styles),
            "image": torch.cat((index, index)).cpu()}


def plot_style_embeddings_2d(emb: torch.Tensor, cls: torch.Tensor, style: torch.Tensor, path: str | Path,
                             title: str = "", seed: int = 0) -> Path:
    """:func:`style_pairs_figure` as a PNG at ``path``; returns the path."""
    fig = style_pairs_figure(emb, cls, style, title=title, seed=seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return path


def style_pairs_figure(emb: torch.Tensor, cls: torch.Tensor, style: torch.Tensor, title: str = "", seed: int = 0):
    """PCA to 50 dims, then t-SNE to 2 (as the paper); one scatter per (class, style), labelled
    "class c, style A1|A2": colour = class, marker = style. Returns a matplotlib Figure."""
    import matplotlib as mpl
    import numpy as np
    from matplotlib.figure import Figure
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = emb.detach().cpu().double().numpy()
    n = len(x)
    if n < 4:
        raise ValueError(f"need at least 4 embeddings to plot, got {n}")
    x = PCA(n_components=min(50, n, x.shape[1]), random_state=seed).fit_transform(x)
    xy = TSNE(n_components=2, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed).fit_transform(x)
    cls, style = np.asarray(cls.cpu()), np.asarray(style.cpu())
    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    colours = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    for ci, c in enumerate(np.unique(cls)):
        for s, marker in zip(np.unique(style), "o^sv"):
            m = (cls == c) & (style == s)
            ax.scatter(xy[m, 0], xy[m, 1], marker=marker, s=22, color=colours[ci % len(colours)],
                       label=f"class {c}, style A{s + 1}", alpha=0.8)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, loc="best")
    return fig
