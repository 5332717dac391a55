"""Tests of the batched BYOL two-view augmentation (workloads/augment)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torchvision.transforms.v2.functional as TF

from specs import view1, view2
from workloads.augment import TwoViewAugment, denormalize
from workloads.augment import kernels as A
from workloads.augment.two_views import augment_view

NO_AUG = dict(flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(b=8, h=32, w=32, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=_gen(seed))


def _float_images(b=6, h=17, w=23, seed=0, quantised=False) -> torch.Tensor:
    g = _gen(seed)
    if quantised:  # many ties between channels and grey pixels (hue edge cases)
        return torch.randint(0, 4, (b, 3, h, w), generator=g).float() / 3.0
    return torch.rand(b, 3, h, w, generator=g)


def _pixel_boxes(info_crop: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return torch.round(info_crop * torch.tensor([h, w, h, w])).long()


# ------------------------------------------------------------------ ViewConfig
def test_byol_constructors():
    v1, v2 = view1(), view2()
    assert (v1.blur_p, v1.solarize_p) == (1.0, 0.0)
    assert (v2.blur_p, v2.solarize_p) == (0.1, 0.2)
    for v in (v1, v2):
        assert v.crop_scale == (0.08, 1.0)
        assert v.crop_ratio == pytest.approx((3 / 4, 4 / 3))
        assert (v.flip_p, v.jitter_p, v.grayscale_p) == (0.5, 0.8, 0.2)
        assert (v.brightness, v.contrast, v.saturation, v.hue) == (0.4, 0.4, 0.2, 0.1)
        assert v.blur_sigma == (0.1, 2.0) and v.solarize_threshold == 0.5
    assert v1.blur_kernel_size(224) == 23
    assert v1.blur_kernel_size(32) == 3
    assert v1.blur_kernel_size(96) == 9
    with pytest.raises(dataclasses.FrozenInstanceError):
        v1.flip_p = 0.1  # type: ignore[misc]
    assert view1(crop_scale=[0.2, 1.0]).crop_scale == (0.2, 1.0)


@pytest.mark.parametrize(
    "field,value",
    [
        ("flip_p", 1.5),
        ("jitter_p", -0.1),
        ("grayscale_p", 2.0),
        ("blur_p", float("nan")),
        ("solarize_p", 1.01),
        ("crop_scale", (0.9, 0.1)),
        ("crop_scale", (0.0, 1.0)),
        ("crop_scale", (0.5, 1.5)),
        ("crop_ratio", (2.0, 1.0)),
        ("crop_ratio", (0.0, 1.0)),
        ("blur_sigma", (2.0, 0.1)),
        ("blur_sigma", (0.0, 1.0)),
        ("blur_sigma", (0.1,)),
        ("hue", 0.6),
        ("hue", -0.1),
        ("brightness", -0.1),
        ("contrast", -1.0),
        ("saturation", "x"),
        ("blur_kernel_frac", 0.0),
        ("solarize_threshold", 1.5),
    ],
)
def test_viewconfig_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        view1(**{field: value})


def test_twoview_rejects_bad_size():
    with pytest.raises(ValueError, match="out_size"):
        TwoViewAugment(view1(), view2(), out_size=0)
    with pytest.raises(ValueError, match="std"):
        TwoViewAugment(view1(), view2(), out_size=8, std=(0.2, 0.0, 0.2))


# ------------------------------------------------------------ shapes / ranges
def test_shapes_dtypes_ranges_and_info():
    x = _images(b=16, h=40, w=48)
    aug = TwoViewAugment(view1(), view2(), out_size=24)
    v1, v2, info = aug(x, generator=_gen(1))
    for v in (v1, v2):
        assert v.shape == (16, 3, 24, 24) and v.dtype == torch.float32
        assert torch.isfinite(v).all()
    assert set(info) == {"view1", "view2"}
    expected = {
        "crop": ((16, 4), torch.float32),
        "flip": ((16,), torch.bool),
        "jitter": ((16,), torch.bool),
        "jitter_factors": ((16, 4), torch.float32),
        "jitter_order": ((4,), torch.int64),
        "mean_before_jitter": ((16, 3), torch.float32),
        "mean_after_jitter": ((16, 3), torch.float32),
        "grayscale": ((16,), torch.bool),
        "blur_sigma": ((16,), torch.float32),
        "solarize": ((16,), torch.bool),
    }
    for view in ("view1", "view2"):
        assert set(info[view]) == set(expected)
        for k, (shape, dtype) in expected.items():
            assert info[view][k].shape == shape, k
            assert info[view][k].dtype == dtype, k
        assert sorted(info[view]["jitter_order"].tolist()) == [0, 1, 2, 3]

    # before normalisation every view is in [0, 1]; normalisation is invertible
    g = _gen(1)
    u1, _ = augment_view(x, aug.view1, 24, generator=g)
    u2, _ = augment_view(x, aug.view2, 24, generator=g)
    for u, v in ((u1, v1), (u2, v2)):
        assert u.min() >= 0.0 and u.max() <= 1.0
        torch.testing.assert_close(denormalize(v), u, atol=1e-5, rtol=0)


def test_float_input_accepted():
    x = _images(b=4)
    aug = TwoViewAugment(view1(), view2(), out_size=16)
    a = aug(x, generator=_gen(3))
    b = aug(x.float() / 255.0, generator=_gen(3))
    torch.testing.assert_close(a[0], b[0], atol=1e-4, rtol=0)
    torch.testing.assert_close(a[1], b[1], atol=1e-4, rtol=0)


# ------------------------------------------------------------------------ crop
BOXES = [[0, 0, 17, 17], [3, 4, 10, 12], [5, 2, 12, 15], [1, 1, 2, 3], [10, 5, 7, 11], [0, 3, 17, 6]]


@pytest.mark.parametrize("w", [23, 17])  # non-square and square inputs
@pytest.mark.parametrize("size", [32, 8, 17])
def test_resized_crop_matches_torchvision(size, w):
    x = _float_images(h=17, w=23)[..., :w]
    boxes = torch.tensor(BOXES)
    out = A.resized_crop(x, boxes, size)
    ref = torch.stack([TF.resized_crop(xi, *b.tolist(), [size, size], antialias=True) for xi, b in zip(x, boxes)])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)
    # uint8 input: torchvision interpolates in uint8, we in float
    xu = (x * 255).round().to(torch.uint8)
    out_u = A.resized_crop(xu, boxes, size)
    ref_u = torch.stack([TF.resized_crop(xi, *b.tolist(), [size, size], antialias=True) for xi, b in zip(xu, boxes)])
    assert (out_u * 255 - ref_u.float()).abs().max() <= 1.0 + 1e-3


def test_resized_crop_known_image():
    # whole image at its own size is the identity; an exact 2x upsampling of a
    # crop of a linear ramp is the ramp sampled at the half-pixel positions
    x = _float_images(b=2, h=8, w=8)
    full = torch.tensor([[0, 0, 8, 8]] * 2)
    torch.testing.assert_close(A.resized_crop(x, full, 8), x, atol=1e-6, rtol=0)
    ramp = torch.arange(16, dtype=torch.float32).view(1, 1, 1, 16).expand(1, 3, 16, 16) / 15.0
    out = A.resized_crop(ramp, torch.tensor([[4, 4, 8, 8]]), 16)
    # output column j samples input x = 4 + (j + 0.5) / 2 - 0.5, clamped to [4, 11]
    xs = (4 + (torch.arange(16) + 0.5) / 2 - 0.5).clamp(4, 11) / 15.0
    torch.testing.assert_close(out[0, 0, 0], xs, atol=1e-6, rtol=0)
    # flip folded into the resize equals flipping afterwards
    boxes = torch.tensor(BOXES[:2])
    xx = _float_images(b=2)
    flipped = A.resized_crop(xx, boxes, 12, flip=torch.tensor([True, False]))
    plain = A.resized_crop(xx, boxes, 12)
    torch.testing.assert_close(flipped[0], plain[0].flip(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(flipped[1], plain[1], atol=0, rtol=0)


def test_random_resized_crop_returns_its_boxes():
    x = _images(b=8, h=20, w=30)
    out, boxes = A.random_resized_crop(x, 16, generator=_gen(5))
    assert out.shape == (8, 3, 16, 16) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    px = _pixel_boxes(boxes, 20, 30)
    torch.testing.assert_close(out, A.resized_crop(x, px, 16), atol=0, rtol=0)


def test_crop_boxes_respect_scale_and_ratio():
    H, W, n = 224, 224, 4000
    scale, ratio = (0.08, 1.0), (3 / 4, 4 / 3)
    px = A.sample_crop_boxes(n, H, W, scale, ratio, generator=_gen(7)).double()
    top, left, h, w = px.unbind(1)
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= H).all() and (left + w <= W).all()
    area = h * w / (H * W)
    # rounding of h and w to integers moves the area/aspect by < 1 px per side
    tol_area = (2 * math.sqrt(H * W) + 1) / (H * W)
    assert area.min() >= scale[0] - tol_area and area.max() <= scale[1] + 1e-9
    aspect = w / h
    assert aspect.min() >= ratio[0] * (1 - 0.5 / h.min() - 1e-9) - 0.5 / h.min()
    assert aspect.max() <= ratio[1] * (1 + 0.5 / h.min()) + 0.5 / h.min()
    # same distribution as torchvision's (rejection of boxes that do not fit
    # pulls the mean area below the 0.54 of U[0.08, 1])
    from torchvision.transforms.v2 import RandomResizedCrop

    torch.manual_seed(0)
    img = torch.empty(3, H, W)
    ref = torch.tensor([RandomResizedCrop.get_params(img, list(scale), list(ratio))[2:] for _ in range(2000)]).double()
    ref_area = ref[:, 0] * ref[:, 1] / (H * W)
    assert abs(area.mean().item() - ref_area.mean().item()) < 0.03
    assert abs(area.std().item() - ref_area.std().item()) < 0.03
    assert abs(torch.log(aspect).mean().item()) < 0.02  # log-uniform, symmetric
    # normalised boxes from random_resized_crop are also inside the image
    _, boxes = A.random_resized_crop(_images(b=64), 8, scale=(0.2, 0.5), ratio=(0.5, 2.0), generator=_gen(1))
    a = boxes[:, 2] * boxes[:, 3]
    assert a.min() >= 0.2 - 0.07 and a.max() <= 0.5 + 0.07
    assert ((boxes[:, :2] + boxes[:, 2:]) <= 1 + 1e-6).all()


def test_crop_fallback_is_centre_crop():
    # no try can fit: area must be ~the whole image but aspect 3..4 on a square image
    px = A.sample_crop_boxes(16, 30, 30, (0.9, 1.0), (3.0, 4.0), generator=_gen(0))
    assert px.tolist() == [[10, 0, 10, 30]] * 16


# ---------------------------------------------------------------- colour ops
def _factors(n, lo, hi, seed):
    f = lo + (hi - lo) * torch.rand(n, generator=_gen(seed))
    f[0], f[-1] = lo, hi
    return f


@pytest.mark.parametrize("quantised", [False, True])
@pytest.mark.parametrize(
    "name,ours,theirs,lo,hi",
    [
        ("brightness", A.adjust_brightness, TF.adjust_brightness, 0.0, 2.0),
        ("contrast", A.adjust_contrast, TF.adjust_contrast, 0.0, 2.0),
        ("saturation", A.adjust_saturation, TF.adjust_saturation, 0.0, 2.0),
        ("hue", A.adjust_hue, TF.adjust_hue, -0.5, 0.5),
    ],
)
def test_colour_ops_match_torchvision(name, ours, theirs, lo, hi, quantised):
    x = _float_images(b=8, quantised=quantised, seed=11)
    f = _factors(8, lo, hi, seed=12)
    out = ours(x, f)
    ref = torch.stack([theirs(xi, fi.item()) for xi, fi in zip(x, f)])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_hue_zero_is_identity_and_grey_is_fixed():
    x = _float_images(b=4, seed=3)
    torch.testing.assert_close(A.adjust_hue(x, torch.zeros(4)), x, atol=1e-6, rtol=0)
    grey = torch.rand(4, 1, 9, 9, generator=_gen(4)).expand(4, 3, 9, 9)
    torch.testing.assert_close(A.adjust_hue(grey, torch.full((4,), 0.3)), grey, atol=1e-6, rtol=0)


def test_grayscale_matches_torchvision():
    x = _float_images(b=5)
    torch.testing.assert_close(A.rgb_to_grayscale(x), TF.rgb_to_grayscale(x), atol=1e-6, rtol=0)
    mask = torch.tensor([True, False, True, False, False])
    out = A.grayscale(x, mask)
    ref = TF.rgb_to_grayscale(x, num_output_channels=3)
    torch.testing.assert_close(out[mask], ref[mask], atol=1e-6, rtol=0)
    assert torch.equal(out[~mask], x[~mask])


def test_color_jitter_order_and_mask():
    x = _float_images(b=6, seed=21)
    b, c, s, h = (_factors(6, 0.6, 1.4, 1), _factors(6, 0.6, 1.4, 2), _factors(6, 0.8, 1.2, 3), _factors(6, -0.1, 0.1, 4))
    fns = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
    mask = torch.tensor([True, True, False, True, False, True])
    for order in ([0, 1, 2, 3], [3, 2, 1, 0], [2, 0, 3, 1]):
        out = A.color_jitter(x, b, c, s, h, order=order, mask=mask)
        for i in range(6):
            if not mask[i]:
                assert torch.equal(out[i], x[i])
                continue
            ref = x[i]
            fac = (b[i].item(), c[i].item(), s[i].item(), h[i].item())
            for k in order:
                ref = fns[k](ref, fac[k])
            torch.testing.assert_close(out[i], ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="permutation"):
        A.color_jitter(x, b, c, s, h, order=[0, 0, 1, 2])


def test_solarize_matches_torchvision():
    x = _float_images(b=4, quantised=True)  # levels 0, 1/3, 2/3, 1: pixels exactly at some thresholds
    mask = torch.tensor([True, False, True, True])
    for t in (0.5, 1 / 3, 0.0, 1.0):
        out = A.solarize(x, mask, t)
        ref = TF.solarize(x, t)
        torch.testing.assert_close(out[mask], ref[mask], atol=1e-6, rtol=0)
        assert torch.equal(out[~mask], x[~mask])


def test_hflip():
    x = _float_images(b=3)
    m = torch.tensor([True, False, True])
    out = A.hflip(x, m)
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1]) and torch.equal(out[2], x[2].flip(-1))


# ------------------------------------------------------------------------ blur
@pytest.mark.parametrize("k", [3, 7])
def test_blur_matches_torchvision(k):
    x = _float_images(b=5)
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0, 1.3])
    out = A.gaussian_blur(x, sigma, k)
    ref = torch.stack([TF.gaussian_blur(xi, [k, k], [s.item()] * 2) for xi, s in zip(x, sigma)])
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_blur_small_sigma_identity_large_sigma_smooths():
    x = _float_images(b=4, h=32, w=32)
    torch.testing.assert_close(A.gaussian_blur(x, torch.full((4,), 0.1), 5), x, atol=1e-6, rtol=0)
    assert torch.equal(A.gaussian_blur(x, torch.zeros(4), 5), x)  # sigma 0 = not applied
    for k in (3, 9):
        y = A.gaussian_blur(x, torch.full((4,), 2.0), k)
        assert (y.var(dim=(1, 2, 3)) < 0.5 * x.var(dim=(1, 2, 3))).all()
        torch.testing.assert_close(y.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=0.02, rtol=0)


# ---------------------------------------------------------------- pipeline
def test_p0_only_crops_and_p1_flip_mirrors():
    x = _images(b=8, h=24, w=28)
    g = _gen(9)
    out, info = augment_view(x, view1(**NO_AUG), 16, generator=g)
    crop = A.resized_crop(x, _pixel_boxes(info["crop"], 24, 28), 16)
    torch.testing.assert_close(out, crop, atol=1e-6, rtol=0)
    assert not info["flip"].any() and not info["jitter"].any() and not info["grayscale"].any()
    assert not info["solarize"].any() and (info["blur_sigma"] == 0).all()
    assert torch.equal(info["jitter_factors"], torch.tensor([[1.0, 1.0, 1.0, 0.0]] * 8))
    torch.testing.assert_close(info["mean_before_jitter"], info["mean_after_jitter"], atol=0, rtol=0)

    out, info = augment_view(x, view1(**{**NO_AUG, "flip_p": 1.0}), 16, generator=_gen(9))
    crop = A.resized_crop(x, _pixel_boxes(info["crop"], 24, 28), 16)
    assert info["flip"].all()
    torch.testing.assert_close(out, crop.flip(-1), atol=1e-6, rtol=0)


def test_info_is_consistent_with_config():
    n = 2048
    x = _images(b=n, h=16, w=16)
    cfg = view2()
    _, info = augment_view(x, cfg, 8, generator=_gen(2))
    for key, p in (("flip", 0.5), ("jitter", 0.8), ("grayscale", 0.2), ("solarize", 0.2)):
        assert abs(info[key].float().mean().item() - p) < 0.04, key
    blurred = info["blur_sigma"] > 0
    assert abs(blurred.float().mean().item() - 0.1) < 0.03
    s = info["blur_sigma"][blurred]
    assert s.min() >= 0.1 and s.max() <= 2.0
    f, j = info["jitter_factors"], info["jitter"]
    lo = torch.tensor([0.6, 0.6, 0.8, -0.1])
    hi = torch.tensor([1.4, 1.4, 1.2, 0.1])
    assert ((f[j] >= lo) & (f[j] <= hi)).all()
    assert (f[~j] == torch.tensor([1.0, 1.0, 1.0, 0.0])).all()
    same = (info["mean_before_jitter"] == info["mean_after_jitter"]).all(1)
    assert same[~j].all() and not same[j].all()


def test_info_means_come_from_the_jitter():
    x = _images(b=16)
    cfg = view1(**{**NO_AUG, "jitter_p": 1.0, "brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0})
    out, info = augment_view(x, cfg, 16, generator=_gen(4))
    torch.testing.assert_close(info["mean_after_jitter"], out.mean(dim=(2, 3)), atol=1e-6, rtol=0)
    torch.testing.assert_close(info["mean_before_jitter"], info["mean_after_jitter"], atol=1e-5, rtol=0)
    cfg = view1(**{**NO_AUG, "jitter_p": 1.0, "brightness": 0.4, "contrast": 0.0, "saturation": 0.0, "hue": 0.0})
    out, info = augment_view(x, cfg, 16, generator=_gen(4))
    crop = A.resized_crop(x, _pixel_boxes(info["crop"], 32, 32), 16)
    torch.testing.assert_close(info["mean_before_jitter"], crop.mean(dim=(2, 3)), atol=1e-6, rtol=0)
    expected = (crop * info["jitter_factors"][:, 0].view(-1, 1, 1, 1)).clamp(0, 1)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


def test_same_seed_same_output():
    x = _images(b=16)
    aug = TwoViewAugment(view1(), view2(), out_size=32)
    a1, a2, ia = aug(x, generator=_gen(42))
    b1, b2, ib = aug(x, generator=_gen(42))
    assert torch.equal(a1, b1) and torch.equal(a2, b2)
    for view in ia:
        for k in ia[view]:
            assert torch.equal(ia[view][k], ib[view][k]), (view, k)
    c1, _, _ = aug(x, generator=_gen(43))
    assert not torch.equal(a1, c1)
    # global RNG is used without a generator
    torch.manual_seed(5)
    d1, d2, _ = aug(x)
    torch.manual_seed(5)
    e1, e2, _ = aug(x)
    assert torch.equal(d1, e1) and torch.equal(d2, e2)


def test_left_hook_seam():
    x = _images(b=8)
    v1cfg = view1(flip_p=1.0)  # every image flipped: the hook must see the unflipped crop
    aug = TwoViewAugment(v1cfg, view2(), out_size=16)
    calls = []

    def hook(t):
        calls.append((t.clone(), torch.is_grad_enabled()))
        return 1.0 - t

    with torch.enable_grad():
        h1, h2, hinfo = aug(x, generator=_gen(8), left_hook=hook)
    n1, n2, ninfo = aug(x, generator=_gen(8))
    assert len(calls) == 1
    seen, grad = calls[0]
    assert grad is False
    crop = A.resized_crop(x, _pixel_boxes(hinfo["view1"]["crop"], 32, 32), 16)
    torch.testing.assert_close(seen, crop, atol=1e-6, rtol=0)
    assert torch.equal(h2, n2)  # view 2 untouched
    assert not torch.allclose(h1, n1, atol=1e-3)  # view 1 changed
    for k in hinfo["view1"]:
        if k not in ("mean_before_jitter", "mean_after_jitter"):
            assert torch.equal(hinfo["view1"][k], ninfo["view1"][k]), k

    # an identity hook gives the no-hook result (flip folded into the crop)
    i1, i2, _ = aug(x, generator=_gen(8), left_hook=lambda t: t)
    torch.testing.assert_close(i1, n1, atol=1e-4, rtol=0)
    assert torch.equal(i2, n2)

    with pytest.raises(ValueError, match="left_hook"):
        aug(x, generator=_gen(8), left_hook=lambda t: t[:, :, :8])


def test_denormalize_inverts_normalize():
    x = torch.rand(2, 3, 5, 5)
    torch.testing.assert_close(denormalize(A.normalize(x, A.IMAGENET_MEAN, A.IMAGENET_STD)), x, atol=1e-6, rtol=0)
    torch.testing.assert_close(
        denormalize(A.normalize(x, (0.5,) * 3, (0.25,) * 3), (0.5,) * 3, (0.25,) * 3, clamp=False), x, atol=1e-6, rtol=0
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu_with_cpu_generator():
    x = _images(b=8)
    aug = TwoViewAugment(view1(), view2(), out_size=32)
    c1, c2, _ = aug(x, generator=_gen(1))
    g1, g2, info = aug(x.cuda(), generator=_gen(1))
    assert g1.is_cuda and info["view1"]["crop"].is_cuda
    torch.testing.assert_close(g1.cpu(), c1, atol=1e-4, rtol=0)
    torch.testing.assert_close(g2.cpu(), c2, atol=1e-4, rtol=0)
