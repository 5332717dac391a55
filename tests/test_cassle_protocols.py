"""CASSLE's evaluations (issue 43) on synthetic features and tiny models: the conditioning check
(Eq. 2), rotation prediction, corruptions, retrieval metrics, R² of the ridge fit, TenCrop."""
from __future__ import annotations

from pathlib import Path

import torch

from specs import cell_spec, view1
from workloads.evaluation.conditioning_check import conditioning_check, plot_conditioning_check
from workloads.methods.build import build_model

IMAGES = torch.randint(0, 256, (24, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)


def _cassle(**method):
    spec = cell_spec(backbone={"width": 0.125, "stem": "cifar"},
                     method={"name": "moco_v2", "aug_mode": "cassle", "encoder_out_dim": 8, **method})
    torch.manual_seed(0)
    return build_model(spec)


def test_conditioning_check_separates_true_from_false_omega_only_when_omega_is_read():
    model = _cassle()
    res = conditioning_check(model.backbone, model.projector, IMAGES, view1(), mean=MEAN, std=STD,
                             batch_size=10, generator=torch.Generator().manual_seed(1))
    assert len(res.sim_true) == len(IMAGES)  # 10 + 14: a last batch of 4 kept, none of one
    assert not torch.equal(res.sim_true, res.sim_false)  # an untrained γ still moves the projection
    m = res.as_metrics()
    assert set(m) == {"conditioning/difference", "conditioning/share_true_better", "conditioning/sim_true",
                      "conditioning/sim_false", "conditioning/images"}
    # γ's last layer zeroed: ω no longer reaches the projector, so the two similarities are equal
    with torch.no_grad():
        for mod in model.projector.modules():
            if isinstance(mod, torch.nn.BatchNorm1d) and mod.num_features == 8:
                mod.weight.zero_()
                mod.bias.zero_()
    res0 = conditioning_check(model.backbone, model.projector, IMAGES, view1(), mean=MEAN, std=STD,
                              batch_size=10, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(res0.sim_true, res0.sim_false, atol=1e-6)
    assert res0.share_true_better == 50.0 and abs(res0.difference) < 1e-6
    fig = plot_conditioning_check(res)
    assert len(fig.axes) == 1


def test_conditioning_check_refuses_an_unconditioned_projector():
    spec = cell_spec(backbone={"width": 0.125, "stem": "cifar"}, method={"name": "moco_v2"})
    model = build_model(spec)
    try:
        conditioning_check(model.backbone, model.projector, IMAGES, view1(), mean=MEAN, std=STD)
    except ValueError as e:
        assert "conditioned on ω" in str(e)
    else:
        raise AssertionError("an unconditioned projector was accepted")


# ---------------------------------------------------------------- rotation, retrieval, R², TenCrop
def test_rotations_are_labelled_by_their_angle():
    from workloads.evaluation.rotation import rotated
    x = torch.zeros(2, 1, 3, 3)
    x[:, 0, 0, 2] = 1  # a mark in the top-right corner
    out, labels = rotated(x)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    corners = [(0, 2), (0, 0), (2, 0), (2, 2)]  # counter-clockwise: top-right → top-left → …
    for k, (r, c) in enumerate(corners):
        assert out[2 * k, 0, r, c] == 1 and out[2 * k].sum() == 1


def test_rotation_prediction_is_easy_for_orientation_features_and_chance_for_invariant_ones():
    from workloads.evaluation.frozen_protocols import rotation_prediction
    from workloads.spec import LbfgsSpec
    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, 6).view(1, 1, 6, 1)  # brighter towards the bottom: an orientation
    splits = [(ramp + 0.3 * torch.rand(n, 1, 6, 6, generator=g), torch.zeros(n)) for n in (40, 20, 40)]
    lb = LbfgsSpec(enabled=True, l2_exponents=(-3.0, 1.0, 5), select_by="top1", max_iter=200)
    aware = rotation_prediction(lambda im: im[0:len(im)].flatten(1), splits, lb, "t")  # the pixels themselves
    invariant = rotation_prediction(lambda im: im[0:len(im)].flatten(1).sort(1).values, splits, lb, "t")
    assert aware["rotation/t/top1"] == 100.0
    assert invariant["rotation/t/top1"] < 40.0  # 4 classes: chance is 25 %


def test_retrieval_metrics_on_a_hand_made_case():
    from workloads.evaluation.retrieval import retrieval_metrics
    # classes 0,0,1,1 on a line: item 1's nearest is item 2 (other class), then item 0
    feats = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    res = retrieval_metrics(feats, labels, ks=(1, 2))
    # nearest: 0→1 ✓, 1→{0 (0.8) vs 2 (0.96)} 2 ✗, 2→1 ✗, 3→2 ✓
    assert res.recall[1] == 50.0 and res.recall[2] == 100.0
    # R = 1 for every query: AP = rel@1
    assert res.map_at_r == 50.0
    assert res.as_metrics("retrieval/x") == {"retrieval/x/recall_at_1": 50.0, "retrieval/x/recall_at_2": 100.0,
                                             "retrieval/x/map_at_r": 50.0}


def test_map_at_r_counts_precision_at_the_relevant_ranks_only():
    from workloads.evaluation.retrieval import retrieval_metrics
    # query 0 (class 0, R = 2): ranking 1 (✓), 3 (✗), 2 (✓) → within R = 2 ranks: P@1 = 1 → AP = 1/2
    feats = torch.tensor([[1.0, 0.0], [0.99, 0.14], [0.0, 1.0], [0.9, 0.44]])
    labels = torch.tensor([0, 0, 0, 1])
    res = retrieval_metrics(feats[:4], labels, ks=(1,))
    from workloads.evaluation.retrieval import nearest_neighbours
    assert nearest_neighbours(feats, 3)[0].tolist() == [1, 3, 2]
    assert res.queries == 4
    assert 0 < res.map_at_r < 100


def test_r2_and_the_ridge_fit_on_a_known_linear_map():
    from workloads.evaluation.regression import r2_score, ridge_eval
    y = torch.tensor([[1.0], [2.0], [3.0]])
    assert r2_score(y, y) == 1.0
    assert r2_score(torch.full_like(y, 2.0), y) == 0.0
    assert abs(r2_score(torch.tensor([[1.0], [2.0], [4.0]]), y) - 0.5) < 1e-12  # 1 − 1/2
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 5, generator=g)
    w = torch.randn(5, 4, generator=g)
    targets = x @ w + 0.01 * torch.randn(300, 4, generator=g)
    res = ridge_eval((x[:150], targets[:150]), (x[150:200], targets[150:200]), (x[200:], targets[200:]),
                     l2_values=[1e-4, 1e-2, 1.0, 100.0, 1e4])
    assert res.r2 > 0.999 and res.chosen_l2 <= 1.0
    noise = ridge_eval((x[:150], torch.randn(150, 4, generator=g)), (x[150:200], torch.randn(50, 4, generator=g)),
                       (x[200:], torch.randn(100, 4, generator=g)), l2_values=[1e-2, 1e4])
    assert noise.r2 < 0.05


