"""Batched image kernels on the batch's device (pure PyTorch): crop boxes, crop + resize, flip,
colour jitter, grayscale, Gaussian blur, solarize, (de)normalisation. The two-view pipeline
(two_views.py), SIPL's patch augmentation and the sensitivity analysis are built from them.

All ops work on a whole batch ``B x 3 x H x W`` at once, on whatever device the
input lives on, with per-image random parameters drawn from one
``torch.Generator`` (or the global RNG of the input's device). Images are float
in [0, 1] between the ops.
Differences from the per-image torchvision pipeline, on purpose:

* Colour-jitter *order*: torchvision draws a random permutation of
  (brightness, contrast, saturation, hue) for every image; here one permutation
  is drawn per view per batch (the factors are still per image). Per-image
  orders would need all four ops evaluated at every position.
* Crop + resize is one pair of batched matmuls with per-image interpolation
  matrices. They reproduce torchvision's ``resized_crop(..., antialias=True)``
  (bilinear, half-pixel centres, edge clamping at the crop border, triangle
  antialias filter when shrinking) on float images up to float rounding.
* uint8 input is converted to float before resizing (torchvision interpolates
  in uint8 and rounds), so results differ from torchvision-on-uint8 by <= 1/255.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..spec import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "JITTER_OPS",
    "Hook",
    "sample_crop_boxes",
    "resized_crop",
    "random_resized_crop",
    "hflip",
    "rgb_to_grayscale",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "adjust_hue",
    "color_jitter",
    "grayscale",
    "gaussian_kernels",
    "gaussian_blur",
    "solarize",
    "normalize",
    "denormalize",
    "rand_uniform",
    "check_images",
    "normalise_boxes",
]


#: Index -> name of the colour-jitter ops, as used by ``order`` / ``info["jitter_order"]``.
JITTER_OPS = ("brightness", "contrast", "saturation", "hue")

# ITU-R 601-2 luma weights, as torchvision's rgb_to_grayscale.
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)

Hook = Callable[[torch.Tensor], torch.Tensor]


# --------------------------------------------------------------------- helpers
def rand_uniform(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """U[0, 1) float32 on ``device``; drawn on the generator's device when one is given."""
    if generator is None:
        return torch.rand(tuple(shape), device=device)
    u = torch.rand(tuple(shape), generator=generator, device=generator.device)
    return u.to(device)


def _per_image(v: torch.Tensor | float | Sequence[float], x: torch.Tensor) -> torch.Tensor:
    """Per-image scalar(s) as a ``B x 1 x 1 x 1`` tensor on x's device/dtype."""
    t = torch.as_tensor(v, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"expected a scalar or {x.shape[0]} per-image values, got shape {tuple(t.shape)}")
    return t.view(-1, 1, 1, 1)


def _mask4(mask: torch.Tensor | bool, x: torch.Tensor) -> torch.Tensor:
    m = torch.as_tensor(mask, dtype=torch.bool, device=x.device)
    if m.ndim == 0:
        m = m.expand(x.shape[0])
    if m.shape != (x.shape[0],):
        raise ValueError(f"expected a {x.shape[0]}-element mask, got shape {tuple(m.shape)}")
    return m.view(-1, 1, 1, 1)


