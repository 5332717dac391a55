"""A streaming cell end to end: `sassl pack` writes shards, a YAML reads them with
data.loader: stream, two Ray Train workers each read their own shards, MLflow records the run
and `sassl tables` prints it; then the same cell with the decoding done by Ray Data tasks."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("shared_ray")]


def sassl(*args, cwd):
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_streaming_cell_from_packed_shards(tmp_path: Path):
    packed = sassl("pack", "dtd-kit", str(tmp_path / "packed"), "--split", "train", "--shard-size", "90",
                   "--max-side", "48", cwd=tmp_path)
    assert packed.returncode == 0, packed.stderr
    cfg = {
        "name": "stream-e2e", "tracking": {"run_dir": str(tmp_path / "runs")},
        "cluster": {"num_workers": 2, "cpus_per_worker": 1},
        "data": {"pretrain": {"name": "packed", "root": str(tmp_path / "packed"), "split": "train"},
                 "image_size": 32, "loader": "stream"},
        "backbone": {"arch": "resnet18", "width": 0.125},
        "method": {"name": "simclr", "proj_hidden_dim": 32, "proj_dim": 16},
        "optim": {"epochs": 2, "batch_size": 64}, "seeds": [0],
        "evaluation": {"targets": [{"key": "dtd", "label": "DTD", "data": {"name": "dtd-kit", "split": "train"},
                                    "val_split": "val", "test_split": "test"}],
                       "linear_probe": {"lrs": [0.1], "epochs": 2, "random_init_control": False}},
        "grid": {"variants": [{"name": "SimCLR (streamed)"}]},
    }
    path = tmp_path / "stream.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = sassl("run", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("stream-e2e")
    (run,) = c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'cell'")
    assert run.info.status == "FINISHED" and run.data.params["data.loader"] == "stream"
    # 720 images, 8 shards dealt to 2 workers, 32 images per worker and step
    assert [m.step for m in c.get_metric_history(run.info.run_id, "pretrain/loss")] == [1, 2]
    assert run.data.metrics["pretrain/skipped_images"] == 0 and "linear/dtd/top1" in run.data.metrics
    assert "pictures/augmented_view_pairs.png" in {a.path for a in c.list_artifacts(run.info.run_id, "pictures")}
    tables = sassl("tables", "stream-e2e", "--run-dir", str(tmp_path / "runs"), cwd=tmp_path)
    assert tables.returncode == 0 and "SimCLR (streamed)" in tables.stdout

    # the same cell with its JPEGs decoded by Ray Data tasks beside the (one) Ray Train worker:
    # a new cell (its order of images differs), trained to the end
    by_ray = sassl("run", str(path), "--set", "data.stream_decode=ray_data", "--set", "cluster.num_workers=1",
                   cwd=tmp_path)
    assert by_ray.returncode == 0, by_ray.stdout[-3000:] + by_ray.stderr[-3000:]
    assert "1 finished, 0 skipped" in by_ray.stdout
    (decoded,) = [r for r in c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'cell'")
                  if r.data.params.get("data.stream_decode") == "ray_data"]
    assert decoded.info.status == "FINISHED" and decoded.data.params["cluster.num_workers"] == "1"
    assert [m.step for m in c.get_metric_history(decoded.info.run_id, "pretrain/loss")] == [1, 2]
    assert decoded.data.metrics["pretrain/skipped_images"] == 0 and "linear/dtd/top1" in decoded.data.metrics
    # two workers and a decode CPU do not fit the 2-CPU test cluster: said before anything starts
    too_big = sassl("run", str(path), "--set", "data.stream_decode=ray_data", cwd=tmp_path)
    assert too_big.returncode == 2 and "for Ray Data's decoding (data.stream_decode_cpus)" in too_big.stderr

    missing = sassl("run", str(path), "--set", f"data.pretrain.root={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert missing.returncode == 2 and "nowhere" in missing.stderr and "sassl pack" in missing.stderr
