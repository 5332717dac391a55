"""Tiny torch.distributed helpers that degrade to no-ops on a single process."""
from __future__ import annotations

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


@torch.no_grad()
def gather_no_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x from every rank in rank order (keys need no gradient)."""
    if world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate x from every rank in rank order; gradients flow back to each rank's own part."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(x.contiguous()))


def sum_over_ranks_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Sum of x over ranks (autograd-aware: each rank's gradient is the sum of every rank's
    gradient of the result); x itself on a single process."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_reduce
    return all_reduce(x)


def batch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Mean and biased variance per channel (dim 1) over every other dim and every rank's batch,
    and the number of values each channel's statistics cover. Two passes (mean, then the squared
    deviations) keep fp32's precision; the sums cross ranks with autograd, so with several
    processes these are the global batch's statistics and gradients, as on one process."""
    dims = [d for d in range(x.dim()) if d != 1]
    count = x.numel() // x.shape[1] * world_size()
    mean = sum_over_ranks_with_grad(x.sum(dims)) / count
    shape = [1, -1] + [1] * (x.dim() - 2)
    var = sum_over_ranks_with_grad((x - mean.view(shape)).pow(2).sum(dims)) / count
    return mean, var, count
