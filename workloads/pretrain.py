"""SSL pretraining loop: pure PyTorch, on whatever device it is given.

Images arrive as uint8 batches; both views are augmented on the training device
inside the step (batched tensor ops), which is what keeps 2 CPU cores busy with
the model instead of with per-image PIL work."""
from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .augment import CroppedViews, TwoViewAugment, denormalize
from .augment.prefetch import Prefetcher, make_views
from .callbacks import Callback, NonFiniteLossError
from .data.stream import ShardStream
from .methods.build import build_model
from .methods.distributed import rank, world_size
from .optim import build_optimizer, lr_at, set_lr
from .precision import amp_dtype, autocast
from .spec import CellSpec
from .stylize.augment import StyleAugment
from .stylize.train import work_size
from .stylize.pictures import save_style_grid
from .visualize import save_view_pairs

STAGE = "pretrain"


def build_augment(spec: CellSpec) -> TwoViewAugment:
    aug = spec.augmentation
    return TwoViewAugment(aug.view1, aug.view2, out_size=spec.data.image_size, mean=aug.mean, std=aug.std)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """This rank's index batches for an epoch: one seeded permutation shared by all ranks,
    split into global batches, each sliced by rank (so resuming replays the same order)."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    steps = n // batch_size
    if steps == 0:
        raise ValueError(f"optim.batch_size {batch_size} is larger than the {n} training images")
    per_rank = batch_size // world_size()
    return [perm[s * batch_size:(s + 1) * batch_size][rank() * per_rank:(rank() + 1) * per_rank]
            for s in range(steps)]


def build_style_hook(spec: CellSpec, stylizer: nn.Module | None, bank: torch.Tensor | None,
                     generator: torch.Generator, device: torch.device, dtype: torch.dtype | None = None):
    """SASSL's left-view style transfer, or None when the config does not ask for it."""
    style = spec.augmentation.style
    if not style.enabled:
        return None
    if stylizer is None:
        raise ValueError("augmentation.style.enabled is true but no stylizer was given to the workload")
    size = work_size(spec.stylizer, style)
    crop = spec.data.image_size
    return StyleAugment(stylizer.to(device), p=style.p, alpha=style.alpha, beta=style.beta,
                        source=style.source, shift=style.shift, bank=bank,
                        stylized_layers=style.stylized_layers, generator=generator,
                        size=size if size and size > crop else None,
                        # reduced precision for the stylizer only on GPUs: CPU convolutions in bf16 are slower
                        amp_dtype=dtype if device.type == "cuda" else None)


