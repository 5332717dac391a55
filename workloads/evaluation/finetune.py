"""Full fine-tuning evaluation (SASSL A.4): pretrained backbone + a new linear head, all trained
with SGD (Nesterov momentum, cosine schedule per step, no weight decay, no augmentation).
The learning rate is chosen on the validation split, then the model is refit from the same
pretrained weights on train+val and tested on test, so test never steers a choice."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.lazy import concat_images
from .probe import ProbeResult, topk_accuracy

Progress = Callable[[str, int, int], None]


class _Normalise(nn.Module):
    """uint8 → [0, 1] → (x - mean) / std, as in features.py, inside the model so that every
    forward pass (train and eval) sees identically prepared inputs."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        x = x.float().div_(255.0).sub_(self.mean).div_(self.std)
        return x.contiguous(memory_format=torch.channels_last)  # faster CPU convolutions


def _build(make_backbone: Callable[[], nn.Module], state: dict[str, Tensor], num_classes: int,
           mean, std, seed: int, device) -> nn.Module:
    # Seeded construction without disturbing the caller's RNG; load_state_dict copies the
    # values into fresh parameters, so the caller's `state` tensors are never trained in place.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        backbone = make_backbone()
        head = nn.Linear(backbone.out_dim, num_classes)
    backbone.load_state_dict(state)
    model = nn.Sequential(_Normalise(mean, std), backbone, head)
    return model.to(device, memory_format=torch.channels_last)


def _train(model: nn.Module, x: Tensor, y: Tensor, *, lr: float, epochs: int, batch_size: int,
           momentum: float, seed: int, device, phase: str, progress: Progress | None) -> bool:
    """Trains in place; returns False if the loss became non-finite (the lr diverged)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, nesterov=True, weight_decay=0.0)
    # A trailing batch of one is skipped: train-mode BatchNorm on a 1×1 map of one image fails.
    per_epoch = len(x) // batch_size + (len(x) % batch_size > 1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs * per_epoch))
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            if len(idx) < 2 and i > 0:
                continue
            loss = F.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
            if not torch.isfinite(loss):
                return False
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if progress is not None:
            progress(phase, epoch + 1, epochs)
    return True


@torch.no_grad()
def _predict(model: nn.Module, x: Tensor, batch_size: int, device) -> Tensor:
    model.eval()  # BatchNorm uses its running statistics
    return torch.cat([model(x[i:i + batch_size].to(device)).float().cpu()
                      for i in range(0, len(x), batch_size)])


def _check(name: str, split: tuple[Tensor, Tensor]) -> None:
    x, y = split
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} images must be uint8 N×3×S×S, got {x.dtype} {tuple(x.shape)}")
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"{name} has {len(x)} images and {len(y)} labels (need equal, non-zero)")


def fine_tune(make_backbone: Callable[[], nn.Module], state: dict[str, Tensor],
              train: tuple[Tensor, Tensor], val: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor],
              num_classes: int, *, mean, std, lrs=(0.01, 0.1), epochs: int = 10, batch_size: int = 128,
              momentum: float = 0.9, seed: int = 0, device="cpu",
              progress: Progress | None = None) -> ProbeResult:
    """Returns test top-1/top-5 of the model refit on train+val with the lr that scored best
    top-1 on val (ties → the earlier lr in `lrs`). A diverging lr scores 0 %."""
    for name, split in (("train", train), ("val", val), ("test", test)):
        _check(name, split)
    if not lrs:
        raise ValueError("lrs is empty")
    if epochs < 1 or batch_size < 2:
        raise ValueError(f"need epochs >= 1 and batch_size >= 2, got {epochs}, {batch_size}")
    kw = dict(epochs=epochs, batch_size=batch_size, momentum=momentum, seed=seed, device=device,
              progress=progress)

    def fit_eval(fit: tuple[Tensor, Tensor], evaluate: tuple[Tensor, Tensor], lr: float, phase: str):
        model = _build(make_backbone, state, num_classes, mean, std, seed, device)
        ok = _train(model, fit[0], fit[1].long(), lr=lr, phase=phase, **kw)
        logits = _predict(model, evaluate[0], max(batch_size, 256), device)
        y = evaluate[1].long().cpu()
        return [topk_accuracy(logits, y, k) if ok else 0.0 for k in (1, 5)]

    val_top1 = {float(lr): fit_eval(train, val, float(lr), f"finetune lr={float(lr):g}")[0] for lr in lrs}
    best_lr = max(val_top1, key=val_top1.get)
    both = (concat_images([train[0], val[0]]), torch.cat([train[1], val[1]]))
    top1, top5 = fit_eval(both, test, best_lr, "finetune refit")
    return ProbeResult(top1, top5, val_top1, best_lr)
