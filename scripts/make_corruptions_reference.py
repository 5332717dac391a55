"""Make tests/data/corruptions_reference.npz: outputs of the reference package
``imagecorruptions-imaug`` for fog, frost, snow and brightness at severities 1-5, which
tests/test_corruptions.py compares workloads/evaluation/corruptions.py against without
installing the package (it pulls in OpenCV, scikit-image and numba).

Rerun it in a throwaway virtual environment, never the project's:

    python3.11 -m venv /tmp/icvenv
    /tmp/icvenv/bin/pip install imagecorruptions-imaug==1.1.5   # numpy, scipy, pillow, opencv, skimage, numba
    /tmp/icvenv/bin/python scripts/make_corruptions_reference.py   # from the repository root
    rm -rf /tmp/icvenv

Inputs (stored in the file, so the test never decodes anything): at 32 px, three CIFAR-10 test
images (airplane, cat, horse) from the kit (workloads/data/assets/cifar10.npz) and a synthetic test card; at 224 px, a
DTD texture from the kit resized with Pillow's bicubic filter and the test card at 224 px. The
test card has black, white, greys, saturated primaries, channel ties (R = G > B ...) and smooth
gradients, to exercise every branch of the HSV conversion.

Protocol: for each corruption, severity s and image size, ``np.random.seed(SEED0 + s)`` and then
the package's ``corrupt`` on the images one after another; ``corrupt(batch, name, s,
seed=SEED0 + s)`` in our port is meant to reproduce exactly that stream. Outputs at 32 px are
stored whole; at 224 px every 4th row and column (56×56) to keep the file under 1 MB, plus the
per-image, per-channel mean of the whole output (float64) and the whole output's sha256.
"""
from __future__ import annotations

import hashlib
import io
import json
import platform
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "data" / "corruptions_reference.npz"
NAMES = ("fog", "frost", "snow", "brightness")
SEED0 = 1000
CIFAR_TEST_INDICES = (0, 3500, 7200)  # airplane, cat, horse in the kit's test split
DTD_INDEX = 500
STRIDE_224 = 4


def kit_image(pack: str, index: int, split_test: bool = False) -> np.ndarray:
    z = np.load(ROOT / "workloads" / "data" / "assets" / f"{pack}.npz", allow_pickle=False)
    order = np.flatnonzero(z["split"] == 1) if split_test else np.arange(len(z["labels"]))
    i = int(order[index])
    raw = z["data"][z["offsets"][i]:z["offsets"][i + 1]].tobytes()
    with Image.open(io.BytesIO(raw)) as im:
        return np.asarray(im.convert("RGB"))


def test_card(size: int) -> np.ndarray:
    """Integer-only synthetic image: 4×4 grid of patches, each a different HSV corner case."""
    yy, xx = np.mgrid[0:size, 0:size]
    img = np.zeros((size, size, 3), dtype=np.int64)
    img[..., 0] = (xx * 255) // (size - 1)
    img[..., 1] = (yy * 255) // (size - 1)
    img[..., 2] = ((xx + yy) * 255) // (2 * size - 2)
    patches = [(0, 0, 0), (255, 255, 255), (128, 128, 128), (1, 1, 1),
               (255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 200, 50),
               (50, 200, 200), (200, 50, 200), (120, 60, 0), (10, 250, 130),
               (254, 254, 253), (90, 90, 91), (240, 17, 240), (33, 66, 99)]
    cell = size // 4
    for k, rgb in enumerate(patches):
        r, c = divmod(k, 4)
        sl = (slice(r * cell + cell // 4, r * cell + 3 * cell // 4), slice(c * cell + cell // 4, c * cell + 3 * cell // 4))
        img[sl] = rgb
    return img.astype(np.uint8)


def main() -> None:
    import cv2
    import imagecorruptions
    import scipy
    import skimage
    from importlib.metadata import version

    x32 = np.stack([kit_image("cifar10", i, split_test=True) for i in CIFAR_TEST_INDICES] + [test_card(32)])
    dtd = Image.fromarray(kit_image("dtd", DTD_INDEX))
    side = min(dtd.size)
    left, top = (dtd.size[0] - side) // 2, (dtd.size[1] - side) // 2
    dtd = dtd.crop((left, top, left + side, top + side)).resize((224, 224), Image.BICUBIC)
    x224 = np.stack([np.asarray(dtd), test_card(224)])
    assert x32.shape == (4, 32, 32, 3) and x224.shape == (2, 224, 224, 3)

    arrays = {"x32": x32, "x224": x224}
    for name in NAMES:
        y32 = np.empty((5,) + x32.shape, np.uint8)
        y224 = np.empty((5, 2, 224 // STRIDE_224, 224 // STRIDE_224, 3), np.uint8)
        mean224 = np.empty((5, 2, 3), np.float64)
        sha224 = []
        for s in range(1, 6):
            np.random.seed(SEED0 + s)
            y32[s - 1] = np.stack([imagecorruptions.corrupt(im, corruption_name=name, severity=s) for im in x32])
            np.random.seed(SEED0 + s)
            full = np.stack([imagecorruptions.corrupt(im, corruption_name=name, severity=s) for im in x224])
            y224[s - 1] = full[:, ::STRIDE_224, ::STRIDE_224]
            mean224[s - 1] = full.mean(axis=(1, 2), dtype=np.float64)
            sha224.append(hashlib.sha256(np.ascontiguousarray(full).tobytes()).hexdigest())
        arrays[f"y32_{name}"] = y32
        arrays[f"y224_{name}"] = y224
        arrays[f"mean224_{name}"] = mean224
        arrays[f"sha224_{name}"] = np.array(sha224)
    meta = {
        "script": "scripts/make_corruptions_reference.py",
        "package": f"imagecorruptions-imaug=={version('imagecorruptions-imaug')}",
        "numpy": np.__version__, "scipy": scipy.__version__, "scikit-image": skimage.__version__,
        "opencv": cv2.__version__, "opencv_ipp": bool(cv2.ipp.useIPP()), "pillow": Image.__version__,
        "python": sys.version.split()[0], "machine": platform.machine(),
        "seed_rule": f"np.random.seed({SEED0} + severity), then corrupt() image by image, per size",
        "inputs": {"x32": f"cifar10 kit test-split indices {list(CIFAR_TEST_INDICES)} + test_card(32)",
                   "x224": f"dtd kit image {DTD_INDEX}, centre square, Pillow BICUBIC to 224 + test_card(224)"},
        "y224_stride": STRIDE_224,
    }
    arrays["meta"] = np.array(json.dumps(meta, sort_keys=True))
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
