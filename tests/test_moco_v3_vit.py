"""MoCo v3 and the Vision Transformers: the loss against its definition, the momentum schedule,
the ViT's MoCo v3 options, a checkpoint round trip and the schema's checks."""
import copy
import math

import pytest
import torch

from orchestrator.experiment import ConfigError, build_experiment
from workloads.callbacks import Callback
from workloads.methods import build_method
from workloads.methods.build import build_model
from workloads.models.backbones import build_backbone
from workloads.models.vit import sincos_2d
from workloads.optim import build_optimizer
from workloads.pretrain import pretrain

from specs import changed
from test_methods_pretrain import vit_cell


def _tiny_vit(**kw):
    return build_backbone("vit_tiny", image_size=32, **{"patch_size": 8, "depth": 1, **kw})


def _reference_loss(model, v1, v2, t):
    """MoCo v3's pseudo-code (Algorithm 1), written out: q = pred(proj(f(x))), k = proj_m(f_m(x)),
    ctr(q, k) = CrossEntropy(normalize(q) · normalize(k)ᵀ / τ, labels = 0..N-1) · 2τ, and the
    loss ctr(q1, k2) + ctr(q2, k1)."""
    def ctr(q, k):
        q, k = q / q.norm(dim=1, keepdim=True), k / k.norm(dim=1, keepdim=True)
        logits = q @ k.t() / t
        rows = [-(logits[i, i] - torch.logsumexp(logits[i], 0)) for i in range(len(q))]
        return torch.stack(rows).mean() * 2 * t
    q1, q2 = (model.predictor(model.projector(model.backbone(v))) for v in (v1, v2))
    with torch.no_grad():
        k1, k2 = (model.momentum_projector(model.momentum_backbone(v)) for v in (v1, v2))
    return ctr(q1, k2) + ctr(q2, k1)


@pytest.mark.parametrize("t", [0.2, 1.0])
def test_loss_is_the_symmetrised_contrastive_loss_scaled_by_two_t(t):
    torch.manual_seed(0)
    model = build_method("moco_v3", _tiny_vit(), proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=32,
                         temperature=t).double().train()
    # the momentum tower different from the online one, as after some training
    with torch.no_grad():
        for p in list(model.momentum_backbone.parameters()) + list(model.momentum_projector.parameters()):
            p.add_(0.01 * torch.randn_like(p))
    g = torch.Generator().manual_seed(1)
    v1, v2 = (torch.randn(6, 3, 32, 32, generator=g, dtype=torch.float64) for _ in range(2))
    ours = model(v1, v2)["loss"]
    ref = _reference_loss(model, v1, v2, t)
    assert torch.allclose(ours, ref, rtol=1e-10), (ours.item(), ref.item())
    # not symmetric in a trivial way: one direction alone is a different number
    assert not math.isclose(ours.item(), 2 * _reference_loss(model, v1, v1, t).item(), rel_tol=1e-3)


