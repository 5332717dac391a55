"""A cell's configuration as the data plane reads it: frozen dataclasses, one per concern,
built once from the validated experiment config by ``CellSpec.from_dict``.

The schema (orchestrator/config.py) owns every default and every range check of a field;
these classes have no defaults, so a value the data plane reads is the value the schema
resolved (tests/test_spec.py checks that the fields here and the schema's are the same).
Three classes keep checks of their own (ViewConfig, PatchGeometry, SiplAugment): the
augmentation and patch code builds them directly too. No PyTorch here: the control plane
imports this module without it."""
from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any, ClassVar, Union

# the normalisation statistics of ImageNet's training images: a fact of the field that the
# schema's default, the stylizer's VGG input and the loss networks all use
IMAGENET_MEAN = (0.485, 0.456, 0.406)
# datasets whose labels are regression targets (300W's landmarks), not classes: a target of one
# is scored by ridge regression and R² (workloads/evaluation/regression.py)
REGRESSION_DATASETS = ("w300",)
IMAGENET_STD = (0.229, 0.224, 0.225)


class SpecError(ValueError):
    """A dict that does not have a spec's fields (a schema and spec out of step)."""


# ---------------------------------------------------------------- data
@dataclass(frozen=True)
class DatasetRef:
    name: str
    split: str
    root: str | None
    download: bool

    def with_split(self, split: str) -> "DatasetRef":
        return replace(self, split=split)


@dataclass(frozen=True)
class DataSpec:
    pretrain: DatasetRef
    image_size: int
    limit: int | None
    loader: str                 # memory, stream or auto
    memory_budget_gb: float
    stream_decode: str          # worker, device or ray_data
    stream_decode_cpus: float


# ---------------------------------------------------------------- the two views
_PROBABILITIES = ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p")
_JITTER_STRENGTHS = ("brightness", "contrast", "saturation")
_PAIRS = ("crop_scale", "crop_ratio", "blur_sigma")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


@dataclass(frozen=True)
class ViewConfig:
    """Augmentation parameters of one view (docs/methods.md, "The two views").

    crop_scale: range of the crop's area as a fraction of the image area.
    crop_ratio: range of the crop's aspect ratio (w / h), sampled log-uniformly.
    flip_p: probability of a horizontal flip.
    jitter_p: probability of applying colour jitter (all four ops together).
    brightness, contrast, saturation: factor drawn from U[max(0, 1 - v), 1 + v].
    hue: hue shift drawn from U[-hue, hue] (fraction of a full turn), hue <= 0.5.
    grayscale_p: probability of converting to (3-channel) grayscale.
    blur_p: probability of a Gaussian blur; sigma ~ U[blur_sigma].
    blur_sigma: range of the blur's standard deviation, in output pixels.
    blur_kernel_frac: kernel size = odd number nearest blur_kernel_frac * S
        (at least 3); BYOL's 23 px at S = 224 is frac 0.1.
    solarize_p: probability of solarizing (x -> 1 - x where x >= threshold).
    solarize_threshold: threshold in [0, 1] (images are float in [0, 1]).
    """

    crop_scale: tuple[float, float]
    crop_ratio: tuple[float, float]
    flip_p: float
    jitter_p: float
    brightness: float
    contrast: float
    saturation: float
    hue: float
    grayscale_p: float
    blur_p: float
    blur_sigma: tuple[float, float]
    blur_kernel_frac: float
    solarize_p: float
    solarize_threshold: float

    def __post_init__(self) -> None:
        for name in _PAIRS:
            value = getattr(self, name)
            try:
                pair = tuple(value)
            except TypeError:
                raise ValueError(f"{name} must be a (low, high) pair, got {value!r}") from None
            if len(pair) != 2 or not all(_is_number(v) for v in pair):
                raise ValueError(f"{name} must be a (low, high) pair of numbers, got {value!r}")
            pair = (float(pair[0]), float(pair[1]))
            if not all(math.isfinite(v) for v in pair):
                raise ValueError(f"{name} must be finite, got {pair!r}")
            if pair[0] > pair[1]:
                raise ValueError(f"{name}: low {pair[0]} > high {pair[1]}")
            object.__setattr__(self, name, pair)
        for f in fields(self):
            if f.name in _PAIRS:
                continue
            value = getattr(self, f.name)
            if not _is_number(value) or not math.isfinite(value):
                raise ValueError(f"{f.name} must be a finite number, got {value!r}")
            object.__setattr__(self, f.name, float(value))
        if not (0.0 < self.crop_scale[0] and self.crop_scale[1] <= 1.0):
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale!r}")
        if not self.crop_ratio[0] > 0.0:
            raise ValueError(f"crop_ratio must be positive, got {self.crop_ratio!r}")
        if not self.blur_sigma[0] > 0.0:
            raise ValueError(f"blur_sigma must be positive, got {self.blur_sigma!r}")
        for name in _PROBABILITIES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability and must be in [0, 1], got {getattr(self, name)!r}")
        for name in _JITTER_STRENGTHS:
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue!r}")
        if not self.blur_kernel_frac > 0.0:
            raise ValueError(f"blur_kernel_frac must be > 0, got {self.blur_kernel_frac!r}")
        if not 0.0 <= self.solarize_threshold <= 1.0:
            raise ValueError(f"solarize_threshold must be in [0, 1], got {self.solarize_threshold!r}")

    def blur_kernel_size(self, size: int) -> int:
        """Odd kernel size nearest ``blur_kernel_frac * size``, at least 3."""
        if size <= 0:
            raise ValueError(f"size must be positive, got {size!r}")
        return max(3, 2 * int(math.floor(self.blur_kernel_frac * size / 2.0)) + 1)

    def factor_ranges(self) -> dict[str, tuple[float, float]]:
        """Sampling ranges of the four jitter factors (as torchvision's ColorJitter)."""
        return {"brightness": (max(0.0, 1.0 - self.brightness), 1.0 + self.brightness),
                "contrast": (max(0.0, 1.0 - self.contrast), 1.0 + self.contrast),
                "saturation": (max(0.0, 1.0 - self.saturation), 1.0 + self.saturation),
                "hue": (-self.hue, self.hue)}


