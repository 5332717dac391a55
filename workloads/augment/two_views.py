"""The BYOL two-view augmentation (SASSL, CASSLE) of a uint8 batch, on the batch's device, built
from the batched kernels (kernels.py): each view's parameters drawn per image, the ops applied
in order, and what was applied returned (CASSLE's ω, the pictures).

Pipeline of one view (SASSL/BYOL order)::

    random resized crop -> [left_hook, view 1 only: style transfer seam]
    -> horizontal flip -> colour jitter (p) -> grayscale (p)
    -> Gaussian blur (p) -> solarize (p) -> normalise

One colour-jitter order per view per batch, not per image (kernels.py says why).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..spec import IMAGENET_MEAN, IMAGENET_STD, ViewConfig
from .kernels import (Hook, JITTER_OPS, check_images, color_jitter, gaussian_blur, grayscale, hflip,
                      normalise_boxes, rand_uniform, resized_crop, sample_crop_boxes, solarize)
from .omega import omega_from_info

__all__ = ["augment_view", "CroppedViews", "TwoViewAugment"]


# Column layout of the per-image uniforms drawn once per view (after the crop's).
_U_FLIP, _U_JIT, _U_B, _U_C, _U_S, _U_H, _U_GRAY, _U_BLUR, _U_SIGMA, _U_SOL = range(10)
_U_COLS = 10


def augment_view(
    x: torch.Tensor,
    cfg: ViewConfig,
    size: int,
    generator: torch.Generator | None = None,
    hook: Hook | None = None,
    omega: bool = False,
    crop: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One augmented view of a batch, float in [0, 1] (not normalised), and its parameters.

    ``crop`` (float ``B x 4``, (y0, x0, h, w) normalised by the original image's size) says
    that ``x`` is already this view's random resized crop at ``size``, taken from the original
    image (the streaming path: data/stream.py); the crop step is then skipped and ``crop``
    goes into ``info`` (and ω) as it is.

    Random draws per call (fixed count, independent of the outcomes): the crop's
    ``B x 22`` uniforms, ``B x 10`` uniforms for the other ops, and one
    ``randperm(4)`` for the jitter order.

    Returned ``info`` (all tensors on x's device; B = batch):
      crop               float B x 4   (y0, x0, h, w) / (H, W, H, W), before flip
      flip               bool  B
      jitter             bool  B       colour jitter applied
      jitter_factors     float B x 4   (brightness, contrast, saturation, hue)
                                       as applied; (1, 1, 1, 0) where not applied
      jitter_order       long  4       op indices (see JITTER_OPS) in order applied
      mean_before_jitter float B x 3   per-channel means entering the jitter
      mean_after_jitter  float B x 3   per-channel means leaving it (== before
                                       where not applied)
      grayscale          bool  B
      blur_sigma         float B       0 where blur not applied
      solarize           bool  B
      omega              float B x 14  only with ``omega=True``: CASSLE's ω of the
                                       view, assembled from the values above
                                       (see :mod:`workloads.augment.omega`)
    """
    check_images(x)
    B, _, H, W = x.shape
    dev = x.device
    gen_dev = generator.device if generator is not None else dev

    if crop is None:
        boxes_px = sample_crop_boxes(B, H, W, cfg.crop_scale, cfg.crop_ratio, generator=generator, device=dev)
    else:
        if (H, W) != (size, size) or crop.shape != (B, 4):
            raise ValueError(f"a pre-cropped view must be {size} x {size} with B x 4 boxes; got {H} x {W} "
                             f"and boxes {tuple(crop.shape)}")
        boxes_px = torch.tensor([[0, 0, size, size]], device=dev).expand(B, 4)  # the whole (cropped) view
    u = rand_uniform((B, _U_COLS), generator, dev)
    # one jitter order per view per batch (torchvision: one per image); drawn on
    # the generator's device, read back once to drive the Python loop
    order_t = torch.randperm(4, generator=generator, device=gen_dev)
    order = order_t.tolist()

    flip = u[:, _U_FLIP] < cfg.flip_p
    if hook is None:
        # flip folded into the resize (column matrix reversed): no extra pass
        out = resized_crop(x, boxes_px, size, flip=flip)
    else:
        out = resized_crop(x, boxes_px, size)
        with torch.no_grad():
            styled = hook(out)
        if not isinstance(styled, torch.Tensor) or styled.shape != out.shape:
            shape = tuple(styled.shape) if isinstance(styled, torch.Tensor) else type(styled).__name__
            raise ValueError(f"left_hook must return a tensor of shape {tuple(out.shape)}, got {shape}")
        out = styled.detach().to(device=dev, dtype=torch.float32).clamp(0.0, 1.0)
        out = hflip(out, flip)

    # colour jitter
    jit = u[:, _U_JIT] < cfg.jitter_p
    rng = cfg.factor_ranges()
    lows = torch.tensor([rng[n][0] for n in JITTER_OPS], device=dev)
    highs = torch.tensor([rng[n][1] for n in JITTER_OPS], device=dev)
    identity = torch.tensor([1.0, 1.0, 1.0, 0.0], device=dev)
    factors = lows + (highs - lows) * u[:, _U_B : _U_H + 1]
    factors = torch.where(jit[:, None], factors, identity)
    mean_before = out.mean(dim=(-2, -1))
    if cfg.jitter_p > 0:
        out = color_jitter(out, *factors.unbind(1), order=order, mask=jit)
        mean_after = out.mean(dim=(-2, -1))
    else:
        mean_after = mean_before.clone()

    gray = u[:, _U_GRAY] < cfg.grayscale_p
    if cfg.grayscale_p > 0:
        out = grayscale(out, gray)

    blur = u[:, _U_BLUR] < cfg.blur_p
    lo, hi = cfg.blur_sigma
    sigma = torch.where(blur, lo + (hi - lo) * u[:, _U_SIGMA], torch.zeros((), device=dev))
    if cfg.blur_p > 0:
        out = gaussian_blur(out, sigma, cfg.blur_kernel_size(size))

    sol = u[:, _U_SOL] < cfg.solarize_p
    if cfg.solarize_p > 0:
        out = solarize(out, sol, cfg.solarize_threshold)

    info = {
        "crop": normalise_boxes(boxes_px, H, W) if crop is None else crop.to(dev, torch.float32),
        "flip": flip,
        "jitter": jit,
        "jitter_factors": factors,
        "jitter_order": order_t.to(dev),
        "mean_before_jitter": mean_before,
        "mean_after_jitter": mean_after,
        "grayscale": gray,
        "blur_sigma": sigma,
        "solarize": sol,
    }
    if omega:
        info["omega"] = omega_from_info(info, cfg)
    return out, info


