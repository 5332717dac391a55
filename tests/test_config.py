"""Experiment schema, profiles, overrides and grid expansion."""
from pathlib import Path

import pytest
import yaml

from orchestrator.experiment import ConfigError, build_experiment, cell_hash, flatten, load_experiment

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_is_valid_and_expands_to_one_cell_per_variant_and_seed():
    exp = load_experiment(ROOT / "experiments" / "quickstart.yaml")
    assert exp.name == "quickstart"
    assert len(exp.config.seeds) >= 2
    assert [c.seed for c in exp.cells] == exp.config.seeds * len(exp.config.grid.variants)
    assert [c.config["augmentation"]["style"]["enabled"] for c in exp.cells].count(True) == len(exp.config.seeds)
    assert len({c.cell_id for c in exp.cells}) == len(exp.cells)
    assert all(c.config["method"]["name"] == "moco_v2" for c in exp.cells)


def test_paper_profile_switches_scale():
    exp = load_experiment(ROOT / "experiments" / "quickstart.yaml", profile="paper")
    cfg = exp.cells[0].config
    assert cfg["backbone"]["arch"] == "resnet50" and cfg["data"]["image_size"] == 224
    assert cfg["optim"]["optimizer"] == "lars"


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "experiments").glob("*.yaml") if p.name != "paper_tables.yaml"),
                         ids=lambda p: p.name)
def test_paper_profiles_stream_packed_data(path):
    """ImageNet-size data never decoded whole into a worker: every paper profile pretrains on
    packed shards with loader: stream (SIPL's pretext too), and an ImageNet target is packed too
    (its probe splits are then read batch by batch)."""
    exp = load_experiment(path, profile="paper")
    assert exp.profile == "paper"
    for cell in exp.cells:
        cfg = cell.config
        assert cfg["data"]["loader"] == "stream" and cfg["data"]["pretrain"]["name"] == "packed", cell.row
        # a table pretrains on the whole split (a search's trials may rank settings on a subset)
        assert cfg["data"]["limit"] is None or exp.config.search is not None, cell.row
        for t in cfg["evaluation"]["targets"]:
            assert not t["key"].startswith("imagenet") or t["data"]["name"] == "packed", (cell.row, t["key"])


@pytest.mark.parametrize("profile", [None, "cpu", "paper"])
def test_table5_sassl_rows_stylize_as_table1_does(profile):
    """SimCLR/BYOL + SASSL (table 5) differ from MoCo v2 + SASSL (table 1) in the method only: the
    same style set (Painter by Numbers in the paper profile), stylizer and style settings."""
    def style(name, row):
        exp = load_experiment(ROOT / "experiments" / name, profile=profile)
        cfg = next(c.config for c in exp.cells if c.row == row)
        return cfg["augmentation"]["style"], cfg["stylizer"]

    table1 = style("sassl_table1.yaml", "MoCo v2 + SASSL (external paintings)")
    for row in ("SimCLR + SASSL", "BYOL + SASSL"):
        assert style("sassl_table5_methods.yaml", row) == table1, row
    if profile == "paper":
        assert table1[0]["style_data"]["name"] == "stylefolder"


@pytest.mark.parametrize("profile", [None, "cpu", "paper"])
def test_table6_evaluates_table1s_backbones(profile):
    """Few-shot (table 6) is table 1's two rows evaluated again: the same rows and pretraining
    hashes, so a store that ran table 1 trains nothing for it (a base's grid is not inherited)."""
    def rows(name):
        exp = load_experiment(ROOT / "experiments" / name, profile=profile)
        return sorted((c.row, c.seed, c.pretrain_id) for c in exp.cells)

    assert rows("sassl_table6_fewshot.yaml") == rows("sassl_table1.yaml")


def test_the_style_search_stylizes_with_painter_by_numbers_in_the_paper_profile():
    exp = load_experiment(ROOT / "experiments" / "sassl_search_style.yaml", profile="paper")
    assert exp.cells[0].config["augmentation"]["style"]["style_data"]["name"] == "stylefolder"