@dataclass(frozen=True)
class StyleSpec:
    enabled: bool
    p: float
    alpha: tuple[float, float]
    beta: tuple[float, float]
    source: str                 # external, in_batch, noise or content
    shift: int
    style_data: DatasetRef
    stylized_layers: int
    image_size: int | None


@dataclass(frozen=True)
class AugmentationSpec:
    view1: ViewConfig
    view2: ViewConfig
    style: StyleSpec
    prefetch: str               # auto, on or off
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


@dataclass(frozen=True)
class StylizerSpec:
    pretrained: str | None
    pretrained_source: str | None
    style_size: int | None
    checkpoint: str | None
    width: float
    embed_dim: int
    loss_network: str
    loss_weights: str | None
    content_data: DatasetRef
    style_data: tuple[DatasetRef, ...]
    image_size: int
    steps: int
    batch_size: int
    lr: float
    content_weight: float
    style_weight: float | None
    tv_weight: float
    seed: int


# ---------------------------------------------------------------- the network and the method
@dataclass(frozen=True)
class ViTSpec:
    patch_size: int
    depth: int | None
    num_heads: int | None
    pos_embed: str              # sincos or learned
    frozen_patch_embed: bool
    init: str                   # moco (MoCo v3's) or timm


@dataclass(frozen=True)
class BackboneSpec:
    arch: str                   # resnet18, resnet50, vit_tiny, vit_small or vit_base
    width: float
    stem: str
    sync_bn: bool
    vit: ViTSpec

    @property
    def is_vit(self) -> bool:
        return self.arch.startswith("vit_")

    def architecture(self, image_size: int) -> dict[str, Any]:
        """build_backbone's arguments: sync_bn says how batch norms train, not the network's
        shape (a backbone's cached features do not depend on it). A ViT's position embedding
        is laid out for the cell's ``image_size``; a ResNet's arguments do not name it (so its
        feature caches keep their keys)."""
        if self.is_vit:
            return {"arch": self.arch, "image_size": image_size, **to_dict(self.vit)}
        return {"arch": self.arch, "width": self.width, "stem": self.stem}