def pretrain(spec: CellSpec, images: "torch.Tensor | ShardStream", *, callback: Callback | None = None,
             device: str | torch.device = "cpu", resume: dict[str, Any] | None = None,
             wrap_model=None, stylizer: nn.Module | None = None,
             style_bank: torch.Tensor | None = None, monitor=None) -> nn.Module:
    """Train the cell's SSL method on ``images`` (uint8 N×3×S×S in memory, or a ShardStream of
    packed shards whose views are cropped from the original images); returns the trained
    method module.

    ``wrap_model`` (e.g. DDP) is applied to the method for the forward pass only;
    ``resume`` is a state produced by an earlier ``on_epoch_end(... state)``;
    ``stylizer`` and ``style_bank`` serve SASSL's style augmentation when enabled;
    ``monitor(backbone) -> metrics`` runs after every epoch on rank 0 (a search's validation
    objective) and its metrics join the epoch's."""
    callback = callback or Callback()
    device = torch.device(device)
    opt = spec.optim
    seed = spec.seed
    torch.manual_seed(seed)
    # channels_last: +5-9 % images/s for the CPU convolutions here (benchmarks/pretrain_throughput.py)
    model = build_model(spec).to(device, memory_format=torch.channels_last)
    augment = build_augment(spec).to(device)
    augment.omega = bool(getattr(model, "uses_omega", False))  # ω from the very parameters each view applied
    optimizer = build_optimizer(model, opt.optimizer, opt.peak_lr, opt.momentum, opt.weight_decay)
    aug_gen = torch.Generator(device=device).manual_seed(seed * 7919 + rank())
    # mixed precision: autocast around the forward passes (the losses run in fp32 inside it,
    # methods/losses.py); fp16's small range needs the loss scaled before backward
    dtype = amp_dtype(opt.precision, device)
    style_hook = build_style_hook(spec, stylizer, style_bank, aug_gen, device, dtype)
    prefetch = {"on": True, "off": False}.get(spec.augmentation.prefetch, device.type == "cuda")
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    start_epoch = 0
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        aug_gen.set_state(resume["aug_generator"])
        if "grad_scaler" in resume:
            scaler.load_state_dict(resume["grad_scaler"])
        start_epoch = int(resume["epoch"])
    forward = wrap_model(model) if wrap_model else model
    if opt.compile:
        forward = torch.compile(forward)  # the same parameters: checkpoints keep their keys

    epochs, batch_size = opt.epochs, opt.batch_size
    streaming = isinstance(images, ShardStream)
    # a stream deals its shards anew each epoch, so its step count may differ by a step or two
    epoch_steps = ([images.plan(e).steps for e in range(epochs)] if streaming
                   else [len(epoch_batches(len(images), batch_size, seed, 0))] * epochs)
    first_step = [sum(epoch_steps[:e]) for e in range(epochs)]
    total_steps = sum(epoch_steps)
    warmup_steps = int(round(opt.warmup_epochs * epoch_steps[0]))
    for epoch in range(start_epoch, epochs):
        model.train()
        t0, seen = time.perf_counter(), 0
        # the loss stays on the device and is read every half second, not every step: a read is
        # a host sync, which would stall a GPU's queue of kernels once per step
        loss_sum, first_bad = torch.zeros((), device=device), torch.full((), -1, device=device)
        last_report = 0.0
        steps_per_epoch = epoch_steps[epoch]
        # pinned host memory lets the copy to a GPU run asynchronously
        pin = device.type == "cuda"
        host = images.epoch(epoch) if streaming else (
            images[idx] for idx in epoch_batches(len(images), batch_size, seed, epoch))
        # (a stream decoded on the device hands over batches that are there already)
        batches = ((b.pin_memory() if pin and _on_host(b) else b).to(device, non_blocking=True) for b in host)

        def work(x):
            return make_views(augment, x, aug_gen, style_hook)
        views = Prefetcher(batches, work, device) if prefetch else (work(x) for x in batches)
        for step, (x, v1, v2, _info) in enumerate(views):
            gstep = first_step[epoch] + step
            lr = lr_at(gstep, total_steps, opt.peak_lr, warmup_steps, opt.schedule)
            set_lr(optimizer, lr)
            omegas = {"omega1": _info["view1"]["omega"], "omega2": _info["view2"]["omega"]} if augment.omega else {}
            with autocast(device.type, dtype):
                out = forward(v1, v2, **omegas)
            loss = out["loss"]
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)  # with fp16: skipped when the scaled gradients overflowed
            scaler.update()
            model.after_step((gstep + 1) / total_steps)
            loss_sum += loss.detach()
            first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), step, first_bad)
            callback.on_step(STAGE, epoch + 1, step + 1, steps_per_epoch)
            seen += x.shape[0] * world_size()
            if epoch == start_epoch and step == 0 and rank() == 0:
                if streaming:  # no square original on this path: show view 1's crop as the image
                    x = x.view1
                _log_view_pairs(callback, x, v1, v2, spec)
                if style_hook is not None:
                    _log_style_grid(callback, x, style_hook, spec, denormalize(v1, spec.augmentation.mean,
                                                                              spec.augmentation.std))
            now = time.perf_counter()
            if now - last_report > 0.5 or step == steps_per_epoch - 1:
                last_report = now
                mean_loss = _checked_mean(loss_sum, first_bad, step + 1, epoch)
                callback.on_progress(STAGE, epoch + 1, step + 1, steps_per_epoch,
                                     {"loss": mean_loss, "images_per_s": seen / (now - t0)})
        elapsed = time.perf_counter() - t0
        metrics = {"loss": mean_loss, "lr": lr, "images_per_s": seen / elapsed,
                   "epoch_seconds": elapsed, "momentum": getattr(model, "current_momentum", math.nan)}
        if streaming:
            metrics["skipped_images"] = float(images.skipped)  # damaged rows, so far (this rank)
        if monitor is not None and rank() == 0:
            metrics.update(monitor(model.backbone))
            model.train()

        def state(epoch=epoch) -> dict[str, Any]:
            return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "aug_generator": aug_gen.get_state(), "epoch": epoch + 1,
                    **({"grad_scaler": scaler.state_dict()} if scaler.is_enabled() else {})}
        callback.on_epoch_end(STAGE, epoch + 1, metrics, state)
    return model


def _checked_mean(loss_sum: torch.Tensor, first_bad: torch.Tensor, steps: int, epoch: int) -> float:
    """The epoch's mean loss so far, read from the device (one sync); a NonFiniteLossError naming
    the first step whose loss was NaN or inf. The checkpoint of the epoch before stays the last one
    written: the check runs before every epoch's end."""
    total, bad = loss_sum.item(), int(first_bad.item())
    if bad >= 0:
        raise NonFiniteLossError(f"pretraining loss became {total} at epoch {epoch + 1}, step {bad + 1} "
                                 f"(read at step {steps}); lower optim.lr or check the data")
    return total / steps


def _on_host(batch: "torch.Tensor | CroppedViews") -> bool:
    return (batch.view1 if isinstance(batch, CroppedViews) else batch).device.type == "cpu"


def _log_view_pairs(callback: Callback, x: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor,
                    spec: CellSpec) -> None:
    mean, std = spec.augmentation.mean, spec.augmentation.std
    with tempfile.TemporaryDirectory() as tmp:
        path = save_view_pairs(denormalize(v1, mean, std), denormalize(v2, mean, std),
                               Path(tmp) / "augmented_view_pairs.png", originals=x)
        callback.on_artifact(str(path), "pictures")


def _log_style_grid(callback: Callback, x: torch.Tensor, hook: StyleAugment, spec: CellSpec,
                    final: torch.Tensor) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = save_style_grid(x, hook, spec.data.image_size, Path(tmp) / "style_augmentation.png",
                               final=final)
        callback.on_artifact(str(path), "pictures")
