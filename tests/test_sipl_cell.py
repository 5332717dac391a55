"""SIPL cells: the YAML's config reaches the workload intact; the search objective never reads test."""
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from orchestrator.experiment import ConfigError, build_experiment, load_experiment
from workloads.sipl.cell import SiplMonitor, build_encoder, evaluate_sipl

ROOT = Path(__file__).resolve().parents[1]


def test_table4_yaml_maps_onto_the_workload_config():
    exp = load_experiment(ROOT / "experiments" / "sipl_table4.yaml")
    assert [c.config["method"]["variant"] for c in exp.cells[::len(exp.config.seeds)]] == \
        ["opl", "siplv1", "siplv2", "siplv3"]
    spec = exp.cells[0].spec
    assert spec.method.geometry.image_size == 48 and spec.method.augment.grayscale_p == 0.05
    assert spec.method.alpha == 5.0 and spec.optim.batch_size == exp.cells[0].config["optim"]["batch_size"]
    # the pretext normalises as the downstream head does: with augmentation.mean/std
    assert (spec.method.augment.mean, spec.method.augment.std) == (spec.augmentation.mean, spec.augmentation.std)
    # the kit's lr was chosen at the kit scale; the paper profile keeps the paper's Table 3 recipe
    assert spec.optim.lr == 2e-4 and spec.method.alpha_warmup_epochs == 0.0
    paper = load_experiment(ROOT / "experiments" / "sipl_table4.yaml", "paper").cells[0].spec
    assert (paper.optim.lr, paper.method.alpha, paper.optim.batch_size, paper.optim.weight_decay) == (5e-5, 5.0, 64, 0.0)


@pytest.mark.parametrize("method, message", [
    ({"name": "sipl", "alpha": -1}, "method.alpha: must be >= 0"),
    ({"name": "sipl", "variant": "siplv9"}, "method.variant: input should be 'opl', 'siplv1', 'siplv2' or 'siplv3'"),
    ({"name": "sipl", "geometry": {"image_size": 30}}, "method.geometry.image_size: 30 px is too small"),
    ({"name": "simsiam"}, "method.name: unknown method 'simsiam'"),
])
def test_bad_sipl_configs_name_the_field(method, message):
    with pytest.raises(ConfigError) as e:
        build_experiment({"name": "x", "method": method, "optim": {"optimizer": "adam"}})
    assert message in str(e.value)


def test_sipl_needs_adam_and_one_worker():
    with pytest.raises(ConfigError, match="SIPL trains with Adam"):
        build_experiment({"name": "x", "method": {"name": "sipl"}})
    with pytest.raises(ConfigError, match="SIPL trains on one worker"):
        build_experiment({"name": "x", "method": {"name": "sipl"}, "optim": {"optimizer": "adam"},
                          "cluster": {"num_workers": 2}})


def test_search_monitor_scores_validation_without_reading_test(tmp_path):
    exp = build_experiment({"name": "x", "backbone": {"width": 0.125}, "optim": {"optimizer": "adam"},
                            "method": {"name": "sipl", "embed_dim": 16, "head_hidden": 16,
                                       "downstream": {"hidden": 16}},
                            "evaluation": {"targets": [{"key": "dtd", "data": {"name": "dtd-kit", "split": "train"},
                                                        "val_split": "val"}]}})
    spec = exp.cells[0].spec
    torch.set_num_threads(1)
    monitor = SiplMonitor(spec, spec.evaluation.targets[0], epochs=2, cache_dir=tmp_path)
    assert monitor.spec.method.downstream.epochs == 2 and spec.method.downstream.epochs == 30
    out = monitor(build_encoder(spec))
    assert 0 <= out["val_top1"] <= 100
    assert list(tmp_path.glob("dtd-kit-val-*")) and not list(tmp_path.glob("dtd-kit-test-*"))


def test_evaluation_reads_a_target_too_large_to_decode_batch_by_batch(tmp_path, monkeypatch):
    """data.loader auto with a budget the target exceeds: SIPL's downstream evaluation reads the
    splits as LazyImages (encoded once) and scores exactly what it scores on decoded splits."""
    import workloads.sipl.cell as sipl_cell
    from workloads.data.lazy import LazyImages
    exp = build_experiment({"name": "x", "backbone": {"width": 0.125}, "optim": {"optimizer": "adam"},
                            "method": {"name": "sipl", "embed_dim": 16, "head_hidden": 16,
                                       "downstream": {"hidden": 16, "epochs": 2}},
                            "evaluation": {"targets": [{"key": "dtd", "data": {"name": "dtd-kit", "split": "train"},
                                                        "val_split": "val", "test_split": "test"}]}})
    spec = exp.cells[0].spec
    target = spec.evaluation.targets[0]
    torch.set_num_threads(1)
    state = build_encoder(spec).state_dict()
    seen = []
    real = sipl_cell.target_splits
    monkeypatch.setattr(sipl_cell, "target_splits", lambda *a, **kw: seen.append(real(*a, **kw)) or seen[-1])
    dense = evaluate_sipl(spec, target, state, cache_dir=None)["metrics"]
    tiny = replace(spec, data=replace(spec.data, loader="auto", memory_budget_gb=1e-6))
    lazy = evaluate_sipl(tiny, target, state, cache_dir=None)["metrics"]
    assert not isinstance(seen[0].train[0], LazyImages)
    assert all(isinstance(x, LazyImages) for x, _ in (seen[1].train, seen[1].val, seen[1].test))
    assert lazy == dense and "mlp/dtd/top1" in lazy
