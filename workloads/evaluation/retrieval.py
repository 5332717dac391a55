"""Image retrieval with frozen features (CASSLE Figure 5): every test image is a query against
the rest of the test split, ranked by cosine similarity of the backbone's features.

Recall@k: the share of queries with at least one same-class image among their k nearest.
mAP@R (Musgrave et al., "A metric learning reality check"): for a query with R same-class
images in the rest, the mean over its first R ranks of precision@i at the ranks that are
relevant, i.e. (1/R) Σ_{i ≤ R} P@i · rel_i; averaged over queries (those with R = 0 skipped).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

__all__ = ["RetrievalResult", "nearest_neighbours", "retrieval_metrics", "retrieval_picture"]


@dataclass
class RetrievalResult:
    recall: dict[int, float]  # k -> percent
    map_at_r: float           # percent
    queries: int

    def as_metrics(self, prefix: str) -> dict[str, float]:
        out = {f"{prefix}/recall_at_{k}": v for k, v in self.recall.items()}
        out[f"{prefix}/map_at_r"] = self.map_at_r
        return out


def nearest_neighbours(feats: torch.Tensor, k: int, queries: torch.Tensor | None = None,
                       chunk: int = 1024) -> torch.Tensor:
    """Indices (Q×k) of each query's k most cosine-similar other rows of ``feats``."""
    f = F.normalize(feats.float(), dim=1)
    queries = torch.arange(len(f)) if queries is None else queries
    k = min(k, len(f) - 1)
    out = []
    for i in range(0, len(queries), chunk):
        q = queries[i:i + chunk]
        sims = f[q] @ f.t()
        sims[torch.arange(len(q)), q] = -float("inf")  # a query is not its own neighbour
        out.append(sims.topk(k, dim=1).indices)
    return torch.cat(out) if out else torch.zeros(0, k, dtype=torch.long)


def retrieval_metrics(feats: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, 4),
                      chunk: int = 1024) -> RetrievalResult:
    labels = labels.long()
    if len(feats) != len(labels) or len(feats) < 2:
        raise ValueError(f"need N ≥ 2 features with N labels, got {len(feats)} and {len(labels)}")
    counts = torch.bincount(labels)
    r = counts[labels] - 1  # same-class images among the others
    depth = int(max(max(ks), r.max().item()))
    nn_idx = nearest_neighbours(feats, depth, chunk=chunk)
    rel = (labels[nn_idx] == labels[:, None]).double()  # N×depth
    recall = {k: 100.0 * float(rel[:, :k].amax(1).mean()) for k in ks}
    ranks = torch.arange(1, rel.shape[1] + 1, dtype=torch.float64)
    precision_at = rel.cumsum(1) / ranks
    within_r = ranks[None, :] <= r[:, None].double()
    has = r > 0
    ap = (precision_at * rel * within_r).sum(1)[has] / r[has].double()
    return RetrievalResult(recall, 100.0 * float(ap.mean()) if has.any() else float("nan"), len(feats))


def retrieval_picture(images: torch.Tensor, labels: torch.Tensor, feats: torch.Tensor, queries: Sequence[int],
                      neighbours: int = 4, title: str = ""):
    """Rows: a query, then its nearest neighbours, framed green (same class) or red; a Figure."""
    from matplotlib.figure import Figure
    q = torch.as_tensor(list(queries), dtype=torch.long)
    nn_idx = nearest_neighbours(feats, neighbours, queries=q)
    cols = 1 + nn_idx.shape[1]
    fig = Figure(figsize=(1.3 * cols, 1.3 * len(q) + (0.3 if title else 0)), layout="constrained")
    axes = fig.subplots(len(q), cols, squeeze=False)
    for row, (qi, nbrs) in enumerate(zip(q.tolist(), nn_idx.tolist())):
        for col, idx in enumerate([qi] + nbrs):
            ax = axes[row][col]
            ax.imshow(images[idx].permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            colour = "black" if col == 0 else ("tab:green" if labels[idx] == labels[qi] else "tab:red")
            for side in ax.spines.values():
                side.set_edgecolor(colour)
                side.set_linewidth(3 if col else 1.5)
        axes[row][0].set_ylabel("query", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
