"""Train the style-transfer network (P and T jointly, as Ghiasi et al.): content images
from the pretraining set, style images from the style folders, content + Gram style +
total-variation loss on a frozen loss network."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..callbacks import Callback, NonFiniteLossError
from ..spec import DatasetRef, StyleSpec, StylizerSpec
from .losses import PerceptualLoss
from .model import StyleTransferNet
from .pictures import save_content_style_grid

STAGE = "stylizer"
CHUNKS = 10  # progress/checkpoint granularity: the run is split into this many "epochs"


def to_size(x_uint8: torch.Tensor, size: int) -> torch.Tensor:
    x = x_uint8.float().div(255.0)
    if x.shape[-1] != size or x.shape[-2] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def build_stylizer(spec: StylizerSpec) -> StyleTransferNet:
    return StyleTransferNet(width=spec.width, embed_dim=spec.embed_dim)


def train_stylizer(spec: StylizerSpec, content: torch.Tensor, style: torch.Tensor, loss_net, *,
                   callback: Callback | None = None, device: str | torch.device = "cpu",
                   resume: dict[str, Any] | None = None) -> StyleTransferNet:
    """content, style: uint8 N×3×S×S image pools."""
    callback = callback or Callback()
    device = torch.device(device)
    size, steps, bs = spec.image_size, spec.steps, spec.batch_size
    torch.manual_seed(spec.seed)
    net = build_stylizer(spec).to(device)
    criterion = PerceptualLoss(loss_net.to(device), content_weight=spec.content_weight,
                               style_weight=spec.style_weight, tv_weight=spec.tv_weight)
    opt = torch.optim.Adam(net.parameters(), lr=spec.lr)
    g = torch.Generator().manual_seed(spec.seed)
    start = 0
    if resume is not None:
        net.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        g.set_state(resume["generator"])
        start = int(resume["step"])
    chunk = max(1, steps // CHUNKS)
    t0, sums, last_report = time.perf_counter(), {}, 0.0
    for step in range(start, steps):
        net.train()
        ci = torch.randint(len(content), (bs,), generator=g)
        si = torch.randint(len(style), (bs,), generator=g)
        xc, xs = to_size(content[ci], size).to(device), to_size(style[si], size).to(device)
        out = net(xc, xs)
        losses = criterion(out, xc, xs)
        if not torch.isfinite(losses["total"]):
            raise NonFiniteLossError(f"stylizer loss became {losses['total'].item()} at step {step + 1}; "
                                     "lower stylizer.lr or the loss weights")
        opt.zero_grad(set_to_none=True)
        losses["total"].backward()
        opt.step()
        callback.on_step(STAGE, 1, step + 1, steps)
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v.item()
        done = step + 1
        epoch, in_chunk = (done - 1) // chunk + 1, (done - 1) % chunk + 1
        now = time.perf_counter()
        if now - last_report > 0.5:
            last_report = now
            callback.on_progress(STAGE, epoch, in_chunk, chunk, {"loss": sums["total"] / in_chunk})
        if done % chunk == 0 or done == steps:
            metrics = {f"{k}_loss": v / in_chunk for k, v in sums.items()}
            metrics["images_per_s"] = in_chunk * bs / (now - t0)
            sums, t0 = {}, time.perf_counter()

            def state(done=done) -> dict[str, Any]:
                return {"model": net.state_dict(), "optimizer": opt.state_dict(),
                        "generator": g.get_state(), "step": done}
            callback.on_epoch_end(STAGE, epoch, metrics, state)
    net.eval()
    _log_grid(callback, net, content, style, size, device)
    return net


def _log_grid(callback: Callback, net: StyleTransferNet, content: torch.Tensor, style: torch.Tensor,
              size: int, device) -> None:
    g = torch.Generator().manual_seed(1)
    ci = torch.randperm(len(content), generator=g)[:5]
    si = torch.randperm(len(style), generator=g)[:5]
    with tempfile.TemporaryDirectory() as tmp:
        path = save_content_style_grid(net, to_size(content[ci], size).to(device),
                                       to_size(style[si], size).to(device), Path(tmp) / "content_x_style.png")
        callback.on_artifact(str(path), "pictures")


@torch.no_grad()
def style_bank(net: StyleTransferNet, style: torch.Tensor, size: int, *, batch_size: int = 128,
               device: str | torch.device = "cpu") -> torch.Tensor:
    """Embeddings z_s = P(x_s) of every style image: computed once, sampled during pretraining."""
    net = net.to(device).eval()
    return torch.cat([net.embed(to_size(style[i:i + batch_size], size).to(device)).cpu()
                      for i in range(0, len(style), batch_size)])


def stylizer_arch(spec: StylizerSpec) -> dict[str, Any]:
    """The architecture fields a saved stylizer must match."""
    if spec.pretrained:
        from .magenta import architecture
        return architecture()
    return build_stylizer(spec).config()


def bank_size(spec: StylizerSpec) -> int:
    """The size style images are embedded at: ``style_size``, else the pretrained network's
    measured default, else the size the stylizer was trained at."""
    if spec.style_size:
        return spec.style_size
    if spec.pretrained:
        from .magenta import BANK_SIZE
        return BANK_SIZE
    return spec.image_size


def work_size(stylizer: StylizerSpec, style: StyleSpec) -> int | None:
    """The size SASSL stylizes at (crops smaller than it are upsampled, stylized, brought back);
    None when nothing says (the crops' own size)."""
    if style.image_size:
        return style.image_size
    if stylizer.pretrained:
        from .magenta import WORK_SIZE
        return WORK_SIZE
    return stylizer.image_size


def style_pool(refs: "tuple[DatasetRef, ...]", size: int, cache_dir: str | None, lazy: bool = False):
    """All images of the style datasets, uint8 at size×size, concatenated; with ``lazy``,
    decoded only as batches are read (data/lazy.py: ConcatImages of LazyImages)."""
    from ..data.lazy import concat_images
    from ..data.prepare import load_images
    return concat_images([load_images(r, size, cache_dir, lazy=lazy)[0] for r in refs])
