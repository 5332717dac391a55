"""Sensitivity to augmentations (CASSLE §4.2, Figure 6; A.2 "Sensitivity to augmentations").

For each augmentation type applied alone (crop, colour jitter, blur, flip, grayscale), each
image of a mini-batch (256 in the paper) is paired with its augmented version; features of
both are taken at every backbone stage (and, optionally, after the projector), and the
InfoNCE loss of matching each original to its augmented version among the batch's
augmented images (cosine similarities / temperature, cross-entropy on the diagonal) is
reported. High values: the representation changes under the augmentation (it is
augmentation-aware); low values: it is invariant.

As in the authors' code (``transfer_feature_invariance.py``): stage features are flattened
feature maps (``pool="flatten"``; ``"avg"`` pools them instead), the temperature is 0.2,
crops use scale [0.2, 1] and the other augmentations CASSLE's pretraining strengths
(:func:`cassle_view_config`); the originals are the centre-cropped images themselves.
The authors' numbers are the loss times 2·T (MoCo v3's scaling): pass ``loss_scale=0.4``
to reproduce that scale. A CASSLE projector is given each view's ω: the augmented view's
from the transform, the original's the identity ω (whole-image crop, nothing applied).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..augment.two_views import augment_view
from ..augment.omega import identity_omega
from ..spec import IMAGENET_MEAN, IMAGENET_STD, ViewConfig

__all__ = ["AUGMENTATIONS", "SensitivityResult", "cassle_view_config", "single_augmentation_config",
           "info_nce_matching", "augmentation_sensitivity", "method_sensitivity", "plot_sensitivity"]

AUGMENTATIONS = ("crop", "jitter", "blur", "flip", "grayscale")
POOLS = ("flatten", "avg")
_PROB = {"jitter": "jitter_p", "blur": "blur_p", "flip": "flip_p", "grayscale": "grayscale_p"}
_NONE = dict(flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)


def cassle_view_config() -> ViewConfig:
    """CASSLE's pretraining augmentations (A.1): crop scale [0.2, 1]; jitter 0.4/0.4/0.4/0.1
    with p 0.8; blur σ ∈ [0.1, 2] with p 0.5 (kernel 23 px at 224 = 0.1 of the size);
    flip p 0.5; grayscale p 0.2; no solarization."""
    return ViewConfig(crop_scale=(0.2, 1.0), crop_ratio=(3 / 4, 4 / 3), flip_p=0.5, jitter_p=0.8, brightness=0.4,
                      contrast=0.4, saturation=0.4, hue=0.1, grayscale_p=0.2, blur_p=0.5, blur_sigma=(0.1, 2.0),
                      blur_kernel_frac=0.1, solarize_p=0.0, solarize_threshold=0.5)


def single_augmentation_config(name: str, base: ViewConfig | None = None) -> ViewConfig:
    """``base`` with only augmentation ``name`` applied (probability 1); the other
    augmentations keep the whole image (a full-image crop is the identity)."""
    base = base or cassle_view_config()
    if name not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {name!r}; choose from {', '.join(AUGMENTATIONS)}")
    if name == "crop":
        return dataclasses.replace(base, **_NONE)
    return dataclasses.replace(base, **{**_NONE, _PROB[name]: 1.0}, crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))


def info_nce_matching(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.2) -> float:
    """InfoNCE of matching row i of ``a`` to row i of ``b`` by cosine similarity."""
    a = F.normalize(a.flatten(1).double(), dim=1)
    b = F.normalize(b.flatten(1).double(), dim=1)
    logits = a @ b.t() / temperature
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device)).item()


@dataclass
class SensitivityResult:
    augmentations: tuple[str, ...]
    stages: tuple[str, ...]
    infonce: torch.Tensor  # (augmentations, stages), float64, mean over the batches
    batches: int = 0

    def as_dict(self) -> dict[str, dict[str, float]]:
        """``{augmentation: {stage: infonce}}``."""
        return {a: {s: float(self.infonce[i, j]) for j, s in enumerate(self.stages)}
                for i, a in enumerate(self.augmentations)}

    def as_metrics(self, prefix: str = "sensitivity") -> dict[str, float]:
        return {f"{prefix}/{a}/{s}": v for a, row in self.as_dict().items() for s, v in row.items()}


def _stage_features(backbone: nn.Module, x: torch.Tensor, pool: str) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(per-stage features, the backbone's pooled output e)."""
    if hasattr(backbone, "stages"):
        maps = backbone.stages(x)[1:]  # after each residual stage (the stem is not a stage)
        e = torch.flatten(backbone.pool(maps[-1]), 1) if hasattr(backbone, "pool") else backbone(x)
        feats = [m.flatten(1) if pool == "flatten" else m.mean(dim=(-2, -1)) for m in maps]
        return feats, e
    e = backbone(x)
    return [e.flatten(1)], e


