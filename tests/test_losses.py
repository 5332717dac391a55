"""Each SSL loss of workloads/methods/losses.py against an independent, loop-by-loop reference
written from the papers' definitions (plain Python over rows, float64), on random inputs."""
from __future__ import annotations

import math

import pytest
import torch

from workloads.methods.losses import barlow_twins_loss, byol_loss, info_nce, nt_xent


def _unit(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


def _dot(a, b):
    return sum(float(x) * float(y) for x, y in zip(a, b))


def _ref_info_nce(q, k, t, queue=()):
    total = 0.0
    for i in range(len(q)):
        logits = [_dot(q[i], kj) / t for kj in k] + [_dot(q[i], n) / t for n in queue]
        total += -logits[i] + math.log(sum(math.exp(v) for v in logits))
    return total / len(q)


def _ref_nt_xent(z1, z2, t):
    views = list(z1) + list(z2)
    b, total = len(z1), 0.0
    for a in range(2 * b):
        partner = a + b if a < b else a - b
        others = [_dot(views[a], views[c]) / t for c in range(2 * b) if c != a]
        total += -_dot(views[a], views[partner]) / t + math.log(sum(math.exp(v) for v in others))
    return total / (2 * b)


def _ref_byol(p, z):
    total = 0.0
    for pi, zi in zip(p, z):
        pn = [float(v) / math.sqrt(_dot(pi, pi)) for v in pi]
        zn = [float(v) / math.sqrt(_dot(zi, zi)) for v in zi]
        total += sum((a - b) ** 2 for a, b in zip(pn, zn))
    return total / len(p)


def _ref_barlow(z1, z2, lambd, eps=1e-5):
    n, d = len(z1), len(z1[0])

    def std(z):
        cols = []
        for j in range(d):
            col = [float(z[i][j]) for i in range(n)]
            mu = sum(col) / n
            var = sum((v - mu) ** 2 for v in col) / n
            cols.append([(v - mu) / math.sqrt(var + eps) for v in col])
        return cols
    a, b = std(z1), std(z2)
    loss = 0.0
    for i in range(d):
        for j in range(d):
            c = sum(a[i][k] * b[j][k] for k in range(n)) / n
            loss += (1 - c) ** 2 if i == j else lambd * c ** 2
    return loss


@pytest.mark.parametrize("seed", [0, 1])
def test_info_nce_matches_reference(seed):
    q, k, queue = _unit(6, 5, seed), _unit(6, 5, seed + 10), _unit(4, 5, seed + 20)
    assert info_nce(q, k, 0.2).item() == pytest.approx(_ref_info_nce(q, k, 0.2), rel=1e-9)
    assert info_nce(q, k, 0.5, queue=queue).item() == pytest.approx(_ref_info_nce(q, k, 0.5, queue), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_nt_xent_matches_reference(seed):
    z1, z2 = _unit(5, 4, seed), _unit(5, 4, seed + 10)
    assert nt_xent(z1, z2, 0.2).item() == pytest.approx(_ref_nt_xent(z1, z2, 0.2), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_byol_loss_matches_reference(seed):
    g = torch.Generator().manual_seed(seed)
    p, z = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(6, 4, generator=g, dtype=torch.float64)
    assert byol_loss(p, z).item() == pytest.approx(_ref_byol(p, z), rel=1e-9)


@pytest.mark.parametrize("seed", [0, 1])
def test_barlow_twins_loss_matches_reference(seed):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(8, 5, generator=g, dtype=torch.float64)
    z2 = z1 + 0.5 * torch.randn(8, 5, generator=g, dtype=torch.float64)
    # the loss standardises in float32 (as BatchNorm does under mixed precision): 1e-5 relative
    assert barlow_twins_loss(z1, z2, 0.0051).item() == pytest.approx(_ref_barlow(z1, z2, 0.0051), rel=1e-5)


def test_the_references_are_not_trivially_equal():
    """Guard against a reference that agrees with anything: different inputs, different values."""
    q = _unit(6, 5, 0)
    assert abs(_ref_info_nce(q, q, 0.2) - _ref_info_nce(q, _unit(6, 5, 1), 0.2)) > 0.1
    assert _ref_byol(q, q) == pytest.approx(0.0, abs=1e-12)