def test_grid_expands_variants_axes_and_seeds():
    exp = build_experiment({"name": "g", "seeds": [0, 1, 2], "grid": {
        "variants": [{"name": "a"}, {"name": "b", "set": {"method.temperature": 0.5}}],
        "axes": {"optim.lr": [0.1, 0.2]}}})
    assert len(exp.cells) == 2 * 2 * 3
    rows = {c.row for c in exp.cells}
    assert rows == {"a, optim.lr=0.1", "a, optim.lr=0.2", "b, optim.lr=0.1", "b, optim.lr=0.2"}
    b = [c for c in exp.cells if c.row.startswith("b")]
    assert all(c.config["method"]["temperature"] == 0.5 for c in b)
    assert {c.config["optim"]["lr"] for c in exp.cells} == {0.1, 0.2}
    # each row's position in the YAML (seeds share it): the tables' row order
    assert {(c.row, c.row_index) for c in exp.cells} == {
        ("a, optim.lr=0.1", 0), ("a, optim.lr=0.2", 1), ("b, optim.lr=0.1", 2), ("b, optim.lr=0.2", 3)}


def test_cell_identity_is_a_stable_hash_of_the_resolved_config():
    a = build_experiment({"name": "x"}).cells[0]
    b = build_experiment({"name": "renamed", "description": "other"}).cells[0]
    c = build_experiment({"name": "x", "optim": {"lr": 0.5}}).cells[0]
    assert a.cell_id == b.cell_id == cell_hash(a.config)
    assert a.cell_id != c.cell_id


def test_flatten_gives_dotted_params():
    flat = flatten(build_experiment({"name": "x"}).cells[0].config)
    assert flat["method.temperature"] == 0.1 and flat["augmentation.view2.solarize_p"] == 0.2


@pytest.mark.parametrize("raw, message", [
    ({"name": "x", "method": {"temperature": 0}}, "method.temperature: must be > 0"),
    ({"name": "x", "method": {"temperatur": 0.1}}, "method.temperatur: unknown field (did you mean 'temperature'?)"),
    ({"name": "x", "optim": {"epochs": "many"}}, "optim.epochs: input should be a valid integer"),
    ({"name": "x", "augmentation": {"view1": {"flip_p": 1.5}}}, "augmentation.view1.flip_p: must be <= 1"),
    ({"name": "x", "augmentation": {"view1": {"crop_scale": [0.9, 0.2]}}},
     "augmentation.view1.crop_scale: low 0.9 is greater than high 0.2"),
    ({"name": "x", "method": {"name": "simsiam"}}, "method.name: unknown method 'simsiam'; choose one of moco_v2, moco_v3, simclr, byol, barlow_twins, sipl"),
    ({"name": "x", "backbone": {"arch": "vgg"}}, "backbone.arch: input should be 'resnet18', 'resnet50', 'vit_tiny', 'vit_small' or 'vit_base'"),
    ({"name": "bad name!"}, "name: string should match pattern"),
    ({"name": "x", "seeds": []}, "seeds: needs at least 1 item"),
    ({"name": "x", "seeds": [1, 1]}, "seeds: duplicate seeds"),
    ({"name": "x", "grid": {"axes": {"optim.lrr": [0.1]}}}, "grid.axes.optim.lrr: optim has no field 'lrr' (did you mean 'lr'?)"),
    ({"name": "x", "grid": {"axes": {"optim.lr": [-1]}}}, "optim.lr: must be > 0"),
    ({"name": "x", "grid": {"axes": {"optim.lr": []}}}, "grid.axes.optim.lr: an axis needs at least one value"),
    ({"name": "x", "grid": {"variants": [{"name": "a"}, {"name": "b"}]}}, "resolve to the same configuration"),
    ({"name": "x", "cluster": {"num_workers": 3}}, "optim.batch_size: 256 is not divisible by cluster.num_workers 3"),
    ({"name": "x", "evaluation": {"linear_probe": {"lrs": [0.1, -1]}}}, "evaluation.linear_probe.lrs: every learning rate must be > 0"),
    ({"name": "x", "augmentation": {"style": {"p": 1.2}}}, "augmentation.style.p: must be <= 1"),
    ({"name": "x", "augmentation": {"style": {"alpha": [0.2, 1.5]}}}, "augmentation.style.alpha: must lie in [0, 1]"),
    ({"name": "x", "augmentation": {"style": {"beta": [0.3, 0.1]}}}, "augmentation.style.beta: low 0.3 is greater than high 0.1"),
    ({"name": "x", "augmentation": {"style": {"stylized_layers": 5}}}, "augmentation.style.stylized_layers: input should be 4, 8, 10 or 13"),
    ({"name": "x", "augmentation": {"style": {"source": "pbn"}}}, "augmentation.style.source: input should be"),
    ({"name": "x", "stylizer": {"width": 0}}, "stylizer.width: must be > 0"),
])
def test_bad_configs_name_the_field(raw, message):
    with pytest.raises(ConfigError) as e:
        build_experiment(raw)
    assert message in str(e.value)