@dataclass(frozen=True)
class SslMethodSpec:
    """What every SSL method has: its name and the augmentation-aware extension (AugSelf, CASSLE)."""
    NAME: ClassVar[str] = ""
    name: str
    aug_mode: str               # vanilla, augself or cassle
    omega_parts: str | None
    cond_mode: str
    encoder_depth: int
    encoder_width: int
    encoder_out_dim: int | None
    encoder_last_bn: bool
    augself_weight: float
    augself_hidden_dim: int
    omega_shuffle: bool         # the control: ω permuted within the batch
    proj_hidden_dim: int
    proj_dim: int
    proj_layers: int

    def arguments(self) -> dict[str, Any]:
        """The method class's keyword arguments (workloads/methods)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "name"}


@dataclass(frozen=True)
class MoCoV2Spec(SslMethodSpec):
    NAME: ClassVar[str] = "moco_v2"
    predictor: bool
    pred_hidden_dim: int
    temperature: float
    momentum: float
    momentum_schedule: str
    queue_size: int
    symmetric: bool


@dataclass(frozen=True)
class MoCoV3Spec(SslMethodSpec):
    NAME: ClassVar[str] = "moco_v3"
    pred_hidden_dim: int
    temperature: float
    momentum: float
    momentum_schedule: str


@dataclass(frozen=True)
class SimCLRSpec(SslMethodSpec):
    NAME: ClassVar[str] = "simclr"
    temperature: float


@dataclass(frozen=True)
class BYOLSpec(SslMethodSpec):
    NAME: ClassVar[str] = "byol"
    pred_hidden_dim: int
    momentum: float
    momentum_schedule: str


@dataclass(frozen=True)
class BarlowTwinsSpec(SslMethodSpec):
    NAME: ClassVar[str] = "barlow_twins"
    lambd: float


@dataclass(frozen=True)
class PatchGeometry:
    """SIPL's patch grid (workloads/sipl/patches.py says how it is cut)."""
    image_size: int
    patch_size: int
    input_size: int
    jitter: int

    def __post_init__(self) -> None:
        for name in ("image_size", "patch_size", "input_size", "jitter"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool):
                raise ValueError(f"geometry.{name} must be an integer, got {v!r}")
        if self.patch_size < 1 or self.input_size < 1:
            raise ValueError(f"patch_size and input_size must be >= 1, got {self.patch_size}, {self.input_size}")
        if self.jitter < 0:
            raise ValueError(f"geometry.jitter must be >= 0, got {self.jitter}")
        # smallest image whose cells leave room for the patch, its jitter and a 1-px gap
        need = 3 * (self.patch_size + self.jitter + 1)
        if self.image_size < need:
            raise ValueError(
                f"image_size {self.image_size} is too small for a 3×3 grid of {self.patch_size}-px patches "
                f"with jitter {self.jitter}: needs at least {need}")

    @property
    def cell(self) -> int:
        return self.image_size // 3

    @property
    def gap(self) -> int:
        """Smallest distance in px between two neighbouring patches."""
        return self.cell - self.patch_size - self.jitter

    @property
    def origin(self) -> int:
        """Pixel where the grid starts (the remainder image_size % 3 is split around it)."""
        return (self.image_size - 3 * self.cell) // 2


