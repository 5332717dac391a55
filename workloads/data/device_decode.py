"""A stream's JPEGs decoded on the training device (``data.stream_decode: device``): on a GPU by
nvJPEG, through torchvision's batched ``decode_jpeg(..., device="cuda")``; on a CPU by
torchvision's libjpeg-turbo decoder. The crops and their resize run on that device as well, so
on a GPU only the compressed bytes cross the PCIe bus.

Each image's two crop boxes are drawn exactly as on the PIL path (data/stream.py: the generator
seeded by (seed, epoch, index), torchvision's RandomResizedCrop rule), so the boxes, and CASSLE's
ω, are identical; the pixels differ only by the two resize implementations (torch's antialiased
bilinear against PIL's), by a grey level or so."""
from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..augment.two_views import CroppedViews
from ..spec import ViewConfig
from .stream import EpochPlan, ShardStream, crop_box, open_rgb, seed_of


def _decode_all(jpegs: Sequence[bytes], device: torch.device) -> list[torch.Tensor | None]:
    """Every row as a uint8 3 x H x W tensor on ``device``; None where it cannot be decoded.
    One batched call (what nvJPEG is fast at); if the batch has a row it refuses, image by image,
    and a row the device decoder refuses goes to PIL on the CPU (as the thread path decodes it:
    CMYK JPEGs, PNG bytes under a .JPEG name), so both paths keep the same rows."""
    # imported here: torchvision costs seconds of CPU per process, and only this decoder needs it
    from torchvision.io import ImageReadMode, decode_jpeg
    data = [torch.frombuffer(bytearray(j), dtype=torch.uint8) for j in jpegs]
    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
    except RuntimeError:
        out: list[torch.Tensor | None] = []
        for raw, d in zip(jpegs, data):
            try:
                out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                out.append(_decode_on_cpu(raw, device))
        return out


def _decode_on_cpu(raw: bytes, device: torch.device) -> torch.Tensor | None:
    """PIL's decode of one row, moved to ``device``; None for a damaged row (skipped and counted,
    as on the other paths)."""
    try:
        img = open_rgb(raw)
    except Exception:  # noqa: BLE001 - PIL raises many types for damaged data
        return None
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).to(device)


def _resize(crop: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 1 x 3 x h x w to size x size, bilinear with antialiasing (as PIL's). The CPU kernel
    takes uint8 directly (3x faster than through float); the CUDA one needs floats."""
    if crop.device.type == "cpu":
        return F.interpolate(crop, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    resized = F.interpolate(crop.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return resized.round_().clamp_(0, 255).to(torch.uint8)


def decode_rows_on_device(jpegs: Sequence[bytes], indices: Sequence[int], *, views: tuple[ViewConfig, ViewConfig],
                          size: int, seed: int, epoch: int, device: torch.device) -> tuple[CroppedViews, int]:
    """As data.stream.decode_rows, decoded, cropped and resized on ``device``."""
    images = _decode_all(jpegs, device)
    kept = [(img, int(i)) for img, i in zip(images, indices) if img is not None]
    m = len(kept)
    out = torch.empty((2, m, 3, size, size), dtype=torch.uint8, device=device)
    boxes = np.empty((2, m, 4), np.float32)
    for k, (img, index) in enumerate(kept):
        h, w = img.shape[-2:]
        rng = np.random.default_rng(seed_of(seed, epoch, index))
        for v, cfg in enumerate(views):
            top, left, ch, cw = crop_box(h, w, cfg.crop_scale, cfg.crop_ratio, rng)
            crop = img[None, :, top:top + ch, left:left + cw]
            out[v, k] = _resize(crop, size)[0]
            boxes[v, k] = (top / h, left / w, ch / h, cw / w)
    crops = torch.from_numpy(boxes).to(device)
    return CroppedViews(out[0], out[1], crops[0], crops[1], torch.tensor([i for _, i in kept], dtype=torch.long)), \
        len(images) - m


class DeviceDecodeStream(ShardStream):
    """ShardStream whose batches are decoded on ``device`` and arrive there (the same rows, in
    the same order, as the thread path)."""

    def __init__(self, *args, device: torch.device, **kwargs):
        super().__init__(*args, **kwargs)
        self.device = torch.device(device)

    def decoded(self, plan: EpochPlan, epoch: int, attempt: int) -> Iterator[CroppedViews]:
        for rows in self.chunks(plan, epoch, attempt):
            views, bad = decode_rows_on_device([r[0] for r in rows], [r[1] for r in rows], views=self.views,
                                               size=self.size, seed=self.seed, epoch=epoch, device=self.device)
            self.skipped += bad
            yield views
