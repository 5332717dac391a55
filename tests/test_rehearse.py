"""`sassl rehearse`: the step timer that stops a training loop, the schedule of the estimate, and
one rehearsal of a two-row grid through the CLI on the shared Ray (nothing of a real run written)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from orchestrator.experiment import build_experiment
from orchestrator.rehearsal import schedule
from workloads.pretrain import pretrain
from workloads.rehearse import Rehearsed, StepTimer, peak_memory_mb, reset_peak_memory, run_steps


def test_the_step_timer_stops_a_real_training_loop_after_warmup_and_steps():
    cell = build_experiment({"name": "t", "backbone": {"width": 0.125}, "optim": {"epochs": 5, "batch_size": 16},
                             "method": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32}}).cells[0].spec
    images = torch.randint(0, 255, (64, 3, 32, 32), dtype=torch.uint8)  # 4 steps per epoch
    timer = StepTimer(steps=3, warmup=2)
    res = run_steps(lambda: pretrain(cell, images, callback=timer), timer)
    assert len(timer.ends) == 5  # 2 warm-up + 3 timed, across the first two epochs: then it stopped
    assert res["steps_timed"] == 3 and res["steps_per_epoch"] == 4 and res["seconds_per_step"] > 0


def test_too_few_steps_to_time_is_an_error_not_a_zero():
    timer = StepTimer(steps=3, warmup=1)
    timer.on_step("pretrain", 1, 1, 1)
    with pytest.raises(RuntimeError, match="only 1 step"):
        timer.result()
    with pytest.raises(Rehearsed):
        StepTimer(steps=1, warmup=0).on_step("pretrain", 1, 1, 5)


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="the peak reset needs Linux's /proc")
def test_a_pieces_peak_memory_is_its_own_in_a_process_that_ran_a_bigger_one():
    # the rehearsal's Ray workers time one piece after another: the second's peak must not be the first's
    big = torch.ones(400 * 2**20 // 4)   # 400 MB, touched
    del big
    first = peak_memory_mb("cpu")
    reset_peak_memory("cpu")
    small = torch.ones(40 * 2**20 // 4)
    second = peak_memory_mb("cpu")
    del small
    assert second < first - 300, (first, second)
    assert second > 40   # the piece's own 40 MB are in it


def test_the_estimate_starts_cells_in_order_on_the_first_free_slot_once_ready():
    assert schedule([(0, 3), (0, 1), (0, 1), (0, 1)], 2) == 3   # 3 | 1 + 1 + 1
    assert schedule([(0, 1), (0, 1), (0, 1), (0, 3)], 2) == 4   # 1 + 1 | 1 + 3: the order matters
    assert schedule([(0, 2)] * 4, 1) == 8
    assert schedule([(5, 2), (0, 1)], 2) == 7                   # a SASSL cell waits for its stylizer


ROOT = Path(__file__).resolve().parents[1]


def test_a_search_is_rehearsed_at_the_top_of_every_searched_range():
    from orchestrator.experiment import load_experiment
    from orchestrator.rehearsal import costliest_trials

    def top(name):
        (cell,) = costliest_trials(load_experiment(ROOT / "experiments" / name))
        return cell.spec  # what the rehearsal's pieces train; cell.config holds the same values

    cassle = top("cassle_search.yaml").method
    assert (cassle.encoder_depth, cassle.encoder_width) == (8, 128)
    style = top("sassl_search_style.yaml").augmentation.style
    assert style.p == 1.0 and style.alpha == (0.3, 1.0) and style.beta == (0.3, 1.0)
    optim = top("sipl_search.yaml").optim
    assert optim.batch_size == 128 and optim.lr == pytest.approx(1e-3)



def _cell(cfg: dict):
    return build_experiment({"name": "t", **cfg}).cells[0]


def test_an_ssl_targets_evaluation_times_lbfgs_and_on_the_first_target_the_sensitivity():
    """In process, on the kit's CIFAR-10: every enabled protocol is timed through its real code;
    L-BFGS is reported per iteration with its max_iter bound, outside the estimate."""
    from workloads.rehearse.evaluation import ssl_evaluation
    cfg = _cell({"backbone": {"width": 0.125}, "data": {"image_size": 32},
                 "method": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32},
                 "evaluation": {"lbfgs": {"enabled": True, "l2_exponents": [-2, 2, 5], "max_iter": 100},
                                "sensitivity": {"enabled": True, "images": 64}}}).spec
    target = cfg.evaluation.targets[0]
    first = ssl_evaluation(cfg, target, True, torch.device("cpu"))
    assert first["timed"] == "linear probe + control + L-BFGS + sensitivity"
    assert first["sensitivity_s"] > 0 and first["estimate_s"] > first["sensitivity_s"]
    from workloads.data.prepare import open_ref
    train = len(open_ref(target.data, 32))
    fit = round(train * (1 - target.val_fraction))  # validation carved from train
    val = train - fit
    # the bound: the 5 λ fits on train and the refit on train + val, each to max_iter
    per_iteration = first["lbfgs_s_per_iteration"]
    assert first["lbfgs_bound_s"] == pytest.approx(per_iteration * 100 * (5 + 1 + val / fit))
    assert "L-BFGS not in the estimate" in first["note"] and "100 iterations per fit" in first["note"]
    other = ssl_evaluation(cfg, target, False, torch.device("cpu"))  # the analysis runs on the first target only
    assert "sensitivity" not in other["timed"] and "sensitivity_s" not in other



def test_one_evaluation_piece_per_distinct_protocol_set_and_per_method_where_it_is_read():
    """Cells share a target's timing only when it would cost the same: the same protocols (the
    key once lost the evaluation settings), and the same method where the evaluation runs it."""
    from orchestrator.rehearsal import _evaluation_key
    base = {"backbone": {"width": 0.125}, "method": {"proj_hidden_dim": 32, "proj_dim": 16, "pred_hidden_dim": 32}}
    plain = _cell(base).config
    target = plain["evaluation"]["targets"][0]
    assert _evaluation_key(plain, target, True) == _evaluation_key(_cell({**base, "seeds": [3]}).config, target, True)
    few_shot = _cell({**base, "evaluation": {"few_shot": {"shots": [5]}}}).config
    assert _evaluation_key(plain, target, True) != _evaluation_key(few_shot, target, True)
    other_method = _cell({**base, "method": {**base["method"], "proj_dim": 8}}).config
    assert _evaluation_key(plain, target, True) == _evaluation_key(other_method, target, True)  # not read
    sens = {"evaluation": {"sensitivity": {"enabled": True}}}
    a = _cell({**base, **sens}).config
    b = _cell({**base, **sens, "method": {**base["method"], "proj_dim": 8}}).config
    assert _evaluation_key(a, target, True) != _evaluation_key(b, target, True)    # the analysis runs the method
    assert _evaluation_key(a, target, False) == _evaluation_key(b, target, False)  # only on the first target

def test_a_sipl_targets_evaluation_times_the_encoder_and_the_mlp_head():
    from workloads.rehearse.evaluation import sipl_evaluation
    cfg = _cell({"backbone": {"width": 0.125}, "data": {"image_size": 32},
                 "method": {"name": "sipl", "embed_dim": 32, "head_hidden": 64, "downstream": {"hidden": 32}},
                 "optim": {"optimizer": "adam", "lr": 1e-4, "weight_decay": 0.0}}).spec
    res = sipl_evaluation(cfg, cfg.evaluation.targets[0], True, torch.device("cpu"))
    assert res["timed"] == "MLP head" and res["head_s"] > 0 and res["features_s_per_image"] > 0
    assert res["estimate_s"] > res["head_s"] and "embedding plot" in res["note"]

@pytest.mark.e2e
@pytest.mark.usefixtures("shared_ray")
def test_rehearse_times_every_piece_and_writes_nothing_of_a_run(tmp_path):
    runs = tmp_path / "runs"
    cfg = {"name": "rehearsed", "tracking": {"run_dir": str(runs)},
           "data": {"limit": 256}, "backbone": {"arch": "resnet18", "width": 0.125},
           "method": {"proj_hidden_dim": 64, "proj_dim": 32, "pred_hidden_dim": 64},
           "optim": {"epochs": 3, "batch_size": 64}, "seeds": [0, 1],
           "evaluation": {"linear_probe": {"lrs": [0.1, 0.01], "epochs": 2}},
           "grid": {"variants": [{"name": "MoCo v2"}, {"name": "SASSL", "set": {
               "augmentation.style.enabled": True, "augmentation.style.image_size": 32}}]}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run([sys.executable, "-m", "orchestrator", "rehearse", "r.yaml", "--steps", "2"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = res.stdout
    assert "2 pretraining piece(s), 1 stylizer stage(s)" in out
    assert "2 × 4/epoch" in out  # 256 images at batch 64: 4 steps per epoch, 2 timed
    assert "paintings-kit/all" in out and "cifar10 (linear probe + control)" in out
    assert "estimated wall time of the grid" in out and "for 4 cells on" in out

    c = MlflowClient(f"sqlite:///{runs / 'mlflow.db'}")
    exp = c.get_experiment_by_name("rehearsed")
    (run,) = c.search_runs([exp.experiment_id])  # the rehearsal run, and no cell run
    assert run.data.tags["sassl.role"] == "rehearsal" and run.info.status == "FINISHED"
    assert run.data.metrics["estimated_wall_s"] > 0
    assert [a.path for a in c.list_artifacts(run.info.run_id)] == ["rehearsal.md", "throughput.json"]
    assert not (runs / "backbones").exists() and not (runs / "stylizers").exists()

    # SASSL's Table 9 from the rehearsal alone: augmentation and training images/s, the change
    tables = subprocess.run([sys.executable, "-m", "orchestrator", "tables", "rehearsed", "--run-dir", str(runs)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert tables.returncode == 0, tables.stdout[-3000:] + tables.stderr[-3000:]
    assert "rehearsed: throughput of the default augmentation and SASSL's" in tables.stdout
    sassl_row = next(line for line in tables.stdout.splitlines() if line.startswith("| SASSL"))
    assert re.search(r"\| -\d+\.\d %", sassl_row), sassl_row  # stylizing every left view costs throughput

    # a dataset root that cannot be read: named with its field, reader and root, before Ray starts
    (tmp_path / "empty").mkdir()
    bad = {**cfg, "data": {"limit": 256, "pretrain": {"name": "imagefolder", "root": str(tmp_path / "empty")}}}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    res = subprocess.run([sys.executable, "-m", "orchestrator", "rehearse", "bad.yaml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2
    assert "data.pretrain" in res.stderr and "has no class subfolders" in res.stderr, res.stderr
