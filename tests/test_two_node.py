"""sassl on a Ray cluster of two nodes without a shared disk (tests/two_node.py): every hand-off
goes through the MLflow server or the object store. One grid (a baseline row and an
external-style SASSL row) runs end to end while the worker node is lost and replaced; a job is
submitted to the same cluster; the shared-filesystem mode runs the grid again; a cluster of
several nodes with a local storage or store is refused before any cell starts."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from two_node import BUCKET, can_unshare, mlflow_server, s3_server, tail, two_nodes

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(can_unshare() is not None, reason=str(can_unshare()))]

EPOCHS = 6  # enough that the worker node is lost mid-way through a cell (it goes after the first checkpoint)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(TwoNodes, MLflow URI, base folder): S3 emulator, MLflow server, head + worker node."""
    base = tmp_path_factory.mktemp("two_node")
    with s3_server(base) as env, mlflow_server(base / "mlflow") as uri:
        with two_nodes(base, base / "runs", env) as nodes:
            yield nodes, uri, base


def sassl_env(nodes) -> dict[str, str]:
    env = {**os.environ, **nodes.env, "RAY_ADDRESS": nodes.gcs}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def sassl(*args, nodes, cwd, timeout=600):
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=sassl_env(nodes))


def grid(base: Path, name: str, **sections) -> Path:
    cfg = {
        "name": name,
        "tracking": {"run_dir": str(base / "runs")},
        "cluster": {"num_workers": 1, "cpus_per_worker": 1, "max_failures": 3},
        "data": {"image_size": 32, "limit": 1024},
        "backbone": {"width": 0.125},
        "method": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32},
        "optim": {"epochs": EPOCHS, "batch_size": 128},
        "seeds": [0],
        "evaluation": {"linear_probe": {"lrs": [0.1], "epochs": 1}},
        "grid": {"variants": [
            {"name": "baseline"},
            {"name": "SASSL", "set": {"augmentation.style.enabled": True, "augmentation.style.p": 1.0}}]},
        "tables": {"baseline": "baseline"},
    }
    for key, value in sections.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path = base / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def s3_keys(nodes, prefix: str) -> list[str]:
    import pyarrow.fs as pafs
    os.environ.update(nodes.env)  # the emulator's endpoint and keys, for pyarrow in this process
    fs, root = pafs.FileSystem.from_uri(f"s3://{BUCKET}/{prefix}")
    sel = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    return [i.path for i in fs.get_file_info(sel) if i.type == pafs.FileType.File]


