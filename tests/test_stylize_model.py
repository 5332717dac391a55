"""Tests of the fast arbitrary style transfer network (workloads/stylize)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from workloads.stylize import (
    VALID_STYLIZED_LAYERS,
    ConditionalInstanceNorm,
    StylePredictor,
    StyleTransferNet,
    StyleTransformer,
    load_stylizer,
    register_predictor_trunk,
    save_stylizer,
)


def _images(b=2, h=32, w=32, seed=0) -> torch.Tensor:
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _net(width=0.25, seed=0, **kw) -> StyleTransferNet:
    torch.manual_seed(seed)
    return StyleTransferNet(width=width, **kw).eval()


# ----------------------------------------------------------------------- CIN
def test_cin_hand_computed():
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])  # mean 2.5, biased var 1.25
    gamma, beta = torch.tensor([[2.0]]), torch.tensor([[0.5]])
    sd = (1.25 + 1e-5) ** 0.5
    expected = torch.tensor([[[[-1.5, -0.5], [0.5, 1.5]]]]) / sd * 2.0 + 0.5
    out = ConditionalInstanceNorm()(x, gamma, beta)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-6)
    # roughly: [-2.183, -0.394, 1.394, 3.183]
    torch.testing.assert_close(out.flatten(), torch.tensor([-2.1833, -0.3944, 1.3944, 3.1833]),
                               atol=1e-3, rtol=0)


def test_cin_per_sample_per_channel():
    x = torch.randn(3, 4, 5, 6)
    gamma, beta = torch.randn(3, 4), torch.randn(3, 4)
    out = ConditionalInstanceNorm()(x, gamma, beta)
    ref = nn.functional.instance_norm(x, eps=1e-5) * gamma[..., None, None] + beta[..., None, None]
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError):
        ConditionalInstanceNorm()(x, gamma[:, :2], beta)


def test_zero_embedding_gives_identity_cin():
    t = StyleTransformer(width=0.5, embed_dim=100)
    assert len(t.cin_channels) == 13
    assert t.cin_channels == [64] * 10 + [32, 16, 3]
    params = t.norm_params(torch.zeros(2, 100))
    assert len(params) == 13
    for (g, b), c in zip(params, t.cin_channels):
        assert g.shape == b.shape == (2, c)
        torch.testing.assert_close(g, torch.ones_like(g))
        torch.testing.assert_close(b, torch.zeros_like(b))


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("h,w", [(32, 32), (33, 33), (64, 64), (50, 50), (33, 50)])
def test_forward_shapes(h, w):
    net = _net(width=0.25)
    c, s = _images(2, h, w, 0), _images(2, h, w, 1)
    with torch.no_grad():
        out = net(c, s, alpha=torch.tensor([0.2, 0.7]))
    assert out.shape == c.shape
    assert out.min() >= 0 and out.max() <= 1
    assert net.embed(c).shape == (2, 100)


def test_forward_224_small_width():
    net = _net(width=0.25)
    c = _images(1, 224, 224)
    with torch.no_grad():
        out = net(c, z_style=torch.randn(1, 100), alpha=0.3)
    assert out.shape == (1, 3, 224, 224)
    assert out.min() >= 0 and out.max() <= 1


def test_width_channels_and_params():
    assert StyleTransformer(width=0.25).cin_channels == [32] * 10 + [16, 8, 3]
    assert StyleTransformer(width=1.0).cin_channels == [128] * 10 + [64, 32, 3]
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(StyleTransferNet(width=0.25)) < n(StyleTransferNet(width=1.0))


# ---------------------------------------------------------- blending / layers
def test_alpha_zero_uses_only_content_embedding():
    net = _net()
    c = _images(3, 32, 32, 0)
    with torch.no_grad():
        z_c = net.embed(c)
        ref = net.transformer(c, z_c)
        out0 = net(c, _images(3, 32, 32, 1), alpha=0.0)
        out0_t = net(c, z_style=torch.randn(3, 100) * 5, alpha=torch.zeros(3))
        out1 = net(c, _images(3, 32, 32, 1), alpha=1.0)
    torch.testing.assert_close(out0, ref)
    torch.testing.assert_close(out0_t, ref)
    assert not torch.allclose(out1, ref)


def test_alpha_per_image():
    net = _net()
    c, z_s = _images(2, 32, 32, 0), torch.randn(2, 100)
    with torch.no_grad():
        mixed = net(c, z_style=z_s, alpha=torch.tensor([0.0, 1.0]))
        only_c = net(c, z_style=z_s, alpha=0.0)
        only_s = net(c, z_style=z_s, alpha=1.0)
    torch.testing.assert_close(mixed[0], only_c[0])
    torch.testing.assert_close(mixed[1], only_s[1])
    with pytest.raises(ValueError):
        net(c, z_style=z_s, alpha=torch.tensor([0.1, 0.2, 0.3]))


def test_stylized_layers_ablation():
    net = _net()
    c = _images(2, 32, 32, 0)
    with torch.no_grad():
        z_c = net.embed(c)
        same = {n: net(c, z_style=z_c, stylized_layers=n) for n in VALID_STYLIZED_LAYERS}
        z_s = torch.randn(2, 100) * 3
        diff = {n: net(c, z_style=z_s, stylized_layers=n) for n in VALID_STYLIZED_LAYERS}
    for n in VALID_STYLIZED_LAYERS:
        torch.testing.assert_close(same[n], same[13])
    for n in (4, 8, 10):
        assert not torch.allclose(diff[n], diff[13], atol=1e-4)
    # transformer-level: layers beyond N use z_content
    t = net.transformer
    with torch.no_grad():
        a = t(c, z_s, z_content=z_c, stylized_layers=4)
        params = t.norm_params(z_s)[:4] + t.norm_params(z_c)[4:]
    assert len(params) == 13
    torch.testing.assert_close(a, diff[4])


@pytest.mark.parametrize("bad", [0, 3, 5, 12, 14, 13.0, True, "13"])
def test_invalid_stylized_layers_raise(bad):
    net = _net()
    c = _images(1, 32, 32)
    with pytest.raises(ValueError, match="stylized_layers"):
        net(c, z_style=torch.zeros(1, 100), stylized_layers=bad)
    with pytest.raises(ValueError, match="stylized_layers"):
        net.transformer(c, torch.zeros(1, 100), z_content=torch.zeros(1, 100), stylized_layers=bad)


def test_transformer_needs_z_content_below_13():
    t = StyleTransformer(width=0.25)
    with pytest.raises(ValueError, match="z_content"):
        t(_images(1), torch.zeros(1, 100), stylized_layers=8)


def test_style_arguments_exclusive():
    net = _net()
    c = _images(1)
    with pytest.raises(ValueError):
        net(c)
    with pytest.raises(ValueError):
        net(c, c, z_style=torch.zeros(1, 100))


# ----------------------------------------------------------------- predictor
def test_predictor_custom_trunk():
    trunk = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1), nn.ReLU())
    p = StylePredictor(trunk, trunk_channels=24, embed_dim=16)
    assert p(_images(2)).shape == (2, 16)
    with pytest.raises(ValueError):
        StylePredictor(trunk)
    net = StyleTransferNet(width=0.25, embed_dim=16, predictor_trunk=trunk, trunk_channels=24,
                           trunk_name="tiny")
    assert net.config() == {"width": 0.25, "embed_dim": 16, "trunk": "tiny", "trunk_channels": 24,
                            "input_norm": "imagenet", "contract_norm": "instance"}


# --------------------------------------------------------------- checkpoints
def test_save_load_round_trip(tmp_path):
    net = _net(width=0.25, seed=3)
    with torch.no_grad():  # move off init so the round trip is meaningful
        for p in net.parameters():
            p.add_(0.01 * torch.randn_like(p))
    path = tmp_path / "stylizer.pt"
    save_stylizer(net, path)
    loaded = load_stylizer(path, {"width": 0.25, "embed_dim": 100, "trunk": "scratch"}).eval()
    c, s = _images(2, 33, 33, 0), _images(2, 33, 33, 1)
    with torch.no_grad():
        torch.testing.assert_close(loaded(c, s, alpha=0.3, stylized_layers=8),
                                   net(c, s, alpha=0.3, stylized_layers=8), rtol=0, atol=0)
    assert loaded.config() == net.config()


def test_load_mismatch_names_field(tmp_path):
    path = tmp_path / "stylizer.pt"
    save_stylizer(_net(width=0.25), path)
    with pytest.raises(ValueError, match=r"width 0\.25 but the config asks for 1\.0"):
        load_stylizer(path, {"width": 1.0, "embed_dim": 100})
    with pytest.raises(ValueError, match="embed_dim") as e:
        load_stylizer(path, {"width": 1.0, "embed_dim": 64})
    assert "width" in str(e.value) and str(path) in str(e.value)
    with pytest.raises(ValueError, match="trunk"):
        load_stylizer(path, {"trunk": "vgg16"})
    torch.save({"state_dict": {}}, tmp_path / "bad.pt")
    with pytest.raises(ValueError):
        load_stylizer(tmp_path / "bad.pt", {})


def test_load_custom_trunk(tmp_path):
    def tiny():
        return nn.Sequential(nn.Conv2d(3, 12, 3, 2, 1), nn.ReLU()), 12

    torch.manual_seed(0)
    net = StyleTransferNet(width=0.25, predictor_trunk=tiny()[0], trunk_channels=12,
                           trunk_name="tiny-test").eval()
    path = tmp_path / "s.pt"
    save_stylizer(net, path)
    with pytest.raises(ValueError, match="register_predictor_trunk"):
        load_stylizer(path, {"trunk": "tiny-test"})
    register_predictor_trunk("tiny-test", tiny)
    loaded = load_stylizer(path, {"trunk": "tiny-test", "width": 0.25}).eval()
    c = _images(2)
    with torch.no_grad():
        torch.testing.assert_close(loaded(c, c.flip(0), alpha=0.2), net(c, c.flip(0), alpha=0.2))


def test_load_errors_are_value_errors(tmp_path):
    bad = tmp_path / "garbage.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        load_stylizer(bad, {})
    net = _net()
    torch.save({"config": {**net.config(), "width": 0.5}, "state_dict": net.state_dict()},
               tmp_path / "lying.pt")
    with pytest.raises(ValueError, match="do not fit"):
        load_stylizer(tmp_path / "lying.pt", {})


# ----------------------------------------------------------------- gradients
def test_gradients_reach_predictor_and_transformer():
    net = StyleTransferNet(width=0.25).train()
    c, s = _images(4, 32, 32, 0), _images(4, 32, 32, 1)
    out = net(c, s, alpha=torch.full((4,), 0.5), stylized_layers=10)
    ((out - c) ** 2).mean().backward()
    for name, mod in (("predictor", net.predictor), ("transformer", net.transformer)):
        grads = [p.grad for p in mod.parameters()]
        assert all(g is not None for g in grads), name
        assert sum(g.abs().sum() for g in grads) > 0, name
    assert net.predictor.bottleneck.weight.grad.abs().sum() > 0
    assert net.transformer.norm_map.weight.grad.abs().sum() > 0


def test_folding_batch_norms_keeps_the_outputs_and_leaves_the_callers_net():
    import copy

    from workloads.stylize.augment import StyleAugment
    from workloads.stylize.model import StyleTransferNet, fold_batch_norms
    torch.manual_seed(0)
    net = StyleTransferNet(width=0.25)
    for m in net.modules():  # non-trivial running statistics, as a trained net has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    net.eval()
    x = torch.rand(3, 3, 32, 32)
    folded = fold_batch_norms(copy.deepcopy(net))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        assert torch.allclose(net.embed(x), folded.embed(x), atol=1e-5)
    hook = StyleAugment(net, source="in_batch", p=1.0)
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the caller's module as given
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in hook.net.modules())
