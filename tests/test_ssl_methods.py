"""SimCLR, BYOL, Barlow Twins beside MoCo v2; the vanilla / AugSelf / CASSLE modes of each."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workloads.methods import METHODS, build_method
from workloads.methods.augself import AugSelfHeads, augself_targets
from workloads.methods.conditioning import ConditionedProjector
from workloads.methods.ema import cosine_momentum
from workloads.methods.losses import barlow_twins_loss, byol_loss, cross_correlation, nt_xent
from workloads.models.backbones import build_backbone

SMALL = {
    "moco_v2": dict(proj_hidden_dim=16, proj_dim=8, pred_hidden_dim=16),
    "simclr": dict(proj_hidden_dim=16, proj_dim=8),
    "byol": dict(proj_hidden_dim=16, proj_dim=8, pred_hidden_dim=16),
    "barlow_twins": dict(proj_hidden_dim=16, proj_dim=8),
}
COND = dict(encoder_depth=2, encoder_width=8)


def _model(name, **kw):
    torch.manual_seed(0)
    return build_method(name, build_backbone("resnet18", 0.125), **SMALL[name], **kw)


def _batch(b=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, 32, 32, generator=g)
    return x, x.flip(3), torch.rand(b, 14, generator=g), torch.rand(b, 14, generator=g)


# ------------------------------------------------------------------ SimCLR
def _nt_xent_loop(z1, z2, t):
    """Independent NT-Xent: per view, -log softmax of its partner among the other 2B - 1."""
    z = torch.cat([z1, z2])
    n = z1.shape[0]
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        sims = [(z[i] @ z[k]).item() / t for k in range(2 * n) if k != i]
        pos = (z[i] @ z[j]).item() / t
        total += -(pos - math.log(sum(math.exp(s) for s in sims)))
    return total / (2 * n)


def test_nt_xent_hand_computed():
    z = torch.eye(2)
    # each view: partner at 1/T, the two others at 0 -> log(1 + 2 e^{-1/T})
    for t in (1.0, 0.5):
        assert nt_xent(z, z.clone(), t).item() == pytest.approx(math.log1p(2 * math.exp(-1 / t)), rel=1e-6)
    g = torch.Generator().manual_seed(0)
    z1 = F.normalize(torch.randn(5, 7, generator=g), dim=1)
    z2 = F.normalize(torch.randn(5, 7, generator=g), dim=1)
    assert nt_xent(z1, z2, 0.2).item() == pytest.approx(_nt_xent_loop(z1, z2, 0.2), rel=1e-5)
    # aligned views are much cheaper than random partners
    assert nt_xent(z1, z1.clone(), 0.2) < nt_xent(z1, z2, 0.2) - 1.0


# -------------------------------------------------------------------- BYOL
def test_byol_loss_hand_computed():
    p = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert byol_loss(p, p.clone()).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(p, -p).item() == pytest.approx(4.0)
    assert byol_loss(p, p.flip(1)).item() == pytest.approx(2.0)  # orthogonal
    assert byol_loss(p, torch.tensor([[1.0, 1.0], [0.0, 3.0]])).item() == pytest.approx(
        0.5 * ((2 - 2 / math.sqrt(2)) + 0.0))


def test_byol_target_follows_online_by_cosine_ema_and_gets_no_gradient():
    model = _model("byol", momentum=0.9)
    x1, x2, _, _ = _batch()
    model(x1, x2)["loss"].backward()
    assert all(p.grad is None for p in model.target_backbone.parameters())
    assert all(p.grad is None for p in model.target_projector.parameters())
    online = next(model.projector.parameters())
    target = next(model.target_projector.parameters())
    with torch.no_grad():
        online.add_(1.0)
    before = target.detach().clone()
    model.after_step(0.5)
    m = cosine_momentum(0.9, 0.5)
    assert model.current_momentum == pytest.approx(0.95) == pytest.approx(m)
    assert torch.allclose(target, m * before + (1 - m) * online.detach())
    snap = target.detach().clone()
    model.after_step(1.0)  # the schedule ends at momentum 1: the target stops moving
    assert torch.equal(target, snap)


# ------------------------------------------------------------ Barlow Twins
def test_barlow_twins_hand_computed():
    z = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])  # mean 0, var 1, uncorrelated
    eps = 1e-5
    assert torch.allclose(cross_correlation(z, z), torch.eye(2) / (1 + eps), atol=1e-6)
    assert barlow_twins_loss(z, z).item() == pytest.approx(2 * (1 - 1 / (1 + eps)) ** 2, abs=1e-8)
    # second dimension anti-correlated: C = diag(1, -1) -> (1 - 1)² + (-1 - 1)² = 4
    assert barlow_twins_loss(z, z * torch.tensor([1.0, -1.0])).item() == pytest.approx(4.0, rel=1e-4)
    # dimensions swapped: C = [[0, 1], [1, 0]] -> on-diagonal 2, off-diagonal 2 λ
    assert barlow_twins_loss(z, z.flip(1), lambd=0.5).item() == pytest.approx(2.0 + 0.5 * 2.0, rel=1e-4)
    # invariant to per-dimension scale and shift (standardisation)
    assert barlow_twins_loss(3 * z + 1, z.flip(1), 0.5).item() == pytest.approx(3.0, rel=1e-4)


# ---------------------------------------------------------------- AugSelf
def test_augself_targets_hand_computed():
    w1 = torch.zeros(2, 14)
    w2 = torch.zeros(2, 14)
    w1[:, 0:4] = torch.tensor([[0.5, 0.4, 0.8, 0.6], [0.5, 0.5, 1.0, 1.0]])
    w2[:, 0:4] = torch.tensor([[0.3, 0.6, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])
    w1[:, 4] = torch.tensor([0.25, 0.0])
    w1[:, 12] = torch.tensor([1.0, 0.0])
    w2[:, 12] = torch.tensor([1.0, 1.0])
    t = augself_targets(w1, w2, "cjf")
    assert t["c"].tolist() == [pytest.approx([0.2, -0.2, 0.3, 0.1]), [0.0] * 4]
    assert t["j"][:, 0].tolist() == [0.25, 0.0]
    assert t["f"].tolist() == [[1.0], [0.0]]  # same flip / different flip


class _Fixed(nn.Module):
    """Head replacement: prediction = [y1, y2] @ W (no bias)."""

    def __init__(self, w):
        super().__init__()
        self.w = w

    def forward(self, z):
        return z @ self.w


def test_augself_loss_known_inputs():
    heads = AugSelfHeads(feat_dim=4, parts="cf", hidden_dim=8)
    w1, w2 = torch.zeros(3, 14), torch.zeros(3, 14)
    w1[:, 0:4] = torch.tensor([[0.5, 0.5, 1.0, 1.0], [0.3, 0.7, 0.4, 0.5], [0.6, 0.2, 0.8, 0.3]])
    w2[:, 0:4] = torch.tensor([[0.4, 0.5, 0.6, 0.9], [0.5, 0.5, 1.0, 1.0], [0.6, 0.6, 0.2, 0.3]])
    w1[:, 12] = torch.tensor([1.0, 0.0, 1.0])
    y1, y2 = w1[:, 0:4].clone(), w2[:, 0:4].clone()  # features that carry the crop
    d = w1[:, 0:4] - w2[:, 0:4]
    # a crop head computing y1 - y2 predicts the difference before tanh: loss = mean((tanh d - d)²)
    heads.heads["c"] = _Fixed(torch.cat([torch.eye(4), -torch.eye(4)]))
    # a flip head answering logit 0: BCE = log 2 whatever the target
    heads.heads["f"] = _Fixed(torch.zeros(8, 1))
    total, parts = heads.loss(y1, y2, w1, w2)
    want_c = ((torch.tanh(d) - d) ** 2).mean().item()  # the same in both orders (d -> -d)
    assert parts["c"].item() == pytest.approx(want_c, rel=1e-5)
    assert parts["f"].item() == pytest.approx(math.log(2), rel=1e-6)
    assert total.item() == pytest.approx(want_c + math.log(2), rel=1e-5)
    # a head that always answers 0 pays the mean squared difference
    heads.heads["c"] = _Fixed(torch.zeros(8, 4))
    assert heads.loss(y1, y2, w1, w2)[1]["c"].item() == pytest.approx((d ** 2).mean().item(), rel=1e-6)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_augself_adds_its_weighted_loss(name):
    x1, x2, w1, w2 = _batch()
    van = _model(name)
    aug = _model(name, aug_mode="augself", augself_weight=0.5, omega_parts="cjf")
    # same seed, same initial backbone and projector as the vanilla method
    assert torch.equal(next(van.projector.parameters()), next(aug.projector.parameters()))
    out = aug(x1, x2, w1, w2)
    assert set(aug.augself.heads) == {"c", "j", "f"}
    assert out["loss"].item() == pytest.approx(out["ssl_loss"].item() + 0.5 * out["augself_loss"].item(), rel=1e-5)
    assert out["augself_loss"].item() == pytest.approx(
        sum(out[f"augself_loss_{p}"].item() for p in "cjf"), rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is not None for p in aug.augself.parameters())
    default = _model(name, aug_mode="augself")
    assert set(default.augself.heads) == {"c", "j"}  # AugSelf's crop + colour


# ----------------------------------------------------------------- CASSLE
TOWERS = {"moco_v2": ("projector", "key_projector"), "byol": ("projector", "target_projector"),
          "simclr": ("projector",), "barlow_twins": ("projector",)}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_cassle_conditions_every_projector(name):
    model = _model(name, aug_mode="cassle", **COND)
    for tower in TOWERS[name]:
        assert isinstance(getattr(model, tower), ConditionedProjector), tower
    x1, x2, w1, w2 = _batch()
    out = model(x1, x2, w1, w2)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None for p in model.projector.encoder.parameters())
    model.zero_grad()
    other = model(x1, x2, w1, w2.flip(0))["loss"]  # the second view told another image's ω
    assert not math.isclose(other.item(), out["loss"].item(), rel_tol=1e-6)
    with pytest.raises(ValueError, match="needs omega1 and omega2"):
        model(x1, x2)


def test_cassle_key_tower_reads_the_key_views_omega():
    model = _model("moco_v2", aug_mode="cassle", **COND).eval()
    x1, x2, w1, w2 = _batch()
    with torch.no_grad():
        y = model.key_backbone(x2)
        _, k = model._key(x2, w2)
        assert torch.allclose(k, F.normalize(model.key_projector(y, w2), dim=1))
        assert not torch.allclose(k, model._key(x2, w1)[1])


def test_cassle_momentum_encoder_averages_gamma_too():
    for name, tower in (("moco_v2", "key_projector"), ("byol", "target_projector")):
        model = _model(name, aug_mode="cassle", momentum=0.5, momentum_schedule="constant", **COND)
        online = model.projector.encoder.net[0].weight
        target = getattr(model, tower).encoder.net[0].weight
        assert not target.requires_grad
        with torch.no_grad():
            online.add_(1.0)
        before = target.detach().clone()
        model.after_step(0.3)
        assert torch.allclose(target, 0.5 * before + 0.5 * online.detach())


# -------------------------------------------------------------- all methods
@pytest.mark.parametrize("mode", ["vanilla", "augself", "cassle"])
@pytest.mark.parametrize("name", sorted(SMALL))
def test_every_method_and_mode_trains_a_step(name, mode):
    model = _model(name, aug_mode=mode, **COND)
    x1, x2, w1, w2 = _batch()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    out = model(x1, x2, omega1=w1, omega2=w2)
    assert out["loss"].ndim == 0 and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert next(model.backbone.parameters()).grad is not None
    opt.step()
    model.after_step(0.1)
    assert model.uses_omega == (mode != "vanilla")


def test_vanilla_ignores_omega_and_keeps_moco_layout():
    x1, x2, w1, w2 = _batch()
    a, b = _model("simclr"), _model("simclr")
    assert torch.equal(a(x1, x2)["loss"], b(x1, x2, w1, w2)["loss"])
    keys = set(_model("moco_v2").state_dict())
    assert "projector.0.weight" in keys and "key_projector.3.weight" in keys
    assert not any(k.startswith(("augself", "projector.encoder")) for k in keys)


def test_registry():
    assert set(METHODS) == {"moco_v2", "moco_v3", "simclr", "byol", "barlow_twins"}
    model = _model("barlow_twins", lambd=0.01)
    assert model.lambd == 0.01 and model.projector[-1].out_features == 8
    with pytest.raises(TypeError):
        _model("simclr", momentum=0.9)  # a field the method does not have
