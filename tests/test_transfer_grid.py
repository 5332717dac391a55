"""The transfer grid's plan: targets, shared pretraining (DAG dedup), splits, search spaces."""
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from orchestrator.experiment import ConfigError, build_experiment, load_experiment
from orchestrator.input_checks import check_inputs
from orchestrator.search import trial_config
from workloads.data.prepare import target_splits
from workloads.spec import DatasetRef, TargetSpec

ROOT = Path(__file__).resolve().parents[1]
TARGETS = [{"key": "cifar10", "data": {"name": "cifar10-kit", "split": "train"}},
           {"key": "dtd", "label": "DTD-10", "data": {"name": "dtd-kit", "split": "train"}, "val_split": "val"}]


def test_table2_yaml_shares_one_pretraining_per_style_and_seed_across_targets():
    exp = load_experiment(ROOT / "experiments" / "sassl_table2_transfer.yaml")
    rows = list(dict.fromkeys(c.row for c in exp.cells))
    assert rows == ["None (baseline)", "In-batch (CIFAR-10)", "DTD textures", "Monet paintings"]
    assert len(exp.cells) == len(rows) * len(exp.config.seeds)
    assert len({c.pretrain_id for c in exp.cells}) == len(exp.cells)  # one pretraining per (style, seed)
    keys = [t["key"] for t in exp.cells[0].config["evaluation"]["targets"]]
    assert keys == ["cifar10", "cifar10_1pct", "dtd"]  # every backbone is evaluated on every target
    assert exp.cells[0].config["evaluation"]["fine_tune"]["enabled"]
    for profile in ("quick", "cpu", "paper"):
        assert load_experiment(ROOT / "experiments" / "sassl_table2_transfer.yaml", profile).cells


def test_cells_that_differ_only_in_evaluation_share_their_backbone():
    a = build_experiment({"name": "a", "evaluation": {"targets": TARGETS[:1]}}).cells[0]
    b = build_experiment({"name": "b", "evaluation": {"targets": TARGETS, "fine_tune": {"enabled": True}}}).cells[0]
    c = build_experiment({"name": "c", "optim": {"lr": 0.5}, "evaluation": {"targets": TARGETS}}).cells[0]
    assert a.cell_id != b.cell_id and a.pretrain_id == b.pretrain_id
    assert c.pretrain_id != a.pretrain_id


@pytest.mark.parametrize("evaluation, message", [
    ({"targets": []}, "evaluation.targets: needs at least 1 item(s)"),
    ({"targets": [TARGETS[0], TARGETS[0]]}, "evaluation.targets: duplicate target keys ['cifar10']"),
    ({"targets": [{"key": "CIFAR 10"}]}, "evaluation.targets[0].key: string should match pattern"),
    ({"targets": [{**TARGETS[0], "label_fraction": 0}]}, "evaluation.targets[0].label_fraction: must be > 0"),
    ({"fine_tune": {"lrs": [0.1, 0]}}, "evaluation.fine_tune.lrs: every learning rate must be > 0"),
    ({"few_shot": {"shots": [0]}}, "evaluation.few_shot.shots: every k must be >= 1"),
])
def test_bad_evaluation_blocks_name_the_field(evaluation, message):
    with pytest.raises(ConfigError) as e:
        build_experiment({"name": "x", "evaluation": evaluation})
    assert message in str(e.value)


def test_a_target_that_does_not_exist_fails_before_anything_starts(tmp_path):
    exp = build_experiment({"name": "x", "evaluation": {"targets": [
        {"key": "pets", "data": {"name": "imagefolder", "split": "train", "root": str(tmp_path / "nope")}}]}})
    with pytest.raises(ConfigError, match=r"evaluation.targets\[0\] \(pets\).data: .*nope"):
        check_inputs(exp)
    exp = build_experiment({"name": "x", "evaluation": {"targets": [{"key": "t", "data": {"name": "cifar11"}}]}})
    with pytest.raises(ConfigError, match=r"evaluation.targets\[0\] \(t\).data: .*cifar11"):
        check_inputs(exp)


