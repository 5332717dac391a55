"""Every `paper` profile against the paper table it reproduces (experiments/paper_tables.yaml,
written from the papers): its rows and what makes each one (style source and set, method,
ω, ...), its targets with their dataset, protocols and metrics, the pretraining set, backbone,
crop size, epochs, seeds, and GPUs where the paper trained on accelerators. The profiles are
loaded as the CLI loads them (`load_experiment(path, profile="paper")`); nothing trains.

What the code cannot express yet is listed under a table's `gaps:` and checked to be still
missing, so that closing a gap fails here until the summary says so. The last tests drop a row,
a target or the GPU from a copy of a profile and check that the checks catch it."""
from __future__ import annotations

import functools
import shutil
import typing
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from orchestrator.config import METHOD_NAMES, AugAware, Backbone, models_at
from orchestrator.experiment import Experiment, load_experiment

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
SUMMARY_FILE = "paper_tables.yaml"
SUMMARY = yaml.safe_load((EXPERIMENTS / SUMMARY_FILE).read_text())
TABLES = SUMMARY["tables"]

# what each protocol reports as a target's score (the tables' columns)
PROTOCOL_METRICS = {
    "linear_probe": {"top1", "top5"},
    "fine_tune": {"top1", "top5"},
    "few_shot": {"top1", "top5"},
    "lbfgs": {"top1"},  # and the target's own `metric` (mean per-class accuracy), which the tables report
    "ridge": {"r2"},    # a regression target (300W): ridge regression on frozen features
    "rotation": {"top1"},  # CASSLE's appendix protocols
    "corruptions": {"top1"},
    "retrieval": {"recall_at_1", "recall_at_4", "map_at_r"},
    "mlp_head": {"top1", "best_val_top1"},
    "pretext": {"best_val_top1"},
}
MISSING = object()

Loader = Callable[[str], Experiment]


def table_id(t: dict[str, Any]) -> str:
    return f"{t['paper']}-table{t['table']}"


@functools.lru_cache(maxsize=None)
def load_paper(file: str) -> Experiment:
    return load_experiment(EXPERIMENTS / file, profile="paper")


