"""CASSLE §4.2 sensitivity analysis (workloads/evaluation/sensitivity.py)."""
from __future__ import annotations

import math

import pytest
import torch

from workloads.augment.two_views import augment_view
from workloads.evaluation.sensitivity import (AUGMENTATIONS, SensitivityResult, augmentation_sensitivity,
                                              info_nce_matching, method_sensitivity, plot_sensitivity,
                                              single_augmentation_config)
from workloads.methods import build_method
from workloads.models.backbones import build_backbone


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(n=8, s=32, seed=0):
    return torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8, generator=_gen(seed))


def _backbone():
    torch.manual_seed(0)
    return build_backbone("resnet18", 0.125)


def test_info_nce_matching_hand_computed():
    a = torch.eye(3)
    # each row: 1/T against its partner, 0 against the two others
    assert info_nce_matching(a, a.clone(), 0.5) == pytest.approx(math.log(math.e ** 2 + 2) - 2)
    assert info_nce_matching(a, a.roll(1, 0), 0.5) == pytest.approx(math.log(math.e ** 2 + 2))


def test_single_augmentation_views():
    x = _images(4)
    ref = x.float() / 255
    for name in AUGMENTATIONS:
        cfg = single_augmentation_config(name)
        view, info = augment_view(x, cfg, 32, generator=_gen(1), omega=True)
        w = info["omega"]
        if name != "crop":  # the whole image, then the one augmentation
            assert w[:, 0:4].tolist() == [[0.5, 0.5, 1.0, 1.0]] * 4
        assert (w[:, 4:8].abs().sum() > 0) == (name == "jitter")
        assert bool((w[:, 11] > 0).all()) == (name == "blur") and bool((w[:, 11] > 0).any()) == (name == "blur")
        assert w[:, 12].tolist() == [float(name == "flip")] * 4
        assert w[:, 13].tolist() == [float(name == "grayscale")] * 4
        if name == "flip":
            assert torch.allclose(view, ref.flip(-1), atol=1e-6)
    with pytest.raises(ValueError, match="unknown augmentation 'solarize'"):
        single_augmentation_config("solarize")


def test_shape_and_finite_values_with_a_projector():
    model = build_method("moco_v2", _backbone(), proj_hidden_dim=16, proj_dim=8, pred_hidden_dim=16)
    model.train()
    r = method_sensitivity(model, _images(10), batch_size=4, generator=_gen(0))
    assert isinstance(r, SensitivityResult)
    assert r.augmentations == AUGMENTATIONS
    assert r.stages == ("layer1", "layer2", "layer3", "layer4", "projector")
    assert r.infonce.shape == (5, 5) and torch.isfinite(r.infonce).all() and (r.infonce >= 0).all()
    assert r.batches == 2  # two full batches of 4, the last 2 images are left out
    assert model.training and model.backbone.training  # modes restored
    d = r.as_dict()
    assert set(d) == set(AUGMENTATIONS) and d["crop"]["projector"] == pytest.approx(float(r.infonce[0, 4]))
    assert len(r.as_metrics()) == 25


def test_cassle_projector_is_given_omega():
    model = build_method("simclr", _backbone(), proj_hidden_dim=16, proj_dim=8, aug_mode="cassle",
                         encoder_depth=2, encoder_width=8)
    r = method_sensitivity(model, _images(6), augmentations=("jitter", "flip"), pool="avg", generator=_gen(0))
    assert r.infonce.shape == (2, 5) and torch.isfinite(r.infonce).all()
    no_proj = augmentation_sensitivity(model.backbone, _images(6), augmentations=("jitter",), generator=_gen(0))
    assert no_proj.stages == ("layer1", "layer2", "layer3", "layer4")


def test_an_augmentation_that_changes_nothing_scores_the_self_match():
    """Flipping left-right symmetric images changes no pixel: every stage scores the
    InfoNCE of the features against themselves (its minimum), below a real augmentation."""
    half = _images(6, s=32)[..., :16]
    sym = torch.cat([half, half.flip(-1)], dim=-1)
    bb = _backbone().eval()
    r = augmentation_sensitivity(bb, sym, augmentations=("flip", "crop"), generator=_gen(0))
    with torch.no_grad():
        x = (sym.float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor(
            [0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        maps = bb.stages(x)[1:]
    for j, fm in enumerate(maps):
        f = fm.flatten(1)
        assert r.infonce[0, j].item() == pytest.approx(info_nce_matching(f, f, 0.2), rel=1e-4)
    assert (r.infonce[1] > r.infonce[0]).all()
    assert augmentation_sensitivity(bb, sym, augmentations=("flip",), loss_scale=0.4,
                                    generator=_gen(0)).infonce[0, 0].item() == pytest.approx(
        0.4 * r.infonce[0, 0].item(), rel=1e-6)


def test_plot_returns_a_figure():
    from matplotlib.figure import Figure

    r = SensitivityResult(AUGMENTATIONS, ("layer1", "layer2", "projector"), torch.rand(5, 3, dtype=torch.float64))
    fig = plot_sensitivity({"vanilla": r, "cassle": r}, title="MoCo v2")
    assert isinstance(fig, Figure)
    axes = fig.get_axes()
    assert len(axes) == 5 and [ax.get_title() for ax in axes] == list(AUGMENTATIONS)
    assert all(len(ax.get_lines()) == 2 for ax in axes)
    assert isinstance(plot_sensitivity(r), Figure)


def test_bad_arguments():
    bb = _backbone()
    with pytest.raises(ValueError, match="pool"):
        augmentation_sensitivity(bb, _images(4), pool="max")
    with pytest.raises(ValueError, match="at least 2"):
        augmentation_sensitivity(bb, _images(1))
