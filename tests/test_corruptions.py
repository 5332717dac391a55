"""ImageNet-C's weather corruptions (workloads/evaluation/corruptions.py) against the reference
package imagecorruptions-imaug 1.1.5, whose outputs scripts/make_corruptions_reference.py stored
in tests/data/corruptions_reference.npz (the package itself is not installed: it needs OpenCV,
scikit-image and numba).

Our port draws the reference's random stream (np.random.seed(seed), images in order), so the
comparison is pixel for pixel: brightness and fog use only IEEE-exact arithmetic and must match
exactly; snow and frost emulate OpenCV (cvtColor's fused multiply-adds, IPP's bicubic resize),
whose last bits depend on the CPU, so they may differ by 1 grey level on a few pixels."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from workloads.evaluation import corruptions as C
from workloads.evaluation.corruptions import CORRUPTIONS, corrupt

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "data" / "corruptions_reference.npz"
SEED0 = 1000  # scripts/make_corruptions_reference.py: np.random.seed(SEED0 + severity)
EXACT = ("brightness", "fog")


def nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).contiguous()


def nhwc(t: torch.Tensor) -> np.ndarray:
    return t.permute(0, 2, 3, 1).numpy()


@pytest.fixture(scope="module")
def ref():
    with np.load(REF, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def kit64() -> torch.Tensor:
    """64 CIFAR-10 test images of the kit, spread over the classes."""
    from workloads.data.packed import PackedImages
    p = PackedImages(ROOT / "workloads" / "data" / "assets" / "cifar10.npz")
    idx = np.flatnonzero(p.split == 1)[::156][:64]
    return nchw(np.stack([np.asarray(p.decode(int(i))) for i in idx]))


def test_reference_file_is_small_and_described(ref):
    assert REF.stat().st_size < 1_000_000
    meta = json.loads(str(ref["meta"]))
    assert meta["package"] == "imagecorruptions-imaug==1.1.5"
    assert ref["x32"].shape == (4, 32, 32, 3) and ref["x224"].shape == (2, 224, 224, 3)


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_matches_reference_at_32px(ref, name):
    x = nchw(ref["x32"])
    for s in range(1, 6):
        ours = nhwc(corrupt(x, name, s, SEED0 + s)).astype(int)
        diff = np.abs(ours - ref[f"y32_{name}"][s - 1].astype(int))
        if name in EXACT:
            assert diff.max() == 0, (name, s, int((diff > 0).sum()))
        else:
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (name, s, diff.max(), int((diff > 0).sum()))


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_matches_reference_at_224px(ref, name):
    x = nchw(ref["x224"])
    stride = json.loads(str(ref["meta"]))["y224_stride"]
    for s in range(1, 6):
        full = nhwc(corrupt(x, name, s, SEED0 + s))
        diff = np.abs(full[:, ::stride, ::stride].astype(int) - ref[f"y224_{name}"][s - 1].astype(int))
        means = full.mean(axis=(1, 2), dtype=np.float64)
        np.testing.assert_allclose(means, ref[f"mean224_{name}"][s - 1], rtol=0, atol=1e-3)
        if name in EXACT:  # the whole image, through its digest
            assert diff.max() == 0
            assert hashlib.sha256(np.ascontiguousarray(full).tobytes()).hexdigest() == ref[f"sha224_{name}"][s - 1]
        else:
            assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (name, s, diff.max(), int((diff > 0).sum()))


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_shapes_dtype_determinism_and_batching(kit64, name, monkeypatch):
    x = kit64[:12]
    before = x.clone()
    a = corrupt(x, name, 3, 7)
    assert a.shape == x.shape and a.dtype == torch.uint8 and a.device == x.device
    assert torch.equal(a, corrupt(x, name, 3, 7))
    assert torch.equal(x, before)  # the input is left alone
    # image i's draws do not depend on what follows it, and chunking keeps one stream
    assert torch.equal(a[:5], corrupt(x[:5], name, 3, 7))
    monkeypatch.setattr(C, "_CHUNK_PIXELS", 5 * 32 * 32)
    assert torch.equal(a, corrupt(x, name, 3, 7))
    monkeypatch.undo()
    other = corrupt(x, name, 3, 8)
    if name == "brightness":
        assert torch.equal(a, other)  # no randomness
    else:
        assert not torch.equal(a, other)
    assert not torch.equal(a, x)
    assert corrupt(x[:0], name, 1, 0).shape == (0, 3, 32, 32)


def test_bad_arguments():
    x = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    with pytest.raises(ValueError, match="'rain'"):
        corrupt(x, "rain", 1, 0)
    for sev in (0, 6, 2.0, True, "3"):
        with pytest.raises(ValueError, match="severity"):
            corrupt(x, "fog", sev, 0)
    for seed in (-1, 2**32, 1.5):
        with pytest.raises(ValueError, match="seed"):
            corrupt(x, "fog", 1, seed)
    for bad in (x.float(), x[0], torch.zeros(2, 1, 32, 32, dtype=torch.uint8), x.numpy()):
        with pytest.raises(ValueError, match="uint8"):
            corrupt(bad, "fog", 1, 0)
    with pytest.raises(ValueError, match="32"):
        corrupt(torch.zeros(1, 3, 31, 64, dtype=torch.uint8), "snow", 1, 0)


def _slope(y: torch.Tensor, x: torch.Tensor) -> float:
    """Mean over images of the least-squares slope of corrupted on clean pixel values: how much
    of the image's own signal survives."""
    y, x = y.double().flatten(1), x.double().flatten(1)
    xc, yc = x - x.mean(1, keepdim=True), y - y.mean(1, keepdim=True)
    return ((xc * yc).sum(1) / (xc * xc).sum(1)).mean().item()