def test_heads_are_moco_v3s():
    model = build_method("moco_v3", _tiny_vit(), proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=24)
    linears = [m for m in model.projector if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 3 and all(m.bias is None for m in linears)
    last = model.projector[-1]
    assert isinstance(last, torch.nn.BatchNorm1d) and not last.affine  # the non-affine BN at the end
    pred = [m for m in model.predictor if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in pred] == [(16, 24), (24, 16)]
    assert all(m.bias is None for m in pred) and not isinstance(model.predictor[-1], torch.nn.BatchNorm1d)
    assert not any(p.requires_grad for p in model.momentum_backbone.parameters())


def test_momentum_rises_on_a_cosine_from_its_base_to_one():
    model = build_method("moco_v3", _tiny_vit(), proj_hidden_dim=32, proj_dim=16, pred_hidden_dim=32,
                         momentum=0.99)
    model.after_step(0.0)
    assert model.current_momentum == pytest.approx(0.99)
    model.after_step(0.5)
    assert model.current_momentum == pytest.approx(0.995)
    before = copy.deepcopy(model.momentum_projector.state_dict())
    with torch.no_grad():
        for p in model.projector.parameters():
            p.add_(1.0)
    model.after_step(1.0)  # momentum 1: the momentum tower does not move
    assert model.current_momentum == pytest.approx(1.0)
    for k, v in model.momentum_projector.state_dict().items():
        if v.is_floating_point() and "running" not in k:
            assert torch.equal(v, before[k]), k


def test_sincos_embedding_is_fixed_and_the_patch_projection_frozen():
    torch.manual_seed(0)
    vit = _tiny_vit(depth=2)
    pe = vit.vit.pos_embed
    assert not pe.requires_grad and torch.equal(pe[0, 0], torch.zeros(192))  # the class token's entry
    table = sincos_2d(4, 192)
    assert torch.allclose(pe[0, 1:], table)
    # token (row 1, column 2): sin(2 ω_0) in the column quarter, sin(ω_0) = sin(1) in the row quarter
    assert pe[0, 1 + 1 * 4 + 2, 0].item() == pytest.approx(math.sin(2.0), abs=1e-6)
    assert pe[0, 1 + 1 * 4 + 2, 96].item() == pytest.approx(math.sin(1.0), abs=1e-6)
    assert not vit.vit.patch_embed.proj.weight.requires_grad
    before = {k: v.clone() for k, v in vit.state_dict().items()}
    opt = build_optimizer(vit, "adamw", 1e-2, 0.9, 0.1)
    vit(torch.rand(4, 3, 32, 32)).pow(2).mean().backward()
    opt.step()
    after = vit.state_dict()
    assert torch.equal(after["vit.pos_embed"], before["vit.pos_embed"])
    assert torch.equal(after["vit.patch_embed.proj.weight"], before["vit.patch_embed.proj.weight"])
    assert not torch.equal(after["vit.blocks.0.attn.qkv.weight"], before["vit.blocks.0.attn.qkv.weight"])
    # the options off: a trained position embedding and patch projection
    free = _tiny_vit(pos_embed="learned", frozen_patch_embed=False)
    assert free.vit.pos_embed.requires_grad and free.vit.patch_embed.proj.weight.requires_grad


def test_moco_v3_init_and_head_counts():
    torch.manual_seed(0)
    small = build_backbone("vit_small", image_size=32, patch_size=16, depth=1)
    assert small.out_dim == 384 and small.vit.blocks[0].attn.num_heads == 12  # timm's own ViT-S has 6
    assert build_backbone("vit_base", image_size=32, patch_size=16, depth=1).out_dim == 768
    assert _tiny_vit().vit.blocks[0].attn.num_heads == 3 and _tiny_vit(num_heads=6).vit.blocks[0].attn.num_heads == 6
    w = _tiny_vit().vit.patch_embed.proj.weight  # uniform in ± sqrt(6 / (3 p² + D)), as a Linear
    bound = math.sqrt(6 / (3 * 64 + 192))
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    qkv = _tiny_vit().vit.blocks[0].attn.qkv.weight  # Q, K and V each Xavier-uniform on its own
    assert qkv.abs().max() <= math.sqrt(6 / (192 + 192)) and qkv.abs().max() > 0.9 * math.sqrt(6 / 384)
    with pytest.raises(ValueError, match="not a multiple of the patch size"):
        build_backbone("vit_tiny", image_size=30, patch_size=8)
    with pytest.raises(ValueError, match="Vision Transformer options"):
        build_backbone("resnet18", patch_size=8)


class _Recorder(Callback):
    def __init__(self):
        self.losses, self.states = {}, {}

    def on_epoch_end(self, stage, epoch, metrics, state):
        self.losses[epoch] = metrics["loss"]
        self.states[epoch] = copy.deepcopy(state())


def test_a_vit_cell_resumes_from_its_checkpoint_where_an_uninterrupted_one_goes(tmp_path):
    """Two epochs of a MoCo v3 ViT cell with AdamW, linear lr scaling and warm-up; the first
    epoch's checkpoint saved to a file and loaded back, the second trained from it."""
    spec = changed(vit_cell("moco_v3"), {"optim.epochs": 2, "optim.optimizer": "adamw", "optim.lr": 1e-3,
                                         "optim.scale_lr": "linear", "optim.warmup_epochs": 1.0,
                                         "optim.weight_decay": 0.1})
    assert spec.optim.peak_lr == pytest.approx(1e-3 * 16 / 256)
    images = torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    whole = _Recorder()
    full = pretrain(spec, images, callback=whole)
    torch.save(whole.states[1], tmp_path / "epoch1.pt")
    part = _Recorder()
    resumed = pretrain(spec, images, callback=part, resume=torch.load(tmp_path / "epoch1.pt", weights_only=False))
    assert sorted(part.losses) == [2] and part.losses[2] == pytest.approx(whole.losses[2], rel=1e-5)
    for (name, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-4, atol=1e-5), name
    # and the backbone's state dict loads into a freshly built backbone that then gives the same feature
    fresh = build_model(spec).backbone
    fresh.load_state_dict(full.backbone.state_dict())
    x = torch.rand(2, 3, 32, 32)
    assert torch.allclose(fresh.eval()(x), full.backbone.eval()(x), atol=1e-6)


@pytest.mark.parametrize("mode", ["augself", "cassle"])
def test_augself_and_cassle_read_the_class_token(mode):
    spec = vit_cell("moco_v3", aug_mode=mode, encoder_depth=2, encoder_width=8, augself_hidden_dim=16)
    model = build_model(spec)
    if mode == "cassle":
        assert model.projector.in_dim == 192 and model.momentum_projector.in_dim == 192
    else:
        assert next(iter(model.augself.heads.values()))[0].in_features == 2 * 192
    images = torch.randint(0, 256, (16, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    rec = _Recorder()
    pretrain(spec, images, callback=rec)
    assert math.isfinite(rec.losses[1])


def _raw(**sections):
    return {"name": "v", "data": {"image_size": 32}, "seeds": [0], **sections}


@pytest.mark.parametrize("sections, message", [
    ({"backbone": {"arch": "vit_tiny", "width": 0.5, "vit": {"patch_size": 8}}}, "width and stem are ResNet options"),
    ({"backbone": {"arch": "resnet18", "vit": {"patch_size": 8}}}, "backbone.vit holds Vision Transformer options"),
    ({"backbone": {"arch": "vit_tiny", "vit": {"patch_size": 5}}}, "patch_size: 5 does not divide data.image_size 32"),
    ({"backbone": {"arch": "vit_tiny", "vit": {"patch_size": 8}}, "method": {"name": "sipl"},
      "optim": {"optimizer": "adam"}}, "SIPL's network is a ResNet"),
    ({"backbone": {"arch": "vit_tiny", "vit": {"pos_embed": "rope"}}}, "backbone.vit.pos_embed"),
    ({"method": {"name": "moco_v3", "temperature": 0}}, "method.temperature"),
])
def test_the_schema_names_a_bad_vit_or_moco_v3_field(sections, message):
    with pytest.raises(ConfigError, match=message):
        build_experiment(_raw(**sections))


def test_new_fields_at_their_defaults_keep_a_resnet_cells_id():
    """backbone.vit and optim.scale_lr are identity-neutral: a ResNet cell's id is what it was;
    writing them out changes a ViT cell's but not a ResNet cell's."""
    plain = build_experiment(_raw()).cells[0]
    assert "vit" in plain.config["backbone"] and plain.config["optim"]["scale_lr"] == "none"
    written = build_experiment(_raw(optim={"scale_lr": "none"})).cells[0]
    assert written.cell_id == plain.cell_id
    scaled = build_experiment(_raw(optim={"scale_lr": "linear"})).cells[0]
    assert scaled.cell_id != plain.cell_id
    vit8 = build_experiment(_raw(backbone={"arch": "vit_tiny", "vit": {"patch_size": 8}})).cells[0]
    vit4 = build_experiment(_raw(backbone={"arch": "vit_tiny", "vit": {"patch_size": 4}})).cells[0]
    assert vit8.cell_id != vit4.cell_id


def test_adamw_decays_every_trained_parameter():
    vit = _tiny_vit()
    opt = build_optimizer(vit, "adamw", 1e-3, 0.9, 0.1)
    assert isinstance(opt, torch.optim.AdamW) and len(opt.param_groups) == 1
    group = opt.param_groups[0]
    assert group["weight_decay"] == 0.1
    assert {id(p) for p in group["params"]} == {id(p) for p in vit.parameters() if p.requires_grad}
    assert any(p.ndim == 1 for p in group["params"])  # biases and norms too, as MoCo v3's code


def test_moco_v3_trains_one_step_in_bf16_with_the_loss_in_fp32():
    spec = changed(vit_cell("moco_v3"), {"optim.precision": "bf16"})
    model = build_model(spec)
    seen = {}
    model.projector[0].register_forward_hook(lambda m, i, o: seen.update(proj=o.dtype))
    x = torch.rand(8, 3, 32, 32)
    with torch.autocast("cpu", torch.bfloat16):
        out = model(x, x.flip(-1))
    assert seen["proj"] == torch.bfloat16 and out["loss"].dtype == torch.float32
    out["loss"].backward()
    assert all(p.grad.dtype == torch.float32 for p in model.parameters() if p.grad is not None)


def test_fields_without_effect_on_a_vit_or_with_adamw_are_reported():
    vit = {"arch": "vit_tiny", "vit": {"patch_size": 8}}
    warnings = build_experiment(_raw(backbone={**vit, "stem": "imagenet"}, method={"name": "moco_v3"},
                                     optim={"optimizer": "adamw", "momentum": 0.8})).warnings
    assert any(w.startswith("backbone.stem: has no effect: `backbone.arch` is a Vision Transformer") for w in warnings)
    assert any(w.startswith("optim.momentum: has no effect: `optim.optimizer` is `adamw`") for w in warnings)
    assert build_experiment(_raw(backbone=vit, method={"name": "moco_v3"}, optim={"optimizer": "adamw"})).warnings == []
