"""Picture grids a person can check at a glance."""
from __future__ import annotations

from pathlib import Path

import torch
from torchvision.utils import make_grid, save_image


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
