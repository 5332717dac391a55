"""Mixed precision (optim.precision) and torch.compile (optim.compile) on CPU: every method trains
in bf16 with finite losses close to fp32's, invalid combinations are refused at validation, and
adding the fields did not change the identity of existing cells."""
import pytest
import torch

from orchestrator.experiment import ConfigError, build_experiment, cell_hash
from workloads.callbacks import Callback
from workloads.augment.omega import OMEGA_DIM
from workloads.precision import amp_dtype
from workloads.methods.build import build_model
from workloads.pretrain import pretrain

from specs import changed
from test_methods_pretrain import SMALL, cell


def _batch(seed: int = 0, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    v1, v2 = torch.randn(n, 3, 32, 32, generator=g), torch.randn(n, 3, 32, 32, generator=g)
    return v1, v2, torch.rand(n, OMEGA_DIM, generator=g), torch.rand(n, OMEGA_DIM, generator=g)


@pytest.mark.parametrize("method", sorted(SMALL))
@pytest.mark.parametrize("mode", ["vanilla", "augself", "cassle"])
def test_bf16_loss_is_close_to_fp32_on_a_fixed_batch(method, mode):
    torch.manual_seed(0)
    model = build_model(cell(method, aug_mode=mode, encoder_depth=2, encoder_width=16, augself_hidden_dim=16))
    v1, v2, o1, o2 = _batch()
    omegas = {"omega1": o1, "omega2": o2} if mode != "vanilla" else {}
    fp32 = model(v1, v2, **omegas)["loss"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(v1, v2, **omegas)
    bf16 = out["loss"]
    assert bf16.dtype == torch.float32  # the loss itself runs in fp32 (methods/losses.py)
    assert torch.isfinite(bf16) and bf16.item() == pytest.approx(fp32.item(), rel=0.03)
    bf16.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


class _Rec(Callback):
    def __init__(self):
        self.losses, self.states = [], []

    def on_progress(self, *a): pass
    def on_artifact(self, *a): pass

    def on_epoch_end(self, stage, epoch, metrics, state):
        self.losses.append(metrics["loss"])
        self.states.append(state())


# every method with its queue / predictor / symmetric variants and each conditioning mode, a few
# real training steps in each precision: a bug of the second step (MoCo's queue took bf16 keys
# into its fp32 buffer on CPU) shows only here
VARIANTS = {"moco_v2": {}, "moco_v2-queue": {"queue_size": 64},
            "moco_v2-queue-nopred": {"queue_size": 64, "predictor": False},
            "moco_v2-queue-symmetric-cassle": {"queue_size": 64, "symmetric": True, "aug_mode": "cassle"},
            "moco_v2-augself": {"aug_mode": "augself"}, "simclr": {}, "simclr-cassle": {"aug_mode": "cassle"},
            "byol": {}, "byol-augself": {"aug_mode": "augself"}, "barlow_twins-cassle": {"aug_mode": "cassle"}}


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_method_variant_pretrains_a_few_steps_in_each_precision(variant, precision):
    cfg = cell(variant.split("-")[0], encoder_depth=2, encoder_width=16, augself_hidden_dim=16, **VARIANTS[variant])
    cfg = changed(cfg, {"optim.precision": precision})
    images = torch.randint(0, 256, (48, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    rec = _Rec()
    model = pretrain(cfg, images, callback=rec)  # 3 steps of 16
    assert len(rec.losses) == 1 and torch.isfinite(torch.tensor(rec.losses[0]))
    assert all(p.dtype == torch.float32 for p in model.parameters())  # weights stay fp32
    assert "grad_scaler" not in rec.states[0]  # only fp16 scales the loss
    if VARIANTS[variant].get("queue_size"):
        assert model.queue.dtype == torch.float32 and int(model.queue_ptr) == 3 * 16 % 64
        assert torch.allclose(model.queue.norm(dim=1), torch.ones(64), atol=1e-5)  # unit keys, in fp32


def test_fp16_needs_a_gpu_and_sipl_stays_fp32():
    base = {"name": "p", "optim": {"precision": "fp16"}}
    with pytest.raises(ConfigError, match=r"optim.precision: fp16 needs a GPU \(cluster.gpus_per_worker > 0\)"):
        build_experiment(base)
    assert build_experiment({**base, "cluster": {"gpus_per_worker": 1}}).cells[0].config["optim"]["precision"] == "fp16"
    with pytest.raises(ConfigError, match="optim.precision: SIPL trains in fp32"):
        build_experiment({"name": "s", "method": {"name": "sipl"}, "optim": {"optimizer": "adam", "precision": "bf16"}})
    with pytest.raises(ConfigError, match="optim.precision"):
        build_experiment({"name": "p", "optim": {"precision": "fp8"}})
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        amp_dtype("fp16", torch.device("cpu"))
    assert amp_dtype("bf16", torch.device("cpu")) == torch.bfloat16 and amp_dtype("fp32", torch.device("cpu")) is None


def test_new_fields_at_their_defaults_keep_a_cells_identity():
    cfg = build_experiment({"name": "p"}).cells[0].config
    assert cfg["optim"]["precision"] == "fp32" and cfg["optim"]["compile"] is False
    older = {**cfg, "optim": {k: v for k, v in cfg["optim"].items() if k not in ("precision", "compile")}}
    assert cell_hash(cfg) == cell_hash(older)  # stores made before the fields existed are not rerun
    bf16 = build_experiment({"name": "p", "optim": {"precision": "bf16"}}).cells[0]
    assert bf16.cell_id != cell_hash(older)


def test_compiled_forward_trains_on_cpu(monkeypatch):
    """optim.compile wraps the forward in torch.compile; the model keeps its parameters and
    state-dict keys, so checkpoints are unchanged. The suite traces it with dynamo and AOT
    autograd but skips inductor's C++ code generation (10 min on a busy 2-core machine; the
    docs/gpus.md records that run), so the wiring is tested, not the compiler."""
    real = torch.compile
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: compiled.append(fn) or real(fn, backend="aot_eager", **kw))
    cfg = cell("simclr")
    cfg = changed(cfg, {"optim.compile": True, "data.image_size": 16})
    images = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    rec = _Rec()
    model = pretrain(cfg, images, callback=rec)
    assert torch.isfinite(torch.tensor(rec.losses[0])) and compiled == [model]
    assert not any(k.startswith("_orig_mod") for k in rec.states[0]["model"])
    assert set(rec.states[0]["model"]) == set(model.state_dict())