def _stage_names(backbone: nn.Module, projector: nn.Module | None) -> tuple[str, ...]:
    names = ("layer1", "layer2", "layer3", "layer4") if hasattr(backbone, "stages") else ("backbone",)
    return names + (("projector",) if projector is not None else ())


@torch.no_grad()
def augmentation_sensitivity(backbone: nn.Module, images: torch.Tensor, *, projector: nn.Module | None = None,
                             augmentations: Sequence[str] = AUGMENTATIONS, base_view: ViewConfig | None = None,
                             mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                             batch_size: int = 256, temperature: float = 0.2, loss_scale: float = 1.0,
                             pool: str = "flatten", generator: torch.Generator | None = None) -> SensitivityResult:
    """InfoNCE per augmentation (rows) and stage (columns: layer1..layer4[, projector]).

    images: uint8 (0..255) or float ([0, 1]) ``N x 3 x S x S``, already centre-cropped (as for
    linear evaluation). Batches of ``batch_size`` (only full ones, unless N is smaller than a
    batch: then one batch of N); values are the mean over batches. ``projector`` maps the
    backbone's pooled output e to the projection; a CASSLE projector (``needs_omega``) is
    called as ``projector(e, ω)``.
    """
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)}; got {pool!r}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"expected square N x 3 x S x S images, got shape {tuple(images.shape)}")
    if len(images) < 2:
        raise ValueError("need at least 2 images (InfoNCE matches each one among the batch)")
    augmentations = tuple(augmentations)
    configs = {a: single_augmentation_config(a, base_view) for a in augmentations}
    stages = _stage_names(backbone, projector)
    device = next(backbone.parameters()).device
    m = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    conditioned = projector is not None and getattr(projector, "needs_omega", False)
    size = images.shape[-1]

    def features(x: torch.Tensor, omega: torch.Tensor | None) -> list[torch.Tensor]:
        feats, e = _stage_features(backbone, (x - m) / s, pool)
        if projector is not None:
            feats.append(projector(e, omega) if conditioned else projector(e))
        return feats

    n = len(images)
    bs = min(batch_size, n)
    starts = range(0, n - bs + 1, bs)
    modules = [backbone] + ([projector] if projector is not None else [])
    was_training = [mod.training for mod in modules]
    for mod in modules:
        mod.eval()
    total = torch.zeros(len(augmentations), len(stages), dtype=torch.float64)
    try:
        for i in starts:
            raw = images[i:i + bs].to(device)
            x = raw.float() / 255.0 if raw.dtype == torch.uint8 else raw.float()
            ref = features(x, identity_omega(bs, device) if conditioned else None)
            for ai, a in enumerate(augmentations):
                view, info = augment_view(raw, configs[a], size, generator=generator, omega=conditioned)
                aug = features(view, info.get("omega"))
                for si, (fr, fa) in enumerate(zip(ref, aug)):
                    total[ai, si] += info_nce_matching(fr, fa, temperature)
    finally:
        for mod, flag in zip(modules, was_training):
            mod.train(flag)
    return SensitivityResult(augmentations, stages, total / len(starts) * loss_scale, len(starts))


def method_sensitivity(method: nn.Module, images: torch.Tensor, **kw) -> SensitivityResult:
    """:func:`augmentation_sensitivity` of an SSL method's online backbone and projector."""
    return augmentation_sensitivity(method.backbone, images, projector=getattr(method, "projector", None), **kw)


def plot_sensitivity(results: SensitivityResult | Mapping[str, SensitivityResult], title: str = ""):
    """One panel per augmentation, InfoNCE against stage, one line per model (Figure 6 layout).

    ``results``: one result or ``{label: result}`` (e.g. vanilla / AugSelf / CASSLE).
    Returns a matplotlib Figure (not shown, not saved: ``fig.savefig(path)``)."""
    from matplotlib.figure import Figure

    if isinstance(results, SensitivityResult):
        results = {"": results}
    if not results:
        raise ValueError("nothing to plot")
    first = next(iter(results.values()))
    augs = first.augmentations
    fig = Figure(figsize=(2.6 * len(augs), 2.8), layout="constrained")
    axes = fig.subplots(1, len(augs), sharey=True, squeeze=False)[0]
    for ax, a in zip(axes, augs):
        for label, r in results.items():
            if a not in r.augmentations:
                continue
            row = r.infonce[r.augmentations.index(a)]
            ax.plot(range(len(r.stages)), row.tolist(), marker="o", label=label or None)
            ax.set_xticks(range(len(r.stages)), [st.replace("layer", "stage ") for st in r.stages],
                          rotation=45, ha="right", fontsize=8)
        ax.set_title(a)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("InfoNCE")
    if any(results.keys()):
        axes[-1].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
