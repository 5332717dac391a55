"""Paired seed statistics (results/paired.py) on hand-made numbers, and the tables they join."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from results.paired import (Paired, baseline_map, configured, pairs, paired_interval, paired_table,
                            resolve_mapping)


def _cells(rows: dict[str, dict[int, float | None]], style: dict[str, bool] | None = None) -> pd.DataFrame:
    """rows: label -> {seed: top-1 (None: the cell failed)}, in grid order."""
    recs = []
    for label, seeds in rows.items():
        for seed, v in seeds.items():
            recs.append({"row": label, "seed": seed, "status": "FAILED" if v is None else "FINISHED",
                         "style": (style or {}).get(label), "top1": v})
    return pd.DataFrame(recs)


def test_t_interval_by_hand():
    # d = 1, 2, 3: mean 2, sd 1, n 3; t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3) = 2.484138
    p = paired_interval([1.0, 2.0, 3.0])
    assert (p.mean, p.n) == (2.0, 3)
    assert p.hi - p.mean == pytest.approx(2.484138, abs=1e-6) and p.mean - p.lo == pytest.approx(2.484138, abs=1e-6)
    assert not p.excludes_zero and p.text() == "+2.00 ± 2.48"
    # a consistent gain: d = 1.0, 1.2, 0.8 -> sd 0.2, half 0.4968 -> [0.50, 1.50] excludes 0
    q = paired_interval([1.0, 1.2, 0.8])
    assert q.excludes_zero and q.text() == "+1.00 ± 0.50*"
    assert paired_interval([-1.0, -1.2, -0.8]).text() == "-1.00 ± 0.50*"  # a consistent loss is marked too


def test_few_pairs_nan_and_the_bootstrap():
    assert paired_interval([]).n == 0 and paired_interval([]).text() == "–"
    one = paired_interval([2.5])
    assert one.n == 1 and math.isnan(one.lo) and not one.excludes_zero and one.text() == "+2.50"
    assert paired_interval([1.0, float("nan"), 3.0]).n == 2  # a missing metric is not a pair
    # bootstrap of the mean of (0, 10): resampled means are 0, 5 or 10 with probability 1/4, 1/2, 1/4
    b = paired_interval([0.0, 10.0], method="bootstrap")
    assert (b.mean, b.lo, b.hi) == (5.0, 0.0, 10.0) and not b.excludes_zero
    assert b.text() == "+5.00 ± 5.00"
    skew = paired_interval([0.0, 0.0, 0.0, 9.0], method="bootstrap")
    assert skew.lo == 0.0 and skew.hi > skew.mean and skew.text().startswith("+2.25 [+0.00, ")  # asymmetric
    assert paired_interval([0.0, 0.0, 0.0, 9.0], method="bootstrap") == skew  # seeded: the same table twice
    with pytest.raises(ValueError, match="ci: choose one of"):
        paired_interval([1.0], method="z")


def test_pairs_use_only_seeds_both_rows_finished():
    cells = _cells({"base": {0: 40.0, 1: 42.0, 2: None}, "style": {0: 41.0, 1: 45.0, 2: 50.0, 3: 60.0}})
    d = pairs(cells, "style", "base", "top1")
    assert d.to_dict() == {0: 1.0, 1: 3.0}  # seed 2: the baseline failed; seed 3: the baseline never ran


def test_closest_baseline_above_each_row():
    rows = ["MoCo v2", "MoCo v2 + AugSelf", "MoCo v2 + CASSLE", "SimCLR", "SimCLR + CASSLE", "BT", "BT + CASSLE"]
    m = baseline_map(rows, ["MoCo v2", "SimCLR", "BT"])
    assert m == {"MoCo v2 + AugSelf": "MoCo v2", "MoCo v2 + CASSLE": "MoCo v2", "SimCLR + CASSLE": "SimCLR",
                 "BT + CASSLE": "BT"}
    assert baseline_map(["a", "b", "c"], ["b"]) == {"a": "b", "c": "b"}  # one baseline: every row's, wherever it sits
    assert baseline_map(["a", "b", "c", "d"], ["b", "d"]) == {"a": "b", "c": "b"}
    assert baseline_map(["a", "b"], ["z"]) == {}
    # unset: the single style-off row is every other row's baseline, wherever it sits
    cells = _cells({"in-batch": {0: 1.0}, "none": {0: 1.0}, "dtd": {0: 1.0}},
                   style={"in-batch": True, "none": False, "dtd": True})
    assert resolve_mapping(cells, None) == {"in-batch": "none", "dtd": "none"}
    two_off = _cells({"a": {0: 1.0}, "b": {0: 1.0}}, style={"a": False, "b": False})
    assert resolve_mapping(two_off, None) == {}  # ambiguous: no Δ unless tables.baseline says


def test_paired_table_layout():
    cells = _cells({"base": {0: 40.0, 1: 42.0, 2: 41.0}, "better": {0: 41.0, 1: 43.2, 2: 41.8},
                    "noisy": {0: 44.0, 1: 40.0, 2: None}})
    t = paired_table(cells, {"Top-1": "top1"}, {"better": "base", "noisy": "base"}, "T")
    assert t.frame.loc["better"].tolist() == ["base", "+1.00 ± 0.50*", "3"]
    assert t.frame.loc["noisy"].tolist() == ["base", "+1.00 ± 38.12", "2"]  # (4, -2): sd 4.24, t(0.975, 1) 12.71
    assert t.numeric.loc["noisy", "Δ Top-1"] == pytest.approx(1.0)
    assert "paired by seed" in t.notes[0]


def test_recorded_settings_parse():
    assert configured(None) == (None, "t")
    assert configured(json.dumps({"baseline": "MoCo v2", "ci": "bootstrap"})) == (["MoCo v2"], "bootstrap")
    assert configured(json.dumps({"baseline": ["a", "b"], "ci": "t"})) == (["a", "b"], "t")
    assert configured("not json") == (None, "t")


def test_experiment_tag_cli_override_and_plots(tmp_path):
    """The baselines `sassl run` recorded drive the tables; --baseline overrides; an unknown one fails."""
    from mlflow.tracking import MlflowClient

    from orchestrator import tracking
    from results import BaselineError, build_tables
    from results.plots import build_plots
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = MlflowClient(uri)
    exp_id = c.create_experiment("cassle", artifact_location=(tmp_path / "a").as_uri())
    targets = json.dumps([["cifar10", "CIFAR-10"], ["dtd", "DTD"]])
    values = {"MoCo v2": 40.0, "MoCo v2 + CASSLE": 41.0, "SimCLR": 30.0, "SimCLR + CASSLE": 29.0}
    for i, (row, v) in enumerate(values.items()):
        for seed in (0, 1, 2):
            run = c.create_run(exp_id, tags={tracking.TAG_ROLE: "cell", tracking.TAG_CELL: f"{row}{seed}",
                                             tracking.TAG_ROW: row, tracking.TAG_SEED: str(seed),
                                             tracking.TAG_ROW_INDEX: str(i), tracking.TAG_TARGETS: targets})
            tracking.log_params(c, run.info.run_id, {"augmentation.style.enabled": False})
            tracking.log_metrics(c, run.info.run_id, {"linear/cifar10/top1": v + seed * 0.1 * (i % 2),
                                                      "linear/dtd/top1": v})
            c.set_terminated(run.info.run_id, "FINISHED")
    assert "paired" not in build_tables("cassle", uri)["cassle-transfer"].parts  # four style-off rows: no default
    c.set_experiment_tag(exp_id, tracking.TAG_TABLES, json.dumps({"baseline": ["MoCo v2", "SimCLR"], "ci": "t"}))
    paired = build_tables("cassle", uri)["cassle-transfer"].parts["paired"].frame
    assert paired["Baseline"].to_dict() == {"MoCo v2 + CASSLE": "MoCo v2", "SimCLR + CASSLE": "SimCLR"}
    # d = 1.0, 1.1, 1.2 -> sd 0.1, half 0.248; d = -1 exactly on DTD
    assert paired.loc["MoCo v2 + CASSLE", "Δ Linear · CIFAR-10"] == "+1.10 ± 0.25*"
    assert paired.loc["SimCLR + CASSLE", "Δ Linear · DTD"] == "-1.00 ± 0.00*"
    over = build_tables("cassle", uri, baselines=["MoCo v2"])["cassle-transfer"].parts["paired"].frame
    assert over.loc["SimCLR + CASSLE", "Δ Linear · DTD"] == "-11.00 ± 0.00*"
    with pytest.raises(BaselineError, match="'Moco' is not a row of experiment 'cassle'"):
        build_tables("cassle", uri, baselines=["Moco"])
    plots = build_plots("cassle", uri, tmp_path / "plots")
    assert [p.name for p in plots] == ["cassle-transfer-delta.png"]


def test_tables_baseline_is_validated_against_the_rows():
    from orchestrator.experiment import ConfigError, build_experiment
    raw = {"name": "x", "grid": {"variants": [{"name": "MoCo v2"}, {"name": "MoCo v2 + CASSLE",
                                                                    "set": {"method.aug_mode": "cassle"}}]},
           "tables": {"baseline": "Moco v2"}}
    with pytest.raises(ConfigError, match=r"tables.baseline: 'Moco v2' is not a row of this grid \(did you mean "
                                          r"'MoCo v2'\?\)"):
        build_experiment(raw)
    raw["tables"] = {"baseline": "MoCo v2", "ci": "bootstrap"}
    exp = build_experiment(raw)
    assert exp.config.tables.baselines() == ["MoCo v2"] and exp.config.tables.ci == "bootstrap"
    # not part of any cell's identity: changing how tables compare rows reruns nothing
    assert [c.cell_id for c in exp.cells] == [c.cell_id for c in build_experiment({**raw, "tables": {}}).cells]
    raw["tables"] = {"ci": "z"}
    with pytest.raises(ConfigError, match="tables.ci"):
        build_experiment(raw)


def test_paired_dataclass_is_plain():
    assert Paired(1.0, 0.5, 1.5, 3).excludes_zero and not Paired(1.0, -0.5, 2.5, 3).excludes_zero
    assert np.isnan(paired_interval([]).mean)
