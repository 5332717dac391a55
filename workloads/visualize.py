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
