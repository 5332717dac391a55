"""Numbers for what a stylizer does to an image: how much content it keeps (PSNR, SSIM
against the content image) and how far it moves colour statistics towards the style.
Images are float (B, 3, H, W) in [0, 1]; every function returns one value per image."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def psnr(x: Tensor, ref: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB (peak 1), per image."""
    mse = (x.float() - ref.float()).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(1.0 / mse)


def _gaussian(window: int, sigma: float, device) -> Tensor:
    r = torch.arange(window, device=device, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-r.pow(2) / (2 * sigma ** 2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(3, 1, window, window).contiguous()


def ssim(x: Tensor, ref: Tensor, window: int = 7, sigma: float = 1.5) -> Tensor:
    """Structural similarity (Wang et al. 2004; constants for a [0, 1] range), averaged over
    the channels and the valid positions of a Gaussian window, per image. A 7-px window
    (rather than 11) so 32-px images keep enough positions."""
    x, ref = x.float(), ref.float()
    w = _gaussian(window, sigma, x.device)
    c1, c2 = 0.01 ** 2, 0.03 ** 2

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, w, groups=3)
    mx, my = blur(x), blur(ref)
    vx = blur(x * x) - mx * mx
    vy = blur(ref * ref) - my * my
    cov = blur(x * ref) - mx * my
    s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.flatten(1).mean(1)


def colour_stats(x: Tensor) -> Tensor:
    """Per-channel mean and standard deviation, (B, 6)."""
    flat = x.float().flatten(2)
    return torch.cat([flat.mean(2), flat.std(2)], dim=1)


def colour_distance(x: Tensor, ref: Tensor) -> Tensor:
    """Euclidean distance between the colour statistics of x and ref, per image."""
    return (colour_stats(x) - colour_stats(ref)).norm(dim=1)
