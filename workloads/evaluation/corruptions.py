"""ImageNet-C's four weather corruptions (fog, frost, snow, brightness) at severities 1-5, for
the robustness evaluation of CASSLE's Table 8 (AugSelf's protocol: a linear classifier fit on
clean features, scored on corrupted test images).

A NumPy/SciPy port of ``imagecorruptions-imaug`` 1.1.5 (Apache-2.0; the maintained fork of
Hendrycks & Dietterich's ``imagecorruptions``), which we do not depend on because importing it
pulls in OpenCV, scikit-image and numba (about 530 MB). Same constants per severity, same
operations in the same order and precision, and the same random stream: ``corrupt(images, name,
severity, seed)`` draws from ``numpy.random.RandomState(seed)`` image by image exactly as the
reference draws from the global ``np.random`` after ``np.random.seed(seed)`` when it corrupts
the images one after another. Where the reference calls OpenCV we emulate it:

- brightness: bit-exact (scikit-image's ``rgb2hsv``/``hsv2rgb`` are ported line by line);
- fog: bit-exact (diamond-square plasma fractal, same draws);
- frost: OpenCV's bicubic resize (``INTER_CUBIC``; on x86 wheels it runs Intel IPP's float code)
  is done in float64 with the same Keys a=-0.75 kernel; about 8 in a million resized frost
  pixels differ by 1 grey level from IPP's, so an output pixel is off by at most 1, rarely;
- snow: ``cv2.cvtColor(RGB2GRAY)`` on float32 is emulated with the fused multiply-adds of its
  vector kernel (bit-exact for every pixel when the width is a multiple of 8, as at 32 and 224
  px; OpenCV computes the last 4 pixels of other rows slightly differently), and scipy's zoom
  is the reference's own; outputs matched the reference exactly in our checks, and a last-bit
  difference could move a pixel by 1 grey level at most.

The reference is itself not bit-stable across CPUs (OpenCV dispatches on the instruction set).
Images are ``uint8`` N×3×H×W tensors, H and W at least 32 like the reference's. Behaviour at
32 px (CIFAR-10) keeps ImageNet-C's constants: fog's plasma fractal is ``next_power_of_2(max
side)`` pixels (32 at 32 px, 256 at 224 px) so the fog has the same structure relative to the
image; frost crops an H×W window of a frost photo enlarged 1.1× (530-990 px wide) and never
shrinks the photo, so a 32-px window holds a few large crystals and streaks where a 224-px one
holds a field of them; snow's flakes (noise zoomed 2-4.5×, motion-blurred over 21-25 px) are
large relative to a 32-px image.
"""
from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch

CORRUPTIONS = ("fog", "frost", "snow", "brightness")

FROST_DIR = Path(__file__).resolve().parent / "assets" / "frost"
FROST_FILES = ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg", "frost6.jpg")

