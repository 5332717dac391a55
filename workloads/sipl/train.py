"""SIPL pretext training: pure PyTorch, patches cut and augmented on the training device.

All randomness after the model's (seeded) initialisation comes from one torch.Generator
whose state is part of the checkpoint, and the image order of an epoch is a function of
(seed, epoch), so resuming from an epoch's state replays the uninterrupted run exactly.
"""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from ..callbacks import Callback, NonFiniteLossError
from ..data.errors import DatasetError
from ..data.lazy import LazyImages
from ..augment.kernels import denormalize
from ..visualize import save_patch_problems
from ..spec import CellSpec, PatchGeometry, SiplAugment
from .augment import finalize, make_problems
from .data import PretextImages, pretext_images
from .model import SiplNet, sipl_loss
from .patches import resize_images, sample_pairs

__all__ = ["STAGE", "build_sipl_model", "pretrain_sipl"]

STAGE = "sipl"


def build_sipl_model(spec: CellSpec) -> SiplNet:
    """Seeded initialisation that leaves the caller's global RNG untouched."""
    b, m = spec.backbone, spec.method
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        return SiplNet(b.arch, float(b.width), b.stem, m.embed_dim, m.head_hidden)


def kl_weight(alpha: float, warmup_epochs: float, progress: float) -> float:
    """The KL weight after ``progress`` epochs (fractional): a linear ramp from 0 to alpha over
    the warm-up, then alpha. Without a warm-up, alpha from the first step (the paper)."""
    if warmup_epochs <= 0:
        return alpha
    return alpha * min(1.0, progress / warmup_epochs)


def _log_problems(callback: Callback, x: torch.Tensor, boxes: torch.Tensor,
                  problems: list[tuple[torch.Tensor, torch.Tensor]], geom: PatchGeometry, aug: SiplAugment) -> None:
    """The first batch's localization problems as a picture (uses no random draws)."""
    shown = [tuple(denormalize(t[:8], aug.mean, aug.std) for t in pair) for pair in problems]
    with tempfile.TemporaryDirectory() as tmp:
        path = save_patch_problems(resize_images(x[:8], geom.image_size), boxes[:8], geom.patch_size, shown,
                                   Path(tmp) / "patch_problems.png")
        callback.on_artifact(str(path), "pictures")


@torch.no_grad()
def _val_accuracy(model: SiplNet, images: "torch.Tensor | LazyImages", geom: PatchGeometry, aug, seed: int,
                  batch_size: int, device: torch.device) -> float:
    """Pretext accuracy on un-augmented ⟨c, n⟩ pairs of held-out images. The generator is re-seeded
    each call, so every epoch sees the same patches without keeping them in memory."""
    if len(images) == 0:
        return math.nan
    model.eval()
    g = torch.Generator(device=device).manual_seed(seed * 7919 + 3)
    hits = 0
    for i in range(0, len(images), batch_size):
        c, n, y, _ = sample_pairs(images[i:i + batch_size].to(device), geom, g)
        logits = model.problem_logits([(finalize(c, aug), finalize(n, aug))])[0]
        hits += (logits.argmax(dim=1) == y).sum().item()
    model.train()
    return 100.0 * hits / len(images)


def pretrain_sipl(spec: CellSpec, images: "torch.Tensor | PretextImages", *, callback: Callback | None = None,
                  device: str | torch.device = "cpu", resume: dict[str, Any] | None = None,
                  monitor: Callable[[torch.nn.Module], dict[str, float]] | None = None) -> SiplNet:
    """Train a SIPL cell's pretext task (``spec.method`` a SiplSpec, Adam from ``spec.optim``) on uint8 N×3×S×S images (split into train and val here) or on
    a PretextImages (data.py: a packed split streamed); returns the trained SiplNet.

    Per epoch ``callback.on_epoch_end("sipl", epoch, metrics, state)`` with metrics loss,
    pretext_acc (train, %, first problem), val_pretext_acc (%, held-out images, un-augmented
    ⟨c, n⟩ pairs, the same ones every epoch, so epochs and variants compare), images_per_s,
    epoch_seconds, skipped_images (undecodable images so far, streamed data). ``resume`` is a
    ``state()`` of an earlier epoch. ``monitor(encoder) -> metrics`` runs after every epoch (a
    search's downstream objective); its metrics join the epoch's.
    """
    callback = callback or Callback()
    device = torch.device(device)
    m, opt = spec.method, spec.optim
    seed, geom, aug = spec.seed, m.geometry, m.augment
    batch_size, epochs, alpha = opt.batch_size, opt.epochs, float(m.alpha)
    warmup = float(m.alpha_warmup_epochs)

    data = pretext_images(images, val_fraction=float(m.val_fraction), seed=seed)

    # channels_last: faster CPU convolutions (as workloads/pretrain.py)
    model = build_sipl_model(spec).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(opt.lr), weight_decay=float(opt.weight_decay))
    gen = torch.Generator(device=device).manual_seed(seed * 7919 + 1)
    start_epoch = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        gen.set_state(resume["generator"])
        start_epoch = int(resume["epoch"])

    model.train()
    for epoch in range(start_epoch, epochs):
        t0 = last_report = time.perf_counter()
        steps = data.steps(batch_size)  # a streamed epoch may end early by its damaged images
        seen, loss_sum, acc_sum, step = 0, 0.0, 0.0, -1
        for step, batch in enumerate(data.batches(epoch, batch_size)):
            x = batch.to(device, non_blocking=True)
            with torch.no_grad():
                c, n, y, boxes = sample_pairs(x, geom, gen)
                problems = make_problems(m.variant, c, n, aug, gen)
                if epoch == 0 and step == 0:  # what the encoder is given, once per fresh run
                    _log_problems(callback, x, boxes, problems, geom, aug)
            weight = kl_weight(alpha, warmup, epoch + step / steps)
            loss, acc = sipl_loss(model, problems, y, weight)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"SIPL pretext loss became {loss.item()} at epoch {epoch + 1}, step "
                                         f"{step + 1} (variant {m.variant}, alpha {alpha}, lr {opt.lr}); "
                                         f"lower lr or alpha, or check the data")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            callback.on_step(STAGE, epoch + 1, step + 1, steps)
            loss_sum += loss.item()
            acc_sum += acc
            seen += len(x)
            now = time.perf_counter()
            if now - last_report > 0.5 or step == steps - 1:
                last_report = now
                callback.on_progress(STAGE, epoch + 1, step + 1, steps,
                                     {"loss": loss_sum / (step + 1), "pretext_acc": acc_sum / (step + 1),
                                      "images_per_s": seen / (now - t0)})
        if step < 0:
            raise DatasetError(f"SIPL pretext: epoch {epoch + 1} had no decodable batch of >= 2 images")
        train_seconds = time.perf_counter() - t0
        val_acc = _val_accuracy(model, data.val, geom, aug, seed, max(batch_size, 256), device)
        metrics = {"loss": loss_sum / (step + 1), "pretext_acc": acc_sum / (step + 1),
                   "kl_weight": weight if len(problems) == 2 else 0.0,  # OPL has no KL term
                   "val_pretext_acc": val_acc, "images_per_s": seen / train_seconds,
                   "epoch_seconds": time.perf_counter() - t0, "skipped_images": float(data.skipped)}
        if monitor is not None:
            metrics.update(monitor(model.encoder))
            model.train()

        def state(epoch: int = epoch) -> dict[str, Any]:
            return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "generator": gen.get_state(), "epoch": epoch + 1}
        callback.on_epoch_end(STAGE, epoch + 1, metrics, state)
    return model