@dataclass
class CroppedViews:
    """A batch whose two views were cropped from the original images before it reached the
    device (uint8 ``B x 3 x S x S`` each, boxes ``B x 4`` normalised by the original's size)."""
    view1: torch.Tensor
    view2: torch.Tensor
    crop1: torch.Tensor
    crop2: torch.Tensor
    index: torch.Tensor | None = None  # the images' indices in their dataset (stays on the CPU)

    @property
    def shape(self) -> torch.Size:
        return self.view1.shape

    def to(self, device, non_blocking: bool = False) -> "CroppedViews":
        return CroppedViews(*(t.to(device, non_blocking=non_blocking)
                              for t in (self.view1, self.view2, self.crop1, self.crop2)), self.index)

    def pin_memory(self) -> "CroppedViews":
        return CroppedViews(*(t.pin_memory() for t in (self.view1, self.view2, self.crop1, self.crop2)), self.index)


class TwoViewAugment(torch.nn.Module):
    """BYOL two-view augmentation of a uint8 batch, on the batch's device.

    ``forward(x_uint8, generator=None, left_hook=None) -> (v1, v2, info)`` with
    v1, v2 float32 ``B x 3 x S x S`` normalised by mean/std and
    ``info = {"view1": {...}, "view2": {...}}`` (keys: see :func:`augment_view`).

    ``left_hook(cropped_view1)`` (float ``B x 3 x S x S`` in [0, 1]) runs under
    ``torch.no_grad`` right after view 1's crop, before its flip (SASSL's style
    transfer seam); it must return a tensor of the same shape, which is clamped
    to [0, 1]. View 2 never sees it.

    ``omega=True`` (constructor default for every call, or per call in ``forward``)
    adds each view's CASSLE augmentation information ``info["viewN"]["omega"]``
    (float ``B x 14``, :mod:`workloads.augment.omega`), built from the very values
    the view was made with.
    """

    def __init__(
        self,
        view1: ViewConfig,
        view2: ViewConfig,
        *,
        out_size: int,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        omega: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(out_size, int) or isinstance(out_size, bool) or out_size <= 0:
            raise ValueError(f"out_size must be a positive int, got {out_size!r}")
        if len(mean) != 3 or len(std) != 3:
            raise ValueError("mean and std must have 3 values")
        if any(not s > 0 for s in std):
            raise ValueError(f"std must be positive, got {std!r}")
        self.view1, self.view2 = view1, view2
        self.out_size = out_size
        self.omega = bool(omega)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    def extra_repr(self) -> str:
        return f"out_size={self.out_size}, view1={self.view1}, view2={self.view2}"

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mean.to(x.device)
        s = self.std.to(x.device)
        return x.sub_(m).div_(s)

    @torch.no_grad()
    def forward(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        left_hook: Hook | None = None,
        omega: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
        """``x``: a uint8 batch, or a :class:`CroppedViews` (each view's crop already taken
        from the original images, the streaming path)."""
        omega = self.omega if omega is None else bool(omega)
        if isinstance(x, CroppedViews):
            v1, info1 = augment_view(x.view1, self.view1, self.out_size, generator=generator, hook=left_hook,
                                     omega=omega, crop=x.crop1)
            v2, info2 = augment_view(x.view2, self.view2, self.out_size, generator=generator, omega=omega,
                                     crop=x.crop2)
            return self._normalise(v1), self._normalise(v2), {"view1": info1, "view2": info2}
        v1, info1 = augment_view(x, self.view1, self.out_size, generator=generator, hook=left_hook, omega=omega)
        v2, info2 = augment_view(x, self.view2, self.out_size, generator=generator, omega=omega)
        return self._normalise(v1), self._normalise(v2), {"view1": info1, "view2": info2}
