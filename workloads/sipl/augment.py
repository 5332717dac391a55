"""ReLIC-style patch augmentation of SIPL (paper Table 2, Algorithm 1) and the pairing of
patches into localization problems for each variant.

Every patch of a problem ends with chromatic-aberration removal and ImageNet
normalisation (Algorithm 1), augmented or not. Augmentation parameters are sampled
per image as a plain dict so the *same* transform can be applied to two patches
(SIPLv2). Differences from torchvision's per-image pipeline, on purpose: one
colour-jitter order per call (shared by the batch) instead of one per image, as in
workloads/augment/kernels.py.
"""
from __future__ import annotations


import torch

from ..augment import kernels as A
from ..spec import SiplAugment
from .patches import remove_chromatic_aberration

__all__ = ["SiplAugment", "VARIANTS", "sample_relic_params", "repeat_params", "apply_relic", "relic_augment",
           "finalize", "make_problems"]

VARIANTS = ("opl", "siplv1", "siplv2", "siplv3")


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
