"""Parameters of one view of the BYOL-style augmentation pipeline.

Every number of the pipeline is a field here, never a hidden constant
(docs/methods.md). Defaults are BYOL's (Grill et al. 2020), which SASSL and CASSLE
reuse: view 1 always blurs and never solarizes, view 2 blurs with p 0.1 and
solarizes with p 0.2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

__all__ = ["ViewConfig"]

_PROBABILITIES = ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p")
_JITTER_STRENGTHS = ("brightness", "contrast", "saturation")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class ViewConfig:
    """Augmentation parameters of one view.

    crop_scale: range of the crop's area as a fraction of the image area.
    crop_ratio: range of the crop's aspect ratio (w / h), sampled log-uniformly.
    flip_p: probability of a horizontal flip.
    jitter_p: probability of applying colour jitter (all four ops together).
    brightness, contrast, saturation: factor drawn from U[max(0, 1 - v), 1 + v].
    hue: hue shift drawn from U[-hue, hue] (fraction of a full turn), hue <= 0.5.
    grayscale_p: probability of converting to (3-channel) grayscale.
    blur_p: probability of a Gaussian blur; sigma ~ U[blur_sigma].
    blur_sigma: range of the blur's standard deviation, in output pixels.
    blur_kernel_frac: kernel size = odd number nearest blur_kernel_frac * S
        (at least 3); BYOL's 23 px at S = 224 is frac 0.1.
    solarize_p: probability of solarizing (x -> 1 - x where x >= threshold).
    solarize_threshold: threshold in [0, 1] (images are float in [0, 1]).
    """

    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.2
    hue: float = 0.1
    grayscale_p: float = 0.2
    blur_p: float = 1.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_frac: float = 0.1
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5

    # ------------------------------------------------------------------ ctors
    @classmethod
    def byol_view1(cls, **overrides: Any) -> "ViewConfig":
        """BYOL's first view: blur p 1.0, solarize p 0.0."""
        return cls(**{"blur_p": 1.0, "solarize_p": 0.0, **overrides})

    @classmethod
    def byol_view2(cls, **overrides: Any) -> "ViewConfig":
        """BYOL's second view: blur p 0.1, solarize p 0.2."""
        return cls(**{"blur_p": 0.1, "solarize_p": 0.2, **overrides})

    # ------------------------------------------------------------- validation
    def __post_init__(self) -> None:
        for name in ("crop_scale", "crop_ratio", "blur_sigma"):
            value = getattr(self, name)
            try:
                pair = tuple(value)
            except TypeError:
                raise ValueError(f"{name} must be a (low, high) pair, got {value!r}") from None
            if len(pair) != 2 or not all(_is_number(v) for v in pair):
                raise ValueError(f"{name} must be a (low, high) pair of numbers, got {value!r}")
            pair = (float(pair[0]), float(pair[1]))
            if not all(math.isfinite(v) for v in pair):
                raise ValueError(f"{name} must be finite, got {pair!r}")
            if pair[0] > pair[1]:
                raise ValueError(f"{name}: low {pair[0]} > high {pair[1]}")
            object.__setattr__(self, name, pair)

        for f in fields(self):
            if f.name in ("crop_scale", "crop_ratio", "blur_sigma"):
                continue
            value = getattr(self, f.name)
            if not _is_number(value) or not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
            object.__setattr__(self, f.name, float(value))

        lo, hi = self.crop_scale
        if not (0.0 < lo and hi <= 1.0):
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale!r}")
        lo, hi = self.crop_ratio
        if not lo > 0.0:
            raise ValueError(f"crop_ratio must be positive, got {self.crop_ratio!r}")
        lo, hi = self.blur_sigma
        if not lo > 0.0:
            raise ValueError(f"blur_sigma must be positive, got {self.blur_sigma!r}")
        for name in _PROBABILITIES:
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} is a probability and must be in [0, 1], got {p!r}")
        for name in _JITTER_STRENGTHS:
            v = getattr(self, name)
            if not v >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {v!r}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue!r}")
        if not self.blur_kernel_frac > 0.0:
            raise ValueError(f"blur_kernel_frac must be > 0, got {self.blur_kernel_frac!r}")
        if not 0.0 <= self.solarize_threshold <= 1.0:
            raise ValueError(f"solarize_threshold must be in [0, 1], got {self.solarize_threshold!r}")

    # ---------------------------------------------------------------- helpers
    def blur_kernel_size(self, size: int) -> int:
        """Odd kernel size nearest ``blur_kernel_frac * size``, at least 3."""
        if size <= 0:
            raise ValueError(f"size must be positive, got {size!r}")
        k = 2 * int(math.floor(self.blur_kernel_frac * size / 2.0)) + 1
        return max(3, k)

    def factor_ranges(self) -> dict[str, tuple[float, float]]:
        """Sampling ranges of the four jitter factors (as torchvision's ColorJitter)."""
        return {
            "brightness": (max(0.0, 1.0 - self.brightness), 1.0 + self.brightness),
            "contrast": (max(0.0, 1.0 - self.contrast), 1.0 + self.contrast),
            "saturation": (max(0.0, 1.0 - self.saturation), 1.0 + self.saturation),
            "hue": (-self.hue, self.hue),
        }
