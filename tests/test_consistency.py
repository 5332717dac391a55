"""Contradictory settings (orchestrator/consistency.py): a field written without effect under
another setting is an error or a warning naming both; inherited base settings and fields some
row does use are not reported; a cell at a paper's scale on CPUs is a warning. (The errors' CLI
messages: tests/bad_configs 50-52.)"""
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml

from orchestrator.consistency import RULES
from orchestrator.experiment import ConfigError, build_experiment, load_experiment

ROOT = Path(__file__).resolve().parents[1]
BASE = {"name": "c", "data": {"limit": 64}, "optim": {"epochs": 1, "batch_size": 32},
        "evaluation": {"targets": [{"key": "cifar10"}], "linear_probe": {"epochs": 1, "lrs": [0.1]}}}


def warnings_of(**fields) -> list[str]:
    return build_experiment({**BASE, **fields}).warnings


def test_a_valid_file_has_no_warnings():
    assert warnings_of() == []
    assert warnings_of(augmentation={"style": {"enabled": True, "alpha": [0.2, 0.4]}}) == []


@pytest.mark.parametrize("fields, expected", [
    ({"augmentation": {"style": {"image_size": 64, "p": 0.5}}},
     "augmentation.style.image_size, augmentation.style.p: have no effect: `augmentation.style.enabled` is false"),
    ({"stylizer": {"style_size": 128}}, "stylizer.style_size: has no effect: `augmentation.style.enabled` is false"),
    ({"augmentation": {"style": {"enabled": True, "source": "in_batch", "style_data": {"name": "dtd-kit"}}}},
     "augmentation.style.style_data: has no effect: `augmentation.style.source` is not `external`"),
    ({"augmentation": {"style": {"enabled": True, "shift": 3}}},
     "augmentation.style.shift: has no effect: `augmentation.style.source` is not `in_batch`"),
    ({"method": {"encoder_width": 32}}, "method.encoder_width: has no effect: `method.aug_mode` is not `cassle`"),
    ({"method": {"aug_mode": "cassle", "augself_weight": 2.0}},
     "method.augself_weight: has no effect: `method.aug_mode` is not `augself`"),
    ({"method": {"omega_parts": "cj"}}, "method.omega_parts: has no effect: `method.aug_mode` is `vanilla`"),
    ({"data": {"limit": 64, "loader": "memory", "stream_decode": "ray_data"}},
     "data.stream_decode: has no effect: `data.loader` is `memory`"),
    ({"data": {"limit": 64, "loader": "memory", "memory_budget_gb": 8}},
     "data.memory_budget_gb: has no effect: `data.loader` is not `auto`"),
    ({"evaluation": {**BASE["evaluation"], "fine_tune": {"epochs": 3}}},
     "evaluation.fine_tune.epochs: has no effect: `evaluation.fine_tune.enabled` is false"),
    ({"evaluation": {**BASE["evaluation"], "few_shot": {"episodes": 9}}},
     "evaluation.few_shot.episodes: has no effect: `evaluation.few_shot.shots` is empty"),
    ({"backbone": {"sync_bn": True}}, "backbone.sync_bn: has no effect: `cluster.num_workers` is 1"),
    ({"evaluation": {"targets": [{"key": "dtd", "data": {"name": "dtd-kit"}, "val_split": "val",
                                  "val_fraction": 0.2}]}},
     "evaluation.targets[0] (dtd).val_fraction: has no effect: the target has its own val_split 'val'"),
])
def test_a_field_without_effect_is_a_warning_naming_both_fields(fields, expected):
    warnings = warnings_of(**fields)
    assert len(warnings) == 1 and warnings[0].startswith(expected), warnings


def test_sipl_ignores_the_view_pipeline_and_opl_the_kl_weight():
    sipl = {"method": {"name": "sipl", "variant": "opl", "alpha": 2.0}, "optim": {"optimizer": "adam", "epochs": 1},
            "augmentation": {"view1": {"flip_p": 0.1}}}
    warnings = warnings_of(**sipl)
    assert any(w.startswith("method.alpha: has no effect: `method.variant` is `opl`") for w in warnings), warnings
    # BASE's linear probe too: SIPL scores with its own MLP head
    assert any(w.startswith("augmentation.view1.flip_p, evaluation.linear_probe.epochs, evaluation.linear_probe.lrs: "
                            "have no effect: the method does not read them (SIPL has") for w in warnings), warnings