# per-severity constants, copied from imagecorruptions-imaug 1.1.5 (corruptions.py)
FOG = [(1.5, 2), (2., 2), (2.5, 1.7), (2.5, 1.5), (3., 1.4)]  # (strength, wibble decay)
FROST = [(1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)]  # (image weight, frost weight)
# (mean, std, zoom, threshold, blur radius, blur sigma, image weight)
SNOW = [(0.1, 0.3, 3, 0.5, 10, 4, 0.8),
        (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
        (0.55, 0.3, 4, 0.9, 12, 8, 0.7),
        (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
        (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)]
BRIGHTNESS = [.1, .2, .3, .4, .5]  # added to HSV value

_CHUNK_PIXELS = 1 << 16  # images per internal chunk ≈ this / (H·W): bounds the float64 temporaries


def corrupt(images: torch.Tensor, name: str, severity: int, seed: int) -> torch.Tensor:
    """Corrupt a batch: ``uint8`` N×3×H×W in, ``uint8`` N×3×H×W out (same device).

    Deterministic given ``seed`` (0 ≤ seed < 2**32). Image i gets the draws the reference would
    take for it after ``np.random.seed(seed)`` and the reference's ``corrupt`` on images 0..i-1
    with the same name and severity, so a batch equals the reference applied in order."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 1 <= severity <= 5:
        raise ValueError(f"severity must be an integer in 1..5, got {severity!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4 \
            or images.shape[1] != 3:
        raise ValueError("images must be a uint8 tensor N×3×H×W, got "
                         f"{getattr(images, 'dtype', type(images))} {tuple(getattr(images, 'shape', ()))}")
    n, _, h, w = images.shape
    if h < 32 or w < 32:
        raise ValueError(f"images must be at least 32×32 (as in the reference), got {h}×{w}")
    x = images.detach().cpu().permute(0, 2, 3, 1).contiguous().numpy()  # N,H,W,3
    fn = {"fog": _fog, "frost": _frost, "snow": _snow, "brightness": _brightness}[name]
    rs = np.random.RandomState(int(seed))
    out = np.empty_like(x)
    step = max(1, _CHUNK_PIXELS // (h * w))
    for i in range(0, n, step):  # chunks in order share one stream, so chunking changes nothing
        out[i:i + step] = fn(x[i:i + step], severity, rs)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous().to(images.device)


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return a.astype(np.uint8)  # the reference's np.uint8(): truncation, values already in [0, 255]


# ---------------------------------------------------------------- brightness

def _rgb2hsv(arr: np.ndarray) -> np.ndarray:
    """skimage.color.rgb2hsv (0.26) on float64 input, channel last: the same arithmetic per
    pixel, with np.where in place of its masked assignments (later channels win ties, as there)."""
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    out_v = arr.max(-1)
    delta = np.ptp(arr, axis=-1)
    flat = delta == 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        out_s = delta / out_v
        h = np.where(b == out_v, 4.0 + (r - g) / delta,
                     np.where(g == out_v, 2.0 + (b - r) / delta, (g - b) / delta))
        out_h = (h / 6.0) % 1.0
    out_s[flat] = 0.0
    out_h[flat] = 0.0
    return np.stack([out_h, out_s, out_v], axis=-1)


# hsv2rgb's sextant table: which of (v, p, q, t) each of R, G, B takes for hi = 0..5
_HSV_TABLE = np.array([[0, 3, 1], [2, 0, 1], [1, 0, 3], [1, 2, 0], [3, 1, 0], [0, 1, 2]], dtype=np.intp)


def _hsv2rgb(arr: np.ndarray) -> np.ndarray:
    """skimage.color.hsv2rgb (0.26) on float64 input, channel last; a gather replaces np.choose."""
    hi = np.floor(arr[..., 0] * 6)
    f = arr[..., 0] * 6 - hi
    p = arr[..., 2] * (1 - arr[..., 1])
    q = arr[..., 2] * (1 - f * arr[..., 1])
    t = arr[..., 2] * (1 - (1 - f) * arr[..., 1])
    v = arr[..., 2]
    hi = hi.astype(np.uint8) % 6
    return np.take_along_axis(np.stack([v, p, q, t], axis=-1), _HSV_TABLE[hi], axis=-1)


def _brightness(x: np.ndarray, severity: int, rs: np.random.RandomState) -> np.ndarray:
    c = BRIGHTNESS[severity - 1]
    hsv = _rgb2hsv(x / 255.)
    hsv[..., 2] = np.clip(hsv[..., 2] + c, 0, 1)
    return _to_uint8(np.clip(_hsv2rgb(hsv), 0, 1) * 255)


# ---------------------------------------------------------------- fog

def _next_power_of_2(v: int) -> int:
    return 1 if v == 0 else 2 ** (v - 1).bit_length()


def _plasma_fractal(rs: np.random.RandomState, n: int, mapsize: int, wibbledecay: float) -> np.ndarray:
    """The reference's diamond-square heightmap for n images at once (n, mapsize, mapsize) float32
    in [0, 1]. Each image's uniform draws are taken as one run of ``random_sample`` in the
    reference's order (legacy ``uniform(lo, hi)`` is ``lo + (hi - lo) * random_sample()``)."""
    assert mapsize & (mapsize - 1) == 0
    steps, s = [], mapsize
    while s >= 2:
        steps.append(s)
        s //= 2
    sizes = [(mapsize // s) ** 2 for s in steps]
    u = rs.random_sample((n, 3 * sum(sizes)))
    maparray = np.empty((n, mapsize, mapsize), dtype=np.float32)
    maparray[:, 0, 0] = 0
    wibble = 100
    pos = 0

    def wibbledmean(array):
        nonlocal pos
        k = array.shape[1] * array.shape[2]
        draw = -wibble + (wibble - -wibble) * u[:, pos:pos + k].reshape(array.shape)
        pos += k
        return array / 4 + wibble * draw

    for s in steps:
        half = s // 2
        # fill squares
        cornerref = maparray[:, 0:mapsize:s, 0:mapsize:s]
        squareaccum = cornerref + np.roll(cornerref, shift=-1, axis=1)
        squareaccum += np.roll(squareaccum, shift=-1, axis=2)
        maparray[:, half:mapsize:s, half:mapsize:s] = wibbledmean(squareaccum)
        # fill diamonds
        drgrid = maparray[:, half:mapsize:s, half:mapsize:s]
        ulgrid = maparray[:, 0:mapsize:s, 0:mapsize:s]
        ltsum = (drgrid + np.roll(drgrid, 1, axis=1)) + (ulgrid + np.roll(ulgrid, -1, axis=2))
        maparray[:, 0:mapsize:s, half:mapsize:s] = wibbledmean(ltsum)
        ttsum = (drgrid + np.roll(drgrid, 1, axis=2)) + (ulgrid + np.roll(ulgrid, -1, axis=1))
        maparray[:, half:mapsize:s, 0:mapsize:s] = wibbledmean(ttsum)
        wibble /= wibbledecay
    maparray -= maparray.min(axis=(1, 2), keepdims=True)
    return maparray / maparray.max(axis=(1, 2), keepdims=True)


def _fog(x: np.ndarray, severity: int, rs: np.random.RandomState) -> np.ndarray:
    c = FOG[severity - 1]
    n, h, w, _ = x.shape
    plasma = _plasma_fractal(rs, n, _next_power_of_2(max(h, w, 3)), c[1])
    xf = x / 255.
    max_val = xf.max(axis=(1, 2, 3), keepdims=True)
    xf += (c[0] * plasma[:, :h, :w])[..., np.newaxis]
    return _to_uint8(np.clip(xf * max_val / (max_val + c[0]), 0, 1) * 255)


# ---------------------------------------------------------------- frost

def _cubic_taps(dst: int, src: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices (edge-replicated) and Keys (a = -0.75) weights, pixel-centre aligned, as in
    cv2.resize(..., INTER_CUBIC)."""
    scale = 1.0 / (dst / src)
    pos = (np.arange(dst, dtype=np.float64) + 0.5) * scale - 0.5
    left = np.floor(pos)
    t = pos - left
    a = -0.75
    w0 = ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a
    w1 = ((a + 2) * t - (a + 3)) * t * t + 1
    w2 = ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1
    w3 = 1 - w0 - w1 - w2
    idx = np.clip(left.astype(np.int64)[:, None] + np.arange(-1, 3)[None, :], 0, src - 1)
    return idx, np.stack([w0, w1, w2, w3], axis=1)


def resize_cubic(img: np.ndarray, width: int, height: int) -> np.ndarray:
    """uint8 H×W×C → height×width×C, bicubic like OpenCV's INTER_CUBIC (float64, rounded)."""
    xi, xw = _cubic_taps(width, img.shape[1])
    yi, yw = _cubic_taps(height, img.shape[0])
    f = img.astype(np.float64)
    rows = np.einsum("hwkc,wk->hwc", f[:, xi], xw)
    out = np.einsum("hkwc,hk->hwc", rows[yi], yw)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def _frost_image(idx: int) -> np.ndarray:
    from PIL import Image
    with Image.open(FROST_DIR / FROST_FILES[idx]) as im:
        return np.asarray(im.convert("RGB"))  # cv2.imread drops the PNGs' (opaque) alpha the same way


def _frost_rescaled(idx: int, h: int, w: int) -> np.ndarray:
    """The reference's frost layer for an h×w image: enlarged so it covers the image, times 1.1."""
    fh, fw = _frost_image(idx).shape[:2]
    scaling_factor = 1
    if fh >= h and fw >= w:
        scaling_factor = 1
    elif fh < h and fw >= w:
        scaling_factor = h / fh
    elif fh >= h and fw < w:
        scaling_factor = w / fw
    else:
        scaling_factor = max(h / fh, w / fw)
    scaling_factor *= 1.1
    return _frost_resized(idx, int(np.ceil(fw * scaling_factor)), int(np.ceil(fh * scaling_factor)))


@functools.lru_cache(maxsize=16)
def _frost_resized(idx: int, width: int, height: int) -> np.ndarray:
    out = resize_cubic(_frost_image(idx), width, height)
    out.setflags(write=False)
    return out


def _frost(x: np.ndarray, severity: int, rs: np.random.RandomState) -> np.ndarray:
    c = FROST[severity - 1]
    n, h, w, _ = x.shape
    layer = np.empty_like(x)
    for i in range(n):
        fr = _frost_rescaled(int(rs.randint(6)), h, w)
        top, left = rs.randint(0, fr.shape[0] - h), rs.randint(0, fr.shape[1] - w)
        layer[i] = fr[top:top + h, left:left + w]
    return _to_uint8(np.clip(c[0] * x + c[1] * layer, 0, 255))


# ---------------------------------------------------------------- snow

def _fma32(a: np.ndarray, b: np.float32, c: np.ndarray) -> np.ndarray:
    """float32 fused multiply-add a*b + c (the product is exact in float64)."""
    return (a.astype(np.float64) * np.float64(b) + c.astype(np.float64)).astype(np.float32)


def _gray32(x: np.ndarray) -> np.ndarray:
    """cv2.cvtColor(float32 RGB, COLOR_RGB2GRAY) as its AVX2 kernel computes it."""
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    return _fma32(b, np.float32(0.114), _fma32(r, np.float32(0.299), g * np.float32(0.587)))


def _motion_kernel(width: int, sigma: float) -> np.ndarray:
    xs = np.arange(width)
    k = (np.exp(- (xs - 0) ** 2 / (2 * (sigma ** 2)))) / (np.sqrt(2 * np.pi) * sigma)
    return k / np.sum(k)


def _motion_blur(layers: np.ndarray, radius: int, sigma: float, angles: list[float]) -> np.ndarray:
    """The reference's _motion_blur on n 2-D layers at once, one angle each: a sum of
    edge-replicated shifts along the angle, weighted by a half-Gaussian, in the same order."""
    n, h, w = layers.shape
    width = radius * 2 + 1
    kernel = _motion_kernel(width, sigma)
    dys = np.zeros((n, width), dtype=np.int64)
    dxs = np.zeros((n, width), dtype=np.int64)
    weights = np.zeros((n, width), dtype=np.float64)
    for j, angle in enumerate(angles):
        point = (width * np.sin(np.deg2rad(angle)), width * np.cos(np.deg2rad(angle)))
        hypot = math.hypot(point[0], point[1])
        for i in range(width):
            dy = -math.ceil(((i * point[0]) / hypot) - 0.5)
            dx = -math.ceil(((i * point[1]) / hypot) - 0.5)
            if abs(dy) >= h or abs(dx) >= w:
                break  # the shift left the layer: the reference stops adding
            dys[j, i], dxs[j, i], weights[j, i] = dy, dx, kernel[i]
    rows = np.clip(np.arange(h)[None, None, :] - dys[:, :, None], 0, h - 1)  # n, width, h
    cols = np.clip(np.arange(w)[None, None, :] - dxs[:, :, None], 0, w - 1)  # n, width, w
    rows = rows * w + (np.arange(n) * (h * w))[:, None, None]
    flat = layers.reshape(-1)
    blurred = np.zeros_like(layers, dtype=np.float32)
    for i in range(width):  # shifted[n, r, c] = layer[n, clip(r - dy), clip(c - dx)]
        shifted = flat.take(rows[:, i, :, None] + cols[:, i, None, :])
        blurred = blurred + weights[:, i, None, None] * shifted
    return blurred


def _snow(x: np.ndarray, severity: int, rs: np.random.RandomState) -> np.ndarray:
    from scipy.ndimage import zoom

    c = SNOW[severity - 1]
    n, h, w, _ = x.shape
    noise = np.empty((n, h, w), dtype=np.float64)
    angles = []
    for i in range(n):  # the reference draws the noise, then the blur angle, image by image
        noise[i] = rs.normal(size=(h, w), loc=c[0], scale=c[1])
        angles.append(rs.uniform(-135, -45))
    # clipped_zoom: the centre 1/zoom of the layer, zoomed back up (linear), top-left kept later
    ch0, ch1 = int(np.ceil(h / float(c[2]))), int(np.ceil(w / float(c[2])))
    top0, top1 = (h - ch0) // 2, (w - ch1) // 2
    layer = zoom(noise[:, top0:top0 + ch0, top1:top1 + ch1], (1, c[2], c[2]), order=1)
    layer[layer < c[3]] = 0
    layer = np.clip(layer, 0, 1)
    layer = _motion_blur(layer, c[4], c[5], angles)
    layer = np.round(layer * 255).astype(np.uint8) / 255.
    layer = layer[:, :h, :w, np.newaxis]

    xf = np.array(x, dtype=np.float32) / 255.
    xf = c[6] * xf + (1 - c[6]) * np.maximum(xf, _gray32(xf)[..., np.newaxis] * 1.5 + 0.5)
    return _to_uint8(np.clip(xf + layer + np.rot90(layer, k=2, axes=(1, 2)), 0, 1) * 255)
