"""Frozen-backbone features, computed once per (backbone, dataset)."""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def extract_features(backbone: nn.Module, images: torch.Tensor, mean, std, *,
                     batch_size: int = 512, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 N×3×S×S → float N×D, eval mode, no augmentation (images are already centre-cropped)."""
    backbone = backbone.to(device).eval()
    m = torch.tensor(mean, device=device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=device).view(1, 3, 1, 1)
    out = []
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].to(device).float().div_(255.0)
        out.append(backbone((x - m) / s).float().cpu())
    return torch.cat(out)
