"""Tables rebuilt from a synthetic MLflow store with known values."""
import pytest
from mlflow.tracking import MlflowClient

from orchestrator import tracking
from results import NoRunsError, build_tables


TARGETS = '[["cifar10", "CIFAR-10"]]'


def _cell(c, exp_id, cell_id, row, seed, status, metrics, error=""):
    tags = {tracking.TAG_ROLE: "cell", tracking.TAG_CELL: cell_id, tracking.TAG_ROW: row, tracking.TAG_SEED: seed,
            tracking.TAG_TARGETS: TARGETS}
    if error:
        tags[tracking.TAG_ERROR] = error
    run = c.create_run(exp_id, tags=tags)
    tracking.log_metrics(c, run.info.run_id, metrics)
    if status != "RUNNING":
        c.set_terminated(run.info.run_id, status)


def test_mean_std_over_seeds_and_unfinished_cells(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = MlflowClient(uri)
    exp_id = c.create_experiment("synthetic", artifact_location=(tmp_path / "a").as_uri())
    m = lambda t1, t5, r: {"linear/cifar10/top1": t1, "linear/cifar10/top5": t5,  # noqa: E731
                           "random_init/linear/cifar10/top1": r, "linear/cifar10/lr": 0.1}
    _cell(c, exp_id, "a0", "baseline", 0, "FINISHED", m(40.0, 80.0, 30.0))
    _cell(c, exp_id, "a1", "baseline", 1, "FINISHED", m(42.0, 84.0, 32.0))
    _cell(c, exp_id, "a1", "baseline", 1, "FAILED", {}, error="older failed attempt")  # superseded
    _cell(c, exp_id, "b0", "stylized", 0, "FINISHED", m(50.0, 90.0, 31.0))
    _cell(c, exp_id, "b1", "stylized", 1, "FAILED", {}, error="loss became nan")
    _cell(c, exp_id, "c0", "running", 0, "RUNNING", {})
    tables = build_tables("synthetic", uri)
    assert list(tables) == ["synthetic"]  # one target, linear only: no transfer, few-shot or search table
    table = tables["synthetic"]
    expected = "\n".join([
        "**synthetic: linear probe on frozen features (mean ± std over seeds)**",
        "",
        "|          | Linear probe top-1 | Linear probe top-5 | Random-init probe top-1 | Seeds | Not finished |",
        "|----------|--------------------|--------------------|-------------------------|-------|--------------|",
        "| baseline | 41.00 ± 1.41       | 82.00 ± 2.83       | 31.00 ± 1.41            | 2     |              |",
        "| stylized | 50.00              | 90.00              | 31.00                   | 1     | 1 failed     |",
        "| running  | –                  | –                  | –                       | 0     | 1 running    |",
        "",
        # runs made before sassl recorded provenance say so (results/provenance.py)
        "Provenance: profile default; commit unrecorded; lock unrecorded; machines unrecorded",
    ])
    assert table.markdown() == expected
    assert table.numeric.loc["baseline", "Linear probe top-1"] == pytest.approx(41.0)
    paths = table.save(tmp_path / "tables", "synthetic")
    assert "41.00 ± 1.41" in paths["csv"].read_text()
    assert r"41.00 $\pm$ 1.41" in paths["tex"].read_text()


def test_missing_experiment_or_runs_is_a_clear_error(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    with pytest.raises(NoRunsError, match="no experiment named 'nope'"):
        build_tables("nope", uri)
    MlflowClient(uri).create_experiment("empty")
    with pytest.raises(NoRunsError, match="has no cell runs yet"):
        build_tables("empty", uri)


def test_throughput_table_compares_each_sassl_row_with_the_default_row_of_its_setup():
    from results.throughput import throughput_table
    setup_a, setup_b = "moco_v2, resnet18 ×0.125, 32 px, batch 64/worker", "moco_v3, vit_tiny ×1, 32 px, batch 64/worker"
    rows = [{"row": "A", "style": False, "setup": setup_a, "augment_images_per_s": 2000.0, "train_images_per_s": 400.0},
            {"row": "A + SASSL", "style": True, "setup": setup_a, "augment_images_per_s": 500.0, "train_images_per_s": 300.0},
            {"row": "B", "style": False, "setup": setup_b, "augment_images_per_s": 1000.0, "train_images_per_s": 100.0},
            {"row": "B + SASSL", "style": True, "setup": setup_b, "augment_images_per_s": 800.0, "train_images_per_s": 90.0},
            {"row": "C + SASSL", "style": True, "setup": "other", "augment_images_per_s": 1.0, "train_images_per_s": 1.0}]
    t = throughput_table(rows, "t9")
    assert t.numeric.loc["A + SASSL", "augment_change_pct"] == pytest.approx(-75.0)
    assert t.numeric.loc["B + SASSL", "train_change_pct"] == pytest.approx(-10.0)
    assert t.frame.loc["B + SASSL", "Relative change"] == "-20.0 %"
    assert t.frame.loc["A", "Relative change"] == "" and t.frame.loc["C + SASSL", "Relative change"] == ""
