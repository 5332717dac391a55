"""Patch-localization sampling (Doersch et al. 2015, as used by SIPL) and chromatic-aberration removal.

Geometry. The image is resized to ``image_size`` and cut into a 3×3 grid of
``cell = image_size // 3`` px cells (any remainder is split evenly around the
grid). Inside its cell every patch is a ``patch_size`` square at offset
``base + U{0..jitter}`` per axis, where ``base = (cell - patch_size - jitter) // 2``
centres the jitter range. Two neighbouring patches are therefore always at least
``gap = cell - patch_size - jitter`` px apart, so continuing textures or edges
cannot give the position away. Each patch is then resized to the encoder's
``input_size``.

* Paper (SIPL on ImageNet): 224-px image, 74-px cells, 56-px patches (0.75 of a
  cell), jitter 4, gap 14 (= patch/4), patches resized to 224.
* Kit default (CIFAR-10, honest equivalent at small scale): 32-px images
  upsampled to ``image_size`` 48 (16-px cells), ``patch_size`` 12 (0.75 of a
  cell), ``jitter`` 1, gap 3 (= patch/4), ``input_size`` 32.

Labels are the neighbour's position in raster order without the centre::

    0 1 2
    3 . 4
    5 6 7
"""
from __future__ import annotations

import torch

from ..augment.kernels import resized_crop
from ..spec import PatchGeometry

__all__ = ["PatchGeometry", "NEIGHBOUR_CELLS", "sample_pairs", "remove_chromatic_aberration", "resize_images"]

#: (row, col) of the grid cell of each label 0..7; the centre is (1, 1).
NEIGHBOUR_CELLS = ((0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2))


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8/float B×3×H×W → float [0, 1] B×3×size×size (bilinear, antialiased, whole image)."""
    B, _, H, W = images.shape
    if H == size and W == size:
        return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()
    boxes = torch.tensor([0, 0, H, W], device=images.device).expand(B, 4)
    return resized_crop(images, boxes, size)


def _randint(high: int, shape: tuple[int, ...], generator: torch.Generator, device) -> torch.Tensor:
    return torch.randint(high, shape, generator=generator, device=generator.device).to(device)


def sample_pairs(images: torch.Tensor, geom: PatchGeometry, generator: torch.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Centre and one random neighbour patch per image.

    images: uint8 (0..255) or float ([0, 1]) B×3×S×S on any device.
    Returns (centre, neighbour, labels, boxes): patches float B×3×I×I in [0, 1]
    (I = geom.input_size), labels long B in 0..7, boxes long B×2×2 holding the
    (y0, x0) of the centre ([:, 0]) and neighbour ([:, 1]) patch in pixels of the
    image resized to geom.image_size. Draws a fixed number of random values.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected a B×3×H×W batch, got shape {tuple(images.shape)}")
    B, dev = images.shape[0], images.device
    # keep uint8 when no resize is needed: resized_crop folds the /255 into its weights
    x = images if images.shape[-1] == images.shape[-2] == geom.image_size else resize_images(images, geom.image_size)
    labels = _randint(8, (B,), generator, dev)
    jit = _randint(geom.jitter + 1, (B, 2, 2), generator, dev)  # (image, patch, axis)
    cells = torch.tensor(NEIGHBOUR_CELLS, device=dev)[labels]  # B×2 (row, col)
    grid = torch.stack((torch.ones_like(cells), cells), dim=1)  # B×2(patch)×2(axis): centre is (1, 1)
    base = geom.origin + (geom.cell - geom.patch_size - geom.jitter) // 2
    boxes = grid * geom.cell + base + jit
    size = torch.full((2 * B, 2), geom.patch_size, device=dev)
    crop = torch.cat((boxes.transpose(0, 1).reshape(2 * B, 2), size), dim=1)  # centres first, then neighbours
    patches = resized_crop(torch.cat((x, x)), crop, geom.input_size)
    centre, neighbour = patches.split(B)
    return centre, neighbour, labels, boxes


# unit green–magenta axis: chromatic aberration shifts green against red+blue
_GM = torch.tensor([-1.0, 2.0, -1.0]) / 6.0 ** 0.5


def remove_chromatic_aberration(x: torch.Tensor) -> torch.Tensor:
    """Subtract each pixel's component along the green–magenta axis (B×3×H×W float).

    The result may leave [0, 1] slightly; it is only fed to normalisation and the encoder.
    """
    v = _GM.to(device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return x - (x * v).sum(dim=1, keepdim=True) * v
