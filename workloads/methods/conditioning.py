"""CASSLE's conditioned projector π(e | ω) and augmentation encoder γ (docs/methods.md; CASSLE §3.3, §4.3).

γ is an MLP of Linear–BN–ReLU blocks (depth 6, hidden 64, output 64 in the paper's best
variant); depth 0 passes the raw ω through. As in the authors' code (``load_mlp``), the
last Linear of γ has no bias and is followed by a BatchNorm (``encoder_last_bn``).

Ways of injecting g = γ(ω) into the projector (``cond_mode``):

* ``concat`` (default): π([e, g]); g has ``encoder_out_dim`` values (raw ω at depth 0);
* ``add``: π(e + g) and ``mul``: π(e ⊙ g), with γ's output of e's size;
* ``hypernetwork``: γ outputs every weight and bias of π per sample; π keeps the plain
  projector's layer sizes, with BN + ReLU between its layers (the code's ``mlp-bn``
  variant). Generated weights are scaled by 1/sqrt(fan_in) so that a standardised γ
  output starts π at the usual initial scale.

The projector always receives the full 14-value ω (:mod:`workloads.augment.omega`) and
keeps the parts named by ``omega_parts`` itself.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..augment.omega import OMEGA_DIM, omega_dim, omega_mask, parse_parts
from .heads import mlp

__all__ = ["COND_MODES", "AugmentationEncoder", "ConditionedProjector", "check_encoder_fields"]

COND_MODES = ("concat", "add", "mul", "hypernetwork")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_encoder_fields(cond_mode: str = "concat", encoder_depth: int = 6, encoder_width: int = 64,
                         encoder_out_dim: int | None = None) -> None:
    """ValueErrors naming the field for a bad conditioning configuration."""
    if cond_mode not in COND_MODES:
        raise ValueError(f"cond_mode must be one of {', '.join(COND_MODES)}; got {cond_mode!r}")
    if not _is_int(encoder_depth) or encoder_depth < 0:
        raise ValueError(f"encoder_depth must be an int >= 0 (0 = raw ω), got {encoder_depth!r}")
    if not _is_int(encoder_width) or encoder_width < 1:
        raise ValueError(f"encoder_width must be an int >= 1, got {encoder_width!r}")
    if encoder_out_dim is not None and (not _is_int(encoder_out_dim) or encoder_out_dim < 1):
        raise ValueError(f"encoder_out_dim must be an int >= 1 (or None = encoder_width), got {encoder_out_dim!r}")
    if encoder_depth == 0 and cond_mode != "concat":
        raise ValueError(f"encoder_depth 0 (raw ω) only works with cond_mode 'concat': cond_mode "
                         f"{cond_mode!r} needs γ(ω) mapped to the projector's shape (encoder_depth >= 1)")


class AugmentationEncoder(nn.Module):
    """γ: ω (``in_dim`` values) → ``out_dim`` values; depth 0 is the identity (raw ω)."""

    def __init__(self, in_dim: int, depth: int = 6, width: int = 64, out_dim: int | None = None,
                 last_bn: bool = True):
        super().__init__()
        check_encoder_fields("concat", depth, width, out_dim)
        if not _is_int(in_dim) or in_dim < 1:
            raise ValueError(f"in_dim must be an int >= 1, got {in_dim!r}")
        self.in_dim, self.depth, self.width = in_dim, depth, width
        if depth == 0:
            self.net: nn.Module = nn.Identity()
            self.out_dim = in_dim
            return
        self.out_dim = width if out_dim is None else out_dim
        mods: list[nn.Module] = []
        dim = in_dim
        for _ in range(depth - 1):
            mods += [nn.Linear(dim, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
            dim = width
        mods.append(nn.Linear(dim, self.out_dim, bias=not last_bn))
        if last_bn:
            mods.append(nn.BatchNorm1d(self.out_dim))
        self.net = nn.Sequential(*mods)

    def forward(self, omega: torch.Tensor) -> torch.Tensor:
        return self.net(omega)


class ConditionedProjector(nn.Module):
    """π(e | ω): a projector of the plain projector's shape conditioned on ω through γ.

    ``forward(e, omega)`` with e ``B x in_dim`` and the full ω ``B x 14``.
    """

    needs_omega = True

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, last_bn: bool = False, *,
                 cond_mode: str = "concat", omega_parts: str | None = "all", encoder_depth: int = 6,
                 encoder_width: int = 64, encoder_out_dim: int | None = None, encoder_last_bn: bool = True):
        super().__init__()
        check_encoder_fields(cond_mode, encoder_depth, encoder_width, encoder_out_dim)
        if layers < 1:
            raise ValueError("a projector needs at least 1 layer")
        self.cond_mode = cond_mode
        self.parts = parse_parts(omega_parts)
        # the kept columns as indices, decided once here: a boolean mask (or a tensor's truth value)
        # read in every call is a host sync per step on a GPU
        mask = omega_mask(self.parts)
        self.all_parts = bool(mask.all())
        self.register_buffer("omega_index", mask.nonzero().flatten(), persistent=False)
        a = omega_dim(self.parts)
        self.in_dim, self.out_dim = in_dim, out_dim
        if cond_mode == "concat":
            self.encoder = AugmentationEncoder(a, encoder_depth, encoder_width, encoder_out_dim, encoder_last_bn)
            self.projector = mlp(in_dim + self.encoder.out_dim, hidden_dim, out_dim, layers, last_bn)
        elif cond_mode in ("add", "mul"):
            self.encoder = AugmentationEncoder(a, encoder_depth, encoder_width, in_dim, encoder_last_bn)
            self.projector = mlp(in_dim, hidden_dim, out_dim, layers, last_bn)
        else:  # hypernetwork: γ generates π's parameters
            dims = [in_dim] + [hidden_dim] * (layers - 1) + [out_dim]
            self.layer_dims = list(zip(dims[:-1], dims[1:]))
            n_params = sum(i * o + o for i, o in self.layer_dims)
            self.encoder = AugmentationEncoder(a, encoder_depth, encoder_width, n_params, encoder_last_bn)
            self.norms = nn.ModuleList(nn.BatchNorm1d(o) for _, o in self.layer_dims[:-1])
            self.last_norm = nn.BatchNorm1d(out_dim, affine=False) if last_bn else nn.Identity()

    def extra_repr(self) -> str:
        return f"cond_mode={self.cond_mode!r}, omega_parts={''.join(self.parts)!r}"

    def _check(self, e: torch.Tensor, omega: torch.Tensor) -> None:
        if omega is None:
            raise ValueError("the conditioned projector needs ω (omega1/omega2 in the method's forward)")
        if omega.ndim != 2 or omega.shape[1] != OMEGA_DIM or omega.shape[0] != e.shape[0]:
            raise ValueError(f"expected ω of shape ({e.shape[0]}, {OMEGA_DIM}), got {tuple(omega.shape)}")

    def embed(self, omega: torch.Tensor) -> torch.Tensor:
        """γ(ω) of a full ``B x 14`` ω (its selected parts)."""
        w = omega if self.all_parts else omega.index_select(1, self.omega_index)
        # ω arrives as fp32 from the augmentation; cast to the encoder's own dtype (fp64 in tests)
        dtype = next((p.dtype for p in self.encoder.parameters()), torch.float32)
        return self.encoder(w.to(dtype))

    def forward(self, e: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
        self._check(e, omega)
        g = self.embed(omega.to(e.device)).to(e.dtype)
        if self.cond_mode == "concat":
            return self.projector(torch.cat([e, g], dim=1))
        if self.cond_mode == "add":
            return self.projector(e + g)
        if self.cond_mode == "mul":
            return self.projector(e * g)
        return self._hyper(e, g)

    def _hyper(self, e: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        h = e.unsqueeze(1)  # (B, 1, in)
        at = 0
        last = len(self.layer_dims) - 1
        for i, (n_in, n_out) in enumerate(self.layer_dims):
            w = params[:, at:at + n_in * n_out].reshape(-1, n_in, n_out) / math.sqrt(n_in)
            at += n_in * n_out
            b = params[:, at:at + n_out].unsqueeze(1)
            at += n_out
            h = torch.baddbmm(b, h, w)  # (B, 1, out)
            if i < last:
                h = torch.relu(self.norms[i](h.squeeze(1))).unsqueeze(1)
        return self.last_norm(h.squeeze(1))
