"""Fault tolerance with real processes: a killed Ray Train worker, a killed `sassl run` driver.

Each test is bounded (every wait has a deadline) and reads the outcome from MLflow."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

# each test kills a driver and the Ray it started: a cluster of its own, not the shared one
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("own_ray")]


def experiment(tmp_path: Path, name: str, variants: list[dict], epochs: int = 4, workers: int = 1) -> Path:
    cfg = {"name": name, "tracking": {"run_dir": str(tmp_path / "runs")},
           "cluster": {"num_workers": workers, "cpus_per_worker": 1, "max_concurrent_cells": 1, "max_failures": 2},
           "data": {"pretrain": {"name": "cifar10-kit"}, "image_size": 32, "limit": 2560},
           "backbone": {"arch": "resnet18", "width": 0.125},
           "method": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32},
           "optim": {"epochs": epochs, "batch_size": 128}, "seeds": [0],
           "evaluation": {"linear_probe": {"lrs": [0.1], "epochs": 1, "random_init_control": False}},
           "grid": {"variants": variants}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


# drivers beat every second, so a dead one's claim on its cells expires after 4 s (claims.py)
ENV = {**os.environ, "SASSL_HEARTBEAT_S": "1"}


def start(path: Path, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(path)], cwd=cwd, text=True, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def wait_for(predicate, proc: subprocess.Popen, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"driver ended before {what}:\n{proc.stdout.read()[-3000:]}")
        time.sleep(0.5)
    proc.kill()
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def checkpointed(tmp_path: Path, name: str) -> list[Path]:
    """Ray Train runs whose controller has registered a checkpoint (its snapshot file lists them:
    a checkpoint folder alone may not be registered yet, and a restart would not see it)."""
    return sorted(p.parent for p in (tmp_path / "runs" / "ray" / name).glob("*/checkpoint_manager_snapshot.json"))


def cell_runs(tmp_path: Path, name: str):
    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = c.get_experiment_by_name(name)
    return c, ([] if exp is None else c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'cell'"))


def steps(c: MlflowClient, run_id: str, metric: str) -> list[int]:
    return sorted(m.step for m in c.get_metric_history(run_id, metric))


def test_two_worker_cells_and_a_killed_worker_retried_from_its_checkpoint(tmp_path):
    """cluster.num_workers: 2 end to end (DDP over gloo, one CPU each): MoCo v2, then SimCLR with
    synchronised batch norm. One of the first cell's two workers is killed mid-epoch 2: Ray Train
    restarts both from the epoch-1 checkpoint and the cell finishes; the second cell runs clean."""
    path = experiment(tmp_path, "worker-kill", [
        {"name": "MoCo v2"},
        {"name": "SimCLR", "set": {"backbone.sync_bn": True,
                                   "method": {"name": "simclr", "proj_hidden_dim": 32, "proj_dim": 16}}}],
        epochs=3, workers=2)
    proc = start(path, tmp_path)
    wait_for(lambda: checkpointed(tmp_path, "worker-kill"), proc, 300, "the first epoch checkpoint")
    workers = wait_for(lambda: [p for p in descendants(proc.pid) if "RayTrainWorker" in cmdline(p)], proc, 60,
                       "a Ray Train worker process")
    os.kill(workers[-1], signal.SIGKILL)  # mid-epoch 2: epoch 1 is checkpointed
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    assert "2 finished, 0 skipped (already finished), 0 failed" in out
    c, runs = cell_runs(tmp_path, "worker-kill")
    by_row = {r.data.tags["sassl.row"]: r for r in runs}
    for row, run in by_row.items():
        assert run.info.status == "FINISHED" and run.data.params["cluster.num_workers"] == "2", row
        # every epoch's metrics are there exactly once (the killed epoch is trained again after the retry)
        assert steps(c, run.info.run_id, "pretrain/loss") == [1, 2, 3], row
        assert "linear/cifar10/top1" in run.data.metrics, row
    assert by_row["SimCLR"].data.params["backbone.sync_bn"] == "True"
    resumed = c.get_metric_history(by_row["MoCo v2"].info.run_id, "resumed_from_epoch")
    assert len(resumed) == 1 and resumed[0].value >= 1  # one retry, from a checkpoint, not from scratch
    assert not c.get_metric_history(by_row["SimCLR"].info.run_id, "resumed_from_epoch")


def test_killed_driver_then_run_again_finishes_the_grid(tmp_path):
    name = "driver-kill"
    path = experiment(tmp_path, name, [{"name": "first"}, {"name": "second", "set": {"optim.lr": 0.02}}])
    proc = start(path, tmp_path)

    def second_is_training():
        c, runs = cell_runs(tmp_path, name)
        done = [r for r in runs if r.info.status == "FINISHED"]
        going = [r for r in runs if r.info.status == "RUNNING" and r.data.tags["sassl.row"] != done[0].data.tags[
            "sassl.row"]] if done else []
        return going and steps(c, going[0].info.run_id, "pretrain/loss") and going[0].data.tags.get(
            "sassl.pretrain_id") in {p.name for p in checkpointed(tmp_path, name)}
    def first_is_training():
        c, runs = cell_runs(tmp_path, name)
        return runs and steps(c, runs[0].info.run_id, "pretrain/loss")
    wait_for(first_is_training, proc, 480, "the first cell to log an epoch")
    # one experiment, one driver: a second invocation of the same cells refuses, naming the live one
    # (before it starts a Ray of its own), and takes nothing over
    second = subprocess.run([sys.executable, "-m", "orchestrator", "run", str(path)], cwd=tmp_path, text=True,
                            capture_output=True, timeout=300, env=ENV)
    assert second.returncode == 2, second.stdout[-2000:] + second.stderr[-2000:]
    assert f"pid {proc.pid}" in " ".join(second.stderr.split()) and "being run by another invocation" in second.stderr
    wait_for(second_is_training, proc, 480, "the first cell to finish and the second to checkpoint an epoch")
    tree = descendants(proc.pid)
    for pid in [proc.pid, *tree]:  # the driver and the local Ray it started: a lost terminal or machine
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=30)
    c, runs = cell_runs(tmp_path, name)
    first = next(r for r in runs if r.info.status == "FINISHED")
    interrupted = next(r for r in runs if r.info.status == "RUNNING")
    logged_before = steps(c, interrupted.info.run_id, "pretrain/loss")
    assert logged_before and logged_before[-1] < 4

    # right after the kill the dead driver's heartbeat is still fresh: --wait waits for it to go
    # stale (a few seconds here), then the interrupted cell is resumed
    again = subprocess.run([sys.executable, "-m", "orchestrator", "run", str(path), "--wait"], cwd=tmp_path,
                           text=True, capture_output=True, timeout=600, env=ENV)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "1 finished, 1 skipped (already finished), 0 failed" in again.stdout
    c, runs = cell_runs(tmp_path, name)
    assert len(runs) == 2  # nothing redone: the finished cell kept its run, the interrupted one was continued
    by_id = {r.info.run_id: r for r in runs}
    assert by_id[first.info.run_id].info.end_time == first.info.end_time
    resumed = by_id[interrupted.info.run_id]
    assert resumed.info.status == "FINISHED"
    # no metric lost, none twice: the epochs logged before the kill are still there, the rest follow
    assert steps(c, resumed.info.run_id, "pretrain/loss") == [1, 2, 3, 4]
    assert set(logged_before) <= set(steps(c, resumed.info.run_id, "pretrain/loss"))
    (r,) = c.get_metric_history(resumed.info.run_id, "resumed_from_epoch")
    assert 1 <= r.value <= logged_before[-1]
    old_parent = c.get_run(interrupted.data.tags["mlflow.parentRunId"])
    assert old_parent.info.status == "KILLED" and "interrupted" in old_parent.data.tags["sassl.error"]
    assert resumed.data.tags["mlflow.parentRunId"] != old_parent.info.run_id