def test_grid_through_server_and_object_store_survives_losing_the_worker_node(cluster):
    nodes, uri, base = cluster
    path = grid(base, "two_node", tracking={"uri": uri},
                cluster={"storage": f"s3://{BUCKET}/store", "max_concurrent_cells": 1})
    log = base / "two_node_run.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "orchestrator", "run", str(path)], cwd=base, text=True,
                                stdout=f, stderr=subprocess.STDOUT, env=sassl_env(nodes), start_new_session=True)
    try:
        # the node goes once a cell has a checkpoint in the store (its Ray Train run is mid-way)
        deadline = time.time() + 420
        while not any(k.endswith("checkpoint_manager_snapshot.json") for k in s3_keys(nodes, "store/ray/two_node")):
            assert proc.poll() is None, tail(log)
            assert time.time() < deadline, "no checkpoint in the object store after 420 s"
            time.sleep(0.5)
        nodes.kill_worker()
        time.sleep(5)
        nodes.start_worker()
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = log.read_text()
    assert proc.returncode == 0, out[-4000:]
    assert "2 finished, 0 skipped (already finished), 0 failed" in out, out[-3000:]
    assert "| baseline" in out and "| SASSL" in out

    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("two_node")
    cells = {r.data.tags["sassl.row"]: r for r in c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'cell'")}
    assert set(cells) == {"baseline", "SASSL"}
    resumed = 0
    for r in cells.values():
        assert r.info.status == "FINISHED", r.data.tags.get("sassl.error")
        assert r.data.tags["sassl.seed"] == "0"  # an int tag went through the REST store as a string
        steps = [m.step for m in c.get_metric_history(r.info.run_id, "pretrain/loss")]
        assert sorted(steps) == list(range(1, EPOCHS + 1)), steps  # every epoch logged once
        resumed += bool(c.get_metric_history(r.info.run_id, "resumed_from_epoch"))
        # artifacts come back through the server (proxied), not from a path on a node
        backbone = c.download_artifacts(r.info.run_id, "model/backbone.pt", str(base / "dl" / r.data.tags["sassl.row"]))
        assert "stem.0.weight" in torch.load(backbone, weights_only=True)
        assert "pictures/augmented_view_pairs.png" in {a.path for a in c.list_artifacts(r.info.run_id, "pictures")}
    assert resumed >= 1, "no cell resumed from its checkpoint after the node was lost"
    assert "pictures/style_augmentation.png" in {a.path for a in c.list_artifacts(cells["SASSL"].info.run_id, "pictures")}

    # hand-offs went through the object store; the driver's run directory holds none of them
    keys = s3_keys(nodes, "store")
    assert any(k.endswith("backbone.pt") for k in keys) and any("/banks/" in k for k in keys), keys
    assert any(k.endswith("stylizer.pt") for k in keys), keys
    assert not (base / "runs" / "backbones").exists() and not (base / "runs" / "stylizers").exists()
    # the replacement node read them from the store into its own cache (its private folder)
    assert list((nodes.private_root / "node2" / "cache" / "storage").glob("*/*.pt"))

    # the tables read through the server
    tables = sassl("tables", "two_node", "--tracking-uri", uri, nodes=nodes, cwd=base)
    assert tables.returncode == 0, tables.stderr
    assert "| baseline" in tables.stdout and "| SASSL" in tables.stdout


def test_submit_to_the_two_node_cluster(cluster):
    """A job's driver runs on the head, its cell on the worker node; the finished cell of the
    grid above is skipped, the new seed runs (logged through the server, stored in S3)."""
    nodes, uri, base = cluster
    path = grid(base, "two_node", tracking={"uri": uri}, cluster={"storage": f"s3://{BUCKET}/store"})
    res = sassl("submit", str(path), "--address", nodes.dashboard, "--set", "grid.variants=[{name: baseline}]",
                "--set", "seeds=[0,1]", nodes=nodes, cwd=base)
    assert res.returncode == 0, res.stdout + res.stderr
    job = next(w for w in res.stdout.split() if w.startswith("raysubmit_"))
    follow = sassl("logs", job, "--address", nodes.dashboard, "--follow", nodes=nodes, cwd=base)
    assert f"job {job}: SUCCEEDED" in follow.stdout, follow.stdout[-3000:] + follow.stderr[-2000:]
    assert "1 finished, 1 skipped (already finished), 0 failed" in follow.stdout, follow.stdout[-3000:]
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("two_node")
    new = c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'cell' and tags.`sassl.seed` = '1'")
    assert len(new) == 1 and new[0].info.status == "FINISHED" and new[0].data.tags["sassl.row"] == "baseline"


def test_shared_filesystem_mode_and_what_a_cluster_refuses(cluster):
    """Storage and store in a folder both nodes see (an HPC cluster's shared filesystem); before
    that, the settings that would hand a node a path it does not have are refused up front."""
    nodes, uri, base = cluster
    shared = base / "shared"  # outside the worker's private folder: both nodes see it
    path = grid(base, "hpc", tracking={"run_dir": str(base / "runs")})  # store and storage: this machine only
    res = sassl("run", str(path), nodes=nodes, cwd=base)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "cluster.storage: this Ray cluster has 2 alive nodes" in res.stderr and "s3://" in res.stderr

    path = grid(base, "hpc", cluster={"storage": str(shared)})  # a shared storage, but the store is local
    res = sassl("run", str(path), nodes=nodes, cwd=base)
    assert res.returncode == 2 and "tracking.uri: this Ray cluster has 2 alive nodes" in res.stderr, res.stderr
    assert "sassl ui" in res.stderr
    c = MlflowClient(f"sqlite:///{base / 'runs' / 'mlflow.db'}")
    assert c.get_experiment_by_name("hpc") is None or not c.search_runs(
        [c.get_experiment_by_name("hpc").experiment_id])  # refused before any run was created

    path = grid(base, "hpc", tracking={"run_dir": str(shared / "runs")}, cluster={"storage": str(shared)},
                optim={"epochs": 2}, data={"limit": 512})
    res = sassl("run", str(path), nodes=nodes, cwd=base)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "2 finished, 0 skipped (already finished), 0 failed" in res.stdout
    assert len(list((shared / "backbones").glob("*/backbone.pt"))) == 2
    assert list((shared / "stylizers").glob("*/banks/*.pt"))
    c = MlflowClient(f"sqlite:///{shared / 'runs' / 'mlflow.db'}")
    cells = c.search_runs([c.get_experiment_by_name("hpc").experiment_id], "tags.`sassl.role` = 'cell'")
    assert len(cells) == 2 and all(r.info.status == "FINISHED" for r in cells)
