"""Frozen-backbone features, computed once per (backbone, dataset) and cached on disk."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

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


class Mapped:
    """``images`` seen through ``fn`` batch by batch (a rotation, a corruption, one of ten crops):
    what extract_features reads, without a transformed copy of the whole split in memory."""

    def __init__(self, images, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.images, self.fn = images, fn

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: slice) -> torch.Tensor:
        return self.fn(self.images[key])


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """A backbone's identity: a hash of its weights (names, shapes, dtypes and bytes)."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:20]


def cached_features(path: str | Path | None, compute: Callable[[], list[tuple[torch.Tensor, torch.Tensor]]]
                    ) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], bool]:
    """(features, whether they came from ``path``): (x, y) per split, computed once and kept in
    ``path`` so that a re-evaluation (another probe, L-BFGS grid or few-shot setting) of the
    same backbone on the same target skips the forward passes. ``path`` None: no cache."""
    if path is not None and Path(path).is_file():
        blob = torch.load(path, map_location="cpu", weights_only=True)
        return [(x, y) for x, y in zip(blob["x"], blob["y"])], True
    feats = compute()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        torch.save({"x": [x for x, _ in feats], "y": [y for _, y in feats]}, tmp)
        os.replace(tmp, path)  # parallel evaluations of one backbone may race; both write the same
    return feats, False
