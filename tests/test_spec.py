"""The typed cell spec (workloads/spec.py): the same fields as the schema, no defaults of its own,
the values the schema resolved for every shipped cell, cell ids unchanged by it, and the data
plane reading it (never the experiment config as a dict)."""
from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from orchestrator import config as C
from orchestrator.experiment import load_experiment, read_with_base
from orchestrator.pipelines import PIPELINES
from specs import cell_spec
from workloads import spec as S

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p for p in (ROOT / "experiments").glob("*.yaml") if p.name != "paper_tables.yaml")


def _spec_classes() -> list[type]:
    return [v for v in vars(S).values() if isinstance(v, type) and dataclasses.is_dataclass(v)
            and v.__module__ == S.__name__]


def _pairs(model: type[BaseModel], spec: type, where: str):
    """(schema model, spec class, YAML path) for the cell and every section below it."""
    yield model, spec, where
    hints = typing.get_type_hints(spec)
    for name, field in model.model_fields.items():
        sub = field.annotation
        options = [a for a in typing.get_args(sub) if a is not type(None)] or [sub]
        target = hints.get(name)
        if typing.get_origin(target) is tuple:  # tuple[X, ...]: a list of sections
            target = typing.get_args(target)[0]
        targets = [a for a in typing.get_args(target) if a is not type(None)] or [target]
        for m in options:
            inner = typing.get_args(m)
            m = inner[0] if typing.get_origin(m) is list else m
            if not (isinstance(m, type) and issubclass(m, BaseModel)):
                continue
            for t in targets:
                if name == "method":  # the union: each method's spec is chosen by its name
                    if getattr(t, "NAME", None) != m.model_fields["name"].default:
                        continue
                yield from _pairs(m, t, f"{where}.{name}")


PAIRS = list(_pairs(C.CellConfig, S.CellSpec, "cell"))


def test_every_schema_section_has_a_spec_with_the_same_fields():
    seen = {spec for _, spec, _ in PAIRS}
    assert {S.CellSpec, S.DataSpec, S.AugmentationSpec, S.StylizerSpec, S.OptimSpec, S.EvaluationSpec,
            S.TargetSpec, S.MoCoV2Spec, S.SiplSpec, S.SiplAugment, S.PatchGeometry, S.ViewConfig} <= seen
    assert {p.schema.model_fields["name"].default for p in PIPELINES.values()} == \
        {spec.NAME for _, spec, where in PAIRS if where == "cell.method"}
    for model, spec, where in PAIRS:
        fields = {f.name for f in dataclasses.fields(spec)} - set(getattr(spec, "DERIVED", ()))
        assert fields == set(model.model_fields), (
            f"{where}: only in the schema {sorted(set(model.model_fields) - fields)}, "
            f"only in {spec.__name__} {sorted(fields - set(model.model_fields))}")
    # the search's monitor is a spec too (it reaches the data plane in a trial's job)
    assert {f.name for f in dataclasses.fields(S.MonitorSpec)} == set(C.Monitor.model_fields)


def test_the_spec_has_no_defaults_and_is_frozen():
    for cls in _spec_classes():
        with_default = [f.name for f in dataclasses.fields(cls)
                        if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING]
        assert not with_default, f"{cls.__name__}: defaults belong to the schema, not {with_default}"
    spec = cell_spec()
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.optim.lr = 1.0  # type: ignore[misc]


def test_the_spec_module_imports_no_torch():
    code = "import sys, workloads.spec, orchestrator.experiment; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


def test_an_ssl_methods_spec_is_its_constructors_arguments():
    from workloads.methods import METHODS
    for name, method in METHODS.items():
        spec = cell_spec(method={"name": name}).method
        params = set(inspect.signature(method.__init__).parameters) - {"self", "backbone", "kwargs"}
        assert set(spec.arguments()) - params <= set(inspect.signature(
            __import__("workloads.methods.base", fromlist=["x"]).AugAwareMethod._init_aug).parameters), name


def _profiles(path: Path) -> list[str | None]:
    return [None, *sorted(read_with_base(path).get("profiles") or {})]


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_shipped_cell_spec_holds_what_the_schema_resolved(path):
    for profile in _profiles(path):
        for cell in load_experiment(path, profile).cells:
            plain = S.to_dict(cell.spec)
            if "stylizer" not in cell.config:  # dropped from the identity when the style is off
                plain.pop("stylizer")
            assert plain == json.loads(json.dumps(cell.config)), f"{path.name} {profile}: {cell.row}"


