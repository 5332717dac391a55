"""A tiny CASSLE grid through the real CLI, Ray and MLflow: ω reaches the conditioned projector,
the L-BFGS evaluation and the sensitivity analysis are logged, and the rank and sensitivity
tables are rebuilt from MLflow alone in the YAML's row order."""
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from results import build_tables, cell_runs
from results.figures import pixels
from results.sensitivity import sensitivity_figure
from workloads.evaluation.sensitivity import SensitivityResult, plot_sensitivity

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("shared_ray")]

STAGES = ("layer1", "layer2", "layer3", "layer4", "projector")
AUGS = ("crop", "jitter", "blur", "flip", "grayscale")


def sassl(*args, cwd):
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_cassle_grid_end_to_end(tmp_path):
    cfg = {
        "name": "cassle-e2e",
        "tracking": {"run_dir": str(tmp_path / "runs")},
        "cluster": {"num_workers": 1, "cpus_per_worker": 1},
        "data": {"pretrain": {"name": "cifar10-kit", "split": "train"}, "image_size": 32, "limit": 256},
        "backbone": {"arch": "resnet18", "width": 0.125},
        "method": {"name": "simclr", "proj_hidden_dim": 64, "proj_dim": 32, "aug_mode": "cassle",
                   "omega_parts": "cj", "encoder_depth": 2, "encoder_width": 16},
        "optim": {"epochs": 1, "batch_size": 128},
        "seeds": [0],
        "evaluation": {
            "targets": [{"key": "cifar10", "label": "CIFAR-10", "label_fraction": 0.1, "metric": "mean_per_class"}],
            "linear_probe": {"lrs": [0.1], "epochs": 1, "random_init_control": False},
            "lbfgs": {"enabled": True, "l2_exponents": [-2, 2, 3], "max_iter": 50},
            "sensitivity": {"enabled": True, "images": 64},
            # CASSLE's appendix protocols ride on the same run (rotation: unit-tested, 4x the features)
            "conditioning_check": {"enabled": True, "images": 64},
            "corruptions": {"enabled": True, "names": ["brightness"], "severities": [1], "images": 64},
            "retrieval": {"enabled": True, "figure_queries": 2}},
        # CASSLE first: the tables must keep this order whichever cell starts first
        "grid": {"variants": [{"name": "SimCLR + CASSLE"}, {"name": "SimCLR", "set": {"method.aug_mode": "vanilla"}}]},
    }
    path = tmp_path / "cassle.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = sassl("run", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 finished" in res.stdout and "Avg. rank" in res.stdout and "augmentation sensitivity" in res.stdout

    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp = c.get_experiment_by_name("cassle-e2e")
    cells = {r.data.tags["sassl.row"]: r for r in c.search_runs([exp.experiment_id], "tags.`sassl.role` = 'cell'")}
    assert set(cells) == {"SimCLR + CASSLE", "SimCLR"}
    for row, r in cells.items():
        m = r.data.metrics
        assert r.info.status == "FINISHED", r.data.tags.get("sassl.error")
        assert 0 <= m["lbfgs/cifar10/top1"] <= 100 and 0 <= m["lbfgs/cifar10/mean_per_class"] <= 100
        assert any(m["lbfgs/cifar10/l2"] == pytest.approx(v) for v in (0.01, 1.0, 100.0))
        assert m["lbfgs/cifar10/C"] == pytest.approx(1 / (2 * m["lbfgs/cifar10/l2"]))
        assert m["lbfgs/cifar10/iterations"] >= 1  # the first fit starts from zeros
        assert all(m[f"sensitivity/{a}/{s}"] >= 0 for a in AUGS for s in STAGES)
        # the cell's picture is the sensitivity plot of exactly the values it logged
        logged = SensitivityResult(AUGS, STAGES, torch.tensor([[m[f"sensitivity/{a}/{s}"] for s in STAGES]
                                                              for a in AUGS], dtype=torch.float64))
        png = c.download_artifacts(r.info.run_id, "pictures/augmentation_sensitivity.png", str(tmp_path / row))
        np.testing.assert_array_equal(pixels(png), pixels(plot_sensitivity(logged, "augmentation sensitivity (simclr)")))
    for row, r in cells.items():  # the appendix protocols: logged, pictured; Eq. 2 on the CASSLE row only
        m, pictures = r.data.metrics, {a.path for a in c.list_artifacts(r.info.run_id, "pictures")}
        assert 0 <= m["corruption/cifar10/brightness/1"] <= 100 and "retrieval/cifar10/map_at_r" in m
        assert ("conditioning/share_true_better" in m) == (row == "SimCLR + CASSLE")
        assert ("pictures/conditioning_check.png" in pictures) == (row == "SimCLR + CASSLE")
        assert "pictures/retrieval.png" in pictures
    assert cells["SimCLR + CASSLE"].data.params["method.aug_mode"] == "cassle"
    assert cells["SimCLR + CASSLE"].data.params["method.omega_parts"] == "cj"

    res = sassl("tables", str(path), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    ranks = (tmp_path / "runs" / "tables" / "cassle-e2e-ranks.md").read_text()
    rows = [line.split("|")[1].strip() for line in ranks.splitlines() if line.startswith("| ")]
    assert [r for r in rows if r.startswith("SimCLR")] == ["SimCLR + CASSLE", "SimCLR"]
    assert "Avg. rank" in ranks and "L-BFGS · CIFAR-10 (mean per-class)" in ranks  # the target's own metric
    for name in ("conditioning", "corruptions", "retrieval"):
        assert (tmp_path / "runs" / "tables" / f"cassle-e2e-{name}.md").is_file(), name
    assert (tmp_path / "runs" / "tables" / "cassle-e2e-retrieval.png").is_file()  # the rows' pictures stacked
    sens = (tmp_path / "runs" / "tables" / "cassle-e2e-sensitivity.md").read_text()
    assert all(a in sens for a in AUGS)
    _check_sensitivity_plot(tmp_path, cells, ["SimCLR + CASSLE", "SimCLR"])

    # the YAML reordered: nothing re-runs, and the rebuilt tables follow the new order
    cfg["grid"]["variants"].reverse()
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    res = sassl("run", str(path), cwd=tmp_path)
    assert res.returncode == 0 and "0 finished, 2 skipped" in res.stdout, res.stdout + res.stderr
    ranks = (tmp_path / "runs" / "tables" / "cassle-e2e-ranks.md").read_text()
    rows = [line.split("|")[1].strip() for line in ranks.splitlines() if line.startswith("| ")]
    assert [r for r in rows if r.startswith("SimCLR")] == ["SimCLR", "SimCLR + CASSLE"]
    _check_sensitivity_plot(tmp_path, cells, ["SimCLR", "SimCLR + CASSLE"])  # the plot was redrawn too


def _check_sensitivity_plot(tmp_path, cells, rows):
    """The tables' sensitivity plot: one panel per augmentation, one line per row in the YAML's order
    through each cell's logged values (one seed: the mean is the value), the table's at layer4;
    and the PNG written is that figure."""
    uri = f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}"
    table = build_tables("cassle-e2e", uri)["cassle-e2e-sensitivity"].numeric
    fig = sensitivity_figure(cell_runs(uri, "cassle-e2e"), "cassle-e2e")
    assert [ax.get_title() for ax in fig.axes] == list(AUGS)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == rows
    for ax in fig.axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == list(STAGES)
        assert [line.get_label() for line in ax.lines] == rows
        for line in ax.lines:
            m = cells[line.get_label()].data.metrics
            assert list(line.get_ydata()) == [m[f"sensitivity/{ax.get_title()}/{s}"] for s in STAGES]
            assert line.get_ydata()[STAGES.index("layer4")] == pytest.approx(table.loc[line.get_label(), ax.get_title()])
    np.testing.assert_array_equal(pixels(tmp_path / "runs" / "tables" / "cassle-e2e-sensitivity.png"), pixels(fig))