def test_unknown_profile_and_bad_override():
    with pytest.raises(ConfigError, match="--profile nope: unknown profile"):
        build_experiment({"name": "x"}, profile="nope")
    with pytest.raises(ConfigError, match=r"--set.optim.nope: optim has no field 'nope'"):
        build_experiment({"name": "x"}, overrides={"optim.nope": 1})


def test_malformed_and_non_mapping_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_experiment(bad)
    bad.write_text(yaml.safe_dump([1, 2]))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_experiment(bad)
    with pytest.raises(ConfigError, match="no such experiment file"):
        load_experiment(tmp_path / "missing.yaml")


def test_stylizer_section_is_part_of_identity_only_for_style_cells():
    base = build_experiment({"name": "x"}).cells[0]
    other_stylizer = build_experiment({"name": "x", "stylizer": {"style_size": 128}}).cells[0]
    assert base.cell_id == other_stylizer.cell_id and "stylizer" not in base.config
    on = {"augmentation": {"style": {"enabled": True}}}
    a = build_experiment({"name": "x", **on}).cells[0]
    b = build_experiment({"name": "x", **on, "stylizer": {"style_size": 128}}).cells[0]
    assert a.cell_id != b.cell_id and b.config["stylizer"]["style_size"] == 128


def test_base_file_is_deep_merged_and_its_grid_replaced(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({
        "name": "base", "optim": {"lr": 0.2, "epochs": 3}, "grid": {"variants": [{"name": "v"}]}}))
    (tmp_path / "child.yaml").write_text(yaml.safe_dump({"base": "base.yaml", "name": "child", "optim": {"epochs": 5}}))
    exp = load_experiment(tmp_path / "child.yaml")
    assert exp.name == "child" and exp.cells[0].config["optim"] == {**exp.cells[0].config["optim"], "lr": 0.2, "epochs": 5}
    assert exp.cells[0].row == "child"  # the base's variants are not inherited
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump({"base": "loop.yaml", "name": "x"}))
    with pytest.raises(ConfigError, match="cycle"):
        load_experiment(tmp_path / "loop.yaml")


def test_worker_layouts_nccl_refuses_or_that_waste_gpus_are_refused():
    from orchestrator.experiment import ConfigError, build_experiment
    with pytest.raises(ConfigError, match=r"cluster.gpus_per_worker: 2 GPUs, but a worker trains on one"):
        build_experiment({"name": "g", "cluster": {"gpus_per_worker": 2}})
    with pytest.raises(ConfigError, match=r"cluster.gpus_per_worker: 0.25 with num_workers 4: .*NCCL refuses"):
        build_experiment({"name": "g", "cluster": {"num_workers": 4, "gpus_per_worker": 0.25}})
    for ok in ({"gpus_per_worker": 0.5}, {"num_workers": 4, "gpus_per_worker": 1}, {"num_workers": 2}):
        assert build_experiment({"name": "g", "cluster": ok}).config.cluster.gpus_per_worker == ok.get("gpus_per_worker", 0)
