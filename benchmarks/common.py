"""What the benchmarks share: the schema's default views and cells, the MoCo v2 model they time,
one training step, and the timer."""
from __future__ import annotations

import time

import torch

from workloads.methods import build_method
from workloads.models.backbones import build_backbone
from workloads.optim import build_optimizer
from workloads.spec import CellSpec, ViewConfig


def cell_spec(**sections) -> CellSpec:
    """A cell's spec from partial sections ({"optim": {"epochs": 1}}) over the schema's defaults."""
    from orchestrator.config import CellConfig
    return CellSpec.from_dict(CellConfig(**sections).model_dump(mode="json"))


def default_views() -> tuple[ViewConfig, ViewConfig]:
    """augmentation.view1 and view2 as the schema resolves them (BYOL's two views)."""
    aug = cell_spec().augmentation
    return aug.view1, aug.view2


def make_moco_v2(width: float, channels_last: bool = True):
    """MoCo v2 as published: projector hidden width = feature width, no predictor."""
    torch.manual_seed(0)
    backbone = build_backbone("resnet18", width, "imagenet")
    model = build_method("moco_v2", backbone, proj_hidden_dim=backbone.out_dim, proj_dim=128,
                         predictor=False, temperature=0.2)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, build_optimizer(model, "sgd", 0.06, 0.9, 5e-4)


def train_step(model, opt, v1, v2) -> None:
    """Query forward + backward, key forward, InfoNCE, optimizer step, EMA update."""
    loss = model(v1, v2)["loss"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    model.after_step(0.5)


def timed(fn, batches, warmup: int, steps: int, batch: int) -> float:
    """Images/s of ``fn(*args)`` over ``steps`` argument tuples from ``batches``, after ``warmup``."""
    it = iter(batches)
    for _ in range(warmup):
        fn(*next(it))
    t0 = time.perf_counter()
    for _ in range(steps):
        fn(*next(it))
    return steps * batch / (time.perf_counter() - t0)
