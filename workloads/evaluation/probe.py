"""Linear probe on frozen features (docs/methods.md, SASSL A.4): SGD with Nesterov momentum,
cosine schedule, no weight decay. The learning rate is chosen on the validation split,
then the probe is refit on train+val and tested on test, so test never steers a choice."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ProbeResult:
    top1: float
    top5: float
    val_top1: dict[float, float]
    chosen_lr: float

    def as_metrics(self, prefix: str) -> dict[str, float]:
        """``linear/cifar10`` → ``linear/cifar10/top1``, ``…/top5``, ``…/lr``, ``…/val_top1_lr0.1``."""
        out = {f"{prefix}/top1": self.top1, f"{prefix}/top5": self.top5, f"{prefix}/lr": self.chosen_lr}
        out.update({f"{prefix}/val_top1_lr{lr:g}": v for lr, v in self.val_top1.items()})
        return out


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, k: int) -> float:
    k = min(k, logits.shape[1])
    hit = (logits.topk(k, dim=1).indices == y[:, None]).any(dim=1)
    return 100.0 * hit.float().mean().item()


def train_linear(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, lr: float, epochs: int,
                 batch_size: int, momentum: float = 0.9, seed: int = 0) -> torch.nn.Linear:
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # seeded init without disturbing the caller's RNG
        torch.manual_seed(seed)
        head = torch.nn.Linear(x.shape[1], num_classes)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, nesterov=True, weight_decay=0.0)
    steps = epochs * math.ceil(len(x) / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), batch_size):
            idx = perm[i:i + batch_size]
            loss = F.cross_entropy(head(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return head


def linear_probe(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor],
                 test: tuple[torch.Tensor, torch.Tensor], num_classes: int, *, lrs=(0.01, 0.1, 1.0),
                 epochs: int = 100, batch_size: int = 256, momentum: float = 0.9, seed: int = 0) -> ProbeResult:
    """Features are standardised with statistics of the data the probe is fit on."""
    (xtr, ytr), (xva, yva), (xte, yte) = train, val, test

    def fit_eval(xfit, yfit, xeval, lr):
        mu, sd = xfit.mean(0), xfit.std(0) + 1e-6
        head = train_linear((xfit - mu) / sd, yfit, num_classes, lr=lr, epochs=epochs,
                            batch_size=batch_size, momentum=momentum, seed=seed)
        with torch.no_grad():
            return head((xeval - mu) / sd)

    val_top1 = {float(lr): topk_accuracy(fit_eval(xtr, ytr, xva, lr), yva, 1) for lr in lrs}
    best_lr = max(val_top1, key=val_top1.get)
    logits = fit_eval(torch.cat([xtr, xva]), torch.cat([ytr, yva]), xte, best_lr)
    return ProbeResult(topk_accuracy(logits, yte, 1), topk_accuracy(logits, yte, 5), val_top1, best_lr)
