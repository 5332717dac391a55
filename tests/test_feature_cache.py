"""Frozen features are extracted once per (backbone weights, target) and reused from disk."""
import copy

import pytest
import torch

from orchestrator.experiment import build_experiment
from workloads.evaluation.evaluate import evaluate_target
from workloads.evaluation.features import cached_features, state_digest
from workloads.models.backbones import build_backbone

from specs import changed


def test_state_digest_follows_every_weight():
    torch.manual_seed(0)
    state = build_backbone(arch="resnet18", width=0.125).state_dict()
    same = {k: v.clone() for k, v in state.items()}
    assert state_digest(state) == state_digest(same)
    nudged = copy.deepcopy(state)
    name = next(k for k, v in nudged.items() if v.is_floating_point())
    nudged[name].view(-1)[0] += 1e-6
    assert state_digest(nudged) != state_digest(state)
    renamed = {("x." + k if k == name else k): v for k, v in state.items()}
    assert state_digest(renamed) != state_digest(state)


def test_cached_features_compute_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return [(torch.randn(5, 3), torch.arange(5)), (torch.randn(2, 3), torch.arange(2))]
    first, hit1 = cached_features(tmp_path / "f.pt", compute)
    second, hit2 = cached_features(tmp_path / "f.pt", compute)
    assert (hit1, hit2, len(calls)) == (False, True, 1)
    for (x1, y1), (x2, y2) in zip(first, second):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert cached_features(None, compute)[1] is False and len(calls) == 2


@pytest.fixture(scope="module")
def cell_config():
    raw = {"name": "f", "data": {"image_size": 32}, "backbone": {"arch": "resnet18", "width": 0.125},
           "seeds": [0], "evaluation": {
               "targets": [{"key": "dtd", "data": {"name": "dtd-kit", "split": "train"}, "val_split": "val"}],
               "linear_probe": {"lrs": [0.1], "epochs": 1, "random_init_control": False}}}
    return build_experiment(raw).cells[0].spec


def test_a_re_evaluation_with_other_settings_reuses_the_features(tmp_path, cell_config):
    torch.manual_seed(0)
    state = build_backbone(arch="resnet18", width=0.125).state_dict()
    target = cell_config.evaluation.targets[0]

    def run(cfg, weights):
        said = []
        out = evaluate_target(cfg, target, weights, cache_dir=tmp_path, progress=said.append)
        return out["metrics"], any("features from the cache" in m for m in said)

    m1, hit1 = run(cell_config, state)
    m2, hit2 = run(cell_config, state)
    assert not hit1 and hit2 and m1 == m2
    with_lbfgs = changed(cell_config, {"evaluation.lbfgs.enabled": True, "evaluation.lbfgs.l2_exponents": (-1, 1, 3),
                                       "evaluation.lbfgs.max_iter": 20})
    m3, hit3 = run(with_lbfgs, state)
    assert hit3 and m3["linear/dtd/top1"] == m1["linear/dtd/top1"] and "lbfgs/dtd/top1" in m3
    other = {k: v.clone() for k, v in state.items()}
    name = next(k for k, v in other.items() if v.is_floating_point())
    other[name] += 0.01
    assert run(cell_config, other)[1] is False  # other weights: extracted afresh
    assert len(list((tmp_path / "features").glob("dtd-*.pt"))) == 2
