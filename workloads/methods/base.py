"""What every SSL method shares: the augmentation-awareness mode (docs/methods.md, CASSLE).

``aug_mode``:

* ``vanilla`` — the method as published; ω, when given, is ignored;
* ``augself`` — AugSelf's auxiliary heads on the backbone features of both views predict
  the difference of their augmentation parameters (:mod:`.augself`), weight
  ``augself_weight``; parts ``omega_parts`` (default "cj", AugSelf's crop + colour);
* ``cassle`` — the projector is conditioned on ω through γ (:mod:`.conditioning`), in every
  tower that has a projector (the momentum / target copy included, which follows the online
  one by EMA, γ too); parts ``omega_parts`` (default "all").

Config fields (all methods, passed through ``build_method(name, backbone, **fields)``):
``aug_mode``, ``omega_parts``, ``cond_mode``, ``encoder_depth``, ``encoder_width``,
``encoder_out_dim``, ``encoder_last_bn``, ``augself_weight``, ``augself_hidden_dim``,
``omega_shuffle`` (the control: ω's rows permuted within the batch, :func:`shuffled`).
Fields of a mode not in use are still validated (so a bad value fails early) but unused.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..augment.omega import OMEGA_DIM, parse_parts
from .augself import AUGSELF_DEFAULT_PARTS, AugSelfHeads
from .conditioning import ConditionedProjector, check_encoder_fields
from .ema import MomentumSchedule, ema_update
from .heads import mlp

__all__ = ["AUG_MODES", "AugAwareMethod", "shuffled"]

AUG_MODES = ("vanilla", "augself", "cassle")


def shuffled(omega1: torch.Tensor, omega2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The control ``omega_shuffle``: both views' ω with their rows permuted by one random
    permutation of the batch (torch's default generator on ω's device, seeded with the cell). The
    values and each pair's two ω stay together, so γ and AugSelf's heads see ω's statistics. No row
    describes its own image's views any more."""
    perm = torch.randperm(omega1.shape[0], device=omega1.device)
    return omega1[perm], omega2[perm]


