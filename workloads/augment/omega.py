"""CASSLE's augmentation information vector ω (docs/methods.md; CASSLE paper §3.3).

ω has 14 values per image, in this fixed order (parts named by one letter):

====  =====  ===============================================================
part  slots  values
====  =====  ===============================================================
c     0-3    crop: centre y, centre x, height, width of the crop box, all
             normalised by the input image's height/width; centre x is
             mirrored (1 - x) when the view was flipped
j     4-7    colour jitter: (brightness - 1)/range, (contrast - 1)/range,
             (saturation - 1)/range, hue/range, where range = high - low of
             that factor's sampling interval; zeros when jitter not applied
d     8-10   colour difference: per RGB channel, mean before jitter minus
             mean after jitter (measured on the view, pixel values in
             [0, 1]); zeros when jitter not applied
b     11     blur: the Gaussian's sigma (output pixels); 0 when not applied
f     12     flip: 1 when flipped, else 0
g     13     grayscale: 1 when converted, else 0
====  =====  ===============================================================

This follows the CASSLE/AugSelf code (``extract_aug_descriptors``), with the
part order of docs/methods.md. Solarization (BYOL's view 2) is not part of ω.

A subset of parts ("c", "cj", "cjd", "cjbf", "cjbfg", "all", ...) selects
columns of ω; :func:`select_omega` keeps the canonical order whatever order the
letters are given in.
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch

from ..spec import ViewConfig

__all__ = [
    "OMEGA_DIM",
    "OMEGA_PARTS",
    "OMEGA_SLICES",
    "OMEGA_NAMES",
    "PART_NAMES",
    "parse_parts",
    "omega_mask",
    "omega_dim",
    "select_omega",
    "identity_omega",
    "omega_from_info",
]

OMEGA_DIM = 14
#: Canonical part order.
OMEGA_PARTS = ("c", "j", "d", "b", "f", "g")
#: Part -> (start, stop) columns of ω.
OMEGA_SLICES: dict[str, tuple[int, int]] = {
    "c": (0, 4), "j": (4, 8), "d": (8, 11), "b": (11, 12), "f": (12, 13), "g": (13, 14)}
PART_NAMES = {"c": "crop", "j": "colour jitter", "d": "colour difference", "b": "blur",
              "f": "flip", "g": "grayscale"}
#: Name of every column of ω.
OMEGA_NAMES = ("crop_cy", "crop_cx", "crop_h", "crop_w",
               "jitter_brightness", "jitter_contrast", "jitter_saturation", "jitter_hue",
               "colour_diff_r", "colour_diff_g", "colour_diff_b",
               "blur_sigma", "flip", "grayscale")

_JITTER = ("brightness", "contrast", "saturation", "hue")


def parse_parts(parts: str | Iterable[str] | None = "all", *, field: str = "omega_parts") -> tuple[str, ...]:
    """Normalise a part subset to a tuple in canonical order.

    Accepts ``"all"`` (or None), a string of letters (``"cjbf"``, also ``"c,j,b,f"`` /
    ``"{c, j}"``), or an iterable of letters. Unknown letters raise a ValueError that
    names them and ``field``.
    """
    if parts is None:
        return OMEGA_PARTS
    if isinstance(parts, str):
        text = parts.strip().lower()
        if text == "all":
            return OMEGA_PARTS
        letters = [ch for ch in text if ch not in " ,{}[]()'\""]
    else:
        letters = []
        for p in parts:
            if not isinstance(p, str):
                raise ValueError(f"{field}: parts must be letters, got {p!r}")
            p = p.strip().lower()
            if p == "all":
                return OMEGA_PARTS
            letters.append(p)
    unknown = [p for p in letters if p not in OMEGA_SLICES]
    if unknown:
        known = ", ".join(f"{k} ({v})" for k, v in PART_NAMES.items())
        raise ValueError(f"{field}: unknown augmentation part(s) {', '.join(map(repr, unknown))}; "
                         f"parts are {known}, or 'all'")
    if not letters:
        raise ValueError(f"{field}: select at least one augmentation part (or 'all')")
    return tuple(p for p in OMEGA_PARTS if p in letters)


def omega_mask(parts: str | Iterable[str] | None = "all") -> torch.Tensor:
    """Bool mask of the 14 columns of ω kept by ``parts``."""
    mask = torch.zeros(OMEGA_DIM, dtype=torch.bool)
    for p in parse_parts(parts):
        lo, hi = OMEGA_SLICES[p]
        mask[lo:hi] = True
    return mask


def omega_dim(parts: str | Iterable[str] | None = "all") -> int:
    """Number of ω columns kept by ``parts``."""
    return sum(OMEGA_SLICES[p][1] - OMEGA_SLICES[p][0] for p in parse_parts(parts))


def select_omega(omega: torch.Tensor, parts: str | Iterable[str] | torch.Tensor | None = "all") -> torch.Tensor:
    """Columns of a full ``B x 14`` ω kept by ``parts`` (a part string or a mask from :func:`omega_mask`)."""
    if omega.ndim != 2 or omega.shape[1] != OMEGA_DIM:
        raise ValueError(f"expected a full B x {OMEGA_DIM} ω, got shape {tuple(omega.shape)}")
    mask = parts if isinstance(parts, torch.Tensor) else omega_mask(parts)
    if bool(mask.all()):
        return omega
    return omega[:, mask.to(omega.device)]


def identity_omega(batch: int, device: torch.device | str | None = None) -> torch.Tensor:
    """ω of an image that was not augmented: the whole image as crop, everything else 0."""
    w = torch.zeros(batch, OMEGA_DIM, device=device)
    w[:, 0:4] = torch.tensor([0.5, 0.5, 1.0, 1.0], device=device)
    return w


def omega_from_info(info: Mapping[str, torch.Tensor], cfg: ViewConfig) -> torch.Tensor:
    """``B x 14`` float32 ω of one view from the parameters the view was made with.

    info: the dict :func:`workloads.augment.two_views.augment_view` returns (the sampled
    values the transform applied); cfg: that view's :class:`ViewConfig` (for the
    jitter ranges).
    """
    crop = info["crop"].float()  # (y0, x0, h, w) / (H, W, H, W), before the flip
    flip = info["flip"].bool()
    dev = crop.device
    cy = crop[:, 0] + crop[:, 2] / 2
    cx = crop[:, 1] + crop[:, 3] / 2
    cx = torch.where(flip, 1.0 - cx, cx)

    jit = info["jitter"].bool()
    factors = info["jitter_factors"].float()
    ranges = cfg.factor_ranges()
    width = torch.tensor([ranges[n][1] - ranges[n][0] for n in _JITTER], device=dev, dtype=torch.float32)
    centre = torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev)
    # a zero-width range (strength 0) means the factor never moves: report 0
    j = torch.where(width > 0, (factors - centre) / width.clamp(min=1e-12), torch.zeros_like(factors))
    j = torch.where(jit[:, None], j, torch.zeros_like(j))
    d = info["mean_before_jitter"].float() - info["mean_after_jitter"].float()
    d = torch.where(jit[:, None], d, torch.zeros_like(d))

    sigma = info["blur_sigma"].float().clamp(min=0.0)
    gray = info["grayscale"].bool()
    return torch.cat([cy[:, None], cx[:, None], crop[:, 2:4], j, d, sigma[:, None],
                      flip.float()[:, None], gray.float()[:, None]], dim=1)
