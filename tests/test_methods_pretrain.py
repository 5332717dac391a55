"""Every SSL method × augmentation-awareness mode trains through the real pretraining loop."""
from dataclasses import replace

import pytest
import torch

from orchestrator.experiment import ConfigError, build_experiment
from workloads.callbacks import Callback
from workloads.methods.build import build_model
from workloads.pretrain import pretrain

SMALL = {"moco_v2": dict(proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=32),
         "moco_v3": dict(proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=32),
         "simclr": dict(proj_hidden_dim=32, proj_dim=16),
         "byol": dict(proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=32),
         "barlow_twins": dict(proj_hidden_dim=32, proj_dim=32)}


def cell(method: str, **fields):
    raw = {"name": "m", "data": {"image_size": 32}, "backbone": {"arch": "resnet18", "width": 0.125},
           "method": {"name": method, **SMALL[method], **fields}, "optim": {"epochs": 1, "batch_size": 16},
           "seeds": [0]}
    return build_experiment(raw).cells[0].spec


# a one-block ViT-Tiny on 4×4 patches of 8 px: the kit-scale ViT's shape, as small as it goes
TINY_VIT = {"arch": "vit_tiny", "vit": {"patch_size": 8, "depth": 1}}


def vit_cell(method: str, **fields):
    raw = {"name": "m", "data": {"image_size": 32}, "backbone": TINY_VIT,
           "method": {"name": method, **SMALL[method], **fields}, "optim": {"epochs": 1, "batch_size": 16},
           "seeds": [0]}
    return build_experiment(raw).cells[0].spec


@pytest.mark.parametrize("method", sorted(SMALL))
@pytest.mark.parametrize("mode", ["vanilla", "augself", "cassle"])
def test_method_and_mode_train_one_epoch(method, mode):
    cfg = cell(method, aug_mode=mode, encoder_depth=2, encoder_width=16, augself_hidden_dim=16)
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    losses = []

    class Rec(Callback):
        def on_progress(self, *a): pass
        def on_artifact(self, *a): pass
        def on_epoch_end(self, stage, epoch, metrics, state): losses.append(metrics["loss"])
    model = pretrain(cfg, images, callback=Rec())
    assert len(losses) == 1 and torch.isfinite(torch.tensor(losses[0]))
    assert bool(getattr(model, "uses_omega", False)) == (mode != "vanilla")


def test_cassle_projector_sees_omega():
    model = build_model(cell("simclr", aug_mode="cassle", encoder_depth=1, encoder_width=8)).eval()
    x = torch.rand(4, 3, 32, 32)
    w1, w2 = torch.zeros(4, 14), torch.rand(4, 14)
    a = model(x, x, omega1=w1, omega2=w1)["loss"]
    b = model(x, x, omega1=w2, omega2=w1)["loss"]
    assert not torch.isclose(a, b)


@pytest.mark.parametrize("fields, message", [
    ({"omega_parts": "cjx"}, "method.omega_parts"),
    ({"cond_mode": "film"}, "method.cond_mode"),
    ({"encoder_depth": -1}, "method.encoder_depth"),
    ({"encoder_width": 0}, "method.encoder_width"),
    ({"aug_mode": "cassle", "encoder_depth": 0, "cond_mode": "mul"}, "encoder_depth"),
])
def test_bad_cassle_fields_name_the_field(fields, message):
    with pytest.raises(ConfigError, match=message):
        cell("simclr", **fields)


@pytest.mark.parametrize("mode", ["augself", "cassle"])
def test_augmentation_aware_modes_compose_with_style_augmentation(mode):
    # SASSL stylizes the left view after its crop; ω still comes from that view's parameters
    from workloads.stylize.model import StyleTransferNet
    cfg = cell("simclr", aug_mode=mode, encoder_depth=1, encoder_width=8, augself_hidden_dim=8)
    style = replace(cfg.augmentation.style, enabled=True, p=1.0, source="in_batch", image_size=32)
    cfg = replace(cfg, augmentation=replace(cfg.augmentation, style=style))
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    losses, pictures = [], []

    class Rec(Callback):
        def on_progress(self, *a): pass
        def on_artifact(self, path, *a): pictures.append(path.rsplit("/", 1)[-1])
        def on_epoch_end(self, stage, epoch, metrics, state): losses.append(metrics["loss"])
    model = pretrain(cfg, images, callback=Rec(), stylizer=StyleTransferNet(width=0.25).eval())
    assert model.uses_omega and len(losses) == 1 and torch.isfinite(torch.tensor(losses[0]))
    assert "style_augmentation.png" in pictures  # the style hook ran
