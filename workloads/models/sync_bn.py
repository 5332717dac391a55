"""Batch norm whose statistics span every rank's batch (``backbone.sync_bn``).

With several workers each rank sees batch_size / num_workers images, and plain batch norm
normalises with that small batch's statistics; the paper setups synchronise them across
GPUs (SyncBatchNorm). torch's SyncBatchNorm runs on GPUs only, so this one is written with
autograd-aware all-reduces (methods/distributed.batch_moments): the same code runs under gloo on
CPU workers, where the tests check it against one process, and under NCCL on GPUs.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..methods.distributed import batch_moments, world_size


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over the global batch in training (running statistics updated from it, the
    unbiased variance as torch's); per-rank running statistics in eval, as plain batch norm."""

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"SyncBatchNorm expects at least 2-D input (N, C, ...), got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training or world_size() == 1:
            return super().forward(x)
        # statistics in fp32 even inside autocast (bf16 sums over a large batch lose digits)
        xs = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        mean, var, count = batch_moments(xs)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                unbiased = var.detach() * count / max(count - 1, 1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        shape = [1, -1] + [1] * (x.dim() - 2)
        y = (xs - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_bn(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm{1,2,3}d replaced by :class:`SyncBatchNorm`, keeping its
    parameters (the same tensors: an optimiser or EMA copy built before still holds them) and
    buffers."""
    if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
        out = SyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                            module.track_running_stats, device=_device_of(module))
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        if module.track_running_stats:
            out.running_mean, out.running_var = module.running_mean, module.running_var
            out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
        return out
    for name, child in module.named_children():
        new = convert_sync_bn(child)
        if new is not child:
            setattr(module, name, new)
    return module


def _device_of(module: nn.Module) -> torch.device | None:
    t = next(iter(module.parameters()), None) if module.affine else module.running_mean
    return None if t is None else t.device


__all__ = ["SyncBatchNorm", "convert_sync_bn"]