class AugAwareMethod(nn.Module):
    """Base class of the SSL methods. A method calls :meth:`_init_aug` in ``__init__``, builds
    its projectors with :meth:`_make_projector` and implements :meth:`ssl_loss`; the base owns
    the step (:meth:`forward`) and, for momentum towers, the EMA (:meth:`after_step`)."""

    def _init_aug(self, feat_dim: int, *, aug_mode: str = "vanilla", omega_parts: str | None = None,
                  cond_mode: str = "concat", encoder_depth: int = 6, encoder_width: int = 64,
                  encoder_out_dim: int | None = None, encoder_last_bn: bool = True,
                  augself_weight: float = 1.0, augself_hidden_dim: int = 512, omega_shuffle: bool = False) -> None:
        if aug_mode not in AUG_MODES:
            raise ValueError(f"aug_mode must be one of {', '.join(AUG_MODES)}; got {aug_mode!r}")
        check_encoder_fields(cond_mode, encoder_depth, encoder_width, encoder_out_dim)
        if (isinstance(augself_weight, bool) or not isinstance(augself_weight, (int, float))
                or not math.isfinite(augself_weight) or augself_weight < 0):
            raise ValueError(f"augself_weight must be a finite number >= 0, got {augself_weight!r}")
        if omega_parts is not None:
            parse_parts(omega_parts)  # ValueError naming an unknown part
        self.aug_mode = aug_mode
        self.augself_weight = float(augself_weight)
        self.omega_shuffle = bool(omega_shuffle)
        self._cond = dict(cond_mode=cond_mode, encoder_depth=encoder_depth, encoder_width=encoder_width,
                          encoder_out_dim=encoder_out_dim, encoder_last_bn=encoder_last_bn,
                          omega_parts="all" if omega_parts is None else omega_parts)
        if aug_mode == "augself":
            parts = AUGSELF_DEFAULT_PARTS if omega_parts is None else omega_parts
            # initialised on a forked RNG: the backbone's and projector's initial weights stay
            # those of the vanilla method with the same seed
            with torch.random.fork_rng(devices=[]):
                self.augself = AugSelfHeads(feat_dim, parts, augself_hidden_dim)
        elif not isinstance(augself_hidden_dim, int) or isinstance(augself_hidden_dim, bool) or augself_hidden_dim < 1:
            raise ValueError(f"augself_hidden_dim must be an int >= 1, got {augself_hidden_dim!r}")

    @property
    def uses_omega(self) -> bool:
        """Whether forward needs omega1/omega2 (pretrain asks the augmentation for ω)."""
        return self.aug_mode != "vanilla"

    def _make_projector(self, in_dim: int, hidden_dim: int, out_dim: int, layers: int,
                        last_bn: bool = False) -> nn.Module:
        if self.aug_mode == "cassle":
            return ConditionedProjector(in_dim, hidden_dim, out_dim, layers, last_bn, **self._cond)
        return mlp(in_dim, hidden_dim, out_dim, layers, last_bn)

    def _project(self, projector: nn.Module, e: torch.Tensor, omega: torch.Tensor | None) -> torch.Tensor:
        return projector(e, omega) if self.aug_mode == "cassle" else projector(e)

    def _check_omega(self, omega1: torch.Tensor | None, omega2: torch.Tensor | None, batch: int) -> None:
        if self.aug_mode == "vanilla":
            return
        if omega1 is None or omega2 is None:
            raise ValueError(f"aug_mode {self.aug_mode!r} needs omega1 and omega2 (the views' ω, "
                             "TwoViewAugment(..., omega=True))")
        for name, o in (("omega1", omega1), ("omega2", omega2)):
            if o.ndim != 2 or o.shape != (batch, OMEGA_DIM):
                raise ValueError(f"{name} must have shape ({batch}, {OMEGA_DIM}), got {tuple(o.shape)}")

    def _aux_loss(self, y1: torch.Tensor, y2: torch.Tensor, omega1: torch.Tensor | None,
                  omega2: torch.Tensor | None, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """AugSelf's weighted loss (0 for other modes); adds its terms to ``out`` for logging."""
        if self.aug_mode != "augself":
            return torch.zeros((), device=y1.device)
        total, parts = self.augself.loss(y1, y2, omega1, omega2)
        out["augself_loss"] = total.detach()
        for p, v in parts.items():
            out[f"augself_loss_{p}"] = v.detach()
        return self.augself_weight * total

    def forward(self, v1: torch.Tensor, v2: torch.Tensor, omega1: torch.Tensor | None = None,
                omega2: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The step every method shares: ω checked, the method's own loss (:meth:`ssl_loss`),
        AugSelf's auxiliary loss on the backbone features it returns, and the output dict
        ({"loss"}, plus "ssl_loss" and the AugSelf terms in augself mode)."""
        self._check_omega(omega1, omega2, v1.shape[0])
        if self.omega_shuffle and omega1 is not None:
            omega1, omega2 = shuffled(omega1, omega2)
        loss, y1, y2 = self.ssl_loss(v1, v2, omega1, omega2)
        out: dict[str, torch.Tensor] = {}
        aux = self._aux_loss(y1, y2, omega1, omega2, out)
        if self.aug_mode == "augself":
            out["ssl_loss"] = loss.detach()
            out["loss"] = loss + aux
        else:
            out["loss"] = loss
        return out

    def ssl_loss(self, v1: torch.Tensor, v2: torch.Tensor, omega1: torch.Tensor | None,
                 omega2: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What each method supplies: (its loss, the backbone features of view 1 and of view 2
        that AugSelf's heads read). Project with :meth:`_project` so CASSLE conditions it."""
        raise NotImplementedError

    def _init_momentum(self, momentum: float, schedule: str) -> None:
        """For a method with momentum towers (listed by :meth:`momentum_pairs`)."""
        self.momentum = MomentumSchedule(momentum, schedule)
        self.current_momentum = momentum

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online module, its EMA copy) pairs; none by default."""
        return []

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        """Called after every optimiser step with the fraction of training done (0..1): the EMA
        update of the momentum towers, if the method has any."""
        pairs = self.momentum_pairs()
        if pairs:
            self.current_momentum = self.momentum.at(progress)
            ema_update(pairs, self.current_momentum)
