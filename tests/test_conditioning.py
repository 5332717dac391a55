"""CASSLE's augmentation encoder γ and conditioned projector (workloads/methods/conditioning.py)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from workloads.methods import build_method
from workloads.methods.conditioning import COND_MODES, AugmentationEncoder, ConditionedProjector
from workloads.models.backbones import build_backbone

E, H, K, B = 12, 16, 8, 6


def _omega(b=B, seed=0):
    return torch.rand(b, 14, generator=torch.Generator().manual_seed(seed))


def _proj(mode="concat", **kw):
    torch.manual_seed(0)
    kw = {"cond_mode": mode, "encoder_depth": 2, "encoder_width": 10, **kw}
    return ConditionedProjector(E, H, K, 2, **kw)


# ----------------------------------------------------------------------- γ
def test_encoder_depth_zero_is_raw_omega():
    enc = AugmentationEncoder(11, depth=0, width=64)
    w = torch.rand(3, 11)
    assert enc.out_dim == 11 and torch.equal(enc(w), w)
    assert sum(p.numel() for p in enc.parameters()) == 0


@pytest.mark.parametrize("depth,width,out", [(1, 7, None), (2, 7, None), (6, 64, 64), (3, 5, 9)])
def test_encoder_shape_and_layers(depth, width, out):
    enc = AugmentationEncoder(14, depth=depth, width=width, out_dim=out)
    assert enc(torch.rand(4, 14)).shape == (4, out or width)
    assert sum(isinstance(m, nn.Linear) for m in enc.modules()) == depth
    assert sum(isinstance(m, nn.ReLU) for m in enc.modules()) == depth - 1
    assert isinstance(list(enc.modules())[-1], nn.BatchNorm1d)  # the authors' γ ends with BN
    no_bn = AugmentationEncoder(14, depth=depth, width=width, out_dim=out, last_bn=False)
    assert isinstance(list(no_bn.modules())[-1], nn.Linear)


# ------------------------------------------------------------- the projector
@pytest.mark.parametrize("mode", COND_MODES)
def test_each_mode_shapes_and_dependence_on_omega(mode):
    proj = _proj(mode)
    e, w = torch.randn(B, E), _omega()
    z = proj(e, w)
    assert z.shape == (B, K) and torch.isfinite(z).all()
    assert not torch.allclose(z, proj(e, _omega(seed=1)), atol=1e-4)  # other ω, other output
    z.sum().backward()
    assert all(p.grad is not None for p in proj.encoder.parameters())  # γ is trained
    proj.eval()  # eval mode: a single image's ω only changes that image's output
    with torch.no_grad():
        base = proj(e, w)
        w2 = w.clone()
        w2[2, 4:8] += 0.3  # other jitter values for image 2
        moved = proj(e, w2)
    changed = (base - moved).abs().amax(dim=1) > 1e-6
    assert changed.tolist() == [i == 2 for i in range(B)]


def test_concat_input_sizes():
    assert _proj("concat").projector[0].in_features == E + 10
    raw = _proj("concat", encoder_depth=0, omega_parts="cjbf")
    assert raw.projector[0].in_features == E + 10  # 10 raw values of c, j, b, f
    assert _proj("concat", encoder_out_dim=3).projector[0].in_features == E + 3
    assert _proj("add").encoder.out_dim == E and _proj("mul").encoder.out_dim == E


def test_hypernetwork_generates_every_projector_parameter():
    proj = _proj("hypernetwork")
    assert proj.encoder.out_dim == E * H + H + H * K + K
    assert not any(isinstance(m, nn.Linear) for m in proj.modules() if m is not proj.encoder
                   and not any(m is x for x in proj.encoder.modules()))


def test_unselected_parts_are_ignored():
    proj = _proj("concat", omega_parts="c").eval()
    e, w = torch.randn(B, E), _omega()
    w2 = w.clone()
    w2[:, 4:] = torch.rand(B, 10)  # everything but the crop
    with torch.no_grad():
        assert torch.equal(proj(e, w), proj(e, w2))
        w2[:, 0] += 0.2
        assert not torch.allclose(proj(e, w), proj(e, w2))


def test_projector_wants_the_full_omega():
    proj = _proj()
    with pytest.raises(ValueError, match=r"ω of shape \(6, 14\)"):
        proj(torch.randn(B, E), torch.rand(B, 4))
    with pytest.raises(ValueError, match="needs ω"):
        proj(torch.randn(B, E), None)


# --------------------------------------------------------------- bad fields
@pytest.mark.parametrize("kw,match", [
    ({"cond_mode": "film"}, "cond_mode must be one of concat, add, mul, hypernetwork; got 'film'"),
    ({"encoder_depth": -1}, "encoder_depth must be an int >= 0"),
    ({"encoder_width": 0}, "encoder_width must be an int >= 1"),
    ({"encoder_width": 2.5}, "encoder_width"),
    ({"encoder_out_dim": 0}, "encoder_out_dim"),
    ({"encoder_depth": 0, "cond_mode": "mul"}, "encoder_depth 0 .* cond_mode 'concat'"),
    ({"omega_parts": "cjx"}, "omega_parts: unknown augmentation part.*'x'"),
])
def test_bad_fields_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        _proj(**kw)
    with pytest.raises(ValueError, match=match):  # through the method registry too
        build_method("simclr", build_backbone("resnet18", 0.125), proj_hidden_dim=8, proj_dim=4,
                     aug_mode="cassle", **kw)


def test_bad_aug_mode_is_named():
    with pytest.raises(ValueError, match="aug_mode must be one of vanilla, augself, cassle; got 'cond'"):
        build_method("byol", build_backbone("resnet18", 0.125), aug_mode="cond")
    with pytest.raises(ValueError, match="augself_weight"):
        build_method("byol", build_backbone("resnet18", 0.125), aug_mode="augself", augself_weight=-1.0)


# ----------------------------------------------------------------------- the shuffled-ω control
@pytest.mark.parametrize("mode", ["cassle", "augself"])
def test_the_shuffled_control_changes_omega_and_nothing_else(mode):
    """With omega_shuffle the method reads the batch's ω with its rows permuted, one permutation
    for both views: the same rows (each pair's two ω together), not in their images' places. The
    views, the weights and everything else are those of the run without the control."""
    torch.manual_seed(0)
    fields = dict(proj_hidden_dim=16, proj_dim=8, aug_mode=mode, encoder_depth=2, encoder_width=8,
                  augself_hidden_dim=8)
    plain = build_method("simclr", build_backbone("resnet18", 0.125), **fields)
    control = build_method("simclr", build_backbone("resnet18", 0.125), **fields, omega_shuffle=True)
    control.load_state_dict(plain.state_dict())
    seen = {}
    original = control.ssl_loss

    def spy(v1, v2, o1, o2):
        seen.update(v1=v1, v2=v2, o1=o1, o2=o2)
        return original(v1, v2, o1, o2)
    control.ssl_loss = spy
    g = torch.Generator().manual_seed(1)
    v1, v2 = torch.rand(8, 3, 32, 32, generator=g), torch.rand(8, 3, 32, 32, generator=g)
    o1, o2 = torch.rand(8, 14, generator=g), torch.rand(8, 14, generator=g)
    torch.manual_seed(3)
    out = control(v1, v2, o1, o2)
    assert seen["v1"] is v1 and seen["v2"] is v2  # the views untouched
    perm = [next(j for j in range(8) if torch.equal(seen["o1"][i], o1[j])) for i in range(8)]
    assert sorted(perm) == list(range(8)) and perm != list(range(8))  # a permutation, not the identity
    assert torch.equal(seen["o2"], o2[perm])  # the same one for both views: pairs stay together
    assert not torch.equal(out["loss"], plain(v1, v2, o1, o2)["loss"])
    # the default: the method reads ω as given
    assert plain.omega_shuffle is False and control.omega_shuffle is True


def test_the_control_without_omega_in_use_is_reported():
    from orchestrator.experiment import build_experiment
    raw = {"name": "x", "data": {"image_size": 32}, "method": {"omega_shuffle": True}}
    assert any(w.startswith("method.omega_shuffle: has no effect: `method.aug_mode` is `vanilla`")
               for w in build_experiment(raw).warnings)
    raw["method"]["aug_mode"] = "cassle"
    cell = build_experiment(raw).cells[0]
    assert cell.spec.method.omega_shuffle is True and build_experiment(raw).warnings == []
