"""CASSLE's conditioning check (Eq. 2 of the paper): does the conditioned projector's output
depend on the true augmentation parameters ω, or would any ω do?

    E[ sim(π(e1|ω1), π(e2|ω2)) − sim(π(e1|ω1), π(e2|ω3)) ] > 0

As in the authors' check, view 1 is the image itself (centre crop, the identity ω) and view 2
an augmented copy with its own ω2; ω3 is another image's ω (the batch reversed, so every
image gets a real ω drawn from the same distribution, just not its own). A projector that
ignores ω gives a difference of exactly 0; one that reads ω as noise gives one centred on 0.
Reported: the mean difference, the share of images where the true ω wins, and both
similarities' histograms (the paper's figure).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..augment.omega import identity_omega
from ..augment.two_views import augment_view
from ..spec import ViewConfig

__all__ = ["ConditioningCheck", "conditioning_check", "plot_conditioning_check"]


@dataclass
class ConditioningCheck:
    sim_true: torch.Tensor   # (N,) cosine similarity with the view's own ω
    sim_false: torch.Tensor  # (N,) with another image's ω

    @property
    def difference(self) -> float:
        return float((self.sim_true - self.sim_false).mean())

    @property
    def share_true_better(self) -> float:
        """Percent of images whose own ω gives the higher similarity (ties count as half)."""
        d = self.sim_true - self.sim_false
        return 100.0 * float(((d > 0).double() + 0.5 * (d == 0).double()).mean())

    def as_metrics(self, prefix: str = "conditioning") -> dict[str, float]:
        return {f"{prefix}/difference": self.difference, f"{prefix}/share_true_better": self.share_true_better,
                f"{prefix}/sim_true": float(self.sim_true.mean()), f"{prefix}/sim_false": float(self.sim_false.mean()),
                f"{prefix}/images": float(len(self.sim_true))}


@torch.no_grad()
def conditioning_check(backbone: nn.Module, projector: nn.Module, images: torch.Tensor, view: ViewConfig, *,
                       mean: Sequence[float], std: Sequence[float], batch_size: int = 256,
                       generator: torch.Generator | None = None) -> ConditioningCheck:
    """Eq. 2 on ``images`` (uint8 N×3×S×S, centre-cropped); ``projector(e, ω)`` must read ω
    (``needs_omega``). Both modules run in eval mode (batch norms on their running statistics)."""
    if not getattr(projector, "needs_omega", False):
        raise ValueError("the conditioning check needs a projector conditioned on ω (CASSLE)")
    if images.ndim != 4 or len(images) < 2:
        raise ValueError(f"need at least 2 images N×3×S×S, got shape {tuple(images.shape)}")
    device = next(backbone.parameters()).device
    m = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    modes = [backbone.training, projector.training]
    backbone.eval()
    projector.eval()
    true, false = [], []
    try:
        chunks = list(torch.split(images, max(2, batch_size)))
        if len(chunks) > 1 and len(chunks[-1]) == 1:  # a batch of one has no other image to lend it an ω
            chunks[-2:] = [torch.cat(chunks[-2:])]
        for chunk in chunks:
            raw = chunk.to(device)
            n = len(raw)
            original = raw.float() / 255.0
            z1 = projector(backbone((original - m) / s), identity_omega(n, device))
            augmented, info = augment_view(raw, view, raw.shape[-1], generator=generator, omega=True)
            e2 = backbone((augmented - m) / s)
            omega = info["omega"]
            z_true = projector(e2, omega)
            z_false = projector(e2, omega.flip(0))  # another image's ω (the authors reverse the batch)
            true.append(F.cosine_similarity(z1.double(), z_true.double(), dim=1).cpu())
            false.append(F.cosine_similarity(z1.double(), z_false.double(), dim=1).cpu())
    finally:
        backbone.train(modes[0])
        projector.train(modes[1])
    return ConditioningCheck(torch.cat(true), torch.cat(false))


def plot_conditioning_check(result: ConditioningCheck, title: str = ""):
    """Histograms of the two similarities (the paper's figure); a matplotlib Figure."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5.0, 3.2), layout="constrained")
    ax = fig.subplots()
    lo = float(min(result.sim_true.min(), result.sim_false.min()))
    hi = float(max(result.sim_true.max(), result.sim_false.max()))
    bins = torch.linspace(lo, hi if hi > lo else lo + 1e-3, 41).tolist()
    ax.hist(result.sim_true.numpy(), bins=bins, alpha=0.6, label="own ω")
    ax.hist(result.sim_false.numpy(), bins=bins, alpha=0.6, label="another image's ω")
    ax.set_xlabel("cosine similarity to the original's projection")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    ax.set_title(title or f"own ω better for {result.share_true_better:.1f} % "
                          f"(mean difference {result.difference:+.2e})", fontsize=9)
    return fig
