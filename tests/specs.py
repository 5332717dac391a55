"""Specs for tests, with the schema's defaults (workloads/spec.py has none of its own)."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from orchestrator import config as C
from workloads.spec import CellSpec, PatchGeometry, SiplAugment, ViewConfig


def view1(**overrides: Any) -> ViewConfig:
    """augmentation.view1 as the schema resolves it (BYOL's first view), with ``overrides``."""
    return ViewConfig(**{**C.View().model_dump(), **overrides})


def view2(**overrides: Any) -> ViewConfig:
    """augmentation.view2 as the schema resolves it (BYOL's second view), with ``overrides``."""
    return ViewConfig(**{**C.RightView().model_dump(), **overrides})


def sipl_augment(**overrides: Any) -> SiplAugment:
    aug = C.Augmentation()
    return SiplAugment(**{**C.SiplAugment().model_dump(), "mean": aug.mean, "std": aug.std, **overrides})


def geometry(**overrides: Any) -> PatchGeometry:
    return PatchGeometry(**{**C.SiplGeometry().model_dump(), **overrides})


def cell_spec(**sections: Any) -> CellSpec:
    """A cell's spec from partial sections ({"optim": {"epochs": 1}, ...}) over the schema's defaults."""
    return CellSpec.from_dict(C.CellConfig(**sections).model_dump(mode="json"))


def changed(spec: Any, values: dict[str, Any]) -> Any:
    """``spec`` with dotted fields replaced ({"optim.precision": "bf16"}), unchecked by the schema."""
    for dotted, value in values.items():
        head, _, rest = dotted.partition(".")
        value = changed(getattr(spec, head), {rest: value}) if rest else value
        spec = replace(spec, **{head: value})
    return spec
