"""k-shot classification on frozen features (SASSL A.6 reports 1- and 10-shot).

Each episode draws exactly k labelled training images per class and classifies every test
feature by its nearest class prototype (cosine similarity of centred, L2-normalised features).
The classifier has no hyperparameters, so nothing is tuned and no validation split is needed,
which matters at 1 shot where there would be nothing to carve it from."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.splits import class_balanced_subset


@dataclass
class FewShotResult:
    """Mean and std (over episodes, sample std; 0 for one episode) of accuracy in percent."""
    shots: int
    top1: float
    top1_std: float
    top5: float
    top5_std: float
    episodes: int

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/top1": self.top1, f"{prefix}/top1_std": self.top1_std, f"{prefix}/top5": self.top5}


def _check_shots(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"shots must be ints >= 1, got {k!r}")
    return int(k)


def support_indices(labels: Tensor | np.ndarray, k: int, seed: int) -> np.ndarray:
    """Sorted indices of exactly k examples per labelled class (labels -1 are never drawn)."""
    k = _check_shots(k)
    y = labels.cpu().numpy() if isinstance(labels, Tensor) else np.asarray(labels)
    classes, counts = np.unique(y[y >= 0], return_counts=True)
    if len(classes) and counts.min() < k:  # fail here with the context class_balanced_subset lacks
        c = int(classes[counts.argmin()])
        raise ValueError(f"{k}-shot needs {k} training examples per class, but the smallest class "
                         f"({c}) has only {int(counts.min())}")
    return class_balanced_subset(y, k, seed=seed)


def prototype_logits(support: Tensor, support_labels: Tensor, query: Tensor) -> tuple[Tensor, Tensor]:
    """Cosine similarity of each query to each class prototype → (N×C logits, C class ids).
    Centring by the support mean removes the shared component that otherwise dominates the
    cosine of non-negative (post-ReLU) features."""
    mu = support.mean(0, keepdim=True)
    s = F.normalize(support - mu, dim=1)
    classes, inv = torch.unique(support_labels, return_inverse=True)
    protos = torch.zeros(len(classes), s.shape[1], dtype=s.dtype).index_add_(0, inv, s)
    return F.normalize(query - mu, dim=1) @ F.normalize(protos, dim=1).T, classes


def _accuracy(logits: Tensor, classes: Tensor, y: Tensor, k: int) -> float:
    pred = classes[logits.topk(min(k, logits.shape[1]), dim=1).indices]  # column → class id
    return 100.0 * (pred == y[:, None]).any(dim=1).float().mean().item()


def few_shot(train_feats: Tensor, train_labels: Tensor, test_feats: Tensor, test_labels: Tensor, *,
             shots=(1, 10), episodes: int = 5, seed: int = 0) -> dict[int, FewShotResult]:
    """{k: FewShotResult}; episode e of every k uses support seed ``seed * 1000 + e``."""
    if train_feats.ndim != 2 or test_feats.ndim != 2 or train_feats.shape[1] != test_feats.shape[1]:
        raise ValueError(f"features must be N×D with the same D, got {tuple(train_feats.shape)} "
                         f"and {tuple(test_feats.shape)}")
    if len(train_feats) != len(train_labels) or len(test_feats) != len(test_labels):
        raise ValueError(f"feature/label lengths differ: train {len(train_feats)} vs {len(train_labels)}, "
                         f"test {len(test_feats)} vs {len(test_labels)}")
    if len(test_feats) == 0:
        raise ValueError("test set is empty")
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes < 1:
        raise ValueError(f"episodes must be an int >= 1, got {episodes!r}")
    shots = [_check_shots(k) for k in shots]
    if not shots:
        raise ValueError("shots is empty")
    xtr, xte = train_feats.detach().float().cpu(), test_feats.detach().float().cpu()
    ytr, yte = train_labels.detach().long().cpu(), test_labels.detach().long().cpu()

    out = {}
    for k in shots:
        acc = []
        for e in range(episodes):
            idx = torch.from_numpy(support_indices(ytr, k, seed=seed * 1000 + e))
            logits, classes = prototype_logits(xtr[idx], ytr[idx], xte)
            acc.append([_accuracy(logits, classes, yte, 1), _accuracy(logits, classes, yte, 5)])
        a = np.asarray(acc)
        std = a.std(0, ddof=1) if episodes > 1 else np.zeros(2)
        out[k] = FewShotResult(k, float(a[:, 0].mean()), float(std[0]), float(a[:, 1].mean()),
                               float(std[1]), episodes)
    return out
