"""Batch norm whose statistics span every rank's batch (``backbone.sync_bn``).

With several workers each rank sees batch_size / num_workers images, and plain batch norm
normalises with that small batch's statistics; the paper setups synchronise them across
GPUs. torch's ``nn.SyncBatchNorm`` runs on CUDA only, so the tests on CPU workers could never
check the path a GPU takes; this one is an autograd function that runs under gloo (CPU) and
NCCL (GPU) alike and costs what plain batch norm costs:

* it saves for backward what batch norm saves: the input in its own dtype (bf16 under
  autocast) and the per-channel mean and inverse std. Writing the layer as differentiable
  all-reduces instead (the first version) kept an fp32 copy of the input and three fp32
  intermediates, 2.4x plain batch norm's saved bytes for a ResNet-50 in bf16
  (benchmarks/sync_bn_memory.py), which would not fit the paper profiles' 512 images per GPU;
* it sends one packed collective per layer in each direction: forward, every rank's
  (mean, variance, count) gathered and combined (Chan's parallel variance: no
  sum-of-squares cancellation); backward, the sums of dy and dy·(x − mean) all-reduced,
  the two terms of the input gradient that depend on the whole batch.

The weight and bias gradients stay local: DDP averages them over ranks, as for any parameter.
Statistics and gradient arithmetic run in fp32 (fp64 for fp64 input): bf16 sums over a large
batch lose digits.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..methods.distributed import world_size


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


def _channel_view(t: torch.Tensor, dims: int) -> torch.Tensor:
    return t.view([1, -1] + [1] * (dims - 2))


@torch.no_grad()
def global_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Per-channel (dim 1) mean and biased variance over every other dim and every rank's batch,
    in fp32 (fp64 for fp64 input), and the number of values they cover: one all_gather."""
    dims = [d for d in range(x.dim()) if d != 1]
    with torch.autocast(x.device.type, enabled=False):
        var, mean = torch.var_mean(x.to(_compute_dtype(x)), dim=dims, correction=0)
    n = float(x.numel() // x.shape[1])
    if world_size() == 1:
        return mean, var, n
    packed = torch.cat([mean, var, mean.new_tensor([n])])
    parts = [torch.empty_like(packed) for _ in range(world_size())]
    dist.all_gather(parts, packed)
    c = mean.numel()
    table = torch.stack(parts)  # ranks x (C means, C variances, count)
    counts = table[:, 2 * c:]
    total = counts.sum()
    g_mean = (table[:, :c] * counts).sum(0) / total
    g_var = ((table[:, c:2 * c] + (table[:, :c] - g_mean) ** 2) * counts).sum(0) / total
    return g_mean, g_var, float(total)


class _SyncBatchNormFunction(torch.autograd.Function):
    """y = (x − mean) · invstd · w + b with (mean, invstd) of the global batch, given."""

    @staticmethod
    def forward(ctx, x, weight, bias, mean, invstd, count: float):
        with torch.autocast(x.device.type, enabled=False):
            scale = invstd if weight is None else invstd * weight.to(invstd.dtype)
            shift = -mean * scale + (0 if bias is None else bias.to(scale.dtype))
            y = x.to(scale.dtype) * _channel_view(scale, x.dim()) + _channel_view(shift, x.dim())
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.count = count
        return y.to(x.dtype)

    @staticmethod
    def backward(ctx, dy):
        x, weight, mean, invstd = ctx.saved_tensors
        dims = [d for d in range(x.dim()) if d != 1]
        nd = x.dim()
        dyf = dy.to(mean.dtype)
        xmu = x.to(mean.dtype) - _channel_view(mean, nd)
        sum_dy = dyf.sum(dims)
        sum_dy_xmu = (dyf * xmu).sum(dims)
        grad_w = grad_b = grad_x = None
        if weight is not None and ctx.needs_input_grad[1]:
            grad_w = (sum_dy_xmu * invstd).to(weight.dtype)
        if ctx.needs_input_grad[2]:
            grad_b = sum_dy.to(weight.dtype if weight is not None else dy.dtype)
        if ctx.needs_input_grad[0]:
            packed = torch.cat([sum_dy, sum_dy_xmu])
            if world_size() > 1:
                dist.all_reduce(packed)
            mean_dy, mean_dy_xmu = (packed / ctx.count).chunk(2)
            w = invstd if weight is None else invstd * weight.to(invstd.dtype)
            # dL/dx = w·invstd·(dy − mean(dy) − (x − mean)·invstd²·mean(dy·(x − mean))), means global
            grad_x = xmu.mul_(_channel_view(-(invstd * invstd * mean_dy_xmu), nd))
            grad_x.add_(dyf).sub_(_channel_view(mean_dy, nd)).mul_(_channel_view(w, nd))
            grad_x = grad_x.to(x.dtype)
        return grad_x, grad_w, grad_b, None, None, None


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over the global batch in training (running statistics updated from it, the
    unbiased variance as torch's); per-rank running statistics in eval, as plain batch norm.
    A single process trains as plain batch norm, unless inside :func:`sync_alone` (the memory
    test and benchmarks measure this path on one device)."""

    always_sync = False

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"SyncBatchNorm expects at least 2-D input (N, C, ...), got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not self.training or (world_size() == 1 and not self.always_sync):
            return super().forward(x)
        mean, var, count = global_moments(x)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), m)
                unbiased = var * count / max(count - 1, 1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        invstd = torch.rsqrt(var + self.eps)
        weight, bias = (self.weight, self.bias) if self.affine else (None, None)
        return _SyncBatchNormFunction.apply(x, weight, bias, mean, invstd, count)


@contextmanager
def sync_alone() -> Iterator[None]:
    """Within: every SyncBatchNorm takes its synchronised path even on one process (collectives
    skipped), so that what it saves and costs can be measured on one device."""
    before, SyncBatchNorm.always_sync = SyncBatchNorm.always_sync, True
    try:
        yield
    finally:
        SyncBatchNorm.always_sync = before


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


__all__ = ["SyncBatchNorm", "convert_sync_bn", "global_moments", "sync_alone"]
