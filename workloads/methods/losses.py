"""The SSL objectives, in one place (docs/methods.md, "SSL methods"). Each takes the towers'
outputs and returns a scalar; with several processes the negatives (or the cross-correlation)
span every rank. tests/test_losses.py checks each against a loop-by-loop reference."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from .distributed import batch_moments, gather_no_grad, gather_with_grad, rank, sum_over_ranks_with_grad, world_size

BN_EPS = 1e-5
HALF = (torch.float16, torch.bfloat16)  # cast up to fp32; fp64 (the reference tests) stays as it is


def full_precision(fn):
    """Run a loss in fp32 inside an autocast region (optim.precision bf16/fp16): its tensor
    arguments in half precision are cast up and autocast is off within, so the similarity
    matmuls, the softmax and the batch statistics keep fp32's range and resolution."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        device = tensors[0].device.type if tensors else "cpu"
        up = lambda a: a.float() if isinstance(a, torch.Tensor) and a.dtype in HALF else a  # noqa: E731
        with torch.autocast(device, enabled=False):
            return fn(*map(up, args), **{k: up(v) for k, v in kwargs.items()})
    return wrapper


def unit_rows(z: torch.Tensor) -> torch.Tensor:
    """Rows of z scaled to unit L2 norm, in fp32 for half-precision input on every device: CUDA's
    autocast runs the norm in fp32 and CPU's does not, so without the cast a CPU test would
    exercise other dtypes than a GPU run (MoCo's queue, for one, is fp32)."""
    return F.normalize(z.float() if z.dtype in HALF else z, dim=1)


@full_precision
def info_nce(q: torch.Tensor, k: torch.Tensor, temperature: float,
             queue: torch.Tensor | None = None, k_all: torch.Tensor | None = None) -> torch.Tensor:
    """MoCo's InfoNCE: query i's positive is key i; negatives are the other keys (of every rank,
    ``k_all``, default k) and the queue. q, k: L2-normalised (B, D)."""
    k_all = k if k_all is None else k_all
    logits = q @ k_all.t()
    if queue is not None and queue.numel():
        logits = torch.cat([logits, q @ queue.t()], dim=1)
    labels = torch.arange(q.shape[0], device=q.device) + rank() * q.shape[0]
    return F.cross_entropy(logits / temperature, labels)


def moco_v3_loss(q: torch.Tensor, k: torch.Tensor, temperature: float) -> torch.Tensor:
    """MoCo v3's contrastive term for one direction: InfoNCE of query i against every rank's
    keys of the other view (no queue), times 2T as in its code (the gradient's scale then does
    not depend on T). q, k: (B, D), normalised here."""
    q, k = unit_rows(q), unit_rows(k)
    return info_nce(q, k, temperature, None, gather_no_grad(k)) * (2.0 * temperature)


@full_precision
def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: for each of the 2B views, cross-entropy of picking its partner among the
    other 2B − 1. z1, z2: L2-normalised (B, D); row i of each is a view of image i."""
    b = z1.shape[0]
    z1_all, z2_all = gather_with_grad(z1), gather_with_grad(z2)
    n_all = z1_all.shape[0]
    cols = torch.cat([z1_all, z2_all])  # (2·B·W, D): all view-1s, then all view-2s
    rows = torch.cat([z1, z2])  # (2B, D)
    logits = rows @ cols.t() / temperature
    idx = torch.arange(b, device=z1.device) + rank() * b
    self_cols = torch.cat([idx, idx + n_all])
    partner = torch.cat([idx + n_all, idx])
    logits[torch.arange(2 * b, device=z1.device), self_cols] = float("-inf")
    return F.cross_entropy(logits, partner)


@full_precision
def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """BYOL: mean over the batch of ‖p̂ − ẑ‖² = 2 − 2·cos(p, z) (z is the target: no gradient)."""
    return (2.0 - 2.0 * F.cosine_similarity(p, z.detach(), dim=-1)).mean()


def standardize(z: torch.Tensor, eps: float = BN_EPS) -> torch.Tensor:
    """Per-dimension (z − mean) / sqrt(biased var + eps) over the (global) batch: BatchNorm
    without affine, synchronised across ranks as Barlow Twins' own code does
    (its batch norm is converted to SyncBatchNorm)."""
    z = z.float() if z.dtype in HALF else z
    mean, var, _ = batch_moments(z)
    return (z - mean) / torch.sqrt(var + eps)


def cross_correlation(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """C = std(z1)ᵀ std(z2) / B over the global batch (B = every rank's rows): with several
    processes each adds its rows' products, so C is the one a single process would compute."""
    c = sum_over_ranks_with_grad(standardize(z1).t() @ standardize(z2))
    return c / (z1.shape[0] * world_size())


@full_precision
def barlow_twins_loss(z1: torch.Tensor, z2: torch.Tensor, lambd: float = 0.0051) -> torch.Tensor:
    """Barlow Twins: Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²."""
    c = cross_correlation(z1, z2)
    on = (torch.diagonal(c) - 1.0).pow(2).sum()
    off = c.pow(2).sum() - torch.diagonal(c).pow(2).sum()
    return on + lambd * off
