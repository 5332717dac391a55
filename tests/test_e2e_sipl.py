"""SIPL as cells of the orchestrator: two variants through the CLI on real Ray and MLflow,
per-epoch pretext metrics, downstream curves, the embedding plot and table 4 from MLflow; the
second variant's pretext streams packed shards (data.loader: stream)."""
import subprocess
import sys

import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("shared_ray")]


def test_tiny_sipl_experiment(tmp_path):
    from workloads.data import open_source
    from workloads.data.shards import pack_split
    pack_split(open_source("dtd-kit", split="val", image_size=32), tmp_path / "packed", shard_size=60, max_side=48)
    streamed = {"data.pretrain": {"name": "packed", "root": str(tmp_path / "packed"), "split": "val"},
                "data.loader": "stream"}
    cfg = {
        "name": "sipl_e2e", "tracking": {"run_dir": str(tmp_path / "runs")},
        "data": {"image_size": 32, "limit": 256},
        "backbone": {"width": 0.125},
        "method": {"name": "sipl", "embed_dim": 32, "head_hidden": 64,
                   "downstream": {"hidden": 32, "epochs": 3, "lr": 1e-3}},
        "optim": {"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0, "batch_size": 32, "epochs": 2},
        "evaluation": {"targets": [{"key": "cifar10", "label": "CIFAR-10",
                                    "data": {"name": "cifar10-kit", "split": "train"}, "test_split": "test",
                                    "val_fraction": 0.1}]},
        "grid": {"variants": [{"name": "OPL", "set": {"method.variant": "opl"}},
                              {"name": "SIPLv3", "set": {"method.variant": "siplv3", **streamed}}]},
    }
    path = tmp_path / "sipl.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = subprocess.run([sys.executable, "-m", "orchestrator", "run", str(path)], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "Pretext accuracy (%)" in res.stdout and "| SIPLv3" in res.stdout and "sipl_e2e-sipl-curves.png" in res.stdout

    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("sipl_e2e")
    cells = c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'cell'")
    assert len(cells) == 2 and all(r.info.status == "FINISHED" for r in cells)
    for r in cells:
        assert sorted(m.step for m in c.get_metric_history(r.info.run_id, "sipl/val_pretext_acc")) == [1, 2]
        assert len(c.get_metric_history(r.info.run_id, "downstream/cifar10/val_acc")) == 3
        assert 0 <= r.data.metrics["mlp/cifar10/top1"] <= 100
        assert 0 <= r.data.metrics["sipl/best_val_pretext_acc"] <= 100
        assert {a.path for a in c.list_artifacts(r.info.run_id, "pictures")} == {
            "pictures/style_embeddings.png", "pictures/patch_problems.png"}
        assert "sipl/kl_weight" in r.data.metrics and r.data.metrics["sipl/skipped_images"] == 0
    loaders = {r.data.params["method.variant"]: r.data.params["data.loader"] for r in cells}
    assert loaders == {"opl": "auto", "siplv3": "stream"}