def test_ten_crop_gives_ten_features_per_training_image():
    from workloads.evaluation.frozen_protocols import ten_crop_features
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    seen = []

    def extract(view):
        batch = view[0:len(view)]
        seen.append(tuple(batch.shape))
        return batch.flatten(1)
    feats, labels = ten_crop_features(extract, images, torch.tensor([3, 5]), 6)
    assert feats.shape == (20, 3 * 6 * 6) and labels.tolist() == [3, 5] * 10
    assert seen == [(2, 3, 6, 6)] * 10
    assert len({tuple(f.tolist()) for f in feats}) == 20  # ten different crops of each image


# ---------------------------------------------------------------- the protocols in a cell's evaluation
def _dtd_cell(tmp_path, **evaluation):
    spec = cell_spec(backbone={"width": 0.125, "stem": "cifar"},
                     method={"name": "moco_v2", "aug_mode": "cassle", "encoder_out_dim": 8},
                     evaluation={"targets": [{"key": "dtd", "data": {"name": "dtd-kit", "split": "train"},
                                              "val_split": "val", "test_split": "test", "metric": "mean_per_class"}],
                                 "linear_probe": {"lrs": [0.1], "epochs": 1, "random_init_control": False},
                                 "lbfgs": {"enabled": True, "l2_exponents": [-2, 2, 3], "max_iter": 50},
                                 **evaluation})
    torch.manual_seed(0)
    model = build_model(spec)
    return spec, model


def test_a_cells_evaluation_runs_every_cassle_protocol(tmp_path):
    from workloads.evaluation.evaluate import evaluate_target
    spec, model = _dtd_cell(tmp_path, rotation={"enabled": True},
                            corruptions={"enabled": True, "names": ["brightness", "fog"], "severities": [1, 5],
                                         "images": 12},
                            retrieval={"enabled": True, "figure_queries": 3},
                            conditioning_check={"enabled": True, "images": 16})
    out = evaluate_target(spec, spec.evaluation.targets[0], model.backbone.state_dict(), cache_dir=tmp_path,
                          artifact_dir=tmp_path / "art", method_state=model.state_dict())
    m = out["metrics"]
    assert {"lbfgs/dtd/top1", "lbfgs/dtd/mean_per_class", "rotation/dtd/top1", "corruption/dtd/clean",
            "corruption/dtd/fog/5", "corruption/dtd/brightness/mean", "retrieval/dtd/recall_at_1",
            "retrieval/dtd/recall_at_4", "retrieval/dtd/map_at_r", "conditioning/difference"} <= set(m)
    assert m["corruption/dtd/fog/mean"] == (m["corruption/dtd/fog/1"] + m["corruption/dtd/fog/5"]) / 2
    import re
    assert [k for k in m if not re.fullmatch(r"[\w\-. /]+", k)] == []  # what MLflow accepts as a metric name
    assert sorted(Path(p).name for p in out["artifacts"]) == ["conditioning_check.png", "retrieval.png"]
    assert len(list((tmp_path / "corruptions").glob("*.pt"))) == 4  # kept for the next cell
    again = evaluate_target(spec, spec.evaluation.targets[0], model.backbone.state_dict(), cache_dir=tmp_path)
    assert again["metrics"]["corruption/dtd/fog/5"] == m["corruption/dtd/fog/5"]  # the same corrupted images


