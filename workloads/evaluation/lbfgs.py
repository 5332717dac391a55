"""Linear evaluation of the CASSLE paper (A.2; the AugSelf code's ``transfer_linear_eval``).

On frozen features, an l2-regularised multinomial logistic regression is fit with full-batch
L-BFGS (strong-Wolfe line search):

    minimise  Σ_i CE(W x_i + b, y_i) + λ (‖W‖² + ‖b‖²)

(the authors' objective: summed cross-entropy, every parameter penalised). λ is chosen on
the validation split only, from ``logspace(-6, 5, 45)`` by default; the classifier is then
refit on train + val with that λ, starting from the train-only solution (as the paper), and
evaluated on test. Metrics: top-1 and mean per-class accuracy (percent); the selection uses
``select_by`` (top-1, or mean per-class for Pets / Flowers / Caltech / Aircraft). Ties go to
the smallest λ (the authors' loop keeps the first best in increasing λ).

Differences, on purpose: features are standardised with the training split's mean and
standard deviation (the same statistics for val, test and the train + val refit); the grid
is walked from the largest λ down, each fit warm-started from the previous solution (a
regularisation path: the problem is strictly convex, so the order changes speed, not the
optimum); L-BFGS stops at a gradient tolerance instead of always running 5000 iterations.
sklearn's ``C`` of the same problem is ``1 / (2 λ)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch

__all__ = ["DEFAULT_L2_GRID", "LbfgsProbeResult", "LbfgsClassifier", "l2_grid", "fit_logistic_lbfgs", "top1_accuracy",
           "mean_per_class_accuracy", "fit_lbfgs_classifier", "lbfgs_linear_eval"]


def l2_grid(start: float = -6.0, stop: float = 5.0, num: int = 45) -> tuple[float, ...]:
    """``logspace(start, stop, num)`` as floats (the paper: 10^-6 .. 10^5, 45 values)."""
    return tuple(float(v) for v in torch.logspace(start, stop, num, dtype=torch.float64))


DEFAULT_L2_GRID = l2_grid()
SELECT_BY = ("top1", "mean_per_class")


@dataclass
class LbfgsProbeResult:
    top1: float
    mean_per_class: float
    chosen_l2: float
    select_by: str
    val_scores: dict[float, float] = field(default_factory=dict)  # λ -> validation metric (percent)
    iterations: dict[float, int] = field(default_factory=dict)  # λ -> L-BFGS iterations on train

    @property
    def chosen_C(self) -> float:
        """sklearn's inverse regularisation strength of the chosen λ: C = 1 / (2 λ)."""
        return 1.0 / (2.0 * self.chosen_l2)

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """``linear/pets`` → ``linear/pets/top1``, ``…/mean_per_class``, ``…/l2``, ``…/C`` and
        ``…/iterations`` (of every λ's fit on train: what `sassl rehearse`'s per-iteration cost multiplies)."""
        return {f"{prefix}/top1": self.top1, f"{prefix}/mean_per_class": self.mean_per_class,
                f"{prefix}/l2": self.chosen_l2, f"{prefix}/C": self.chosen_C,
                f"{prefix}/iterations": float(sum(self.iterations.values()))}


def top1_accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    return 100.0 * (pred == y).double().mean().item()


