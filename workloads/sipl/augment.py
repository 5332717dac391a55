"""ReLIC-style patch augmentation of SIPL (paper Table 2, Algorithm 1) and the pairing of
patches into localization problems for each variant.

Every patch of a problem ends with chromatic-aberration removal and ImageNet
normalisation (Algorithm 1), augmented or not. Augmentation parameters are sampled
per image as a plain dict so the *same* transform can be applied to two patches
(SIPLv2). Differences from torchvision's per-image pipeline, on purpose: one
colour-jitter order per call (shared by the batch) instead of one per image, as in
workloads/augment/batched.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

import torch

from ..augment import batched as A
from .patches import remove_chromatic_aberration

__all__ = ["SiplAugment", "VARIANTS", "sample_relic_params", "repeat_params", "apply_relic", "relic_augment",
           "finalize", "make_problems", "augment_from_dict"]

VARIANTS = ("opl", "siplv1", "siplv2", "siplv3")


@dataclass(frozen=True)
class SiplAugment:
    """Table 2 of the paper. Colour ranges are the factors themselves (torchvision's
    ColorJitter(0.8, 0.8, 0.8, 0.2)); jitter and blur have no probability in the paper,
    so they are always applied (p = 1), as in its Algorithm 1. No flips: patch
    localization is not invariant to them."""

    crop_scale: tuple[float, float] = (0.32, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    jitter_p: float = 1.0
    brightness: tuple[float, float] = (0.2, 1.8)
    contrast: tuple[float, float] = (0.2, 1.8)
    saturation: tuple[float, float] = (0.2, 1.8)
    hue: tuple[float, float] = (-0.2, 0.2)
    grayscale_p: float = 0.05
    blur_p: float = 1.0
    blur_kernel_224: int = 23  # kernel at 224 px; scaled to the patch input size
    blur_sigma: tuple[float, float] = (1e-10, 0.2)  # px, as in the paper (a near no-op)
    solarize_p: float = 0.2
    solarize_threshold: float = 0.5
    mean: tuple[float, float, float] = A.IMAGENET_MEAN
    std: tuple[float, float, float] = A.IMAGENET_STD

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(f.default, tuple):
                if not isinstance(v, (list, tuple)) or len(v) != len(f.default):
                    raise ValueError(f"augment.{f.name} must be a list of {len(f.default)} numbers, got {v!r}")
                v = tuple(float(e) for e in v)
                if len(v) == 2 and v[0] > v[1]:
                    raise ValueError(f"augment.{f.name}: low {v[0]} > high {v[1]}")
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"augment.{f.name} must be a number, got {v!r}")
            object.__setattr__(self, f.name, v)
        for name in ("jitter_p", "grayscale_p", "blur_p", "solarize_p", "solarize_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not (0.0 < self.crop_scale[0] and self.crop_scale[1] <= 1.0) or self.crop_ratio[0] <= 0:
            raise ValueError(f"augment.crop_scale must lie in (0, 1] and crop_ratio be positive, got "
                             f"{self.crop_scale!r}, {self.crop_ratio!r}")
        if min(self.brightness + self.contrast + self.saturation) < 0 or not -0.5 <= self.hue[0] <= self.hue[1] <= 0.5:
            raise ValueError("augment: colour factors must be >= 0 and hue within [-0.5, 0.5]")
        if self.blur_sigma[0] <= 0 or int(self.blur_kernel_224) != self.blur_kernel_224 or self.blur_kernel_224 < 1:
            raise ValueError("augment: blur_sigma must be positive and blur_kernel_224 a positive integer")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"augment.std must be positive, got {self.std!r}")

    def kernel_size(self, size: int) -> int:
        """Odd kernel nearest blur_kernel_224 * size / 224, at least 3 (3 at 32 px, 23 at 224)."""
        k = 2 * int(math.floor(self.blur_kernel_224 * size / 224 / 2.0)) + 1
        return max(3, k)


def _uniform(shape: tuple[int, ...], generator: torch.Generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def sample_relic_params(batch: int, size: int, cfg: SiplAugment, generator: torch.Generator,
                        device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Per-image parameters of one ReLIC transform for ``size``-px patches (fixed number of draws)."""
    boxes = A.sample_crop_boxes(batch, size, size, cfg.crop_scale, cfg.crop_ratio, generator=generator, device=device)
    u = _uniform((batch, 9), generator, device)
    lo = torch.tensor([cfg.brightness[0], cfg.contrast[0], cfg.saturation[0], cfg.hue[0]], device=device)
    hi = torch.tensor([cfg.brightness[1], cfg.contrast[1], cfg.saturation[1], cfg.hue[1]], device=device)
    jit = u[:, 0] < cfg.jitter_p
    factors = torch.where(jit[:, None], lo + (hi - lo) * u[:, 1:5], torch.tensor([1.0, 1.0, 1.0, 0.0], device=device))
    blur = u[:, 6] < cfg.blur_p
    sigma = torch.where(blur, cfg.blur_sigma[0] + (cfg.blur_sigma[1] - cfg.blur_sigma[0]) * u[:, 7], 0.0)
    order = torch.randperm(4, generator=generator, device=generator.device).to(device)
    return {"boxes": boxes, "factors": factors, "jitter": jit, "order": order, "grayscale": u[:, 5] < cfg.grayscale_p,
            "sigma": sigma, "solarize": u[:, 8] < cfg.solarize_p}