def test_a_regression_target_is_scored_by_ridge_r2(tmp_path):
    import fake_targets
    from workloads.evaluation.evaluate import evaluate_target
    root = fake_targets.w300(tmp_path / "300w", indoor=10, outdoor=10)
    spec = cell_spec(backbone={"width": 0.125, "stem": "cifar"},
                     evaluation={"targets": [{"key": "w300", "data": {"name": "w300", "split": "train", "root": str(root)},
                                              "val_split": "val", "test_split": "test", "metric": "r2"}],
                                 "lbfgs": {"enabled": True, "l2_exponents": [-2, 4, 4]}})
    torch.manual_seed(0)
    backbone = build_model(spec).backbone
    out = evaluate_target(spec, spec.evaluation.targets[0], backbone.state_dict(), cache_dir=tmp_path)
    assert set(out["metrics"]) == {"ridge/w300/r2", "ridge/w300/l2"}
    assert out["metrics"]["ridge/w300/r2"] <= 1.0


# ---------------------------------------------------------------- the tables (results/, from MLflow's values)
def _cells():
    import pandas as pd
    rows = []
    for row, base in (("MoCo v2", 0.0), ("MoCo v2 + CASSLE", 1.0)):
        for seed in (0, 1):
            m = {"rotation/c/top1": 60 + base + seed, "corruption/c/clean": 40 + base,
                 "corruption/c/fog/1": 30 + base, "corruption/c/fog/mean": 25 + base,
                 "retrieval/c/recall_at_1": 20 + base, "retrieval/c/recall_at_4": 50 + base, "retrieval/c/map_at_r": 5 + base,
                 "lbfgs/c/top1": 35 + base, "lbfgs/c/mean_per_class": 33 + base, "lbfgs/p/top1": 70 + base,
                 "lbfgs/p/mean_per_class": 60 + base, "ridge/w/r2": 0.5 + base / 10}
            if base:
                m.update({"conditioning/difference": 0.1 * (seed + 1), "conditioning/share_true_better": 70.0 + seed,
                          "conditioning/sim_true": 0.8, "conditioning/sim_false": 0.7})
            rows.append({"row": row, "seed": seed, "status": "FINISHED", "targets": [["c", "C"], ["p", "P"], ["w", "W"]],
                         "target_metrics": {"p": "mean_per_class", "w": "r2"}, **m})
    return pd.DataFrame(rows)


def test_the_cassle_tables_read_each_protocols_metrics():
    from results.cassle import cassle_tables
    from results.transfer import ranked_table
    tables = cassle_tables(_cells(), "x")
    assert set(tables) == {"x-conditioning", "x-rotation", "x-corruptions", "x-retrieval"}
    assert list(tables["x-conditioning"].frame.index) == ["MoCo v2 + CASSLE"]  # vanilla has no ω to check
    assert tables["x-conditioning"].frame.iloc[0, 0] == "0.15 ± 0.07"
    assert list(tables["x-corruptions"].frame.columns[:2]) == ["C · clean", "C · fog"]
    assert list(tables["x-retrieval"].frame.columns[:3]) == ["C · R@1", "C · R@4", "C · mAP@R"]
    assert tables["x-rotation"].frame.loc["MoCo v2 + CASSLE", "C"] == "61.50 ± 0.71"
    ranks = ranked_table(_cells(), "lbfgs", "t")  # each target's own metric: P mean per-class, W's R²
    assert list(ranks.frame.columns[:3]) == ["L-BFGS · C", "L-BFGS · P (mean per-class)", "L-BFGS · W (R²)"]
    assert ranks.frame.loc["MoCo v2", "L-BFGS · P (mean per-class)"] == "60.00 ± 0.00"
    assert ranks.frame.loc["MoCo v2 + CASSLE", "Avg. rank"] == "1.00"


def test_the_test_images_sampled_are_a_fixed_spread_not_the_first_classes():
    from workloads.evaluation.frozen_protocols import sample_positions, test_sample
    labels = torch.arange(10).repeat_interleave(100)  # sorted by class, as the kit's test split
    keep = sample_positions(len(labels), 200)
    assert len(keep) == 200 and torch.equal(keep, sample_positions(len(labels), 200))
    assert len(torch.unique(labels[keep])) == 10 and bool((keep[1:] > keep[:-1]).all())
    assert len(sample_positions(50, None)) == 50 and len(sample_positions(50, 80)) == 50
    assert torch.equal(test_sample(labels.view(-1, 1), 200).view(-1), labels[keep])
