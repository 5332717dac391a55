"""Picture grids a person can check at a glance.

The grid and PNG writers are this module's own (torchvision.utils' make_grid/save_image
rules: tiles row by row, `padding` px of `pad_value` around each, rounded to 8-bit): importing
torchvision pulls in torch._dynamo and costs ~4 s of CPU per process on a 2-core machine, which
every Ray Train worker and evaluation task of every cell would pay for one picture."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def make_grid(tiles: torch.Tensor | list[torch.Tensor], nrow: int = 8, padding: int = 2,
              pad_value: float = 0.0) -> torch.Tensor:
    """(N, C, H, W) tiles of one size → one (C, H', W') picture, ``nrow`` tiles a row; a single
    image (or a batch of one) comes back as it is; one channel becomes three."""
    if isinstance(tiles, (list, tuple)):
        tiles = torch.stack(list(tiles))
    if tiles.dim() == 3:
        return tiles.expand(3, -1, -1) if tiles.shape[0] == 1 else tiles
    if tiles.shape[1] == 1:
        tiles = tiles.expand(-1, 3, -1, -1)
    if tiles.shape[0] == 1:  # one tile: no border
        return tiles[0]
    n, c, h, w = tiles.shape
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    step_h, step_w = h + padding, w + padding
    grid = tiles.new_full((c, rows * step_h + padding, cols * step_w + padding), pad_value)
    for k in range(n):
        y, x = divmod(k, cols)
        grid[:, y * step_h + padding:y * step_h + padding + h, x * step_w + padding:x * step_w + padding + w] = tiles[k]
    return grid


def save_image(image: torch.Tensor, path: str | Path) -> None:
    """A float (C, H, W) picture in [0, 1] (or a batch of tiles, gridded) → an 8-bit PNG."""
    pixels = make_grid(image).detach().mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to("cpu", torch.uint8).numpy()
    Image.fromarray(np.ascontiguousarray(pixels)).save(path)


def save_view_pairs(v1: torch.Tensor, v2: torch.Tensor, path: str | Path, n: int = 16,
                    originals: torch.Tensor | None = None, upscale: int = 3) -> Path:
    """Rows of (original | view 1 | view 2); inputs are float images in [0, 1]."""
    n = min(n, v1.shape[0])
    cols = [v1[:n], v2[:n]] if originals is None else [originals[:n].float() / 255.0, v1[:n], v2[:n]]
    tiles = torch.stack(cols, dim=1).flatten(0, 1).clamp(0, 1).cpu()
    if upscale > 1:  # 32 px tiles are too small to judge by eye
        tiles = torch.nn.functional.interpolate(tiles, scale_factor=upscale, mode="nearest")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(tiles, nrow=2 * len(cols), padding=2, pad_value=1.0), path)
    return path


def _outline(img: torch.Tensor, y0: int, x0: int, size: int, colour: tuple[float, float, float]) -> None:
    """Draw a 1-px square outline in place on a float 3×H×W image."""
    c = torch.tensor(colour).view(3, 1)
    y1, x1 = y0 + size - 1, x0 + size - 1
    img[:, y0, x0:x1 + 1] = c
    img[:, y1, x0:x1 + 1] = c
    img[:, y0:y1 + 1, x0] = c
    img[:, y0:y1 + 1, x1] = c


def save_patch_problems(images: torch.Tensor, boxes: torch.Tensor, patch_size: int,
                        problems: list[tuple[torch.Tensor, torch.Tensor]], path: str | Path,
                        n: int = 8, upscale: int = 3) -> Path:
    """Rows of (image with the centre box in green and the neighbour box in red | c1 | n1 [| c2 | n2]).

    images: float [0, 1] B×3×S×S at the patch geometry's image size; boxes: B×2×2 (y0, x0) of
    the centre and neighbour patches; problems: the variant's (c, n) pairs as float [0, 1] patches
    of the encoder's input size (what the encoder sees, after augmentation and colour projection).
    """
    n = min(n, images.shape[0])
    size = problems[0][0].shape[-1]
    frames = images[:n].float().clamp(0, 1).cpu().clone()
    for i in range(n):
        _outline(frames[i], int(boxes[i, 0, 0]), int(boxes[i, 0, 1]), patch_size, (0.0, 1.0, 0.0))
        _outline(frames[i], int(boxes[i, 1, 0]), int(boxes[i, 1, 1]), patch_size, (1.0, 0.0, 0.0))
    tile = max(frames.shape[-1], size)  # image and patches differ in size: pad both to one tile, white

    def pad(x: torch.Tensor) -> torch.Tensor:
        d = tile - x.shape[-1]
        return torch.nn.functional.pad(x, (d // 2, d - d // 2, d // 2, d - d // 2), value=1.0)

    cols = [pad(frames)] + [pad(t[:n].float().clamp(0, 1).cpu()) for pair in problems for t in pair]
    tiles = torch.stack(cols, dim=1).flatten(0, 1)
    if upscale > 1:
        tiles = torch.nn.functional.interpolate(tiles, scale_factor=upscale, mode="nearest")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(tiles, nrow=len(cols), padding=2, pad_value=1.0), path)
    return path
