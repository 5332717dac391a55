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


def mean_over_ranks_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Mean of x over ranks (autograd-aware); x itself on a single process."""
    if world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_reduce
    return all_reduce(x) / world_size()