def get(cfg: dict[str, Any], dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def literal_values(model: type, field: str) -> set[str]:
    return set(typing.get_args(model.model_fields[field].annotation))


def rows_of(exp: Experiment) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for cell in exp.cells:
        out.setdefault(cell.row, []).append(cell.config)
    return out


def gaps(table: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """A table's gaps of one kind: `row`, `target` (absent), `metric` (a present target's score)."""
    out = []
    for g in table.get("gaps") or []:
        if kind == "metric" and "target" in g and "metric" in g:
            out.append(g)
        elif kind == "target" and "target" in g and "metric" not in g:
            out.append(g)
        elif kind == "row" and "row" in g:
            out.append(g)
    return out


# ---------------------------------------------------------------- the checks
def check_setup(table: dict[str, Any], load: Loader) -> None:
    """Pretraining set, backbone, crop size, epochs per row, seeds and GPUs."""
    exp = load(table["file"])
    where = f"{table['file']} --profile paper"
    assert exp.cells, where
    epochs = {r["name"]: r.get("epochs", table["epochs"]) for r in table["rows"] if "in" not in r}
    size_path = table.get("image_size_path", "data.image_size")
    for cell in exp.cells:
        cfg = cell.config
        for k, v in table["pretrain"]["data"].items():
            assert cfg["data"]["pretrain"][k] == v, f"{where}: row {cell.row!r} pretrains on " \
                f"{cfg['data']['pretrain']}, the paper on {table['pretrain']['dataset']} ({table['pretrain']['data']})"
        for k, v in table["backbone"].items():
            assert cfg["backbone"][k] == v, \
                f"{where}: row {cell.row!r}: backbone.{k} {cfg['backbone'][k]!r}, paper {v!r}"
        assert get(cfg, size_path) == table["image_size"], \
            f"{where}: row {cell.row!r}: {size_path} {get(cfg, size_path)!r}, paper {table['image_size']}"
        want = epochs.get(cell.row, table["epochs"])
        if want is not None:
            assert cfg["optim"]["epochs"] == want, \
                f"{where}: row {cell.row!r} trains {cfg['optim']['epochs']} epochs, the paper {want}"
    if table.get("seeds"):
        assert len(exp.config.seeds) >= table["seeds"], \
            f"{where}: {len(exp.config.seeds)} seed(s), the paper reports {table['seeds']} runs"
    if table["accelerators"]:
        assert exp.config.cluster.gpus_per_worker > 0, \
            f"{where}: cluster.gpus_per_worker is 0; the paper trained on accelerators ({table['hardware']})"


def check_rows(table: dict[str, Any], load: Loader) -> None:
    """Every row of the paper's table, in this file or the file whose backbones it reuses, with
    the settings that make it that row; the rows the code cannot run are still absent."""
    for row in table["rows"]:
        file = row.get("in", table["file"])
        rows = rows_of(load(file))
        assert row["name"] in rows, f"{file} --profile paper: no row {row['name']!r} (the paper's " \
            f"{row['paper']!r}); rows: {list(rows)}"
        for cfg in rows[row["name"]]:
            for path, value in (row.get("expect") or {}).items():
                assert get(cfg, path) == value, f"{file} --profile paper: row {row['name']!r}: {path} is " \
                    f"{get(cfg, path)!r}, the paper's {row['paper']!r} has {value!r}"
    own = rows_of(load(table["file"]))
    for gap in gaps(table, "row"):
        assert gap["row"] not in own, f"{table['file']}: row {gap['row']!r} is listed as a gap in {SUMMARY_FILE}"


def check_targets(table: dict[str, Any], load: Loader) -> None:
    """Every target of the paper's table with its dataset, protocols and metrics; the targets the
    code cannot read are still absent."""
    exp = load(table["file"])
    where = f"{table['file']} --profile paper"
    missing = {g["target"] for g in gaps(table, "target")}
    metric_gaps = {(g["target"], g["metric"]) for g in gaps(table, "metric")}
    for cell in exp.cells:
        ev = cell.config["evaluation"]
        method = cell.config["method"]
        by_key = {t["key"]: t for t in ev["targets"]}
        enabled = {
            "linear_probe": method["name"] != "sipl",
            "fine_tune": method["name"] != "sipl" and ev["fine_tune"]["enabled"],
            "few_shot": method["name"] != "sipl" and bool(ev["few_shot"]["shots"]),
            "lbfgs": method["name"] != "sipl" and ev["lbfgs"]["enabled"],
            "ridge": method["name"] != "sipl",  # every regression target gets it (evaluate_target)
            "rotation": ev["rotation"]["enabled"],
            "corruptions": ev["corruptions"]["enabled"],
            "retrieval": ev["retrieval"]["enabled"],
            "mlp_head": method["name"] == "sipl",
            "pretext": method["name"] == "sipl" and method.get("val_fraction", 0) > 0,
        }
        for target in table["targets"]:
            key = target["key"]
            if key in missing:
                assert key not in by_key, f"{where}: target {key!r} is listed as a gap in {SUMMARY_FILE}"
                continue
            for protocol in target["protocols"]:
                assert enabled[protocol], f"{where}: row {cell.row!r}: {protocol} is off; the paper scores " \
                    f"{target['dataset']} by it"
            if target["protocols"] != ["pretext"]:
                assert key in by_key, f"{where}: no target {key!r} ({target['dataset']}); targets: {list(by_key)}"
                t = by_key[key]
                for k, v in (target.get("data") or {}).items():
                    assert t["data"][k] == v, f"{where}: target {key!r}: data.{k} {t['data'][k]!r}, expected {v!r}"
                if "label_fraction" in target:
                    assert t["label_fraction"] == target["label_fraction"], f"{where}: target {key!r}: label_fraction"
            if "shots" in target:
                assert set(target["shots"]) <= set(ev["few_shot"]["shots"]), \
                    f"{where}: few_shot.shots {ev['few_shot']['shots']}, the paper {target['shots']}"
            reported = set().union(*(PROTOCOL_METRICS[p] for p in target["protocols"]))
            if target["protocols"] != ["pretext"] and by_key[key].get("metric"):
                reported = reported | {by_key[key]["metric"]}
                assert by_key[key]["metric"] in target["metrics"], f"{where}: target {key!r} reports " \
                    f"{by_key[key]['metric']}, the paper {target['metrics']}"
            for metric in target["metrics"]:
                if (key, metric) in metric_gaps:
                    continue
                assert metric in reported, f"{where}: target {key!r}: the paper reports {metric}, which none of " \
                    f"{target['protocols']} reports; list it under gaps in {SUMMARY_FILE}"


CHECKS = (check_setup, check_rows, check_targets)


# ---------------------------------------------------------------- the tests
def test_every_experiment_file_is_a_table_or_says_why_not():
    tables = [t["file"] for t in TABLES]
    others = set(SUMMARY["other_files"])
    files = {p.name for p in EXPERIMENTS.glob("*.yaml")} - {SUMMARY_FILE}
    assert not set(tables) & others
    assert files == set(tables) | others, f"classify in {SUMMARY_FILE}: {sorted(files ^ (set(tables) | others))}"


def test_the_summary_says_only_what_the_checks_read():
    """A misspelt key would silently check nothing."""
    table_keys = {"paper", "table", "title", "file", "pretrain", "backbone", "image_size", "image_size_path",
                  "epochs", "epochs_source", "seeds", "accelerators", "hardware", "rows", "targets", "gaps", "notes"}
    for t in TABLES:
        assert set(t) <= table_keys and {"file", "pretrain", "rows", "targets", "accelerators"} <= set(t), table_id(t)
        assert isinstance(t["accelerators"], bool), table_id(t)
        for r in t["rows"]:
            assert set(r) <= {"name", "paper", "expect", "in", "epochs"} and {"name", "paper"} <= set(r), r
        for target in t["targets"]:
            assert set(target) <= {"key", "dataset", "data", "protocols", "metrics", "label_fraction", "shots"}, target
            assert set(target["protocols"]) <= set(PROTOCOL_METRICS) and target["protocols"], target
        keys = {target["key"] for target in t["targets"]}
        for g in t.get("gaps") or []:
            assert set(g) <= {"row", "target", "metric", "absent", "what", "why"} and "why" in g, g
            assert g.get("target", next(iter(keys))) in keys, g
            if "metric" in g:
                assert g["metric"] in next(x for x in t["targets"] if x["key"] == g["target"])["metrics"], g


@pytest.mark.parametrize("table", TABLES, ids=table_id)
@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_the_paper_profile_matches_the_paper(table, check):
    check(table, load_paper)


@pytest.mark.parametrize("table", TABLES, ids=table_id)
def test_a_paper_profile_warns_of_nothing(table):
    """At the paper's scale on GPUs: no contradictory settings and no CPU-at-scale warning."""
    assert load_paper(table["file"]).warnings == []


KNOWN_GAPS = [(t, g) for t in TABLES for g in t.get("gaps") or [] if g.get("absent")]
GAP_IDS = [f"{table_id(t)}-{g.get('row') or g.get('target') or g['what'][:30]}" for t, g in KNOWN_GAPS]


@pytest.mark.parametrize("table, gap", KNOWN_GAPS, ids=GAP_IDS)
def test_a_known_gap_is_still_missing(table, gap):
    """What closing the gap would add does not exist yet; when it does, update paper_tables.yaml
    (and the profile)."""
    from workloads.data.registry import DATASETS

    absent = gap["absent"]
    hint = f"{table_id(table)}: {gap}; it is listed as a gap in {SUMMARY_FILE}: update the profile and the summary"
    if "method" in absent:
        assert absent["method"] not in METHOD_NAMES, hint
    if "arch" in absent:
        assert absent["arch"] not in literal_values(Backbone, "arch"), hint
    if "aug_mode" in absent:
        assert absent["aug_mode"] not in literal_values(AugAware, "aug_mode"), hint
    if "dataset" in absent:
        assert absent["dataset"] not in DATASETS, hint
    if "field" in absent:
        *section, name = absent["field"].split(".")
        models = models_at(section)
        assert models, f"{absent['field']}: {'.'.join(section)} names no section of the schema"
        assert all(name not in m.model_fields for m in models), hint
    assert set(absent) <= {"method", "arch", "aug_mode", "dataset", "field"}, absent


def test_cassle_table4_default_row_reuses_table2s_cassle_backbone():
    """The two CASSLE tables pretrain MoCo v2 + CASSLE alike: one backbone serves both."""
    t2 = {c.row: c.pretrain_id for c in load_paper("cassle_table2.yaml").cells}
    t4 = {c.row: c.pretrain_id for c in load_paper("cassle_table4_ablation.yaml").cells}
    assert t4["ω = all, concat (default)"] == t2["MoCo v2 + CASSLE"]


# ---------------------------------------------------------------- the checks catch a dropped row
def _table(file: str) -> dict[str, Any]:
    return next(t for t in TABLES if t["file"] == file)


def _edited_copy(tmp_path: Path, file: str, edit: Callable[[dict[str, Any]], None]) -> Loader:
    """Every experiment file copied (bases resolve), ``file`` rewritten after ``edit``."""
    for p in EXPERIMENTS.glob("*.yaml"):
        shutil.copy(p, tmp_path / p.name)
    raw = yaml.safe_load((tmp_path / file).read_text())
    edit(raw)
    (tmp_path / file).write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
    return lambda f: load_experiment(tmp_path / f, profile="paper")


def _drop(items: list[dict[str, Any]], field: str, value: str) -> None:
    index = next(i for i, item in enumerate(items) if item[field] == value)
    del items[index]


@pytest.mark.parametrize("file, edit, check, message", [
    ("sassl_table2_transfer.yaml",
     lambda raw: _drop(raw["profiles"]["paper"]["evaluation.targets"], "key", "retinopathy"),
     check_targets, "no target 'retinopathy'"),
    ("sassl_table2_transfer.yaml", lambda raw: _drop(raw["profiles"]["paper"]["grid.variants"], "name", "Retinopathy"),
     check_rows, "no row 'Retinopathy'"),
    ("sassl_table3_ablation.yaml", lambda raw: _drop(raw["grid"]["variants"], "name", "In-batch style + interpolation"),
     check_rows, "no row 'In-batch style \\+ interpolation'"),
    ("cassle_table2.yaml", lambda raw: _drop(raw["profiles"]["paper"]["evaluation.targets"], "key", "food"),
     check_targets, "no target 'food'"),
    ("cassle_table2.yaml", lambda raw: raw["profiles"]["paper"].pop("data.pretrain"),
     check_setup, "pretrains on .*ImageNet-100"),
    ("cassle_table2.yaml", lambda raw: raw["profiles"]["paper"].update({"evaluation.lbfgs.enabled": False}),
     check_targets, "lbfgs is off"),
    ("sipl_table4.yaml", lambda raw: raw["profiles"]["paper"].pop("cluster.gpus_per_worker"),
     check_setup, "gpus_per_worker is 0"),
    ("sassl_table1.yaml", lambda raw: raw["profiles"]["paper"].pop("optim.epochs"),
     check_setup, "trains 300 epochs, the paper 1000"),
])
def test_a_profile_that_drops_part_of_its_table_fails(tmp_path, file, edit, check, message):
    (tmp_path / "copy").mkdir()
    (tmp_path / "edited").mkdir()
    check(_table(file), _edited_copy(tmp_path / "copy", file, lambda raw: None))  # a plain copy passes
    with pytest.raises(AssertionError, match=message):
        check(_table(file), _edited_copy(tmp_path / "edited", file, edit))
