"""Landmark regression on frozen features (CASSLE's 300W target): ridge regression, its λ
chosen on validation by R² from the L-BFGS probe's grid, refit on train + val, R² on test.

R² is sklearn's ``r2_score`` with its default averaging: 1 − SS_res / SS_tot per output
(each of the 136 landmark coordinates), then the mean over outputs. The authors fit an L1
regression with L-BFGS and report the squared correlation of a least-squares fit; a ridge fit
is closed-form, has one hyperparameter chosen the same way, and its R² is the standard one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

__all__ = ["RegressionResult", "r2_score", "fit_ridge", "ridge_eval"]


def r2_score(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over outputs of 1 − Σ(y − ŷ)² / Σ(y − ȳ)² (outputs with no variance are skipped)."""
    pred, y = pred.double().reshape(len(pred), -1), y.double().reshape(len(y), -1)
    ss_res = (y - pred).pow(2).sum(0)
    ss_tot = (y - y.mean(0)).pow(2).sum(0)
    keep = ss_tot > 0
    if not keep.any():
        raise ValueError("r2: the targets have no variance")
    return float((1.0 - ss_res[keep] / ss_tot[keep]).mean())


def fit_ridge(x: torch.Tensor, y: torch.Tensor, l2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """argmin ‖x W + b − y‖² + l2 ‖W‖² (b not penalised): (W D×K, b K), float64."""
    x, y = x.double(), y.double().reshape(len(y), -1)
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    gram = xc.t() @ xc + l2 * torch.eye(x.shape[1], dtype=torch.float64)
    w = torch.linalg.solve(gram, xc.t() @ yc)
    return w, my - mx @ w


@dataclass
class RegressionResult:
    r2: float
    chosen_l2: float
    val_scores: dict[float, float] = field(default_factory=dict)

    def as_metrics(self, prefix: str) -> dict[str, float]:
        return {f"{prefix}/r2": self.r2, f"{prefix}/l2": self.chosen_l2}


def ridge_eval(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
               test: tuple[torch.Tensor, torch.Tensor], *, l2_values: Sequence[float]) -> RegressionResult:
    """Features standardised with the training split's statistics (as the L-BFGS probe); λ with
    the best validation R² (ties: the larger λ), refit on train + val, scored on test."""
    (xtr, ytr), (xva, yva), (xte, yte) = train, val, test
    mu, sd = xtr.double().mean(0), xtr.double().std(0, unbiased=False)
    sd = torch.where(sd > 1e-8, sd, torch.ones_like(sd))

    def prep(x):
        return (x.double() - mu) / sd

    xtr, xva, xte = prep(xtr), prep(xva), prep(xte)
    scores: dict[float, float] = {}
    for lam in sorted({float(v) for v in l2_values}, reverse=True):
        w, b = fit_ridge(xtr, ytr, lam)
        scores[lam] = r2_score(xva @ w + b, yva)
    best = max(scores.values())
    chosen = max(lam for lam, v in scores.items() if v == best)
    w, b = fit_ridge(torch.cat([xtr, xva]), torch.cat([ytr.reshape(len(ytr), -1), yva.reshape(len(yva), -1)]), chosen)
    return RegressionResult(r2_score(xte @ w + b, yte), chosen, dict(sorted(scores.items())))
