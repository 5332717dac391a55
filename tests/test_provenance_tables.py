"""Tables that never mix silently, built from synthetic MLflow runs (no training): a row whose
seeds were made by another configuration, profile, code, lock or data is marked in every format
with its groups listed; --strict refuses it; a clean multi-seed row, more seeds or re-ordered
rows are not a mix; --profile picks whose cells are shown."""
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from orchestrator import provenance as prov
from orchestrator import tracking
from orchestrator.cli import app
from results import MixError, build_tables

TARGETS = '[["cifar10", "CIFAR-10"]]'
CLEAN = {prov.TAG_CONFIG: "cfgA", prov.TAG_PROFILE: "quick", prov.TAG_PACKAGE: "code1", prov.TAG_COMMIT: "c" * 40,
         prov.TAG_DIRTY: "false", prov.TAG_LOCK: "lock1", prov.TAG_DATA: "data1"}


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = MlflowClient(uri)
    exp_id = c.create_experiment("mix", artifact_location=(tmp_path / "a").as_uri())
    parent = c.create_run(exp_id, tags={tracking.TAG_ROLE: "experiment", prov.TAG_PROFILE: "quick"})
    c.set_terminated(parent.info.run_id, "FINISHED")
    n = iter(range(1000))

    def cell(row, seed, top1, index=0, **changes):
        tags = {**CLEAN, **changes, tracking.TAG_ROLE: "cell", tracking.TAG_ROW: row, tracking.TAG_SEED: seed,
                tracking.TAG_CELL: f"{row}-{seed}-{next(n)}", tracking.TAG_TARGETS: TARGETS,
                tracking.TAG_ROW_INDEX: index, tracking.TAG_PARENT: parent.info.run_id}
        run = c.create_run(exp_id, tags={k: str(v) for k, v in tags.items()})
        tracking.log_metrics(c, run.info.run_id, {"linear/cifar10/top1": top1})
        tracking.log_params(c, run.info.run_id, {"machine.train.cpu_capability": "AVX2"})
        c.set_terminated(run.info.run_id, "FINISHED")
        return run.info.run_id
    return uri, c, exp_id, cell


@pytest.mark.parametrize("field,tag,value", [
    ("config", prov.TAG_CONFIG, "cfgB"),        # an edited setting reran one seed
    ("code", prov.TAG_PACKAGE, "code2"),        # a seed from a tree with uncommitted changes
    ("lock", prov.TAG_LOCK, "lock2"),           # another install
    ("data", prov.TAG_DATA, "data2"),           # another copy of the dataset
])
def test_a_row_mixing_seeds_made_differently_is_marked_and_strict_refuses_it(store, tmp_path, field, tag, value):
    uri, _, _, cell = store
    cell("base", 0, 40.0)
    cell("base", 1, 42.0)
    cell("odd", 0, 50.0, index=1)
    cell("odd", 1, 52.0, index=1, **{tag: value, prov.TAG_DIRTY: "true" if field == "code" else "false"})
    table = build_tables("mix", uri)["mix"]
    md = table.markdown()
    assert "| odd †" in md and "| base " in md and "| base †" not in md
    assert f"odd † differs in {field}:" in md
    assert "group 1: seed 0" in md and "group 2: seed 1" in md
    if field == "code":
        assert "+ uncommitted changes" in md
    paths = table.save(tmp_path / "tables", "mix")
    csv = paths["csv"].read_text().splitlines()
    assert csv[0].endswith(",Provenance")
    assert any(line.startswith("odd,") and line.endswith(f"mixed: {field}") for line in csv)
    assert any(line.startswith("base,") and line.endswith(",") for line in csv)
    tex = paths["tex"].read_text()
    assert r"odd $^\dagger$" in tex and r"\par\footnotesize $^\dagger$ Mixed provenance" in tex
    with pytest.raises(MixError, match=f"row 'odd' mixes cells of different {field}"):
        build_tables("mix", uri, strict=True)


def test_a_clean_row_more_seeds_and_a_reordered_grid_are_not_a_mix(store):
    uri, c, _, cell = store
    cell("base", 0, 40.0, index=1)
    cell("base", 1, 42.0, index=0)   # the YAML's rows re-ordered since seed 0
    cell("base", 2, 44.0, index=0)   # a seed added later, same everything
    table = build_tables("mix", uri, strict=True)["mix"]
    md = table.markdown()
    assert "†" not in md and "Mixed" not in md and "| 3 " in md
    assert md.splitlines()[-1] == f"Provenance: profile quick; commit {'c' * 10}; lock lock1; machines CPU AVX2"


def test_tables_show_one_profile_the_newest_invocations_by_default(store, tmp_path):
    uri, c, exp_id, cell = store
    cell("base", 0, 40.0)
    cell("base", 1, 42.0)
    cell("base", 0, 70.0, **{prov.TAG_PROFILE: "cpu", prov.TAG_CONFIG: "cfgCPU"})
    # the quick profile's invocation is the newest: its cells, not the cpu one, are shown
    newest = c.create_run(exp_id, tags={tracking.TAG_ROLE: "experiment", prov.TAG_PROFILE: "quick"})
    c.set_terminated(newest.info.run_id, "FINISHED")
    md = build_tables("mix", uri)["mix"].markdown()
    assert "41.00 ± 1.41" in md and "70.00" not in md and "†" not in md
    md = build_tables("mix", uri, profile="cpu")["mix"].markdown()
    assert "70.00" in md and "41.00" not in md and "profile cpu" in md
    runner = CliRunner()
    res = runner.invoke(app, ["tables", "mix", "--tracking-uri", uri, "--run-dir", str(tmp_path), "--profile", "paper"])
    assert res.exit_code == 2 and "no cells of profile 'paper'" in res.output and "cpu, quick" in res.output


def test_cli_strict_exits_1_naming_the_row_and_field(store, tmp_path):
    uri, _, _, cell = store
    cell("base", 0, 40.0)
    cell("base", 1, 42.0, **{prov.TAG_CONFIG: "cfgB"})
    runner = CliRunner()
    res = runner.invoke(app, ["tables", "mix", "--tracking-uri", uri, "--run-dir", str(tmp_path)])
    assert res.exit_code == 0 and "| base †" in res.output
    res = runner.invoke(app, ["tables", "mix", "--tracking-uri", uri, "--run-dir", str(tmp_path), "--strict"])
    assert res.exit_code == 1
    assert "row 'base' mixes cells of different config" in " ".join(res.output.split())


def test_cells_from_before_provenance_are_grouped_by_their_params(store):
    """Runs logged before sassl tagged provenance: their config is told apart by their params."""
    uri, c, exp_id, _ = store
    for seed, lr in ((0, "0.1"), (1, "0.01")):
        run = c.create_run(exp_id, tags={tracking.TAG_ROLE: "cell", tracking.TAG_ROW: "old", tracking.TAG_SEED: str(seed),
                                         tracking.TAG_CELL: f"old{seed}", tracking.TAG_TARGETS: TARGETS,
                                         prov.TAG_PROFILE: "quick"})
        tracking.log_params(c, run.info.run_id, {"optim.lr": lr, "seed": seed})
        tracking.log_metrics(c, run.info.run_id, {"linear/cifar10/top1": 40.0 + seed})
        c.set_terminated(run.info.run_id, "FINISHED")
    md = build_tables("mix", uri)["mix"].markdown()
    assert "old † differs in config:" in md and "commit unrecorded" in md
