"""Rotation prediction on frozen features (CASSLE Table 7): every image at 0°, 90°, 180° and
270°, labelled by its rotation, and a 4-way linear classifier fit with the L-BFGS protocol
(λ on validation, refit on train + val, top-1 on test). An augmentation-aware backbone keeps
the orientation a rotation-invariant one would discard."""
from __future__ import annotations

import torch

__all__ = ["ROTATIONS", "rotated"]

ROTATIONS = (0, 90, 180, 270)


def rotated(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(4N images: the N at 0°, then at 90°, 180°, 270° counter-clockwise; their labels 0..3)."""
    if images.ndim != 4 or images.shape[-1] != images.shape[-2]:
        raise ValueError(f"expected square N×C×S×S images, got shape {tuple(images.shape)}")
    out = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(len(ROTATIONS))])
    labels = torch.arange(len(ROTATIONS)).repeat_interleave(len(images))
    return out, labels
