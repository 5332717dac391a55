"""CASSLE's linear evaluation: l2-regularised multinomial logistic regression fit with L-BFGS,
regularisation chosen on validation only (workloads/evaluation/lbfgs.py)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from workloads.evaluation.lbfgs import (DEFAULT_L2_GRID, _Problem, fit_logistic_lbfgs, l2_grid, lbfgs_linear_eval,
                                        mean_per_class_accuracy, top1_accuracy)

FAST = dict(max_iter=300)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _blobs(n, seed, classes=3, dim=6):
    """Linearly separable: class means 4 apart on the first axes, unit-less noise elsewhere."""
    g = _gen(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, dim, generator=g) * 0.3
    x[torch.arange(n), y] += 4.0
    return x * 7.0 + 3.0, y  # arbitrary scale and offset: standardisation takes care of it


def _shared_noise(n, seed):
    """x1 = label signal + noise, x2 = the same noise: x1 - x2 separates perfectly (weak
    regularisation finds it); the class means differ on x1 only, so a heavily regularised
    fit (≈ nearest class mean) is right only about 60 % of the time."""
    g = _gen(seed)
    s = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    z = torch.randn(n, generator=g) * 2.0
    x = torch.stack([0.5 * s + z, z], dim=1)
    return x, (s > 0).long()


def test_grid_is_the_papers():
    assert len(DEFAULT_L2_GRID) == 45
    assert DEFAULT_L2_GRID[0] == pytest.approx(1e-6) and DEFAULT_L2_GRID[-1] == pytest.approx(1e5)
    assert l2_grid(0, 2, 3) == pytest.approx((1.0, 10.0, 100.0))


def test_metrics_hand_computed():
    y = torch.tensor([0, 0, 0, 1])
    pred = torch.tensor([0, 0, 0, 0])
    assert top1_accuracy(pred, y) == 75.0
    assert mean_per_class_accuracy(pred, y) == 50.0  # (100 + 0) / 2
    assert mean_per_class_accuracy(torch.tensor([0, 1, 1, 1]), y) == pytest.approx((100 / 3 + 100) / 2)


def test_hand_written_gradient_matches_autograd():
    g = _gen(0)
    x, y = torch.randn(20, 5, generator=g, dtype=torch.float64), torch.randint(0, 4, (20,), generator=g)
    w = torch.randn(5, 4, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    l2 = 0.7
    ref = F.cross_entropy(x @ w + b, y, reduction="sum") + l2 * (w.pow(2).sum() + b.pow(2).sum())
    ref.backward()
    loss, gw, gb = _Problem(x, y, 4, torch.float64).loss_grad(w.detach(), b.detach(), l2 / 20)
    assert loss.item() == pytest.approx(ref.item() / 20, rel=1e-10)
    assert torch.allclose(gw, w.grad / 20, atol=1e-12) and torch.allclose(gb, b.grad / 20, atol=1e-12)


def test_fit_reaches_the_optimum_and_warm_start_agrees():
    x, y = _blobs(60, 0)
    x = (x - x.mean(0)) / x.std(0)
    w, b, it = fit_logistic_lbfgs(x, y, 3, 1.0, matmul_dtype=torch.float64)
    assert it > 0
    _, gw, gb = _Problem(x, y, 3, torch.float64).loss_grad(w, b, 1.0 / 60)
    assert gw.abs().max() < 1e-5 and gb.abs().max() < 1e-5  # stationary point of a convex problem
    w2, b2, _ = fit_logistic_lbfgs(x, y, 3, 1.0, init=(torch.randn(6, 3), torch.randn(3)),
                                   matmul_dtype=torch.float64)
    assert torch.allclose(w, w2, atol=1e-4) and torch.allclose(b, b2, atol=1e-4)


def test_recovers_a_linearly_separable_problem():
    r = lbfgs_linear_eval(_blobs(90, 0), _blobs(30, 1), _blobs(60, 2), 3, l2_values=l2_grid(-4, 4, 9), **FAST)
    assert r.top1 == 100.0 and r.mean_per_class == 100.0
    assert r.chosen_l2 in r.val_scores and set(r.val_scores) == set(r.iterations)
    assert r.chosen_C == pytest.approx(1 / (2 * r.chosen_l2))
    m = r.as_metrics("linear/blobs")
    assert m["linear/blobs/top1"] == 100.0 and "linear/blobs/C" in m


def test_regularisation_is_chosen_on_validation_only():
    grid = (1e-3, 1e5)
    train, val, test = _shared_noise(200, 0), _shared_noise(200, 1), _shared_noise(400, 2)
    r = lbfgs_linear_eval(train, val, test, 2, l2_values=grid, **FAST)
    # weak regularisation finds x1 - x2 and wins on validation
    assert r.chosen_l2 == 1e-3 and r.val_scores[1e-3] == 100.0 and r.val_scores[1e5] < 75.0
    assert r.top1 == 100.0
    # test labels never steer the choice: with shuffled or inverted test labels the same λ is
    # chosen from the same validation scores; only the reported test numbers change
    for yte in (test[1][torch.randperm(400, generator=_gen(3))], 1 - test[1]):
        r2 = lbfgs_linear_eval(train, val, (test[0], yte), 2, l2_values=grid, **FAST)
        assert r2.chosen_l2 == r.chosen_l2 and r2.val_scores == r.val_scores
        assert r2.top1 < 60.0
    # validation labels do: labelled by the sign of x1, the heavily regularised fit (≈ class
    # means, which differ on x1 only) matches them better
    r3 = lbfgs_linear_eval(train, (val[0], (val[0][:, 0] > 0).long()), test, 2, l2_values=grid, **FAST)
    assert r3.chosen_l2 == 1e5 and r3.val_scores[1e5] > r3.val_scores[1e-3]


def test_ties_go_to_the_smallest_l2_and_bad_arguments():
    r = lbfgs_linear_eval(_blobs(30, 0), _blobs(15, 1), _blobs(15, 2), 3, l2_values=(1e-2, 1.0, 10.0), **FAST)
    assert all(v == 100.0 for v in r.val_scores.values()) and r.chosen_l2 == 1e-2
    with pytest.raises(ValueError, match="select_by"):
        lbfgs_linear_eval(_blobs(9, 0), _blobs(9, 1), _blobs(9, 2), select_by="top5")
    with pytest.raises(ValueError, match="l2_values"):
        lbfgs_linear_eval(_blobs(9, 0), _blobs(9, 1), _blobs(9, 2), l2_values=(0.0, 1.0))
    mpc = lbfgs_linear_eval(_blobs(30, 0), _blobs(15, 1), _blobs(15, 2), l2_values=(1.0,),
                            select_by="mean_per_class", **FAST)
    assert mpc.select_by == "mean_per_class" and mpc.mean_per_class == 100.0
