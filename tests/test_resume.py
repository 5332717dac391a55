"""A pretraining resumed from its epoch checkpoint ends where an uninterrupted one does."""
import copy

import pytest
import torch

from orchestrator.experiment import build_experiment
from workloads.callbacks import Callback
from workloads.pretrain import pretrain


class Recorder(Callback):
    def __init__(self):
        self.losses, self.states = {}, {}

    def on_epoch_end(self, stage, epoch, metrics, state):
        self.losses[epoch] = metrics["loss"]
        self.states[epoch] = copy.deepcopy(state())  # what the checkpoint file would hold


@pytest.mark.parametrize("method", ["moco_v2", "simclr"])
def test_resumed_pretraining_matches_uninterrupted(method):
    raw = {"name": "resume", "data": {"image_size": 32}, "backbone": {"arch": "resnet18", "width": 0.125},
           "method": {"name": method}, "optim": {"epochs": 3, "batch_size": 16}, "seeds": [3]}
    if method == "moco_v2":
        raw["method"].update(proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=32, queue_size=64)
    cfg = build_experiment(raw).cells[0].spec
    images = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    whole = Recorder()
    full = pretrain(cfg, images, callback=whole)
    # "interrupted" after epoch 1: a fresh process would start from the checkpoint of epoch 1
    part = Recorder()
    resumed = pretrain(cfg, images, callback=part, resume=whole.states[1])
    assert sorted(part.losses) == [2, 3]  # epoch 1 is not trained again
    for epoch in (2, 3):
        assert part.losses[epoch] == pytest.approx(whole.losses[epoch], rel=1e-5, abs=1e-6)
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5), name