def test_no_cell_id_changed():
    """Every shipped experiment's cells (every profile) keep the ids they had before the spec
    (tests/data/cell_ids.json, written at 8f04c22): no finished cell reruns."""
    before = json.loads((ROOT / "tests" / "data" / "cell_ids.json").read_text())
    now = {f"{p.name}:{profile or 'default'}": [[c.row, c.seed, c.cell_id, c.pretrain_id]
                                                for c in load_experiment(p, profile).cells]
           for p in EXPERIMENTS for profile in _profiles(p)}
    assert now == before


def test_a_dict_without_a_specs_fields_is_refused_by_path():
    plain = C.CellConfig().model_dump(mode="json")
    del plain["optim"]["lr"]
    with pytest.raises(S.SpecError, match=r"optim: OptimSpec missing \['lr'\]"):
        S.CellSpec.from_dict(plain)
    plain = C.CellConfig().model_dump(mode="json")
    plain["evaluation"]["targets"][0]["colour"] = 1
    with pytest.raises(S.SpecError, match=r"evaluation.targets\[0\]: TargetSpec unknown \['colour'\]"):
        S.CellSpec.from_dict(plain)


def test_the_pretext_normalises_with_the_cells_mean_and_std():
    spec = cell_spec(method={"name": "sipl"}, optim={"optimizer": "adam"},
                     augmentation={"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    assert (spec.method.augment.mean, spec.method.augment.std) == ((0.5,) * 3, (0.25,) * 3)
    assert "mean" not in S.to_dict(spec)["method"]["augment"]


def test_the_data_plane_has_no_default_loader_and_reads_the_cells():
    """Nothing below workloads/ defaults data.loader (the schema's auto is the only default), and
    the stylizer's training reads its content as the cell's loader says."""
    from workloads import cell as entries
    from workloads.data import prepare
    for fn in (prepare.choose_loader, prepare.reads_lazily, prepare.fits_in_memory, prepare.pretrain_images):
        assert all(p.default is inspect.Parameter.empty for name, p in inspect.signature(fn).parameters.items()
                   if name in ("data", "loader")), fn.__name__
    assert cell_spec().data.loader == C.Data().loader == "auto"
    seen = []
    originals = entries.load_images, entries.style_pool, entries.train_stylizer
    try:
        entries.load_images = lambda ref, size, cache, lazy: seen.append(("content", lazy)) or (None, None, None)
        entries.style_pool = lambda refs, size, cache, lazy: seen.append(("style", lazy))
        entries.train_stylizer = lambda *a, **k: "trained"
        import workloads.stylize.loss_networks as loss_networks
        build = loss_networks.build_loss_network
        loss_networks.build_loss_network = lambda *a, **k: None
        for loader in ("stream", "memory"):
            spec = cell_spec(data={"loader": loader, "pretrain": {"name": "packed", "root": "unused"}},
                             stylizer={"pretrained": None})
            assert entries.train_stylizer_cell(spec, cache_dir="unused", device="cpu") == "trained"
        loss_networks.build_loss_network = build
    finally:
        entries.load_images, entries.style_pool, entries.train_stylizer = originals
    assert seen == [("content", True), ("style", True), ("content", False), ("style", False)]


CONFIG_SECTIONS = {"augmentation", "optim", "method", "evaluation", "backbone", "stylizer", "targets", "linear_probe",
                   "fine_tune", "few_shot", "lbfgs", "sensitivity", "geometry", "downstream"}


def test_no_function_under_workloads_reads_the_config_as_a_dict():
    """No `x["optim"]`-style reads of a config section, and no parameter named like a config that
    takes a plain dict: each function reads the typed spec it is given."""
    offenders = []
    for path in sorted((ROOT / "workloads").rglob("*.py")):
        if path.name == "spec.py":  # where the spec is built from the schema's dict
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and \
                    node.slice.value in CONFIG_SECTIONS:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} reads [{node.slice.value!r}]")
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for a in node.args.args + node.args.kwonlyargs:
                    text = ast.unparse(a.annotation) if a.annotation else ""
                    if a.arg in ("cfg", "config", "loop_cfg", "target", "ref", "data") and text.startswith("dict"):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}({a.arg}: {text})")
    assert not offenders, offenders
