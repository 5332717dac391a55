"""SIPL's downstream evaluation (paper section 3.2, Figure 3): frozen encoder + MLP head.

Embeddings are computed once (the encoder is frozen and there is no augmentation), then
a one-hidden-layer MLP is trained with Adam. The held-out val accuracy of every epoch is
the paper's Figure 3; val picks the epoch and the head of that epoch is tested once, so
the test split never steers a choice.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..augment.kernels import normalize
from .patches import remove_chromatic_aberration, resize_images

__all__ = ["encode_images", "downstream_mlp", "fit_head"]

Split = tuple[torch.Tensor, torch.Tensor]  # (uint8 N×3×S×S images, long N labels)


@torch.no_grad()
def encode_images(encoder: nn.Module, images: torch.Tensor, *, mean: Sequence[float], std: Sequence[float],
                  input_size: int, device: str | torch.device = "cpu", batch_size: int = 256) -> torch.Tensor:
    """Frozen embeddings of uint8 images, preprocessed as the pretext patches (resize,
    chromatic-aberration removal, normalisation) so the encoder sees its training input."""
    encoder = encoder.to(device).eval()
    out = []
    for i in range(0, len(images), batch_size):
        x = resize_images(images[i:i + batch_size].to(device), input_size)
        x = normalize(remove_chromatic_aberration(x), mean, std).contiguous(memory_format=torch.channels_last)
        out.append(encoder(x).float().cpu())
    return torch.cat(out)


def _accuracy(head: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return 100.0 * (head(x).argmax(dim=1) == y).float().mean().item()


def downstream_mlp(encoder: nn.Module, train: Split, val: Split, test: Split, num_classes: int, *,
                   hidden: int = 1000, lr: float = 1e-4, epochs: int, batch_size: int = 256, seed: int,
                   device: str | torch.device = "cpu", mean: Sequence[float], std: Sequence[float],
                   input_size: int, callback_epoch: Callable[[int, dict[str, float]], None] | None = None) -> dict:
    """Returns {"val_acc_history", "best_val_acc", "best_epoch" (1-based), "test_acc"}; accuracies in %.

    ``callback_epoch(epoch, {"val_acc", "train_loss"})`` runs after every epoch.
    """
    _check_head_args(epochs, hidden, lr)  # before the encoding, which is the slow part
    feats = [(encode_images(encoder, s[0], mean=mean, std=std, input_size=input_size, device=device),
              s[1].long().cpu()) for s in (train, val, test)]
    return fit_head(*feats, num_classes, hidden=hidden, lr=lr, epochs=epochs, batch_size=batch_size, seed=seed,
                    callback_epoch=callback_epoch)


def fit_head(train: Split, val: Split, test: Split, num_classes: int, *, hidden: int = 1000, lr: float = 1e-4,
             epochs: int, batch_size: int = 256, seed: int,
             callback_epoch: Callable[[int, dict[str, float]], None] | None = None) -> dict:
    """The MLP head (one hidden layer, Adam) on frozen features (N×D float, N labels), kept at its
    best validation epoch; returns what :func:`downstream_mlp` returns."""
    _check_head_args(epochs, hidden, lr)
    (xtr, ytr), (xva, yva), (xte, yte) = train, val, test
    with torch.random.fork_rng(devices=[]):  # seeded head init without touching the caller's RNG
        torch.manual_seed(seed)
        head = nn.Sequential(nn.Linear(xtr.shape[1], hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    history: list[float] = []
    best_state, best_acc, best_epoch = None, -1.0, 0
    for epoch in range(1, epochs + 1):
        head.train()
        loss_sum, steps = 0.0, 0
        for idx in torch.randperm(len(xtr), generator=g).split(batch_size):
            loss = F.cross_entropy(head(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum, steps = loss_sum + loss.item(), steps + 1
        head.eval()
        acc = _accuracy(head, xva, yva)
        history.append(acc)
        if acc > best_acc:  # first epoch reaching the best val accuracy
            best_acc, best_epoch, best_state = acc, epoch, copy.deepcopy(head.state_dict())
        if callback_epoch is not None:
            callback_epoch(epoch, {"val_acc": acc, "train_loss": loss_sum / steps})
    head.load_state_dict(best_state)
    return {"val_acc_history": history, "best_val_acc": best_acc, "best_epoch": best_epoch,
            "test_acc": _accuracy(head.eval(), xte, yte)}


def _check_head_args(epochs: int, hidden: int, lr: float) -> None:
    if epochs < 1 or hidden < 1 or not lr > 0:
        raise ValueError(f"epochs and hidden must be >= 1 and lr > 0, got {epochs}, {hidden}, {lr}")