def repeat_params(params: dict[str, torch.Tensor], times: int) -> dict[str, torch.Tensor]:
    """The same per-image parameters for ``times`` stacked copies of the batch."""
    return {k: v if k == "order" else v.repeat(times, *([1] * (v.ndim - 1))) for k, v in params.items()}


def apply_relic(x: torch.Tensor, params: dict[str, torch.Tensor], cfg: SiplAugment) -> torch.Tensor:
    """Apply sampled parameters to float [0, 1] patches B×3×S×S (crop → jitter → grey → blur → solarize)."""
    size = x.shape[-1]
    out = A.resized_crop(x, params["boxes"], size)
    if cfg.jitter_p > 0:
        out = A.color_jitter(out, *params["factors"].unbind(1), order=params["order"], mask=params["jitter"])
    if cfg.grayscale_p > 0:
        out = A.grayscale(out, params["grayscale"])
    if cfg.blur_p > 0:
        out = A.gaussian_blur(out, params["sigma"], cfg.kernel_size(size))
    if cfg.solarize_p > 0:
        out = A.solarize(out, params["solarize"], cfg.solarize_threshold)
    return out


def relic_augment(x: torch.Tensor, cfg: SiplAugment, generator: torch.Generator) -> torch.Tensor:
    """Independent ReLIC transform per image of float [0, 1] patches."""
    return apply_relic(x, sample_relic_params(x.shape[0], x.shape[-1], cfg, generator, x.device), cfg)


def finalize(x: torch.Tensor, cfg: SiplAugment) -> torch.Tensor:
    """Last steps of every patch (Algorithm 1): colour projection, then normalisation."""
    return A.normalize(remove_chromatic_aberration(x), cfg.mean, cfg.std)


def make_problems(variant: str, centre: torch.Tensor, neighbour: torch.Tensor, augment: SiplAugment,
                  generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Localization problems (c, n) of a variant, finalised; a patch shared by two problems
    is the same tensor object (so the model can encode it once).

    opl ⟨c, n⟩; siplv1 ⟨c, A1(n)⟩, ⟨c, A2(n)⟩; siplv2 ⟨A1(c), A1(n)⟩, ⟨A2(c), A2(n)⟩ with the
    same parameters on c and n; siplv3 ⟨A1(c), A2(n)⟩, ⟨A1(c), A3(n)⟩. One augmentation call
    per batch: the patches to transform are stacked.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown SIPL variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    B, S, dev = centre.shape[0], centre.shape[-1], centre.device
    if variant == "opl":
        return [(finalize(centre, augment), finalize(neighbour, augment))]
    if variant == "siplv1":
        c = finalize(centre, augment)
        n1, n2 = finalize(relic_augment(torch.cat((neighbour, neighbour)), augment, generator), augment).split(B)
        return [(c, n1), (c, n2)]
    if variant == "siplv2":
        p = sample_relic_params(2 * B, S, augment, generator, dev)  # A1 for rows :B, A2 for B:
        x = torch.cat((centre, centre, neighbour, neighbour))
        c1, c2, n1, n2 = finalize(apply_relic(x, repeat_params(p, 2), augment), augment).split(B)
        return [(c1, n1), (c2, n2)]
    c1, n2, n3 = finalize(relic_augment(torch.cat((centre, neighbour, neighbour)), augment, generator),
                          augment).split(B)
    return [(c1, n2), (c1, n3)]


def augment_from_dict(d: dict[str, Any] | None) -> SiplAugment:
    """SiplAugment from a plain (JSON/YAML) dict; unknown keys are an error."""
    d = dict(d or {})
    known = {f.name for f in fields(SiplAugment)}
    if set(d) - known:
        raise ValueError(f"unknown augment keys {sorted(set(d) - known)}; known: {sorted(known)}")
    return SiplAugment(**d)
