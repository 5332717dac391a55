"""A few training steps of each kind of run, timed through the entries the run itself calls
(workloads/cell.py), as `sassl rehearse` runs them inside one worker's Ray task. Each returns
its figures: seconds per step, steps per epoch, ``setup_s`` (from the call to the end of the
first, untimed step: loading data, the stylizer, building the model) and what a style bank costs."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from ..cell import train_sipl_cell, train_ssl_cell, train_stylizer_cell
from ..data.prepare import load_images
from ..spec import CellSpec, DatasetRef
from ..stylize.model import StyleTransferNet, load_stylizer
from ..stylize.train import bank_size, build_stylizer, style_bank, stylizer_arch
from .timing import SAMPLE, StepTimer, run_steps, timed


def stylizer_for(spec: CellSpec, cache_dir: str) -> StyleTransferNet:
    """The cell's stylizer, loaded as the run loads it (pretrained: converted once per node;
    self-trained: its architecture, untrained, which costs the same per step)."""
    st = spec.stylizer
    if st.pretrained:
        from ..stylize.magenta import pretrained_checkpoint
        path = pretrained_checkpoint(st.pretrained, source=st.pretrained_source, cache_dir=Path(cache_dir) / "weights")
        return load_stylizer(str(path), expected=stylizer_arch(st))
    if st.checkpoint and Path(st.checkpoint).expanduser().is_file():
        return load_stylizer(str(Path(st.checkpoint).expanduser()), expected=stylizer_arch(st))
    return build_stylizer(st)


def small_bank(spec: CellSpec, net: StyleTransferNet, cache_dir: str, device,
               ref: DatasetRef | None = None) -> tuple[torch.Tensor | None, dict[str, float]]:
    """A style bank of SAMPLE images of the external style set (``ref``, default the cell's), and
    the seconds per image it took."""
    style = spec.augmentation.style
    if ref is None and style.source != "external":
        return None, {}
    size = bank_size(spec.stylizer)
    images = load_images(ref or style.style_data, size, cache_dir, lazy=True)[0]
    x = images[:min(SAMPLE, len(images))]
    t0 = time.perf_counter()
    bank = style_bank(net, x, size, device=device)
    per_image = (time.perf_counter() - t0) / len(x)
    return bank, {"bank_s_per_image": per_image, "bank_images": float(len(images)), "bank_s": per_image * len(images)}


def augmentation_rate(spec: CellSpec, device, stylizer=None, bank=None, batches: int = 3) -> dict[str, float]:
    """Augmented images per second of the cell's two-view augmentation alone (with SASSL's style
    transfer on the left view when the cell has it), on random uint8 images at the crop size,
    a batch of at most SAMPLE images: what SASSL's Table 9 compares (A.8), here on this worker."""
    from ..augment.prefetch import make_views
    from ..precision import amp_dtype
    from ..pretrain import build_augment, build_style_hook
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(0)
    size, n = spec.data.image_size, min(spec.optim.batch_size, SAMPLE)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).to(device)
    augment = build_augment(spec).to(device)
    hook = build_style_hook(spec, stylizer, bank, g, device, amp_dtype(spec.optim.precision, device))
    with torch.no_grad():
        seconds, _ = timed(lambda: _sync(make_views(augment, x, g, hook), device), repeat=batches)
    return {"augment_images_per_s": n / seconds}


def _sync(out, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out


def ssl_steps(spec: CellSpec, cache_dir: str, steps: int, threads: int, device) -> dict[str, float]:
    """An SSL cell's pretraining (train_ssl_cell) for a few steps on one worker, and its
    augmentation's rate alone (:func:`augmentation_rate`)."""
    t0 = time.perf_counter()
    stylizer = bank = None
    figures: dict[str, Any] = {}
    if spec.augmentation.style.enabled:
        stylizer = stylizer_for(spec, cache_dir)
        bank, figures = small_bank(spec, stylizer, cache_dir, device)
    timer = StepTimer(steps)
    figures.update(run_steps(lambda: train_ssl_cell(spec, cache_dir=cache_dir, device=device, callback=timer,
                                                    threads=threads, stylizer=stylizer, style_bank=bank), timer))
    setup_s = timer.ends[0] - t0
    figures.update(augmentation_rate(spec, device, stylizer, bank))
    return {**figures, "setup_s": setup_s}


def sipl_steps(spec: CellSpec, cache_dir: str, steps: int, threads: int, device) -> dict[str, float]:
    """A SIPL cell's pretext training (train_sipl_cell) for a few steps."""
    t0 = time.perf_counter()
    timer = StepTimer(steps)
    figures = run_steps(lambda: train_sipl_cell(spec, cache_dir=cache_dir, device=device, callback=timer,
                                                threads=threads), timer)
    return {**figures, "setup_s": timer.ends[0] - t0}


def stylizer_steps(spec: CellSpec, banks: list[DatasetRef], cache_dir: str, steps: int, device) -> dict[str, float]:
    """A stylizer stage: loading (or a few training steps) and each of its style banks' embedding."""
    st = spec.stylizer
    t0 = time.perf_counter()
    net = stylizer_for(spec, cache_dir)
    figures = {"load_s": time.perf_counter() - t0}
    if not st.pretrained and not st.checkpoint:  # trained by the run: time its steps
        timer = StepTimer(steps)
        figures.update(run_steps(lambda: train_stylizer_cell(spec, cache_dir=cache_dir, device=device,
                                                             callback=timer, lazy=True), timer))
        figures["steps_per_epoch"] = float(st.steps)  # one "epoch" = the whole training
    for ref in banks:  # the run computes each bank once, in sequence
        _, bank = small_bank(spec, net, cache_dir, device, ref)
        figures["bank_images"] = figures.get("bank_images", 0.0) + bank["bank_images"]
        figures["bank_s"] = figures.get("bank_s", 0.0) + bank["bank_s"]
    return figures