@dataclass(frozen=True)
class SiplAugment:
    """SIPL's ReLIC-style patch augmentation (docs/methods.md, SIPL). Colour ranges are the
    factors themselves; no flips (patch localization is not invariant to them). ``mean`` and
    ``std`` are the cell's augmentation.mean/std (from_dict fills them), so the pretext and the
    downstream head normalise alike."""
    crop_scale: tuple[float, float]
    crop_ratio: tuple[float, float]
    jitter_p: float
    brightness: tuple[float, float]
    contrast: tuple[float, float]
    saturation: tuple[float, float]
    hue: tuple[float, float]
    grayscale_p: float
    blur_p: float
    blur_kernel_224: int        # kernel at 224 px; scaled to the patch input size
    blur_sigma: tuple[float, float]
    solarize_p: float
    solarize_threshold: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    DERIVED: ClassVar[tuple[str, ...]] = ("mean", "std")
    _LENGTHS: ClassVar[dict[str, int]] = {"crop_scale": 2, "crop_ratio": 2, "brightness": 2, "contrast": 2,
                                          "saturation": 2, "hue": 2, "blur_sigma": 2, "mean": 3, "std": 3}

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name in self._LENGTHS:
                if not isinstance(v, (list, tuple)) or len(v) != self._LENGTHS[f.name]:
                    raise ValueError(f"augment.{f.name} must be a list of {self._LENGTHS[f.name]} numbers, got {v!r}")
                v = tuple(float(e) for e in v)
                if len(v) == 2 and v[0] > v[1]:
                    raise ValueError(f"augment.{f.name}: low {v[0]} > high {v[1]}")
            elif isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"augment.{f.name} must be a number, got {v!r}")
            object.__setattr__(self, f.name, v)
        for name in ("jitter_p", "grayscale_p", "blur_p", "solarize_p", "solarize_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"augment.{name} must be in [0, 1], got {getattr(self, name)!r}")
        if not (0.0 < self.crop_scale[0] and self.crop_scale[1] <= 1.0) or self.crop_ratio[0] <= 0:
            raise ValueError(f"augment.crop_scale must lie in (0, 1] and crop_ratio be positive, got "
                             f"{self.crop_scale!r}, {self.crop_ratio!r}")
        if min(self.brightness + self.contrast + self.saturation) < 0 or not -0.5 <= self.hue[0] <= self.hue[1] <= 0.5:
            raise ValueError("augment: colour factors must be >= 0 and hue within [-0.5, 0.5]")
        if self.blur_sigma[0] <= 0 or int(self.blur_kernel_224) != self.blur_kernel_224 or self.blur_kernel_224 < 1:
            raise ValueError("augment: blur_sigma must be positive and blur_kernel_224 a positive integer")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"augment.std must be positive, got {self.std!r}")

    def kernel_size(self, size: int) -> int:
        """Odd kernel nearest blur_kernel_224 * size / 224, at least 3 (3 at 32 px, 23 at 224)."""
        return max(3, 2 * int(math.floor(self.blur_kernel_224 * size / 224 / 2.0)) + 1)


@dataclass(frozen=True)
class SiplDownstreamSpec:
    hidden: int
    lr: float
    epochs: int
    batch_size: int


@dataclass(frozen=True)
class SiplSpec:
    NAME: ClassVar[str] = "sipl"
    name: str
    variant: str                # opl, siplv1, siplv2 or siplv3
    alpha: float
    alpha_warmup_epochs: float
    embed_dim: int
    head_hidden: int
    val_fraction: float
    geometry: PatchGeometry
    augment: SiplAugment
    downstream: SiplDownstreamSpec


MethodSpec = Union[MoCoV2Spec, MoCoV3Spec, SimCLRSpec, BYOLSpec, BarlowTwinsSpec, SiplSpec]


# ---------------------------------------------------------------- training and evaluation
@dataclass(frozen=True)
class OptimSpec:
    optimizer: str              # sgd, lars, adamw or adam
    lr: float
    scale_lr: str               # none or linear (× batch_size / 256)
    momentum: float
    weight_decay: float
    warmup_epochs: float
    schedule: str
    epochs: int
    batch_size: int             # global: split over the workers
    precision: str              # fp32, bf16 or fp16
    compile: bool
    deterministic: bool

    @property
    def peak_lr(self) -> float:
        """The rate after warm-up: ``lr``, times batch_size / 256 with ``scale_lr: linear``."""
        return self.lr * self.batch_size / 256 if self.scale_lr == "linear" else self.lr


@dataclass(frozen=True)
class TargetSpec:
    key: str
    label: str | None
    data: DatasetRef
    test_split: str
    test_data: DatasetRef | None
    val_split: str | None
    val_fraction: float
    split_seed: int
    label_fraction: float
    metric: str | None      # top1 | mean_per_class | r2; None: the L-BFGS probe's select_by
    ten_crop: bool

    @property
    def test_ref(self) -> DatasetRef:
        """The split the reported numbers are scored on."""
        return self.test_data or self.data.with_split(self.test_split)


@dataclass(frozen=True)
class LinearProbeSpec:
    lrs: tuple[float, ...]
    epochs: int
    batch_size: int
    momentum: float
    random_init_control: bool