def _contrast(y: torch.Tensor) -> float:
    return y.double().mean(1).std(dim=(1, 2)).mean().item()  # std of grey levels, per image


def test_severity_orders_the_damage(kit64):
    x = kit64
    ys = {n: [corrupt(x, n, s, 0) for s in range(1, 6)] for n in CORRUPTIONS}
    mean = {n: [y.double().mean().item() for y in v] for n, v in ys.items()}
    contrast = {n: [_contrast(y) for y in v] for n, v in ys.items()}
    slope = {n: [_slope(y, x) for y in v] for n, v in ys.items()}
    clean_mean, clean_contrast = x.double().mean().item(), _contrast(x)
    # brightness: brighter and flatter with every step
    assert clean_mean < mean["brightness"][0] and np.all(np.diff(mean["brightness"]) > 5)
    assert np.all(np.diff(contrast["brightness"]) < 0)
    # fog: the image is scaled by max/(max + strength); strengths 1.5, 2, 2.5, 2.5, 3
    s = slope["fog"]
    assert s[0] > s[1] > s[2] and s[3] > s[4] and abs(s[2] - s[3]) < 0.02 and s[0] < 0.5
    assert max(contrast["fog"]) < clean_contrast
    # frost: the image's weight falls 1, .8, .7, .65, .6 and it gets flatter
    assert np.all(np.diff(slope["frost"]) < 0) and np.all(np.diff(contrast["frost"]) < 0)
    assert min(mean["frost"]) > clean_mean + 30
    # snow: the image's weight falls, the picture whitens
    assert np.all(np.diff(slope["snow"]) < 0)
    assert clean_mean < mean["snow"][0] < mean["snow"][4] and contrast["snow"][4] < clean_contrast


def test_brightness_known_pixels():
    """Greys move up by c·255 (then truncate); a colour keeps its hue and saturation, so every
    channel scales by V'/V; a pixel already at V = 1 does not move."""
    px = np.array([[0, 0, 0], [100, 100, 100], [250, 250, 250], [255, 0, 0], [200, 100, 0], [10, 20, 40]],
                  dtype=np.uint8)
    img = np.tile(px[None, :, None, :], (1, 1, 32, 1))  # 1×6×32×3
    img = np.concatenate([img] * 6, axis=1)  # 1×36×32×3
    expected = {1: [(25, 25, 25), None, None, (255, 0, 0), (225, 112, 0), (16, 32, 65)],
                3: [(76, 76, 76), None, (255, 255, 255), (255, 0, 0), (255, 127, 0), None]}
    for sev, rows in expected.items():
        c = C.BRIGHTNESS[sev - 1]
        out = nhwc(corrupt(nchw(img), "brightness", sev, 0))[0]
        for k, want in enumerate(rows):
            got = out[k, 0]
            assert (out[k::6] == got).all()  # every copy of the pixel the same
            if k in (0, 1, 2):  # greys: the reference formula itself
                assert (got == np.uint8(np.clip(px[k] / 255. + c, 0, 1) * 255)).all()
            if want is not None:
                assert tuple(int(v) for v in got) == want, (sev, k, got)


def test_frost_assets_are_the_wheels():
    prov = json.loads((C.FROST_DIR / "PROVENANCE.json").read_text())
    for name in C.FROST_FILES:
        data = (C.FROST_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == prov["files"][name]["sha256"]
        img = C._frost_image(C.FROST_FILES.index(name))
        assert img.shape == (prov["files"][name]["height"], prov["files"][name]["width"], 3)


def test_resize_cubic_properties():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    assert np.array_equal(C.resize_cubic(img, 60, 40), img)  # same size: identity
    flat = np.full((30, 50, 3), 77, np.uint8)
    assert (C.resize_cubic(flat, 55, 33) == 77).all()  # weights sum to 1, edges replicated
    assert C.resize_cubic(img, 66, 44).shape == (44, 66, 3)
