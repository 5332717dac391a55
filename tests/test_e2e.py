"""A tiny experiment through the real CLI, a real local Ray and a real MLflow store."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from orchestrator import provenance

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("shared_ray")]


def sassl(*args, cwd):
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def tiny_experiment(tmp_path: Path) -> Path:
    cfg = {
        "name": "e2e",
        "tracking": {"run_dir": str(tmp_path / "runs")},
        # no Ray Train retry: the broken variant's NaN would only come back (2 runs saved per invocation)
        "cluster": {"num_workers": 1, "cpus_per_worker": 1, "max_failures": 0},
        "data": {"pretrain": {"name": "cifar10-kit", "split": "train"}, "image_size": 32, "limit": 256},
        "backbone": {"arch": "resnet18", "width": 0.125},
        "method": {"proj_hidden_dim": 64, "proj_dim": 32, "pred_hidden_dim": 64},
        "optim": {"epochs": 2, "batch_size": 128},
        # one seed: the multi-seed path through Ray runs in test_cluster_jobs and the --from-search
        # run of test_e2e_transfer_search (a bare Ray Train run costs ~12 s wall, ~17 s CPU)
        "seeds": [0],
        "evaluation": {"linear_probe": {"lrs": [0.1], "epochs": 2}},
        # the second variant's loss is NaN from its first step: it must fail alone
        "grid": {"variants": [{"name": "MoCo v2"}, {"name": "broken", "set": {"method.temperature": 1e-40}}]},
        "tables": {"baseline": "MoCo v2"},
    }
    path = tmp_path / "e2e.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_tiny_experiment_end_to_end(tmp_path):
    path = tiny_experiment(tmp_path)
    res = sassl("run", str(path), cwd=tmp_path)
    assert res.returncode == 1, res.stdout + res.stderr  # one variant fails by design
    assert "1 finished, 0 skipped (already finished), 1 failed" in res.stdout
    assert "| MoCo v2" in res.stdout and "1 failed" in res.stdout

    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("e2e")
    parents = c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'experiment'")
    cells = c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'cell'")
    assert len(parents) == 1 and len(cells) == 2
    assert {r.data.tags["mlflow.parentRunId"] for r in cells} == {parents[0].info.run_id}

    good = [r for r in cells if r.data.tags["sassl.row"] == "MoCo v2"]
    bad = [r for r in cells if r.data.tags["sassl.row"] == "broken"]
    for r in good:
        assert r.info.status == "FINISHED"
        assert r.data.params["optim.epochs"] == "2" and r.data.params["backbone.width"] == "0.125"
        # which CPU kernels made the numbers, where it trained and where it was evaluated
        capability = torch.backends.cpu.get_cpu_capability()
        assert r.data.params["machine.train.cpu_capability"] == capability
        assert r.data.params["machine.evaluation.cpu_capability"] == capability
        assert r.data.params["machine.train.threads"] == "1"  # cpus_per_worker, not the machine's count
        assert 0 <= r.data.metrics["linear/cifar10/top1"] <= 100 and "random_init/linear/cifar10/top1" in r.data.metrics
        history = c.get_metric_history(r.info.run_id, "pretrain/loss")
        assert sorted(m.step for m in history) == [1, 2]
        assert c.get_metric_history(r.info.run_id, "pretrain/images_per_s")[0].value > 0
        arts = {a.path for a in c.list_artifacts(r.info.run_id)}
        assert {"cell_config.yaml", "pictures", "model", "splits"} <= arts
        assert [a.path for a in c.list_artifacts(r.info.run_id, "pictures")] == ["pictures/augmented_view_pairs.png"]
        assert [a.path for a in c.list_artifacts(r.info.run_id, "model")] == ["model/backbone.pt"]
    # what made the numbers (orchestrator/provenance.py): code, dependencies, data, profile
    (cell,) = good
    tags = cell.data.tags
    assert re.fullmatch(r"[0-9a-f]{40}", tags["mlflow.source.git.commit"]) and tags["sassl.code.dirty"] in ("true", "false")
    assert tags["sassl.lock"] == provenance.lock_hash() and tags["sassl.code.package"] == provenance.package_hash()
    assert tags["sassl.dep.torch"] == torch.__version__.split("+")[0] and tags["sassl.dep.mlflow"]
    assert tags["sassl.profile"] == "default" and tags["sassl.sets"] == "{}" and len(tags["sassl.config_id"]) == 12
    assert tags["sassl.data.cifar10-kit.train"].startswith("kit:") and tags["sassl.data"] != "none"
    assert "row 'MoCo v2', seed 0, profile default" in tags["mlflow.note.content"]
    inputs = {(d.dataset.name, d.dataset.digest) for d in cell.inputs.dataset_inputs}
    assert ("cifar10-kit/train", tags["sassl.data.cifar10-kit.train"].split(":")[1]) in inputs
    assert parents[0].data.tags["sassl.code.package"] == tags["sassl.code.package"]
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"  # the UI opens on the runs
    # a finished cell's Ray Train checkpoints are removed (its backbone file is what a rerun reuses)
    assert not list((tmp_path / "runs" / "ray" / "e2e").glob("*/checkpoint_*"))
    for r in bad:
        assert r.info.status == "FAILED"
        # the exception's type and message, not Ray Train's "[Rank 0 Error Snippet]:" wrapper
        assert r.data.tags["sassl.error"].startswith("NonFiniteLossError: pretraining loss became nan")
    assert "failed: NonFiniteLossError: pretraining loss became nan" in " ".join(res.stderr.split())

    # the table comes back from MLflow alone
    tables = sassl("tables", "e2e", "--run-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert tables.returncode == 0, tables.stderr
    assert "| MoCo v2" in tables.stdout and "| broken" in tables.stdout and "1 failed" in tables.stdout
    assert (tmp_path / "runs" / "tables" / "e2e.csv").exists()
    # the baseline the YAML named was recorded on the experiment: the paired part has the failed row, no pairs
    assert '"baseline":"MoCo v2"' in c.get_experiment_by_name("e2e").tags["sassl.tables"]
    assert "paired difference to the baseline row" in tables.stdout
    assert (tmp_path / "runs" / "tables" / "e2e-paired.csv").read_text().splitlines()[1].startswith("broken,MoCo v2,–")
    assert tables.stdout.count("Provenance: profile default; commit ") == 1 and "†" not in tables.stdout
    states = sassl("validate", str(path), cwd=tmp_path)
    assert states.returncode == 0, states.stderr
    assert re.search(r"MoCo v2\s*│\s*0\s*│\s*finished", states.stdout), states.stdout
    assert re.search(r"broken\s*│\s*0\s*│\s*to run", states.stdout), states.stdout
    wrong = sassl("tables", "e2e", "--run-dir", str(tmp_path / "runs"), "--baseline", "moco", cwd=tmp_path)
    assert wrong.returncode == 2 and "baseline 'moco' is not a row of experiment 'e2e'" in wrong.stderr

    # running again skips the finished cells
    again = sassl("run", str(path), cwd=tmp_path)
    assert "0 finished, 1 skipped (already finished), 1 failed" in again.stdout, again.stdout + again.stderr


def test_invalid_config_starts_nothing(tmp_path):
    path = tiny_experiment(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["method"]["temperature"] = -1
    path.write_text(yaml.safe_dump(cfg))
    res = sassl("run", str(path), cwd=tmp_path)
    assert res.returncode == 2
    assert "method.temperature: must be > 0" in res.stderr
    assert not (tmp_path / "runs").exists()  # no MLflow store, no Ray storage


def test_missing_dataset_root_names_the_path(tmp_path):
    path = tiny_experiment(tmp_path)
    cfg = yaml.safe_load(path.read_text())
    cfg["data"]["pretrain"] = {"name": "imagefolder", "root": str(tmp_path / "nowhere")}
    path.write_text(yaml.safe_dump(cfg))
    res = sassl("validate", str(path), cwd=tmp_path)
    assert res.returncode == 2
    assert "data.pretrain:" in res.stderr and str(tmp_path / "nowhere") in res.stderr.replace("\n", "")
    assert not (tmp_path / "runs").exists()