def check_images(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a B x 3 x H x W batch, got shape {tuple(x.shape)}")


# ------------------------------------------------------------------------ crop
def sample_crop_boxes(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    attempts: int = 10,
) -> torch.Tensor:
    """Integer crop boxes ``B x 4`` as (top, left, h, w) in pixels.

    Vectorised torchvision ``RandomResizedCrop.get_params``: ``attempts`` tries of
    (area ~ U[scale] * H * W, aspect ~ logU[ratio]); the first try that fits is
    used, with a uniformly placed top-left corner; images where no try fits get
    torchvision's fallback (centre crop clamped to the ratio range). Always
    draws ``batch * (2 * attempts + 2)`` uniforms, so the RNG stream advances by
    a fixed amount.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    u = rand_uniform((batch, 2 * attempts + 2), generator, device)
    area = float(height * width)
    s_lo, s_hi = float(scale[0]), float(scale[1])
    lr_lo, lr_hi = math.log(ratio[0]), math.log(ratio[1])
    target = area * (s_lo + (s_hi - s_lo) * u[:, :attempts])
    aspect = torch.exp(lr_lo + (lr_hi - lr_lo) * u[:, attempts : 2 * attempts])
    w = torch.round(torch.sqrt(target * aspect))
    h = torch.round(torch.sqrt(target / aspect))
    valid = (w >= 1) & (w <= width) & (h >= 1) & (h <= height)
    first = valid.to(torch.uint8).argmax(dim=1, keepdim=True)  # first True (0 if none)
    found = valid.any(dim=1)

    # torchvision's fallback: whole image, clamped to the ratio range, centred.
    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = height, int(round(height * max(ratio)))
    else:
        fw, fh = width, height
    h = torch.where(found, h.gather(1, first).squeeze(1), float(fh))
    w = torch.where(found, w.gather(1, first).squeeze(1), float(fw))
    top = torch.floor(u[:, 2 * attempts] * (height - h + 1)).clamp_(max=height - h)
    left = torch.floor(u[:, 2 * attempts + 1] * (width - w + 1)).clamp_(max=width - w)
    top = torch.where(found, top, torch.div(height - h, 2, rounding_mode="floor"))
    left = torch.where(found, left, torch.div(width - w, 2, rounding_mode="floor"))
    return torch.stack((top, left, h, w), dim=1).long()


def _interp_matrix(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int) -> torch.Tensor:
    """``B x out_size x in_size`` rows of 1-D resampling weights of [start, start+length).

    Same weights as PyTorch's bilinear ``interpolate(antialias=True,
    align_corners=False)`` applied to the cropped segment: triangle filter of
    half-width max(1, length / out_size) around the output pixel's centre,
    restricted to the crop's pixels and renormalised (which is edge clamping).
    """
    start = start.float()
    length = length.float()
    scale = length / out_size  # (B,)
    dev = start.device
    out_c = torch.arange(out_size, device=dev, dtype=torch.float32).add_(0.5)
    src_c = torch.arange(in_size, device=dev, dtype=torch.float32).add_(0.5)
    centre = start[:, None] + scale[:, None] * out_c[None, :]  # (B, S) absolute coords
    inv_support = 1.0 / scale.clamp(min=1.0)
    dist = (src_c[None, None, :] - centre[:, :, None]).abs_().mul_(inv_support[:, None, None])
    w = dist.neg_().add_(1.0).clamp_(min=0.0)
    inside = (src_c[None, :] > start[:, None]) & (src_c[None, :] < (start + length)[:, None])
    w.mul_(inside[:, None, :])
    return w.div_(w.sum(dim=-1, keepdim=True))


def resized_crop(
    x: torch.Tensor,
    boxes: torch.Tensor,
    size: int | tuple[int, int],
    flip: torch.Tensor | None = None,
) -> torch.Tensor:
    """Crop every image to its box and resize it to ``size`` (bilinear, antialiased).

    x: uint8 (0..255) or float ([0, 1]) ``B x C x H x W``.
    boxes: ``B x 4`` integer (top, left, h, w) in pixels.
    flip: optional bool ``B`` mask; flipped images are mirrored horizontally for
        free (the column interpolation matrix is reversed).
    Returns float32 ``B x C x S x S``; equals torchvision
    ``resized_crop(x01, top, left, h, w, size, antialias=True)`` per image.
    """
    if x.ndim != 4:
        raise ValueError(f"expected a B x C x H x W batch, got shape {tuple(x.shape)}")
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"size must be positive, got {size!r}")
    B, _, H, W = x.shape
    boxes = boxes.to(x.device)
    if H == W and out_h == out_w:  # one call for both axes (half the small ops)
        starts = boxes[:, :2].T.reshape(-1)  # (top_0..top_B-1, left_0..left_B-1)
        lengths = boxes[:, 2:].T.reshape(-1)  # (h_0..h_B-1, w_0..w_B-1)
        wy, wx = _interp_matrix(starts, lengths, H, out_h).split(B)
    else:
        wy = _interp_matrix(boxes[:, 0], boxes[:, 2], H, out_h)  # (B, S, H)
        wx = _interp_matrix(boxes[:, 1], boxes[:, 3], W, out_w)  # (B, S, W)
    if flip is not None:
        fm = flip.to(device=x.device, dtype=torch.bool).view(-1, 1, 1)
        wx = torch.where(fm, wx.flip(1), wx)
    if x.dtype == torch.uint8:
        wy = wy.mul_(1.0 / 255.0)  # fold the uint8 -> [0, 1] scaling into the weights
        xf = x.float()
    elif x.is_floating_point():
        xf = x.float()
    else:
        raise TypeError(f"expected uint8 or float images, got {x.dtype}")
    # out[b, c] = wy[b] @ x[b, c] @ wx[b]^T (einsum picks the bmm order; fastest of
    # the layouts tried on CPU, ahead of roi_align and grid_sample)
    return torch.einsum("bih,bchw,bjw->bcij", wy, xf, wx)


def random_resized_crop(
    x: torch.Tensor,
    size: int,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image random resized crop of a batch.

    Returns (float32 ``B x 3 x S x S`` in [0, 1], boxes ``B x 4``) where boxes are
    (y0, x0, h, w) normalised by the input height/width.
    """
    check_images(x)
    B, _, H, W = x.shape
    px = sample_crop_boxes(B, H, W, scale, ratio, generator=generator, device=x.device)
    out = resized_crop(x, px, size)
    return out, normalise_boxes(px, H, W)


