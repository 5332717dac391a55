"""SASSL style augmentation (docs/methods.md): applied to the left view's cropped batch,
before the flip, on the training device, with no gradient reaching the stylizer.

For each image, with probability p:
    z_c = P(x_c);  z = α·z_s + (1 − α)·z_c;  x_t = T(x_c, z);  x = β·x_t + (1 − β)·x_c
with α, β ~ U(low, high) per image and z_s from the configured style source.

``size``: the resolution the stylizer works at. Small crops (the kit's 32 px) can be
upsampled to it, stylized, and brought back to their size (antialiased), since a
stylizer trained on large images keeps more content at a larger working size
(benchmarks/stylize_resolution.py measures it). None = the crops' own size."""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..precision import autocast
from .model import fold_batch_norms, validate_stylized_layers

SOURCES = ("in_batch", "external", "noise", "content")


@dataclass
class StyleDraw:
    """What one call did, for tests and picture grids."""
    mask: torch.Tensor     # bool B: which images were stylized
    alpha: torch.Tensor    # per stylized image
    beta: torch.Tensor
    style_index: torch.Tensor  # in-batch partner or bank row per stylized image (-1: noise/content)


def _uniform(lo_hi: tuple[float, float], n: int, generator, device) -> torch.Tensor:
    lo, hi = lo_hi
    return lo + (hi - lo) * torch.rand(n, generator=generator, device=device)


class StyleAugment:
    def __init__(self, net, *, p: float = 0.8, alpha: tuple[float, float] = (0.1, 0.3),
                 beta: tuple[float, float] = (0.1, 0.3), source: str = "external", shift: int = 1,
                 bank: torch.Tensor | None = None, stylized_layers: int = 13,
                 generator: torch.Generator | None = None, size: int | None = None,
                 amp_dtype: torch.dtype | None = None):
        if source not in SOURCES:
            raise ValueError(f"style source {source!r}: choose one of {SOURCES}")
        for name, (lo, hi) in (("alpha", alpha), ("beta", beta)):
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"{name}: need 0 <= low <= high <= 1, got [{lo}, {hi}]")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p: must lie in [0, 1], got {p}")
        if source == "external" and (bank is None or len(bank) == 0):
            raise ValueError("an external style source needs a non-empty style bank")
        if source == "in_batch" and shift < 1:
            raise ValueError("shift: the in-batch circular shift k must be >= 1")
        validate_stylized_layers(stylized_layers)
        if size is not None and size < 8:
            raise ValueError(f"size: the stylizer needs at least 8 px, got {size}")
        self.size = size
        # channels-last runs the stylizer's convolutions ~1.4-2x faster on CPU (measured at 32 px);
        # batch norms folded into their convolutions on a copy (the caller's net is left as given)
        self.net = fold_batch_norms(copy.deepcopy(net).eval()).requires_grad_(False).to(
            memory_format=torch.channels_last)
        self.p, self.alpha, self.beta, self.source, self.shift = p, alpha, beta, source, shift
        # the bank moves to the stylizer's device once here, not from pageable memory every batch
        # (a Painter-by-Numbers bank is ~32 MB)
        device = next(self.net.parameters()).device
        self.bank = bank.to(device) if bank is not None else None
        self.stylized_layers, self.generator = stylized_layers, generator
        self.amp_dtype = amp_dtype  # autocast dtype of the stylizer's passes (None: fp32)
        self.last: StyleDraw | None = None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x: float B×3×S×S in [0, 1] (the cropped left view). Returns a new tensor."""
        b, dev, g = x.shape[0], x.device, self.generator
        mask = torch.rand(b, generator=g, device=dev) < self.p
        idx = mask.nonzero().flatten()
        m = len(idx)
        alpha = _uniform(self.alpha, m, g, dev)
        beta = _uniform(self.beta, m, g, dev)
        style_index = torch.full((m,), -1, dtype=torch.long, device=dev)
        if m == 0:
            self.last = StyleDraw(mask, alpha, beta, style_index)
            return x
        content = x[idx]
        work = self.resize(content)
        with autocast(dev.type, self.amp_dtype):
            stylized, style_index = self._stylize(x, idx, work, alpha, style_index)
        stylized = self.resize(stylized.float(), content.shape[-2:]).clamp_(0, 1)
        out = x.clone()
        out[idx] = beta.view(-1, 1, 1, 1) * stylized + (1.0 - beta.view(-1, 1, 1, 1)) * content
        self.last = StyleDraw(mask, alpha, beta, style_index)
        return out

    def _stylize(self, x, idx, work, alpha, style_index):
        """T(x_c, z) for the chosen images at the working size, and each one's style index."""
        b, dev, g, m = x.shape[0], x.device, self.generator, len(idx)
        if self.source == "in_batch":
            # sample i takes the style of sample (i + k) mod B of the whole content batch
            style_index = (idx + self.shift) % b
            z_all = self.net.embed(self.resize(x))
            z_c, z_s = z_all[idx], z_all[style_index]
        else:
            z_c = self.net.embed(work)
            if self.source == "external":
                style_index = torch.randint(len(self.bank), (m,), generator=g, device=dev)
                z_s = self.bank[style_index]
            elif self.source == "noise":
                z_s = torch.randn(z_c.shape, generator=g, device=dev)
            else:  # content: the stylizer as an autoencoder of its own style
                z_s = z_c
        z = alpha[:, None] * z_s + (1.0 - alpha[:, None]) * z_c
        return self.net.transformer(work, z, z_content=z_c, stylized_layers=self.stylized_layers), style_index

    def resize(self, x: torch.Tensor, size=None) -> torch.Tensor:
        """x at the stylizer's working size (or at ``size``), channels-last for the stylizer."""
        size = size if size is not None else self.size
        return (x if size is None else resize(x, size)).contiguous(memory_format=torch.channels_last)


def resize(x: torch.Tensor, size) -> torch.Tensor:
    """Float images at ``size`` (an int for square, or (h, w)): antialiased bilinear, as the
    crops are made; returned unchanged when already that size."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