def mean_per_class_accuracy(pred: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over the classes present in ``y`` of their recall, in percent."""
    classes = torch.unique(y)
    recalls = [(pred[y == c] == c).double().mean() for c in classes]
    return 100.0 * torch.stack(recalls).mean().item()


def _metric(name: str, pred: torch.Tensor, y: torch.Tensor) -> float:
    return top1_accuracy(pred, y) if name == "top1" else mean_per_class_accuracy(pred, y)


class _Problem:
    """Σ CE(x W + b, y) / N + (l2 / N)(‖W‖² + ‖b‖²) with its gradient, written out by hand.

    The two N-sized matmuls run in ``matmul_dtype`` (float32: several times faster on CPU)
    on copies of x in the layouts BLAS likes for them, as do the softmax and the per-sample
    losses; the sums, the parameters and L-BFGS's own arithmetic are float64."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, num_classes: int, matmul_dtype: torch.dtype):
        self.n, self.d = x.shape
        self.c = num_classes
        self.x = x.to(matmul_dtype).contiguous()  # N×D, for Pᵀ x
        self.xt = self.x.t().contiguous()  # D×N, for Wᵀ xᵀ
        self.y = y.long()
        self.cols = torch.arange(self.n, device=x.device)
        self.dtype = matmul_dtype

    def loss_grad(self, w: torch.Tensor, b: torch.Tensor, scale: float):
        logits = torch.addmm(b.to(self.dtype)[:, None], w.t().to(self.dtype), self.xt)  # C×N
        lse = torch.logsumexp(logits, dim=0)
        loss = (lse - logits[self.y, self.cols]).double().sum() / self.n
        loss = loss + scale * (w.pow(2).sum() + b.pow(2).sum())
        p = torch.softmax(logits, dim=0)
        p[self.y, self.cols] -= 1.0
        gw = (p @ self.x).double().t().contiguous().div_(self.n) + 2.0 * scale * w
        gb = p.double().sum(1).div_(self.n) + 2.0 * scale * b
        return loss, gw, gb

    def fit(self, l2: float, init=None, *, max_iter: int = 5000, tolerance_grad: float = 1e-6,
            tolerance_change: float = 1e-12, history_size: int = 20):
        dev = self.x.device
        if init is None:
            w = torch.zeros(self.d, self.c, dtype=torch.float64, device=dev)
            b = torch.zeros(self.c, dtype=torch.float64, device=dev)
        else:
            w, b = (t.detach().to(device=dev, dtype=torch.float64).clone() for t in init)
        w.requires_grad_(True)
        b.requires_grad_(True)
        opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=tolerance_grad,
                                tolerance_change=tolerance_change, history_size=history_size,
                                line_search_fn="strong_wolfe")
        scale = float(l2) / self.n

        @torch.no_grad()
        def closure():
            loss, gw, gb = self.loss_grad(w, b, scale)
            w.grad, b.grad = gw, gb
            return loss

        opt.step(closure)
        iters = int(opt.state[w].get("n_iter", 0))
        return w.detach(), b.detach(), iters