def test_target_splits_carve_val_keep_label_fraction_and_can_skip_test(tmp_path):
    t = TargetSpec(key="c", label="c", data=DatasetRef(name="cifar10-kit", split="train", root=None, download=False),
                   test_split="test", test_data=None, val_split=None, val_fraction=0.1, split_seed=0, label_fraction=1.0,
                   metric=None, ten_crop=False)
    full = target_splits(t, image_size=32, cache_dir=tmp_path)
    assert len(full.train[1]) == 9000 and len(full.val[1]) == 1000 and len(full.test[1]) == 10000
    one = target_splits(replace(t, label_fraction=0.01), image_size=32, cache_dir=tmp_path / "b", with_test=False)
    assert one.test is None
    assert np.bincount(one.train[1].numpy()).tolist() == [9] * 10  # class-balanced 1 % of train
    assert np.bincount(one.val[1].numpy()).tolist() == [1] * 10    # and of val
    assert list((tmp_path / "b").glob("cifar10-kit-train-*"))
    assert not list((tmp_path / "b").glob("cifar10-kit-test-*"))  # with_test=False never decoded the test split
    dtd = target_splits(replace(t, data=replace(t.data, name="dtd-kit"), val_split="val"), image_size=32,
                        cache_dir=tmp_path)
    assert (len(dtd.train[1]), len(dtd.val[1]), len(dtd.test[1])) == (720, 240, 240)


SEARCH = {"name": "s", "augmentation": {"style": {"enabled": True, "source": "in_batch"}}}


@pytest.mark.parametrize("space, message", [
    ({}, "search.space: needs at least 1 item(s)"),
    ({"augmentation.style.p": {"type": "uniform", "low": 0.9, "high": 0.1}}, "is greater than high 0.1 (inverted range)"),
    ({"augmentation.style.p": {"type": "uniform", "low": 0.5, "high": 0.5}}, "the range is empty"),
    ({"augmentation.style.p": {"type": "categorical", "values": []}}, "a categorical space needs at least one value"),
    ({"augmentation.style.p": {"type": "uniform", "low": 0.5, "high": 1.5}},
     "search.space.augmentation.style.p = 1.5: augmentation.style.p: must be <= 1"),
    ({"augmentation.style.pp": {"type": "uniform", "low": 0.1, "high": 0.5}},
     "search.space.augmentation.style.pp: augmentation.style has no field 'pp' (did you mean 'p'?)"),
    ({"optim.lr": {"type": "loguniform", "low": 0, "high": 1}}, "a loguniform space needs low > 0"),
])
def test_bad_search_spaces_are_clear_errors(space, message):
    with pytest.raises(ConfigError) as e:
        build_experiment({**SEARCH, "search": {"space": space}})
    assert message in str(e.value)


def test_search_and_grid_do_not_mix():
    with pytest.raises(ConfigError, match="a search explores one configuration"):
        build_experiment({**SEARCH, "grid": {"variants": [{"name": "a"}]},
                          "search": {"space": {"optim.lr": {"type": "uniform", "low": 0.1, "high": 0.2}}}})


def test_trial_config_sorts_an_inverted_range_and_validates():
    exp = build_experiment({**SEARCH, "search": {"space": {
        "augmentation.style.alpha.0": {"type": "uniform", "low": 0.0, "high": 0.5},
        "augmentation.style.alpha.1": {"type": "uniform", "low": 0.2, "high": 1.0}}}})
    base = {**exp.cells[0].config}
    cfg = trial_config(base, {"augmentation.style.alpha.0": 0.45, "augmentation.style.alpha.1": 0.3})
    assert cfg["augmentation"]["style"]["alpha"] == [0.3, 0.45]
    with pytest.raises(ConfigError, match="must be <= 1"):
        trial_config(base, {"augmentation.style.p": 2.0})


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "experiments").glob("*.yaml") if p.name != "paper_tables.yaml"),
                         ids=lambda p: p.stem)
def test_every_experiment_has_the_three_scale_profiles(path):
    exp = load_experiment(path)
    assert {"quick", "cpu", "paper"} <= set(exp.config.profiles)
    sizes = {p: len(load_experiment(path, p).cells) for p in ("quick", "cpu", "paper")}
    assert all(n >= 1 for n in sizes.values())
    quick, cpu = load_experiment(path, "quick").cells[0].config, load_experiment(path, "cpu").cells[0].config
    assert quick["optim"]["epochs"] < cpu["optim"]["epochs"]
