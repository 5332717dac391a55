"""The transfer grid and a search through the CLI, real Ray (Train inside Tune), Optuna and
MLflow, at toy scale: every target and kind measured, backbones shared, tables from MLflow,
search trials as child runs, the best configuration re-run with seeds, test split never read.
Everything is logged through an MLflow server (`sassl ui`), as on a cluster: tags, params,
metrics, artifacts, the stylizer, the search's trials and `--from-search` all go over HTTP."""
import subprocess
import sys

import pytest
import yaml
from mlflow.tracking import MlflowClient

from two_node import mlflow_server

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("shared_ray")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The tracking URI of one MLflow server for this module's experiments."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri

TINY = {
    "data": {"image_size": 32, "limit": 256},
    "backbone": {"width": 0.125},
    "method": {"proj_hidden_dim": 64, "proj_dim": 32, "pred_hidden_dim": 64},
    "optim": {"epochs": 1, "batch_size": 128},
    "seeds": [0],
    "evaluation": {"linear_probe": {"lrs": [0.1], "epochs": 2, "random_init_control": False}},
}


def sassl(*args, cwd):
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def write(tmp_path, name, cfg, uri):
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "tracking": {"run_dir": str(tmp_path / "runs"), "uri": uri},
                                    **TINY, **cfg}))
    return path


def test_transfer_grid_end_to_end_with_shared_backbones(tmp_path, server):
    targets = [{"key": "cifar10", "label": "CIFAR-10", "data": {"name": "cifar10-kit", "split": "train"},
                "val_fraction": 0.05},
               {"key": "dtd", "label": "DTD-10", "data": {"name": "dtd-kit", "split": "train"}, "val_split": "val"}]
    evaluation = {**TINY["evaluation"], "targets": targets, "fine_tune": {"enabled": True, "lrs": [0.05], "epochs": 1},
                  "few_shot": {"shots": [1, 5], "episodes": 2}}
    grid = {"variants": [{"name": "None (baseline)"},
                         {"name": "In-batch", "set": {"augmentation.style.enabled": True,
                                                      "augmentation.style.source": "noise"}}]}
    stylizer = {"pretrained": None, "loss_network": "efficientnet-lite0", "steps": 2, "batch_size": 4}
    path = write(tmp_path, "grid", {"evaluation": evaluation, "grid": grid, "stylizer": stylizer}, server)
    res = sassl("run", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "Linear · CIFAR-10" in out and "Fine-tune · DTD-10" in out and "1-shot top-1 · DTD-10" in out
    assert "grid-transfer-delta.png" in out

    c = MlflowClient(server)
    exp = c.get_experiment_by_name("grid")
    cells = c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'cell'")
    assert len(cells) == 2 and all(r.info.status == "FINISHED" for r in cells)
    for r in cells:
        for key in ("cifar10", "dtd"):
            for kind in ("linear", "finetune", "fewshot1", "fewshot5"):
                assert 0 <= r.data.metrics[f"{kind}/{key}/top1"] <= 100
    parent = c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'experiment'")[0]
    assert "plots" in {a.path for a in c.list_artifacts(parent.info.run_id)}

    # the same pretraining evaluated on one more target: backbones come from the first run
    more = targets + [{"key": "cifar10_1pct", "data": {"name": "cifar10-kit", "split": "train"},
                       "label_fraction": 0.02}]
    path2 = write(tmp_path, "grid2", {"evaluation": {**evaluation, "targets": more}, "grid": grid,
                                      "stylizer": stylizer}, server)
    res2 = sassl("run", str(path2), cwd=tmp_path)
    assert res2.returncode == 0, res2.stdout[-3000:] + res2.stderr[-3000:]
    cells2 = c.search_runs([c.get_experiment_by_name("grid2").experiment_id], "tags.`sassl.role` = 'cell'")
    assert all("sassl.backbone_reused" in r.data.tags for r in cells2)
    assert {r.data.tags["sassl.pretrain_id"] for r in cells2} == {r.data.tags["sassl.pretrain_id"] for r in cells}
    assert all("linear/cifar10_1pct/top1" in r.data.metrics for r in cells2)


def test_search_trials_best_config_and_from_search(tmp_path, server):
    search = {"num_samples": 3, "seed": 0, "grace_period": 1,
              "space": {"optim.lr": {"type": "loguniform", "low": 0.01, "high": 0.3},
                        "method.temperature": {"type": "uniform", "low": 0.1, "high": 0.5}},
              "monitor": {"train_size": 200, "epochs": 3}}
    path = write(tmp_path, "srch", {"optim": {"epochs": 2, "batch_size": 128}, "search": search}, server)
    res = sassl("run", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "3 trials" in res.stdout and "best val_top1" in res.stdout and "Parameter importances" in res.stdout

    c = MlflowClient(server)
    exp = c.get_experiment_by_name("srch")
    parent = c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'search'")[0]
    trials = c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'trial'")
    assert len(trials) == 3 and parent.info.status == "FINISHED"
    assert {r.data.tags["mlflow.parentRunId"] for r in trials} == {parent.info.run_id}
    assert all(r.info.status == "FINISHED" for r in trials)
    objectives = {r.info.run_id: c.get_metric_history(r.info.run_id, "objective") for r in trials}
    assert all(1 <= len(h) <= 2 and all(0 <= m.value <= 100 for m in h) for h in objectives.values())
    best_lr = float(parent.data.params["best.optim.lr"])
    assert 0.01 <= best_lr <= 0.3 and 0 <= parent.data.metrics["best_value"] <= 100
    # the best is the top final value (Tune's record) among the trials ASHA did not stop; a
    # stopped trial may have logged one more epoch to MLflow before its actor was killed
    last = {r.info.run_id: r.data.metrics["objective_final"] for r in trials
            if r.data.tags["sassl.stopped_early"] == "false"}
    assert last and all(len(objectives[rid]) == 2 for rid in last)
    assert parent.data.metrics["best_value"] == pytest.approx(max(last.values()))
    # the best lr is that of a finalist reaching the best objective (small val splits give ties)
    assert any(float(r.data.params["trial.optim.lr"]) == pytest.approx(best_lr) for r in trials
               if r.info.run_id in last and last[r.info.run_id] == pytest.approx(max(last.values())))
    # the objective came from a validation split carved from training data: test never decoded
    cache = tmp_path / "runs" / "cache"
    assert list(cache.glob("cifar10-kit-train-*")) and not list(cache.glob("cifar10-kit-test-*"))

    again = sassl("run", "--from-search", parent.info.run_id, "--seeds", "0,1",
                  "--tracking-uri", server, "--set", f"tracking.run_dir={tmp_path / 'runs'}", cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    cells = c.search_runs([c.get_experiment_by_name("srch_best").experiment_id], "tags.`sassl.role` = 'cell'")
    assert sorted(int(r.data.tags["sassl.seed"]) for r in cells) == [0, 1]
    assert all(float(r.data.params["optim.lr"]) == pytest.approx(best_lr) for r in cells)
    assert all("linear/cifar10/top1" in r.data.metrics for r in cells)