def fit_logistic_lbfgs(x: torch.Tensor, y: torch.Tensor, num_classes: int, l2: float, *,
                       init: tuple[torch.Tensor, torch.Tensor] | None = None, max_iter: int = 5000,
                       tolerance_grad: float = 1e-6, tolerance_change: float = 1e-12, history_size: int = 20,
                       matmul_dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Minimise ``Σ CE(x W + b, y) + l2 (‖W‖² + ‖b‖²)`` with L-BFGS; returns (W D×C, b C, iterations).

    The objective is divided by N (same minimiser), so ``tolerance_grad`` applies to the
    gradient of the mean loss. W and b are float64."""
    return _Problem(x, y, num_classes, matmul_dtype).fit(
        l2, init, max_iter=max_iter, tolerance_grad=tolerance_grad, tolerance_change=tolerance_change,
        history_size=history_size)


def _standardizer(x: torch.Tensor):
    mu = x.mean(0)
    sd = x.std(0, unbiased=False)
    sd = torch.where(sd > 1e-8, sd, torch.ones_like(sd))
    return lambda t: (t - mu) / sd


@dataclass
class LbfgsClassifier:
    """The refit classifier: standardise with the training split's statistics, then x W + b."""
    w: torch.Tensor
    b: torch.Tensor
    prep: object
    chosen_l2: float
    select_by: str
    val_scores: dict[float, float]
    iterations: dict[float, int]

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addmm(self.b, self.prep(x.to(torch.float64)), self.w).argmax(1)

    def result(self, x: torch.Tensor, y: torch.Tensor) -> LbfgsProbeResult:
        pred, y = self.predict(x), y.long()
        return LbfgsProbeResult(top1=top1_accuracy(pred, y), mean_per_class=mean_per_class_accuracy(pred, y),
                                chosen_l2=self.chosen_l2, select_by=self.select_by,
                                val_scores=dict(sorted(self.val_scores.items())),
                                iterations=dict(sorted(self.iterations.items())))


def fit_lbfgs_classifier(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                         num_classes: int | None = None, *, l2_values: Sequence[float] = DEFAULT_L2_GRID,
                         select_by: str = "top1", standardize: bool = True, max_iter: int = 5000,
                         tolerance_grad: float = 1e-6, matmul_dtype: torch.dtype = torch.float32) -> LbfgsClassifier:
    """Choose λ on val, refit on train + val: the classifier the test (clean or corrupted) is scored by.

    ``num_classes`` defaults to 1 + the largest train/val label."""
    if select_by not in SELECT_BY:
        raise ValueError(f"select_by must be one of {', '.join(SELECT_BY)}; got {select_by!r}")
    grid = sorted({float(v) for v in l2_values}, reverse=True)
    if not grid or any(not (math.isfinite(v) and v > 0) for v in grid):
        raise ValueError(f"l2_values must be positive finite numbers, got {list(l2_values)!r}")
    (xtr, ytr), (xva, yva) = train, val
    for name, (xs, ys) in (("train", train), ("val", val)):
        if xs.ndim != 2 or ys.ndim != 1 or len(xs) != len(ys) or len(xs) == 0:
            raise ValueError(f"{name}: expected N×D features and N labels, got {tuple(xs.shape)} and {tuple(ys.shape)}")
    if num_classes is None:
        num_classes = int(max(ytr.max().item(), yva.max().item())) + 1
    dt = torch.float64
    prep = _standardizer(xtr.to(dt)) if standardize else (lambda t: t)
    xtr, xva = prep(xtr.to(dt)), prep(xva.to(dt))
    ytr, yva = ytr.long(), yva.long()
    problem = _Problem(xtr, ytr, num_classes, matmul_dtype)
    opts = dict(max_iter=max_iter, tolerance_grad=tolerance_grad)

    val_scores: dict[float, float] = {}
    iterations: dict[float, int] = {}
    init = None
    chosen, chosen_fit, best = grid[0], None, -math.inf
    for lam in grid:  # strongest regularisation first: each solution warm-starts the next
        w, b, it = problem.fit(lam, init, **opts)
        init = (w, b)
        iterations[lam] = it
        with torch.no_grad():
            val_scores[lam] = _metric(select_by, torch.addmm(b, xva, w).argmax(1), yva)
        if val_scores[lam] >= best:  # λ decreases along the grid: a tie goes to the smaller λ
            chosen, chosen_fit, best = lam, (w, b), val_scores[lam]

    xall, yall = torch.cat([xtr, xva]), torch.cat([ytr, yva])
    del problem
    w, b, _ = _Problem(xall, yall, num_classes, matmul_dtype).fit(chosen, chosen_fit, **opts)
    return LbfgsClassifier(w, b, prep, chosen, select_by, val_scores, iterations)


def lbfgs_linear_eval(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                      test: tuple[torch.Tensor, torch.Tensor], num_classes: int | None = None, *,
                      l2_values: Sequence[float] = DEFAULT_L2_GRID, select_by: str = "top1",
                      standardize: bool = True, max_iter: int = 5000, tolerance_grad: float = 1e-6,
                      matmul_dtype: torch.dtype = torch.float32) -> LbfgsProbeResult:
    """Choose λ on val, refit on train + val, test. Features (N×D) and integer labels (N,).

    ``num_classes`` defaults to 1 + the largest train/val label (test labels are read only
    for the final scores)."""
    xte, yte = test
    if xte.ndim != 2 or yte.ndim != 1 or len(xte) != len(yte) or len(xte) == 0:
        raise ValueError(f"test: expected N×D features and N labels, got {tuple(xte.shape)} and {tuple(yte.shape)}")
    clf = fit_lbfgs_classifier(train, val, num_classes, l2_values=l2_values, select_by=select_by,
                               standardize=standardize, max_iter=max_iter, tolerance_grad=tolerance_grad,
                               matmul_dtype=matmul_dtype)
    return clf.result(xte, yte)
