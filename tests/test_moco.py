"""MoCo v2 loss, momentum schedule, EMA, queue; optimiser schedule; backbone shapes."""
import copy
import math

import pytest
import torch
import torchvision

from workloads.methods import build_method
from workloads.methods.ema import cosine_momentum
from workloads.methods.losses import info_nce
from workloads.models.backbones import build_backbone
from workloads.optim import LARS, build_optimizer, lr_at


def test_info_nce_on_orthonormal_pairs():
    q = torch.eye(2)
    # logits = I / T; each row: -log(e^{1/T} / (e^{1/T} + e^0)) = log(1 + e^{-1/T})
    for t in (1.0, 0.5):
        assert info_nce(q, q.clone(), t).item() == pytest.approx(math.log1p(math.exp(-1 / t)), rel=1e-6)


def test_info_nce_counts_queue_negatives():
    q = torch.eye(2)
    queue = torch.tensor([[1.0, 0.0]])  # as similar to query 0 as its positive
    loss = info_nce(q, q.clone(), 1.0, queue=queue).item()
    # row 0: logits [1, 0, 1] -> -log(e/(2e+1)); row 1: [0, 1, 0] -> -log(e/(e+2))
    want = 0.5 * (-math.log(math.e / (2 * math.e + 1)) - math.log(math.e / (math.e + 2)))
    assert loss == pytest.approx(want, rel=1e-6)


def test_cosine_momentum_schedule_ends_at_one():
    assert cosine_momentum(0.99, 0.0) == pytest.approx(0.99)
    assert cosine_momentum(0.99, 0.5) == pytest.approx(0.995)
    assert cosine_momentum(0.99, 1.0) == pytest.approx(1.0)


def _tiny_moco(**kw):
    torch.manual_seed(0)
    return build_method("moco_v2", build_backbone("resnet18", 0.125), proj_hidden_dim=32, proj_dim=16,
                        pred_hidden_dim=32, **kw)


def test_key_tower_follows_online_by_ema_and_gets_no_gradient():
    model = _tiny_moco(momentum=0.5, momentum_schedule="constant")
    x = torch.rand(8, 3, 32, 32)
    out = model(x, x.flip(3))
    out["loss"].backward()
    assert all(p.grad is None for p in model.key_backbone.parameters())
    online = next(model.backbone.parameters())
    key = next(model.key_backbone.parameters())
    with torch.no_grad():
        online.add_(1.0)
    before = key.detach().clone()
    model.after_step(0.5)
    assert torch.allclose(key, 0.5 * before + 0.5 * online.detach())


def test_queue_is_filled_with_keys():
    model = _tiny_moco(queue_size=12)
    x = torch.rand(8, 3, 32, 32)
    model(x, x)
    assert int(model.queue_ptr) == 8
    assert torch.allclose(model.queue.norm(dim=1), torch.ones(12), atol=1e-5)


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown SSL method 'simsiam'"):
        build_method("simsiam", build_backbone())


def test_backbone_matches_torchvision_at_width_one_and_scales():
    ours = sum(p.numel() for p in build_backbone("resnet18").parameters())
    tv = sum(p.numel() for n, p in torchvision.models.resnet18().named_parameters() if not n.startswith("fc"))
    assert ours == tv
    assert build_backbone("resnet50").out_dim == 2048
    half = build_backbone("resnet18", 0.5)
    assert half.out_dim == 256 and half(torch.rand(2, 3, 32, 32)).shape == (2, 256)
    cifar = build_backbone("resnet18", 0.25, "cifar")
    assert cifar.stages(torch.rand(1, 3, 32, 32))[0].shape[-1] == 32  # no downsampling in the stem


def test_lr_schedule_warmup_then_cosine():
    assert lr_at(0, 100, 1.0, warmup_steps=10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, warmup_steps=10) == pytest.approx(1.0)
    assert lr_at(55, 100, 1.0, warmup_steps=10) == pytest.approx(0.5)
    assert lr_at(100, 100, 1.0, warmup_steps=10) == pytest.approx(0.0)


def test_lars_excludes_biases_and_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4))
    opt = build_optimizer(model, "lars", 0.1, 0.9, 1e-4)
    assert isinstance(opt, LARS)
    excluded = [g for g in opt.param_groups if g["lars_exclude"]]
    assert sum(p.numel() for g in excluded for p in g["params"]) == 4 + 4 + 4  # bias, BN weight, BN bias
    loss = model(torch.randn(8, 4)).pow(2).mean()
    loss.backward()
    opt.step()


def test_multi_tensor_lars_and_ema_do_the_loops_arithmetic():
    """LARS and the momentum towers' EMA run as multi-tensor (foreach) kernels, a few launches
    per step instead of thousands on a GPU; the result is the per-parameter loop's, step by step
    (decayed and excluded groups, a parameter without gradient, a zero weight, BN buffers)."""
    from workloads.methods.ema import ema_update
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 3),
                               torch.nn.Linear(3, 3))
    with torch.no_grad():
        base[2].weight.zero_()  # trust ratio 1 for a zero weight
    models = {k: copy.deepcopy(base) for k in ("foreach", "loop")}
    targets = {k: copy.deepcopy(base).requires_grad_(False) for k in models}
    opts = {k: build_optimizer(m, "lars", 0.1, 0.9, 1e-3) for k, m in models.items()}
    opts["loop"].foreach = False
    assert opts["foreach"].foreach
    x = torch.randn(16, 4)
    for step in range(3):
        for k, m in models.items():
            opts[k].zero_grad(set_to_none=True)
            m[:3](x).pow(2).mean().backward()  # the last Linear gets no gradient
            opts[k].step()
            ema_update([(m, targets[k])], 0.9 + 0.03 * step, foreach=k == "foreach")
        for (name, a), b in zip(models["foreach"].state_dict().items(), models["loop"].state_dict().values()):
            assert torch.allclose(a.float(), b.float(), rtol=1e-6, atol=1e-7), (step, name)
        for (name, a), b in zip(targets["foreach"].state_dict().items(), targets["loop"].state_dict().values()):
            assert torch.allclose(a.float(), b.float(), rtol=1e-6, atol=1e-7), (step, name)
    assert not torch.equal(models["foreach"][0].weight, base[0].weight)  # it trained
    assert torch.equal(models["foreach"][3].weight, base[3].weight)  # no gradient: untouched
    assert torch.equal(targets["foreach"][1].running_mean, models["foreach"][1].running_mean)  # buffers copied