def test_the_pretrained_stylizer_refuses_training_fields_naming_both():
    with pytest.raises(ConfigError, match=r"stylizer\.steps: has no effect: the stylizer is not trained "
                                          r"\(`stylizer.pretrained` or `stylizer.checkpoint` is set\); set "
                                          r"`stylizer.pretrained: null`"):
        build_experiment({**BASE, "augmentation": {"style": {"enabled": True}}, "stylizer": {"steps": 10}})
    # the same fields train a stylizer when it is not pretrained: nothing to say
    ok = build_experiment({**BASE, "augmentation": {"style": {"enabled": True}},
                           "stylizer": {"pretrained": None, "steps": 10, "image_size": 32}})
    assert ok.warnings == []


def test_a_field_one_row_uses_is_not_reported_and_a_row_only_field_is():
    grid = {"variants": [{"name": "base"}, {"name": "sassl", "set": {"augmentation.style.enabled": True}}]}
    # written at the top, used by the SASSL row: fine
    assert warnings_of(grid=grid, augmentation={"style": {"image_size": 64}}) == []
    # a row that writes a style field but does not turn style on
    grid["variants"][0]["set"] = {"augmentation.style.p": 0.5}
    assert warnings_of(grid=grid) == ["augmentation.style.p: has no effect: `augmentation.style.enabled` is false; "
                                      "turn style on in the rows that should use it (`augmentation.style.enabled: "
                                      "true`), or remove them"]


def test_set_overrides_count_and_inherited_base_fields_do_not(tmp_path):
    base = {**BASE, "name": "base", "augmentation": {"style": {"image_size": 64}},
            "grid": {"variants": [{"name": "sassl", "set": {"augmentation.style.enabled": True}}]}}
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    # a child without any style row inherits the base's style field: not its mistake
    (tmp_path / "child.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "name": "child"}))
    assert load_experiment(tmp_path / "child.yaml").warnings == []
    # but what it writes itself, or what --set says, is checked
    (tmp_path / "own.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "name": "own",
                                                      "augmentation": {"style": {"p": 0.3}}}))
    assert load_experiment(tmp_path / "own.yaml").warnings[0].startswith("augmentation.style.p: has no effect")
    assert load_experiment(tmp_path / "child.yaml", overrides={"method.encoder_depth": 2}).warnings[0].startswith(
        "method.encoder_depth: has no effect")


EXPERIMENT_FILES = sorted(p for p in (ROOT / "experiments").glob("*.yaml") if p.name != "paper_tables.yaml")


def test_every_shipped_experiment_and_profile_is_consistent():
    """Their paper profiles too: at the paper's scale, on GPUs (tests/test_paper_profiles.py checks
    them against the papers)."""
    for path in EXPERIMENT_FILES:
        for profile in (None, "quick", "cpu", "paper"):
            assert load_experiment(path, profile).warnings == [], (path.name, profile)


SCALE = "cluster.gpus_per_worker: 0, but "


@pytest.mark.parametrize("fields, shape", [
    ({"backbone": {"arch": "resnet50"}}, "(resnet50 at 32 px)"),
    ({"data": {"limit": 64, "image_size": 160}}, "(resnet18 at 160 px)"),
    ({"data": {"limit": 64, "image_size": 224}, "backbone": {"arch": "resnet50", "width": 0.25}},
     "(resnet50 at 224 px)"),
])
def test_a_cell_at_a_papers_scale_without_a_gpu_is_a_warning(fields, shape):
    warnings = warnings_of(**fields)
    assert warnings == [f"{SCALE}1 of 1 cell(s) are at a paper's scale {shape} and would train on CPUs; give each "
                        "worker a GPU (`cluster.gpus_per_worker: 1`), or train a smaller backbone on smaller crops "
                        "(e.g. `--profile cpu`)"], warnings
    # with a GPU, or below the scale, nothing to say
    assert warnings_of(**fields, cluster={"gpus_per_worker": 1}) == []
    assert warnings_of(data={"limit": 64, "image_size": 159}) == []


