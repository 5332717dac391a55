"""`sassl submit/status/logs` against a real Ray head node started with `ray start --head`."""
import subprocess
import sys

import pytest
import yaml
from mlflow.tracking import MlflowClient

from orchestrator import provenance

from conftest import ray_head
from orchestrator.ray_exec import free_port

pytestmark = pytest.mark.e2e


def sassl(*args, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def head_node(shared_ray):
    """The Jobs API of the test run's shared head node (tests/conftest.py)."""
    if shared_ray is None:  # SASSL_TEST_OWN_RAY=1
        with ray_head() as (_, dashboard):
            yield dashboard
    else:
        yield shared_ray


def test_submit_follow_status_logs_and_runs_in_mlflow(tmp_path, head_node):
    cfg = {"name": "jobs-e2e", "cluster": {"num_workers": 1, "cpus_per_worker": 1},
           "data": {"pretrain": {"name": "cifar10-kit"}, "image_size": 32, "limit": 128},
           "backbone": {"arch": "resnet18", "width": 0.125},
           "method": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32},
           "optim": {"epochs": 1, "batch_size": 64}, "seeds": [0, 1],
           "evaluation": {"linear_probe": {"lrs": [0.1], "epochs": 1}}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg))  # run_dir left relative on purpose

    res = sassl("submit", "tiny.yaml", "--address", head_node, "--set", "optim.batch_size=32", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    job = next(w for w in res.stdout.split() if w.startswith("raysubmit_"))
    # the relative run_dir was pinned to this machine's absolute path (else runs vanish with the job)
    assert f"tracking.run_dir={tmp_path / 'runs'}" in res.stdout and "optim.batch_size=32" in res.stdout

    follow = sassl("logs", job, "--address", head_node, "--follow", cwd=tmp_path, timeout=600)
    assert follow.returncode == 0, follow.stdout + follow.stderr
    assert "2 finished, 0 skipped" in follow.stdout and f"job {job}: SUCCEEDED" in follow.stdout
    st = sassl("status", job, "--address", head_node, cwd=tmp_path)
    assert st.returncode == 0 and f"{job}: SUCCEEDED" in st.stdout
    logs = sassl("logs", job, "--address", head_node, cwd=tmp_path)
    assert "| jobs-e2e" in logs.stdout  # the driver's results table

    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("jobs-e2e")
    cells = c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'cell'")
    assert sorted(r.data.tags["sassl.seed"] for r in cells) == ["0", "1"]
    assert all(r.info.status == "FINISHED" and r.data.params["optim.batch_size"] == "32" for r in cells)
    assert all(0 <= r.data.metrics["linear/cifar10/top1"] <= 100 for r in cells)
    # the job's copy has no git checkout: its runs name this checkout's commit, and the code they ran
    # is the package that was shipped
    here = provenance.git_state()
    for r in cells:
        assert r.data.tags["mlflow.source.git.commit"] == here["commit"]
        assert r.data.tags["sassl.code.dirty"] == here["dirty"]
        assert r.data.tags["sassl.code.package"] == r.data.tags["sassl.code.submitted_package"] == provenance.package_hash()

    missing = sassl("status", "raysubmit_nope", "--address", head_node, cwd=tmp_path)
    assert missing.returncode == 2 and "job raysubmit_nope: not found" in missing.stderr


def test_submit_to_nothing_is_a_clear_error(tmp_path):
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({"name": "x", "seeds": [0]}))
    res = sassl("submit", "tiny.yaml", "--address", f"http://127.0.0.1:{free_port()}", cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "cannot reach the Ray Jobs API" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_submit_validates_before_submitting(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"name": "x", "optim": {"epochs": "many"}}))
    res = sassl("submit", "bad.yaml", "--address", "http://127.0.0.1:1", cwd=tmp_path, timeout=120)
    assert res.returncode == 2 and "optim.epochs" in res.stderr
