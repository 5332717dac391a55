"""Optimisers (SGD, LARS, AdamW) and the warm-up + cosine learning-rate schedule."""
from __future__ import annotations

import math

import torch
from torch import nn


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise trust ratio (You et al. 2017).

    Parameter groups with ``lars_exclude=True`` (biases, BN) get neither weight decay
    nor adaptation, as in SimCLR/BYOL/SASSL.

    ``foreach`` (default): each group's update as a handful of multi-tensor kernels instead of
    ~10 per parameter (a ResNet-50 method has ~300 parameters: thousands of small launches per
    step on a GPU); ``foreach=False`` is the same arithmetic a parameter at a time, which the
    tests compare it with and benchmarks/optim_foreach.py times."""

    def __init__(self, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0,
                 trust_coefficient: float = 0.001, eps: float = 1e-8, foreach: bool = True):
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                        trust_coefficient=trust_coefficient, eps=eps, lars_exclude=False)
        super().__init__(params, defaults)
        self.foreach = foreach

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                (self._group_foreach if self.foreach else self._group_loop)(group, params)

    def _group_foreach(self, group: dict, params: list[torch.Tensor]) -> None:
        grads = [p.grad for p in params]
        if group["lars_exclude"]:
            d = grads
        else:
            d = torch._foreach_add(grads, params, alpha=group["weight_decay"])
            w_norm, g_norm = torch.stack(torch._foreach_norm(params)), torch.stack(torch._foreach_norm(d))
            trust = torch.where((w_norm > 0) & (g_norm > 0),
                                group["trust_coefficient"] * w_norm / (g_norm + group["eps"]),
                                torch.ones_like(w_norm))
            torch._foreach_mul_(d, list(trust.unbind()))
        bufs = [self.state[p].get("momentum_buffer") for p in params]
        if any(b is None for b in bufs):  # the first step: the buffers start as the update itself
            for p, u in zip(params, d):
                self.state[p]["momentum_buffer"] = u.clone()
            bufs = [self.state[p]["momentum_buffer"] for p in params]
        else:
            torch._foreach_mul_(bufs, group["momentum"])
            torch._foreach_add_(bufs, d)
        torch._foreach_add_(params, bufs, alpha=-group["lr"])

    def _group_loop(self, group: dict, params: list[torch.Tensor]) -> None:
        for p in params:
            d = p.grad
            if not group["lars_exclude"]:
                d = d.add(p, alpha=group["weight_decay"])
                w_norm, g_norm = torch.norm(p), torch.norm(d)
                trust = torch.where((w_norm > 0) & (g_norm > 0),
                                    group["trust_coefficient"] * w_norm / (g_norm + group["eps"]),
                                    torch.ones_like(w_norm))
                d = d.mul(trust)
            buf = self.state[p].get("momentum_buffer")
            if buf is None:
                buf = self.state[p]["momentum_buffer"] = d.clone()
            else:
                buf.mul_(group["momentum"]).add_(d)
            p.add_(buf, alpha=-group["lr"])


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Biases and norm parameters (1-d tensors) are excluded from decay and LARS adaptation."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True}]


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float,
                    weight_decay: float, nesterov: bool = False) -> torch.optim.Optimizer:
    """``sgd`` and ``lars`` leave biases and norm parameters undecayed (:func:`param_groups`);
    ``adamw`` decays every trained parameter, as MoCo v3's code does (``momentum`` unused)."""
    if name == "adamw":
        return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr,
                                 weight_decay=weight_decay)
    groups = param_groups(model, weight_decay)
    if name == "sgd":
        for g in groups:
            g.pop("lars_exclude", None)
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    if name == "lars":
        return LARS(groups, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd, lars or adamw")


def lr_at(step: int, total_steps: int, base_lr: float, warmup_steps: int = 0,
          schedule: str = "cosine", final_lr: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to final_lr (or constant)."""
    if warmup_steps and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return final_lr + (base_lr - final_lr) * 0.5 * (1.0 + math.cos(math.pi * min(t, 1.0)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr
