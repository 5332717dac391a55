"""Fast arbitrary style transfer network (Ghiasi et al. 2017), as used by SASSL.

Two parts:

* ``StylePredictor`` P maps an image to a ``embed_dim``-d style embedding z
  (CNN trunk -> spatial mean -> 1x1 conv bottleneck, no activation).
* ``StyleTransformer`` T renders a content image under an embedding z. Its 13
  conditional-instance-norm (CIN) layers take per-channel (gamma, beta) from
  linear maps of z, in the order: residual block 1 conv a, conv b, ..., block 5
  conv a, conv b (layers 1-10), expand convs 64, 32, 3 (layers 11-13).

``StyleTransferNet`` joins them with the "identity interpolation" of the
original code: z = alpha * z_style + (1 - alpha) * z_content. Images are float
tensors in [0, 1], shape (B, 3, H, W), any H, W >= 5 (reflect padding needs the
quarter-size maps to be >= 2 pixels; 4 px and below raise inside the padding).
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..spec import IMAGENET_MEAN, IMAGENET_STD

VALID_STYLIZED_LAYERS = (4, 8, 10, 13)
NUM_CIN_LAYERS = 13
SCRATCH_TRUNK = "scratch"
_SCRATCH_CHANNELS = (32, 64, 128, 256, 256)
# how P normalises its [0, 1] input: ImageNet mean/std (the scratch and torchvision trunks),
# or not at all (the Magenta port, whose first convolution takes [0, 1] pixels directly)
INPUT_NORMS = ("imagenet", "none")
# T's three contracting convolutions: instance norm with affine parameters (self-trained), or
# none (the Magenta port: its batch norm is folded into the convolutions' biases)
CONTRACT_NORMS = ("instance", "none")


# name -> factory returning (trunk module, trunk_channels); filled by trunk providers
_TRUNK_FACTORIES: dict[str, Callable[[], tuple[nn.Module, int]]] = {}


def register_predictor_trunk(name: str, factory: Callable[[], tuple[nn.Module, int]]) -> None:
    """Let ``load_stylizer`` rebuild a named pretrained trunk: ``factory() -> (module, channels)``.

    The factory only needs the architecture; weights come from the checkpoint.
    """
    if name == SCRATCH_TRUNK:
        raise ValueError(f"{SCRATCH_TRUNK!r} is the built-in trunk and cannot be registered")
    _TRUNK_FACTORIES[name] = factory


def validate_stylized_layers(n: Any) -> int:
    """Return ``n`` if it is one of ``VALID_STYLIZED_LAYERS``, else raise ValueError."""
    if isinstance(n, bool) or not isinstance(n, int) or n not in VALID_STYLIZED_LAYERS:
        raise ValueError(f"stylized_layers must be one of {VALID_STYLIZED_LAYERS}, got {n!r}")
    return n


def _scaled(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


def _check_width(width: float) -> float:
    if not (isinstance(width, (int, float)) and not isinstance(width, bool)) or width <= 0:
        raise ValueError(f"width must be a positive number, got {width!r}")
    return float(width)


def _match_size(x: Tensor, size: tuple[int, int]) -> Tensor:
    """Crop (top-left aligned) or, if too small, resize ``x`` to spatial ``size``."""
    h, w = size
    if x.shape[-2] >= h and x.shape[-1] >= w:
        return x[..., :h, :w]
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ConditionalInstanceNorm(nn.Module):
    """Instance norm (no running stats) followed by per-sample, per-channel gamma/beta."""

    def __init__(self, eps: float = 1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x: Tensor, gamma: Tensor, beta: Tensor) -> Tensor:
        if gamma.shape != x.shape[:2] or beta.shape != x.shape[:2]:
            raise ValueError(f"gamma/beta must have shape {tuple(x.shape[:2])}, "
                             f"got {tuple(gamma.shape)} and {tuple(beta.shape)}")
        # one fused affine pass: x · γ/σ + (β − μ·γ/σ); no reshape, so channels-last inputs stay so.
        # Two plain means, not torch.var_mean: on a channels-last tensor var_mean over (H, W) takes
        # a slow reduction path (~10x at 32 channels, 16 px), and the two-pass form is as exact
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = (x - mean).square().mean(dim=(2, 3), keepdim=True)
        scale = gamma[:, :, None, None] * torch.rsqrt(var + self.eps)
        return torch.addcmul(beta[:, :, None, None] - mean * scale, x, scale)


class _ReflectConv(nn.Sequential):
    """Reflect padding + conv (size-preserving at stride 1, ceil(H/2) at stride 2)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__(nn.ReflectionPad2d(k // 2), nn.Conv2d(cin, cout, k, stride))


# ------------------------------------------------------------------ predictor P
class StylePredictor(nn.Module):
    """Style prediction network P: trunk -> spatial mean -> 1x1 conv to ``embed_dim``.

    Input: float images in [0, 1]; they are normalised with the ImageNet mean/std
    before the trunk. A pretrained ``trunk`` must take such normalised images and
    return a (B, ``trunk_channels``, h, w) feature map. With ``trunk=None`` a small
    scratch CNN is used: five 3x3 stride-2 conv-BN-ReLU layers with
    (32, 64, 128, 256, 256) x ``width`` channels.
    """

    def __init__(self, trunk: nn.Module | None = None, trunk_channels: int | None = None,
                 embed_dim: int = 100, width: float = 1.0, input_norm: str = "imagenet"):
        super().__init__()
        width = _check_width(width)
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
        self.input_norm = input_norm
        if embed_dim < 1:
            raise ValueError(f"embed_dim must be >= 1, got {embed_dim}")
        if trunk is None:
            chans = [_scaled(c, width) for c in _SCRATCH_CHANNELS]
            layers: list[nn.Module] = []
            cin = 3
            for c in chans:
                layers += [nn.Conv2d(cin, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c),
                           nn.ReLU(inplace=True)]
                cin = c
            trunk = nn.Sequential(*layers)
            if trunk_channels is not None and trunk_channels != cin:
                raise ValueError(f"scratch trunk has {cin} output channels, "
                                 f"trunk_channels={trunk_channels} given")
            trunk_channels = cin
        elif trunk_channels is None:
            raise ValueError("trunk_channels is required when a trunk module is given")
        self.trunk = trunk
        self.trunk_channels = int(trunk_channels)
        self.embed_dim = int(embed_dim)
        self.bottleneck = nn.Conv2d(self.trunk_channels, self.embed_dim, 1)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.input_norm == "imagenet":
            x = (x - self.mean) / self.std
        feats = self.trunk(x)
        pooled = feats.mean(dim=(2, 3), keepdim=True)
        return self.bottleneck(pooled).flatten(1)


# ---------------------------------------------------------------- transformer T
class StyleTransformer(nn.Module):
    """Transformer network T with 13 CIN layers; it owns the z -> (gamma, beta) maps."""

    def __init__(self, width: float = 1.0, embed_dim: int = 100, contract_norm: str = "instance"):
        super().__init__()
        width = _check_width(width)
        if contract_norm not in CONTRACT_NORMS:
            raise ValueError(f"contract_norm must be one of {CONTRACT_NORMS}, got {contract_norm!r}")
        self.contract_norm = contract_norm
        c1, c2, c3 = (_scaled(c, width) for c in (32, 64, 128))
        self.embed_dim = int(embed_dim)
        # contract: plain instance norm with affine params (not stylized), or nothing
        self.contract = nn.ModuleList([_ReflectConv(3, c1, 9), _ReflectConv(c1, c2, 3, 2),
                                       _ReflectConv(c2, c3, 3, 2)])
        self.contract_norms = nn.ModuleList([
            nn.InstanceNorm2d(c, affine=True) if contract_norm == "instance" else nn.Identity()
            for c in (c1, c2, c3)])
        # 5 residual blocks x 2 convs, then expand convs 64, 32, 3 (all CIN)
        self.res_convs = nn.ModuleList([_ReflectConv(c3, c3, 3) for _ in range(10)])
        self.expand = nn.ModuleList([_ReflectConv(c3, c2, 3), _ReflectConv(c2, c1, 3),
                                     _ReflectConv(c1, 3, 9)])
        self.cin = ConditionalInstanceNorm()
        self.cin_channels: list[int] = [c3] * 10 + [c2, c1, 3]
        # one linear map for all layers; per layer the output is [gamma_l, beta_l]
        self.norm_map = nn.Linear(self.embed_dim, 2 * sum(self.cin_channels))
        with torch.no_grad():
            bias = torch.cat([torch.cat([torch.ones(c), torch.zeros(c)])
                              for c in self.cin_channels])
            self.norm_map.bias.copy_(bias)

    def norm_params(self, z: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per CIN layer (13 entries) the (gamma, beta) pair, each (B, C_layer)."""
        if z.dim() != 2 or z.shape[1] != self.embed_dim:
            raise ValueError(f"embedding must have shape (B, {self.embed_dim}), got {tuple(z.shape)}")
        flat = self.norm_map(z)
        chunks = flat.split([2 * c for c in self.cin_channels], dim=1)
        return [tuple(ch.split(c, dim=1)) for ch, c in zip(chunks, self.cin_channels)]

    def forward(self, x: Tensor, z: Tensor, z_content: Tensor | None = None,
                stylized_layers: int = 13) -> Tensor:
        validate_stylized_layers(stylized_layers)
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(x.shape)}")
        params = self.norm_params(z)
        if stylized_layers < NUM_CIN_LAYERS:
            if z_content is None:
                raise ValueError(f"stylized_layers={stylized_layers} < {NUM_CIN_LAYERS} "
                                 "needs z_content for the layers that are not stylized")
            params = params[:stylized_layers] + self.norm_params(z_content)[stylized_layers:]

        sizes = []
        h = x
        for conv, norm in zip(self.contract, self.contract_norms):
            h = F.relu(norm(conv(h)))
            sizes.append(h.shape[-2:])
        for i in range(5):
            r = F.relu(self.cin(self.res_convs[2 * i](h), *params[2 * i]))
            h = h + self.cin(self.res_convs[2 * i + 1](r), *params[2 * i + 1])
        # upsample x2, crop back to the matching contract size (odd inputs)
        h = _match_size(F.interpolate(h, scale_factor=2, mode="nearest"), tuple(sizes[1]))
        h = F.relu(self.cin(self.expand[0](h), *params[10]))
        h = _match_size(F.interpolate(h, scale_factor=2, mode="nearest"), tuple(sizes[0]))
        h = F.relu(self.cin(self.expand[1](h), *params[11]))
        h = torch.sigmoid(self.cin(self.expand[2](h), *params[12]))
        return _match_size(h, tuple(x.shape[-2:]))


# ----------------------------------------------------------------- full network
class StyleTransferNet(nn.Module):
    """Style predictor P + transformer T with identity interpolation of embeddings."""

    def __init__(self, width: float = 1.0, embed_dim: int = 100,
                 predictor_trunk: nn.Module | None = None, trunk_channels: int | None = None,
                 trunk_name: str | None = None, input_norm: str = "imagenet",
                 contract_norm: str = "instance"):
        super().__init__()
        self.width = _check_width(width)
        self.embed_dim = int(embed_dim)
        if predictor_trunk is None:
            if trunk_name not in (None, SCRATCH_TRUNK):
                raise ValueError(f"trunk_name {trunk_name!r} given without a predictor_trunk")
            trunk_name = SCRATCH_TRUNK
        elif trunk_name is None:
            trunk_name = getattr(predictor_trunk, "name", None) or type(predictor_trunk).__name__
        self.trunk_name = str(trunk_name)
        self.predictor = StylePredictor(predictor_trunk, trunk_channels, embed_dim, width, input_norm)
        self.transformer = StyleTransformer(width, embed_dim, contract_norm)

    def config(self) -> dict[str, Any]:
        """Architecture args, stored in checkpoints and checked by ``load_stylizer``."""
        return {"width": self.width, "embed_dim": self.embed_dim, "trunk": self.trunk_name,
                "trunk_channels": self.predictor.trunk_channels,
                "input_norm": self.predictor.input_norm,
                "contract_norm": self.transformer.contract_norm}

    def embed(self, x: Tensor) -> Tensor:
        return self.predictor(x)

    def forward(self, content: Tensor, style: Tensor | None = None, *,
                z_style: Tensor | None = None, alpha: float | Tensor = 1.0,
                stylized_layers: int = 13) -> Tensor:
        validate_stylized_layers(stylized_layers)
        if (style is None) == (z_style is None):
            raise ValueError("give exactly one of style (images) or z_style (embeddings)")
        z_s = self.predictor(style) if style is not None else z_style
        b = content.shape[0]
        if z_s.shape != (b, self.embed_dim):
            raise ValueError(f"style embedding must have shape ({b}, {self.embed_dim}), "
                             f"got {tuple(z_s.shape)}")
        if (stylized_layers == NUM_CIN_LAYERS and not isinstance(alpha, Tensor)
                and alpha == 1.0):
            return self.transformer(content, z_s)  # z_c not needed
        z_c = self.predictor(content)
        if isinstance(alpha, Tensor):
            a = alpha.to(device=z_c.device, dtype=z_c.dtype)
            if a.dim() == 0:
                a = a.expand(b)
            if a.shape != (b,):
                raise ValueError(f"alpha must be a scalar or have shape ({b},), got {tuple(alpha.shape)}")
            a = a[:, None]
        else:
            a = float(alpha)
        z = a * z_s + (1 - a) * z_c
        return self.transformer(content, z, z_content=z_c, stylized_layers=stylized_layers)


def fold_batch_norms(module: nn.Module) -> nn.Module:
    """For inference: every Conv2d directly followed by a BatchNorm2d in a Sequential becomes one
    convolution (the norm's running statistics and affine folded into its weights), the norm an
    Identity. In place; call it on an eval-mode copy. The Magenta port's MobileNetV2 norms are
    identities with a bias, so folding only saves their passes (~1/4 of the predictor's time)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = seq._modules[first], seq._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                seq._modules[first] = fuse_conv_bn_eval(conv.eval(), norm.eval())
                seq._modules[second] = nn.Identity()
    return module


# ------------------------------------------------------------------ checkpoints
def save_stylizer(net: StyleTransferNet, path: str | os.PathLike) -> None:
    """Save ``{"config": net.config(), "state_dict": ...}`` to ``path``."""
    torch.save({"config": net.config(), "state_dict": net.state_dict()}, path)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) \
            and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def load_stylizer(path: str | os.PathLike, expected: dict[str, Any], *,
                  predictor_trunk: nn.Module | None = None,
                  map_location: str | torch.device = "cpu") -> StyleTransferNet:
    """Load a stylizer saved by ``save_stylizer`` and check it against ``expected``.

    Every key of ``expected`` (a subset of ``StyleTransferNet.config()`` keys) must
    match the checkpoint's config, else ValueError naming the mismatching fields.
    A checkpoint with a non-scratch trunk needs ``predictor_trunk`` (an architecture
    module; its weights are overwritten from the checkpoint) or a factory registered
    with ``register_predictor_trunk``. Every failure is raised as ValueError.
    """
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling/zip errors come in many types
        raise ValueError(f"stylizer checkpoint {path} could not be read: {e}") from e
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("config"), dict) \
            or "state_dict" not in ckpt:
        raise ValueError(f"stylizer checkpoint {path} is not a dict with 'config' and 'state_dict'")
    # checkpoints written before these fields existed used the defaults
    cfg = {"input_norm": "imagenet", "contract_norm": "instance", **ckpt["config"]}
    problems = []
    for key, want in expected.items():
        if key not in cfg:
            problems.append(f"has no {key} field but the config asks for {want!r}")
        elif not _same(cfg[key], want):
            problems.append(f"has {key} {cfg[key]!r} but the config asks for {want!r}")
    if problems:
        raise ValueError(f"stylizer checkpoint {path} " + "; ".join(problems))
    missing = [k for k in ("width", "embed_dim") if k not in cfg]
    if missing:
        raise ValueError(f"stylizer checkpoint {path} config lacks {', '.join(missing)}")
    trunk_name = cfg.get("trunk", SCRATCH_TRUNK)
    trunk, channels = None, None
    if trunk_name != SCRATCH_TRUNK:
        channels = cfg.get("trunk_channels")
        if predictor_trunk is not None:
            trunk = predictor_trunk
        elif trunk_name in _TRUNK_FACTORIES:
            trunk, channels = _TRUNK_FACTORIES[trunk_name]()
        else:
            raise ValueError(f"stylizer checkpoint {path} uses predictor trunk {trunk_name!r}; "
                             "pass predictor_trunk or register it with register_predictor_trunk")
    try:
        net = StyleTransferNet(width=cfg["width"], embed_dim=cfg["embed_dim"],
                               predictor_trunk=trunk, trunk_channels=channels, trunk_name=trunk_name,
                               input_norm=cfg["input_norm"], contract_norm=cfg["contract_norm"])
    except ValueError as e:
        raise ValueError(f"stylizer checkpoint {path}: {e}") from e
    try:
        net.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"stylizer checkpoint {path} weights do not fit its config: {e}") from e
    return net