def normalise_boxes(px: torch.Tensor, H: int, W: int) -> torch.Tensor:
    div = torch.tensor([H, W, H, W], dtype=torch.float32, device=px.device)
    return px.float() / div


# ------------------------------------------------------------- geometric/colour
def hflip(x: torch.Tensor, mask: torch.Tensor | bool) -> torch.Tensor:
    """Mirror the images where ``mask`` (bool ``B``) is True."""
    return torch.where(_mask4(mask, x), x.flip(-1), x)


def rgb_to_grayscale(x: torch.Tensor) -> torch.Tensor:
    """Luma ``B x 1 x H x W`` with torchvision's ITU-R 601-2 weights."""
    r, g, b = x.unbind(dim=-3)
    return r.mul(_GRAY_WEIGHTS[0]).add_(g, alpha=_GRAY_WEIGHTS[1]).add_(b, alpha=_GRAY_WEIGHTS[2]).unsqueeze(-3)


def _blend(x: torch.Tensor, other: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    # ratio * x + (1 - ratio) * other, clamped to [0, 1] (torchvision's _blend)
    return (x - other).mul_(ratio).add_(other).clamp_(0.0, 1.0)


def adjust_brightness(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """``clamp(factor * x)``, one factor per image."""
    return (x * _per_image(factor, x)).clamp_(0.0, 1.0)


def adjust_contrast(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Blend with the mean of each image's grayscale, one factor per image."""
    mean = rgb_to_grayscale(x).mean(dim=(-3, -2, -1), keepdim=True)
    return _blend(x, mean, _per_image(factor, x))


def adjust_saturation(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Blend with each image's grayscale, one factor per image."""
    return _blend(x, rgb_to_grayscale(x), _per_image(factor, x))


def adjust_hue(x: torch.Tensor, factor: torch.Tensor | float) -> torch.Tensor:
    """Rotate the hue by ``factor`` turns (in [-0.5, 0.5]), one factor per image.

    Same result as torchvision's RGB -> HSV -> (h + factor) mod 1 -> RGB (PIL's
    hue convention), written with float-only elementwise ops (bool masks and
    ``torch.where`` are several times slower on CPU):

    * sector of the max channel via ``1 + sign(c - max)`` (1 iff c is the max;
      ties resolved r, then g, then b as in torchvision);
    * hue in sixths ``h6 = (num / chroma + 2 [g max] + 4 [b max]) mod 6``;
    * back to RGB: ``min + chroma * hue_rgb(h6)`` with the triangle waves
      R = clamp(|h6 - 3| - 1), G = clamp(2 - |h6 - 2|), B = clamp(2 - |h6 - 4|).
    """
    f = _per_image(factor, x).squeeze(1)  # (B, 1, 1)
    r, g, b = x.unbind(dim=-3)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    chroma = maxc - minc
    is_r = torch.sign(r - maxc).add_(1.0)
    is_g = torch.sign(g - maxc).add_(1.0).mul_(1.0 - is_r)
    is_b = (1.0 - is_r).sub_(is_g)
    num = (g - b).mul_(is_r).add_((b - r).mul_(is_g)).add_((r - g).mul_(is_b))
    # chroma == 0 => num == 0, so any positive divisor gives hue 0 there
    h6 = num.div_(chroma.clamp(min=1e-12)).add_(is_g, alpha=2.0).add_(is_b, alpha=4.0)
    h6 = h6.add_(f * 6.0).remainder_(6.0)
    out = torch.empty_like(x)
    w = torch.sub(h6, 3.0).abs_().sub_(1.0).clamp_(0.0, 1.0)
    torch.addcmul(minc, chroma, w, out=out[:, 0])
    w = torch.sub(h6, 2.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0)
    torch.addcmul(minc, chroma, w, out=out[:, 1])
    w = h6.sub_(4.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0)
    torch.addcmul(minc, chroma, w, out=out[:, 2])
    return out


_JITTER_FNS = (adjust_brightness, adjust_contrast, adjust_saturation, adjust_hue)


def color_jitter(
    x: torch.Tensor,
    brightness: torch.Tensor | float,
    contrast: torch.Tensor | float,
    saturation: torch.Tensor | float,
    hue: torch.Tensor | float,
    order: Sequence[int] | torch.Tensor = (0, 1, 2, 3),
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply the four colour-jitter ops with per-image factors in ``order``.

    order: permutation of 0..3 = (brightness, contrast, saturation, hue), shared
        by the batch. mask: optional bool ``B``; images where it is False are
        returned unchanged (bit-exact).
    """
    order = [int(i) for i in (order.tolist() if isinstance(order, torch.Tensor) else order)]
    if sorted(order) != [0, 1, 2, 3]:
        raise ValueError(f"order must be a permutation of 0..3, got {order}")
    factors = (brightness, contrast, saturation, hue)
    out = x
    for i in order:
        out = _JITTER_FNS[i](out, factors[i])
    if mask is not None:
        out = torch.where(_mask4(mask, x), out, x)
    return out


def grayscale(x: torch.Tensor, mask: torch.Tensor | bool) -> torch.Tensor:
    """3-channel grayscale where ``mask`` is True."""
    return torch.where(_mask4(mask, x), rgb_to_grayscale(x).expand_as(x), x)


def gaussian_kernels(sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``B x kernel_size`` normalised 1-D Gaussian kernels; sigma <= 0 gives the identity kernel."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}")
    sigma = sigma.float()
    r = kernel_size // 2
    offs = torch.arange(-r, r + 1, device=sigma.device, dtype=torch.float32)
    on = sigma > 0
    safe = torch.where(on, sigma, torch.ones_like(sigma))
    k = torch.softmax(-(offs[None, :] / safe[:, None]).pow(2).mul(0.5), dim=1)
    delta = (offs == 0).float().expand_as(k)
    return torch.where(on[:, None], k, delta)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per image (<= 0: untouched), reflect padding.

    Matches torchvision ``gaussian_blur(img, [k, k], [s, s])`` per image. The
    whole batch is filtered at once: for ``kernel_size <= 5`` as k weighted
    shifted slices per axis (faster on CPU at these sizes), otherwise as one
    grouped conv per axis (groups = B * C).
    """
    B, C, H, W = x.shape
    r = kernel_size // 2
    if r >= H or r >= W:
        raise ValueError(f"kernel_size {kernel_size} too large for {H}x{W} images (reflect padding)")
    k = gaussian_kernels(sigma.to(x.device), kernel_size).to(x.dtype)  # (B, k)
    xp = F.pad(x, (r, r, r, r), mode="reflect")
    if kernel_size <= 5:
        w = k.view(B, 1, 1, 1, kernel_size)
        y = xp[:, :, 0:H, :] * w[..., 0]
        for i in range(1, kernel_size):
            y.addcmul_(xp[:, :, i : i + H, :], w[..., i])
        z = y[..., 0:W] * w[..., 0]
        for i in range(1, kernel_size):
            z.addcmul_(y[..., i : i + W], w[..., i])
        return z
    kk = k.repeat_interleave(C, dim=0)  # (B*C, k)
    y = F.conv2d(xp.view(1, B * C, H + 2 * r, W + 2 * r), kk.view(B * C, 1, kernel_size, 1), groups=B * C)
    y = F.conv2d(y, kk.view(B * C, 1, 1, kernel_size), groups=B * C)
    return y.view(B, C, H, W)


def solarize(x: torch.Tensor, mask: torch.Tensor | bool, threshold: float = 0.5) -> torch.Tensor:
    """``x -> 1 - x`` for pixels ``>= threshold`` of the images where ``mask`` is True."""
    # float-only form of where(mask & (x >= t), 1 - x, x): per-image threshold
    # (+inf when not masked), indicator = clamp(sign(x - t) + 1, 0, 1)
    t = torch.where(_mask4(mask, x), float(threshold), float("inf")).to(x.dtype)
    ind = torch.sign(x - t).add_(1.0).clamp_(0.0, 1.0)
    return torch.addcmul(x, ind, x.mul(-2.0).add_(1.0))


def normalize(x: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor) -> torch.Tensor:
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def denormalize(
    x: torch.Tensor,
    mean: Sequence[float] | torch.Tensor = IMAGENET_MEAN,
    std: Sequence[float] | torch.Tensor = IMAGENET_STD,
    clamp: bool = True,
) -> torch.Tensor:
    """Undo :func:`normalize` (``x * std + mean``), clamped to [0, 1] for picture grids."""
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    out = x * s + m
    return out.clamp_(0.0, 1.0) if clamp else out