def test_the_scale_warning_counts_the_cells_at_that_scale():
    grid = {"variants": [{"name": "small"}, {"name": "big", "set": {"backbone.arch": "resnet50"}}]}
    warnings = warnings_of(grid=grid, seeds=[0, 1])
    assert len(warnings) == 1 and warnings[0].startswith(f"{SCALE}2 of 4 cell(s) are at a paper's scale (resnet50 "
                                                         "at 32 px)"), warnings


def test_a_paper_profile_on_cpus_warns_and_still_loads():
    """What `sassl rehearse --set cluster.gpus_per_worker=0` sees (tests/test_rehearse_paper.py):
    a warning, printed, not an error."""
    exp = load_experiment(ROOT / "experiments" / "sassl_table1.yaml", "paper",
                          {"cluster.num_workers": 1, "cluster.gpus_per_worker": 0})
    assert exp.cells and [w for w in exp.warnings if w.startswith(SCALE)] == [
        f"{SCALE}10 of 10 cell(s) are at a paper's scale (resnet50 at 224 px) and would train on CPUs; give each "
        "worker a GPU (`cluster.gpus_per_worker: 1`), or train a smaller backbone on smaller crops (e.g. "
        "`--profile cpu`)"]


def test_validate_prints_the_scale_warning_and_still_passes(tmp_path):
    (tmp_path / "big.yaml").write_text(yaml.safe_dump({**BASE, "tracking": {"run_dir": "runs"},
                                                      "backbone": {"arch": "resnet50"}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "orchestrator", "validate", "big.yaml"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert f"warning: {SCALE}1 of 1 cell(s) are at a paper's scale (resnet50 at 32 px)" in " ".join(res.stderr.split())


def _is_field(path: str) -> bool:
    """A dotted path names a schema field (under `method`, of any method)."""
    from pydantic import BaseModel

    from orchestrator.config import ExperimentConfig
    models = [ExperimentConfig]
    for part in path.split("."):
        infos = [m.model_fields[part] for m in models if part in m.model_fields]
        if not infos:
            return False
        models = [a for i in infos for a in (typing.get_args(i.annotation) or (i.annotation,))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
    return True


def test_rules_name_real_fields():
    assert not _is_field("method.no_such_field")
    for rule in RULES:
        assert all(_is_field(f) for f in rule.fields), rule.fields
    assert any(r.error for r in RULES) and any(not r.error for r in RULES)


def test_validate_prints_the_warning_and_still_passes(tmp_path):
    (tmp_path / "w.yaml").write_text(yaml.safe_dump({**BASE, "tracking": {"run_dir": "runs"},
                                                    "method": {"encoder_width": 32}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-m", "orchestrator", "validate", "w.yaml"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "warning: method.encoder_width: has no effect: `method.aug_mode` is not `cassle`" in res.stderr
    assert "valid" in res.stdout


def test_a_protocol_switched_off_is_not_a_slip_but_its_settings_are():
    ev = BASE["evaluation"]
    off = {**ev, "retrieval": {"enabled": False}, "conditioning_check": {"enabled": False}}
    assert warnings_of(evaluation=off) == []  # saying a protocol is off is not a mistake
    settings = {**ev, "corruptions": {"images": 100}}
    assert warnings_of(evaluation=settings) == [
        "evaluation.corruptions.images: has no effect: `evaluation.corruptions.enabled` is false; "
        "set `evaluation.corruptions.enabled: true`"]
    # the L-BFGS grid also serves rotation prediction: not reported while rotation is on
    grid = {**ev, "lbfgs": {"max_iter": 50}}
    assert warnings_of(evaluation=grid) and warnings_of(evaluation={**grid, "rotation": {"enabled": True}}) == []
