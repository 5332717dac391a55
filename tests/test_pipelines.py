"""The pipeline registry: one entry per method name, each naming functions that exist, and the
limits it declares are what an experiment is checked against."""
from __future__ import annotations

import inspect

import pytest

from orchestrator.config import METHOD_NAMES, CellConfig
from orchestrator.experiment import ConfigError, build_experiment
from orchestrator.pipelines import PIPELINES, pipeline


def test_one_entry_per_method_name():
    assert tuple(PIPELINES) == METHOD_NAMES
    assert set(CellConfig.model_fields["method"].annotation.__args__) == {p.schema for p in PIPELINES.values()}


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_entries_name_real_functions(name):
    p = PIPELINES[name]
    train, evaluate = p.function("train"), p.function("evaluate")
    assert list(inspect.signature(train).parameters) == ["job"]
    params = inspect.signature(evaluate).parameters
    assert list(params)[:3] == ["spec", "target", list(params)[2]]
    assert {"cache_dir", "device", "progress", "artifact_dir", "method_state"} <= set(params)
    assert "{target}" in p.headline


def test_a_cell_finds_its_entry():
    cfg = CellConfig(method={"name": "sipl"}, optim={"optimizer": "adam"}).model_dump(mode="json")
    assert pipeline(cfg).name == "sipl" and pipeline(cfg).headline.startswith("mlp/")
    assert pipeline(CellConfig().model_dump(mode="json")).name == "moco_v2"


@pytest.mark.parametrize("overrides,message", [
    ({"optim": {"optimizer": "sgd"}}, "optim.optimizer: SIPL trains with Adam"),
    ({"optim": {"optimizer": "adam"}, "cluster": {"num_workers": 2}}, "cluster.num_workers: SIPL trains on one worker per cell"),
    ({"optim": {"optimizer": "adam"}, "data": {"loader": "stream", "stream_decode": "ray_data",
                                               "pretrain": {"name": "packed", "root": "/x", "split": "val"}}},
     "data.stream_decode: SIPL decodes a stream with worker; got ray_data"),
])
def test_limits_of_an_entry_are_enforced(overrides, message):
    raw = {"name": "t", "method": {"name": "sipl"}, "optim": {"batch_size": 64}, **overrides}
    raw["optim"] = {**raw["optim"], **overrides.get("optim", {})}
    with pytest.raises(ConfigError, match=message):
        build_experiment(raw)
    assert PIPELINES["moco_v2"].limits(CellConfig().model_dump(mode="json"), 8) is None


def test_sipl_trains_on_a_streamed_pretext():
    """Every entry streams now (SIPL's pretext reads packed shards batch by batch, workloads/sipl/data.py)."""
    assert all(p.stream_decoders for p in PIPELINES.values())
    exp = build_experiment({"name": "t", "method": {"name": "sipl"}, "optim": {"optimizer": "adam"},
                            "data": {"loader": "stream", "pretrain": {"name": "packed", "root": "/x", "split": "val"}}})
    assert exp.cells[0].config["data"]["loader"] == "stream"
