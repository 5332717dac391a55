"""Experiment YAML schema (pydantic). Every field a researcher can set lives here,
with its default and its valid range; unknown keys are errors."""
from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class DatasetRef(Strict):
    name: str
    split: str = "train"
    root: str | None = None
    download: bool = False


class Data(Strict):
    pretrain: DatasetRef = DatasetRef(name="cifar10-kit", split="train")
    image_size: int = Field(32, ge=8)
    limit: int | None = Field(None, ge=1)  # use only the first N pretraining images (smoke tests)


class Backbone(Strict):
    arch: Literal["resnet18", "resnet50"] = "resnet18"
    width: float = Field(1.0, gt=0, le=4)
    stem: Literal["imagenet", "cifar"] = "imagenet"


class MoCoV2(Strict):
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


class View(Strict):
    """The left (query) view of the BYOL two-view pipeline (METHODS.md); every parameter a field."""
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
    """The fast arbitrary style-transfer network: loaded from ``checkpoint`` (a file or an
    MLflow run id), or trained once per distinct configuration and reused by its hash."""
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
    tv_weight: float = Field(1e4, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _default_style_weight(self) -> "Stylizer":
        if self.style_weight is None:
            self.style_weight = STYLE_WEIGHTS[self.loss_network]
        return self


# style weight per loss network, chosen by looking at content × style grids (README, "Stylizer")
STYLE_WEIGHTS = {"vgg16-hed": 0.05, "vgg16": 0.05, "efficientnet-lite0": 30.0}


class Optim(Strict):
    optimizer: Literal["sgd", "lars"] = "sgd"
    lr: float = Field(0.06, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    weight_decay: float = Field(5e-4, ge=0)
    warmup_epochs: float = Field(0, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=2)


class LinearProbe(Strict):
    target: DatasetRef = DatasetRef(name="cifar10-kit", split="train")
    test_split: str = "test"
    val_fraction: float = Field(0.1, gt=0, lt=1)  # carved from the target's train split
    split_seed: int = 0
    lrs: list[float] = Field(default_factory=lambda: [0.01, 0.1, 1.0], min_length=1)
    epochs: int = Field(100, ge=1)
    batch_size: int = Field(256, ge=1)
    momentum: float = Field(0.9, ge=0, lt=1)
    random_init_control: bool = True

    @model_validator(mode="after")
    def _positive_lrs(self) -> "LinearProbe":
        if any(lr <= 0 for lr in self.lrs):
            raise ValueError("lrs: every learning rate must be > 0")
        return self


class Evaluation(Strict):
    linear_probe: LinearProbe = LinearProbe()


class CellConfig(Strict):
    """Everything one pretraining + evaluation cell needs; its hash is the cell's identity."""
    seed: int = 0
    data: Data = Data()
    backbone: Backbone = Backbone()
    method: MoCoV2 = MoCoV2()
    augmentation: Augmentation = Augmentation()
    stylizer: Stylizer = Stylizer()
    optim: Optim = Optim()
    evaluation: Evaluation = Evaluation()


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

    @model_validator(mode="after")
    def _unique_seeds(self) -> "ExperimentConfig":
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: duplicate seeds")
        return self


CELL_FIELDS = tuple(CellConfig.model_fields)
