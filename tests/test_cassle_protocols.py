"""CASSLE's evaluations (issue 43) on synthetic features and tiny models: the conditioning check
(Eq. 2), rotation prediction, corruptions, retrieval metrics, R² of the ridge fit, TenCrop."""
from __future__ import annotations

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