@dataclass(frozen=True)
class FineTuneSpec:
    enabled: bool
    lrs: tuple[float, ...]
    epochs: int
    batch_size: int
    momentum: float


@dataclass(frozen=True)
class FewShotSpec:
    shots: tuple[int, ...]
    episodes: int


@dataclass(frozen=True)
class LbfgsSpec:
    enabled: bool
    l2_exponents: tuple[float, float, int]
    select_by: str
    max_iter: int


@dataclass(frozen=True)
class SensitivitySpec:
    enabled: bool
    images: int


@dataclass(frozen=True)
class ConditioningCheckSpec:
    enabled: bool
    images: int


@dataclass(frozen=True)
class RotationSpec:
    enabled: bool


@dataclass(frozen=True)
class CorruptionsSpec:
    enabled: bool
    names: tuple[str, ...]
    severities: tuple[int, ...]
    images: int | None
    seed: int


@dataclass(frozen=True)
class RetrievalSpec:
    enabled: bool
    k: tuple[int, ...]
    figure_queries: int
    figure_neighbours: int


@dataclass(frozen=True)
class EvaluationSpec:
    targets: tuple[TargetSpec, ...]
    linear_probe: LinearProbeSpec
    fine_tune: FineTuneSpec
    few_shot: FewShotSpec
    lbfgs: LbfgsSpec
    sensitivity: SensitivitySpec
    conditioning_check: ConditioningCheckSpec
    rotation: RotationSpec
    corruptions: CorruptionsSpec
    retrieval: RetrievalSpec


@dataclass(frozen=True)
class MonitorSpec:
    """A search's per-epoch objective: a linear probe on the first target's validation split."""
    train_size: int
    lr: float
    epochs: int


# ---------------------------------------------------------------- the cell
@dataclass(frozen=True)
class CellSpec:
    seed: int
    data: DataSpec
    backbone: BackboneSpec
    method: MethodSpec
    augmentation: AugmentationSpec
    stylizer: StylizerSpec
    optim: OptimSpec
    evaluation: EvaluationSpec

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> "CellSpec":
        """A resolved cell config (the schema's ``model_dump(mode="json")``, stylizer included)."""
        method = dict(config.get("method", {}))
        if method.get("name") == SiplSpec.NAME:  # the pretext normalises as the evaluation does
            aug = config.get("augmentation", {})
            method["augment"] = {**method.get("augment", {}), "mean": aug.get("mean"), "std": aug.get("std")}
        return build(cls, {**config, "method": method})


# ---------------------------------------------------------------- building from dicts
def build(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """``cls`` from a dict with exactly its fields, nested dataclasses, unions and tuples built
    as the annotations say."""
    if not isinstance(data, dict):
        raise SpecError(f"{where or cls.__name__}: expected a mapping, got {type(data).__name__}")
    names = [f.name for f in fields(cls) if f.init]
    missing, unknown = set(names) - data.keys(), data.keys() - set(names)
    if missing or unknown:
        raise SpecError(f"{where or cls.__name__}: {cls.__name__} "
                        + "; ".join(filter(None, [f"missing {sorted(missing)}" if missing else "",
                                                  f"unknown {sorted(unknown)}" if unknown else ""])))
    hints = typing.get_type_hints(cls)
    return cls(**{n: _value(hints[n], data[n], f"{where}.{n}" if where else n) for n in names})


def _value(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        if len(options) > 1:  # the method: chosen by its name
            chosen = [a for a in options if getattr(a, "NAME", None) == (value or {}).get("name")]
            if not chosen:
                raise SpecError(f"{where}: no spec for name {(value or {}).get('name')!r}")
            return build(chosen[0], value, where)
        return _value(options[0], value, where)
    if is_dataclass(tp):
        return build(tp, value, where)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_value(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        return tuple(value)
    return value


def to_dict(spec: Any) -> Any:
    """The plain (JSON) form: tuples as lists, nested specs as dicts, derived fields left out."""
    if is_dataclass(spec):
        skip = getattr(spec, "DERIVED", ())
        return {f.name: to_dict(getattr(spec, f.name)) for f in fields(spec) if f.name not in skip}
    if isinstance(spec, (tuple, list)):
        return [to_dict(v) for v in spec]
    return spec
