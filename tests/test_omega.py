"""CASSLE's augmentation information ω (workloads/augment/omega.py) and its recording by the
batched two-view augmentation."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from specs import view1, view2
from workloads.augment import TwoViewAugment
from workloads.augment.two_views import augment_view
from workloads.augment.omega import (OMEGA_DIM, OMEGA_NAMES, identity_omega, omega_dim, omega_from_info,
                                     omega_mask, parse_parts, select_omega)

NO_AUG = dict(flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)
FULL_CROP = dict(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0))


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _images(b=6, s=32, seed=0):
    return torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8, generator=_gen(seed))


def _info(**over):
    """Hand-made augment_view info of 2 images with chosen parameters."""
    info = {
        "crop": torch.tensor([[0.1, 0.2, 0.5, 0.4], [0.0, 0.0, 1.0, 1.0]]),
        "flip": torch.tensor([False, True]),
        "jitter": torch.tensor([True, False]),
        "jitter_factors": torch.tensor([[1.2, 0.8, 1.1, 0.05], [1.3, 1.3, 1.3, 0.1]]),
        "mean_before_jitter": torch.tensor([[0.5, 0.4, 0.3], [0.2, 0.2, 0.2]]),
        "mean_after_jitter": torch.tensor([[0.6, 0.3, 0.35], [0.9, 0.9, 0.9]]),
        "grayscale": torch.tensor([False, True]),
        "blur_sigma": torch.tensor([1.5, 0.0]),
    }
    info.update(over)
    return info


# --------------------------------------------------------------- known values
def test_omega_of_chosen_parameters():
    cfg = view1(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)
    w = omega_from_info(_info(), cfg)
    assert w.shape == (2, OMEGA_DIM) and w.dtype == torch.float32 and len(OMEGA_NAMES) == OMEGA_DIM
    # image 0: crop box top 0.1, left 0.2, h 0.5, w 0.4 -> centre (0.35, 0.4), not flipped
    assert w[0, 0:4].tolist() == pytest.approx([0.35, 0.4, 0.5, 0.4])
    # brightness 1.2 in [0.6, 1.4] -> 0.2 / 0.8; contrast 0.8 -> -0.25;
    # saturation 1.1 in [0.8, 1.2] -> 0.1 / 0.4; hue 0.05 in [-0.1, 0.1] -> 0.05 / 0.2
    assert w[0, 4:8].tolist() == pytest.approx([0.25, -0.25, 0.25, 0.25])
    # colour difference: mean before - mean after
    assert w[0, 8:11].tolist() == pytest.approx([-0.1, 0.1, -0.05])
    assert w[0, 11].item() == pytest.approx(1.5)
    assert w[0, 12:].tolist() == [0.0, 0.0]
    # image 1: whole image, flipped (centre x mirrored: 0.5 -> 0.5), jitter not applied
    # -> zeros even though factors and means are there, no blur, grayscale
    assert w[1, 0:4].tolist() == pytest.approx([0.5, 0.5, 1.0, 1.0])
    assert w[1, 4:12].tolist() == [0.0] * 8
    assert w[1, 12:].tolist() == [1.0, 1.0]


def test_flip_mirrors_the_crop_centre():
    crop = torch.tensor([[0.1, 0.2, 0.5, 0.4]] * 2)
    w = omega_from_info(_info(crop=crop, flip=torch.tensor([False, True])), view1())
    assert w[0, 1].item() == pytest.approx(0.4)  # 0.2 + 0.4 / 2
    assert w[1, 1].item() == pytest.approx(0.6)  # mirrored: 1 - 0.4
    assert w[0, 0].item() == w[1, 0].item()  # y, h, w unchanged
    assert w[:, 2:4].tolist() == [pytest.approx([0.5, 0.4])] * 2
    assert w[:, 12].tolist() == [0.0, 1.0]


def test_zero_width_jitter_range_gives_zero():
    w = omega_from_info(_info(jitter_factors=torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 2)),
                        view1(brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0))
    assert torch.isfinite(w).all() and w[:, 4:8].abs().sum() == 0


# --------------------------------------------------- ω of the real pipeline
def test_pipeline_records_the_values_it_applied():
    """Blur σ fixed at 1.5, always flip and grayscale, no jitter: known ω; the crop in ω
    (mirrored centre included) reproduces the view."""
    x = _images()
    cfg = view1(crop_scale=(0.25, 0.25), crop_ratio=(1.0, 1.0), flip_p=1.0, jitter_p=0.0,
                     grayscale_p=1.0, blur_p=1.0, blur_sigma=(1.5, 1.5), solarize_p=0.0)
    out, info = augment_view(x, cfg, 16, generator=_gen(1), omega=True)
    w = info["omega"]
    assert w.shape == (6, 14)
    assert w[:, 2:4].tolist() == [[0.5, 0.5]] * 6  # a 16x16 box of a 32x32 image
    assert ((w[:, 0:2] >= 0.25) & (w[:, 0:2] <= 0.75)).all()
    assert w[:, 4:11].abs().sum() == 0  # jitter and colour difference: not applied
    assert w[:, 11].tolist() == pytest.approx([1.5] * 6)
    assert w[:, 12:].tolist() == [[1.0, 1.0]] * 6
    # rebuild each view from ω alone: box from the (un-mirrored) centre, then flip, gray, blur
    for i in range(6):
        cy, cx, h, wd = w[i, :4].tolist()
        cx = 1.0 - cx  # the view was flipped
        top, left = round((cy - h / 2) * 32), round((cx - wd / 2) * 32)
        ref = TF.resized_crop(x[i].float() / 255, top, left, round(h * 32), round(wd * 32), [16, 16], antialias=True)
        ref = TF.rgb_to_grayscale(TF.horizontal_flip(ref), num_output_channels=3)
        ref = TF.gaussian_blur(ref, [cfg.blur_kernel_size(16)] * 2, [1.5, 1.5])
        assert torch.allclose(out[i], ref, atol=1e-4), i


def test_not_applied_augmentations_are_zero():
    x = _images()
    out, info = augment_view(x, view1(**NO_AUG, **FULL_CROP), 32, generator=_gen(2), omega=True)
    assert torch.equal(info["omega"], identity_omega(6))
    assert torch.allclose(out, x.float() / 255, atol=1e-6)  # the full-image crop is the identity


def test_colour_difference_is_the_measured_channel_mean_change():
    """Jitter only: ω_d equals mean(crop) - mean(view), measured independently per channel."""
    x = _images(b=8)
    cfg = view1(**{**NO_AUG, "jitter_p": 0.5})
    out, info = augment_view(x, cfg, 24, generator=_gen(3), omega=True)
    w = info["omega"]
    jit = info["jitter"]
    assert 0 < int(jit.sum()) < 8  # both cases present with this seed
    for i in range(8):
        cy, cx, h, wd = w[i, :4].tolist()
        top, left = round((cy - h / 2) * 32), round((cx - wd / 2) * 32)
        crop = TF.resized_crop(x[i].float() / 255, top, left, round(h * 32), round(wd * 32), [24, 24],
                               antialias=True)
        measured = crop.mean(dim=(1, 2)) - out[i].mean(dim=(1, 2))
        assert torch.allclose(w[i, 8:11], measured, atol=1e-5), i
        if not jit[i]:
            assert w[i, 4:11].abs().sum() == 0
    # the jitter values are the factors the view was made with, on the documented scale
    rng = cfg.factor_ranges()
    f = info["jitter_factors"][jit]
    assert torch.allclose(w[jit, 4], (f[:, 0] - 1) / (rng["brightness"][1] - rng["brightness"][0]))
    assert torch.allclose(w[jit, 7], f[:, 3] / (2 * cfg.hue))
    assert (w[:, 4:8].abs() <= 0.5 + 1e-6).all()


def test_a_chosen_brightness_factor_reproduces_the_view():
    """Brightness only: the factor read back from ω (1 + ω·range) makes the same view."""
    x = _images()
    cfg = view1(**{**NO_AUG, **FULL_CROP, "jitter_p": 1.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0})
    out, info = augment_view(x, cfg, 32, generator=_gen(4), omega=True)
    b = 1.0 + info["omega"][:, 4] * 0.8
    assert torch.allclose(out, (x.float() / 255 * b.view(-1, 1, 1, 1)).clamp(0, 1), atol=1e-5)
    assert info["omega"][:, 5:8].abs().sum() == 0  # zero-strength factors


def test_two_view_augment_returns_omega_on_request_only():
    x = _images()
    aug = TwoViewAugment(view1(), view2(), out_size=16)
    v1, v2, info = aug(x, generator=_gen(5))
    assert "omega" not in info["view1"] and "omega" not in info["view2"]
    w1, w2, info_w = aug(x, generator=_gen(5), omega=True)
    # asking for ω draws no random numbers: same views
    assert torch.equal(v1, w1) and torch.equal(v2, w2)
    for k in ("view1", "view2"):
        assert info_w[k]["omega"].shape == (6, 14)
        assert torch.equal(info_w[k]["omega"][:, 12], info_w[k]["flip"].float())
        assert torch.equal(info_w[k]["omega"][:, 11], info_w[k]["blur_sigma"])
    always = TwoViewAugment(view1(), view2(), out_size=16, omega=True)
    _, _, info_a = always(x, generator=_gen(5))
    assert torch.equal(info_a["view1"]["omega"], info_w["view1"]["omega"])
    _, _, info_off = always(x, generator=_gen(5), omega=False)
    assert "omega" not in info_off["view1"]


# ------------------------------------------------------------------- subsets
@pytest.mark.parametrize("parts,dim", [("c", 4), ("cj", 8), ("cjd", 11), ("cjbf", 10), ("cjbfg", 11),
                                       ("all", 14), (None, 14), ("jc", 8), ("c,j,b,f", 10), (["c", "g"], 5)])
def test_part_subsets(parts, dim):
    assert omega_dim(parts) == dim
    assert int(omega_mask(parts).sum()) == dim
    w = torch.arange(14.0).repeat(3, 1)
    assert select_omega(w, parts).shape == (3, dim)


def test_subset_columns_and_order():
    w = torch.arange(14.0)[None]
    assert select_omega(w, "cjbf")[0].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 11, 12]
    assert select_omega(w, "gdc")[0].tolist() == [0, 1, 2, 3, 8, 9, 10, 13]
    assert parse_parts("gfbdjc") == ("c", "j", "d", "b", "f", "g")
    assert parse_parts("all") == parse_parts("cjdbfg")


@pytest.mark.parametrize("bad", ["cx", "crop", "q", ["c", "z"]])
def test_unknown_part_is_named(bad):
    with pytest.raises(ValueError, match="omega_parts: unknown augmentation part"):
        parse_parts(bad)
    with pytest.raises(ValueError, match="'(x|r|o|p|q|z)'"):
        omega_mask(bad)


def test_empty_subset_and_bad_shape_rejected():
    with pytest.raises(ValueError, match="at least one"):
        parse_parts("")
    with pytest.raises(ValueError, match="B x 14"):
        select_omega(torch.zeros(2, 11), "c")
    assert math.isclose(identity_omega(1)[0, 0].item(), 0.5)
