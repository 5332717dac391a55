"""One source of truth per default: every field of the YAML schema that a method's constructor
also takes has the same name and the same default on both sides, and every documented
constructor argument can be set from YAML (no field only one side knows). The cell's spec has
no defaults at all (tests/test_spec.py)."""
from __future__ import annotations

import inspect

import pytest

from orchestrator.pipelines import PIPELINES
from workloads.methods import METHODS
from workloads.methods.base import AugAwareMethod


def _norm(v):
    return tuple(_norm(x) for x in v) if isinstance(v, (list, tuple)) else v


def _schema_defaults(model, exclude=()) -> dict:
    return {k: _norm(f.get_default(call_default_factory=True)) for k, f in model.model_fields.items()
            if k not in exclude}


def _signature_defaults(fn, exclude=()) -> dict:
    return {k: _norm(p.default) for k, p in inspect.signature(fn).parameters.items()
            if k not in ("self", *exclude) and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _same(schema: dict, code: dict, where: str) -> None:
    assert set(schema) == set(code), (f"{where}: only in the schema {sorted(set(schema) - set(code))}, "
                                      f"only in the code {sorted(set(code) - set(schema))}")
    diff = {k: (schema[k], code[k]) for k in schema if schema[k] != code[k]}
    assert not diff, f"{where}: defaults differ (schema, code): {diff}"


SSL = [name for name, p in PIPELINES.items() if name in METHODS]


def test_every_ssl_pipeline_has_a_method_class():
    assert sorted(SSL) == sorted(METHODS)


@pytest.mark.parametrize("name", SSL)
def test_method_schema_matches_its_constructor(name):
    code = {**_signature_defaults(METHODS[name].__init__, exclude=("backbone",)),
            **_signature_defaults(AugAwareMethod._init_aug, exclude=("feat_dim",))}
    _same(_schema_defaults(PIPELINES[name].schema, exclude=("name",)), code, f"method {name}")


def test_documented_method_fields_can_be_set_from_yaml():
    from orchestrator.experiment import build_experiment
    exp = build_experiment({"name": "t", "method": {"name": "moco_v2", "aug_mode": "cassle", "encoder_out_dim": 32,
                                                    "encoder_last_bn": False}})
    m = exp.cells[0].config["method"]
    assert (m["encoder_out_dim"], m["encoder_last_bn"]) == (32, False)
