"""Tests of SIPL's data plane (workloads/sipl): patch geometry, augmentation pairing, loss,
pretext training (determinism, resume), downstream head and embedding analysis."""
from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn

from results.figures import pixels
from specs import cell_spec, geometry, sipl_augment
from workloads.callbacks import Callback, NonFiniteLossError
from workloads.spec import CellSpec, PatchGeometry
from workloads.sipl import (SiplNet, downstream_mlp, make_problems, pretrain_sipl, relic_augment,
                            remove_chromatic_aberration, sample_pairs, sipl_loss, symmetric_kl)
from workloads.sipl.augment import finalize
from workloads.sipl.embeddings import plot_style_embeddings_2d, style_pairs_embeddings, style_pairs_figure

TINY = {"arch": "resnet18", "width": 0.125, "stem": "imagenet", "embed_dim": 32, "head_hidden": 64}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # small tensors: one intra-op thread is faster and immune to a busy machine's scheduling
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _grid_image(geom: PatchGeometry, batch: int) -> torch.Tensor:
    """Every grid cell k = 3 * row + col filled with grey level 20 * k + 10."""
    img = torch.zeros(batch, 3, geom.image_size, geom.image_size, dtype=torch.uint8)
    o, c = geom.origin, geom.cell
    for k in range(9):
        r, col = divmod(k, 3)
        img[:, :, o + r * c:o + (r + 1) * c, o + col * c:o + (col + 1) * c] = 20 * k + 10
    return img


# ---------------------------------------------------------------------------- patches
@pytest.mark.parametrize("geom", [geometry(), PatchGeometry(50, 11, 24, 2)])
def test_labels_match_neighbour_content(geom):
    x = _grid_image(geom, 256)
    centre, neighbour, labels, _ = sample_pairs(x, geom, _gen(1))
    assert centre.shape == neighbour.shape == (256, 3, geom.input_size, geom.input_size)
    assert set(labels.tolist()) == set(range(8))
    cell = labels + (labels >= 4).long()  # raster index skipping the centre
    expected = (20 * cell + 10).float() / 255.0
    torch.testing.assert_close(neighbour, expected.view(-1, 1, 1, 1).expand_as(neighbour), atol=1e-5, rtol=0)
    torch.testing.assert_close(centre, torch.full_like(centre, 90 / 255.0), atol=1e-5, rtol=0)


def test_patches_keep_the_gap_and_jitter():
    geom = PatchGeometry(48, 12, 32, 1)
    assert (geom.cell, geom.gap) == (16, 3)
    _, _, labels, boxes = sample_pairs(torch.zeros(600, 3, 48, 48, dtype=torch.uint8), geom, _gen(2))
    p = geom.patch_size
    c, nb = boxes[:, 0], boxes[:, 1]  # (y0, x0)
    rows_cols = torch.tensor([(0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)])[labels]
    gaps = []
    for axis in range(2):
        d = rows_cols[:, axis] - 1  # -1 above/left, 0 same row/col, +1 below/right
        before = nb[:, axis] + p <= c[:, axis]
        after = c[:, axis] + p <= nb[:, axis]
        assert bool((before[d == -1]).all() and (after[d == 1]).all())
        gaps.append(torch.where(d == -1, c[:, axis] - nb[:, axis] - p, nb[:, axis] - c[:, axis] - p)[d != 0])
        # every patch lies inside its own cell
        cell_start = (rows_cols[:, axis] * geom.cell + geom.origin)
        assert bool(((nb[:, axis] >= cell_start) & (nb[:, axis] + p <= cell_start + geom.cell)).all())
    gaps = torch.cat(gaps)
    assert int(gaps.min()) == geom.gap  # reached, never crossed
    assert int(gaps.max()) == geom.gap + 2 * geom.jitter
    assert set(c[:, 0].tolist()) == {17, 18}  # jitter varies the offset


def test_resizes_other_image_sizes():
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=_gen(0))
    c, n, _, _ = sample_pairs(x, geometry(), _gen(0))
    assert c.shape == (4, 3, 32, 32) and 0.0 <= float(c.min()) and float(n.max()) <= 1.0


@pytest.mark.parametrize("kwargs,msg", [
    (dict(image_size=20, patch_size=12, input_size=32, jitter=0), "image_size 20 is too small.*needs at least 39"),
    (dict(image_size=36, patch_size=12, input_size=32, jitter=0), "needs at least 39"),  # cell 12: no gap left
    (dict(image_size=48, patch_size=12, input_size=32, jitter=-1), "jitter must be >= 0"),
    (dict(image_size=48, patch_size=12, input_size=32, jitter=4), "needs at least 51"),
])
def test_geometry_validation(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        PatchGeometry(**kwargs)


def test_chromatic_aberration_removal():
    x = torch.rand(5, 3, 9, 9, generator=_gen(3))
    out = remove_chromatic_aberration(x)
    gm = torch.tensor([-1.0, 2.0, -1.0]).view(1, 3, 1, 1)
    assert float((out * gm).sum(1).abs().max()) < 1e-6
    torch.testing.assert_close(out.mean(1), x.mean(1))  # grey-axis component untouched
    grey = torch.rand(5, 1, 9, 9, generator=_gen(4)).expand(5, 3, 9, 9)
    torch.testing.assert_close(remove_chromatic_aberration(grey), grey)


# ---------------------------------------------------------------------------- loss
def test_symmetric_kl():
    a, b = torch.randn(6, 8, generator=_gen(5)), torch.randn(6, 8, generator=_gen(6))
    assert float(symmetric_kl(a, a)) == pytest.approx(0.0, abs=1e-7)
    assert float(symmetric_kl(a, b)) > 0
    torch.testing.assert_close(symmetric_kl(a, b), symmetric_kl(b, a))
    la, lb = F.log_softmax(a, 1), F.log_softmax(b, 1)
    ref = (F.kl_div(lb, la, log_target=True, reduction="batchmean")
           + F.kl_div(la, lb, log_target=True, reduction="batchmean"))
    torch.testing.assert_close(symmetric_kl(a, b), ref)


def test_sipl_loss_terms_and_alpha_check():
    torch.manual_seed(0)
    model = SiplNet(**{k: TINY[k] for k in ("arch", "width", "stem", "embed_dim", "head_hidden")})
    x = [torch.randn(4, 3, 32, 32, generator=_gen(i)) for i in range(3)]
    y = torch.tensor([0, 3, 5, 7])
    model.eval()
    loss, acc = sipl_loss(model, [(x[0], x[1])], y, 5.0)
    torch.testing.assert_close(loss, F.cross_entropy(model(x[0], x[1]), y))
    assert 0.0 <= acc <= 100.0
    f1, f2 = model(x[0], x[1]), model(x[0], x[2])
    loss, _ = sipl_loss(model, [(x[0], x[1]), (x[0], x[2])], y, 2.0)
    torch.testing.assert_close(loss, F.cross_entropy(f1, y) + F.cross_entropy(f2, y) + 2.0 * symmetric_kl(f1, f2),
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="alpha .* must be >= 0"):
        sipl_loss(model, [(x[0], x[1]), (x[0], x[2])], y, -1.0)


# ---------------------------------------------------------------------------- augmentation
def test_augment_defaults_are_the_papers():
    a = sipl_augment()
    assert a.crop_scale == (0.32, 1.0) and a.crop_ratio == pytest.approx((3 / 4, 4 / 3))
    assert a.brightness == a.contrast == a.saturation == (0.2, 1.8) and a.hue == (-0.2, 0.2)
    assert (a.blur_sigma, a.solarize_threshold, a.solarize_p, a.grayscale_p) == ((1e-10, 0.2), 0.5, 0.2, 0.05)
    assert (a.kernel_size(224), a.kernel_size(32), a.kernel_size(96)) == (23, 3, 9)
    with pytest.raises(ValueError, match="grayscale_p"):
        sipl_augment(grayscale_p=1.5)


def test_relic_augment_changes_patches_in_range():
    x = torch.rand(16, 3, 32, 32, generator=_gen(7))
    out = relic_augment(x, sipl_augment(), _gen(8))
    assert out.shape == x.shape and float(out.min()) >= -1e-5 and float(out.max()) <= 1 + 1e-5
    assert not torch.allclose(out, x)
    torch.testing.assert_close(relic_augment(x, sipl_augment(), _gen(8)), out)  # seeded


def _patches(b=8):
    g = _gen(9)
    return torch.rand(b, 3, 32, 32, generator=g), torch.rand(b, 3, 32, 32, generator=g)


def _differ(a, b):
    return (a - b).flatten(1).abs().amax(1).min() > 1e-3  # every image differs


def test_opl_is_unaugmented():
    c, n = _patches()
    (pc, pn), = make_problems("opl", c, n, sipl_augment(), _gen(0))
    cfg = sipl_augment()
    torch.testing.assert_close(pc, finalize(c, cfg))
    torch.testing.assert_close(pn, finalize(n, cfg))


def test_siplv1_augments_only_the_neighbour():
    c, n = _patches()
    cfg = sipl_augment()
    (c1, n1), (c2, n2) = make_problems("siplv1", c, n, cfg, _gen(0))
    assert c1 is c2
    torch.testing.assert_close(c1, finalize(c, cfg))
    assert _differ(n1, n2) and _differ(n1, finalize(n, cfg)) and _differ(n2, finalize(n, cfg))


def test_siplv3_shares_one_augmented_centre():
    c, n = _patches()
    cfg = sipl_augment()
    (c1, n1), (c2, n2) = make_problems("siplv3", c, n, cfg, _gen(0))
    assert c1 is c2
    assert _differ(c1, finalize(c, cfg)) and _differ(n1, n2) and _differ(n1, finalize(n, cfg))


def _constant_pair(b=16):
    colour = torch.rand(b, 3, 1, 1, generator=_gen(10)) * 0.8 + 0.1
    patch = colour.expand(b, 3, 32, 32).contiguous()
    return patch, patch.clone()


def test_siplv2_applies_the_same_transform_to_centre_and_neighbour():
    c, n = _constant_pair()
    (c1, n1), (c2, n2) = make_problems("siplv2", c, n, sipl_augment(), _gen(0))
    torch.testing.assert_close(c1, n1)
    torch.testing.assert_close(c2, n2)
    assert _differ(c1, c2)  # A1 != A2
    assert _differ(c1, finalize(c, sipl_augment()))


@pytest.mark.parametrize("variant", ["siplv1", "siplv3"])
def test_other_variants_transform_centre_and_neighbour_differently(variant):
    c, n = _constant_pair()
    for pc, pn in make_problems(variant, c, n, sipl_augment(), _gen(0)):
        assert _differ(pc, pn)


def test_unknown_variant():
    c, n = _patches(2)
    with pytest.raises(ValueError, match="unknown SIPL variant 'simclr'.*opl, siplv1, siplv2, siplv3"):
        make_problems("simclr", c, n, sipl_augment(), _gen(0))


# ---------------------------------------------------------------------------- pretraining
class Recorder(Callback):
    def __init__(self):
        self.epochs, self.states, self.progress = [], [], 0

    def on_progress(self, stage, epoch, step, steps, metrics):
        self.progress += 1

    def on_epoch_end(self, stage, epoch, metrics, state):
        assert stage == "sipl"
        self.epochs.append((epoch, metrics))
        self.states.append(copy.deepcopy(state()))  # the live state keeps training


def _images(n=128, size=48, seed=11):
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=_gen(seed))


def sipl(**fields) -> "CellSpec":
    """A tiny SIPL cell's spec (seed 3, siplv1, alpha 5, 2 epochs of batch 32, Adam at 1e-3 without weight
    decay), with ``fields`` of its method or optim section replaced (unchecked: val_fraction 0 is allowed)."""
    spec = cell_spec(seed=3, backbone={k: TINY[k] for k in ("arch", "width", "stem")},
                     method={"name": "sipl", "variant": "siplv1", "alpha": 5.0, "val_fraction": 0.1,
                             "embed_dim": TINY["embed_dim"], "head_hidden": TINY["head_hidden"]},
                     optim={"optimizer": "adam", "epochs": 2, "batch_size": 32, "lr": 1e-3, "weight_decay": 0.0})
    method = {k: v for k, v in fields.items() if hasattr(spec.method, k)}
    optim = {k: v for k, v in fields.items() if k not in method}
    return replace(spec, method=replace(spec.method, **method), optim=replace(spec.optim, **optim))


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_pretrain_reports_is_deterministic_and_resumes():
    imgs = _images()
    rec_a, rec_b, rec_c = Recorder(), Recorder(), Recorder()
    wa = _weights(pretrain_sipl(sipl(), imgs, callback=rec_a))
    assert [e for e, _ in rec_a.epochs] == [1, 2] and rec_a.progress >= 2
    for _, m in rec_a.epochs:
        assert set(m) == {"loss", "pretext_acc", "kl_weight", "val_pretext_acc", "images_per_s", "epoch_seconds",
                          "skipped_images"} and m["skipped_images"] == 0
        assert m["kl_weight"] == 5.0  # no warm-up: the paper's alpha from the first step
        assert all(math.isfinite(v) for v in m.values())
        assert 0 <= m["val_pretext_acc"] <= 100 and m["images_per_s"] > 0
    wb = _weights(pretrain_sipl(sipl(), imgs, callback=rec_b))
    _assert_same(wa, wb)
    for (_, ma), (_, mb) in zip(rec_a.epochs, rec_b.epochs):
        assert [ma[k] for k in ("loss", "pretext_acc", "val_pretext_acc")] == \
               [mb[k] for k in ("loss", "pretext_acc", "val_pretext_acc")]
    wc = _weights(pretrain_sipl(sipl(), imgs, callback=rec_c, resume=rec_a.states[0]))
    assert [e for e, _ in rec_c.epochs] == [2]
    assert rec_c.epochs[0][1]["loss"] == rec_a.epochs[1][1]["loss"]
    _assert_same(wa, wc)


@pytest.mark.parametrize("variant", ["opl", "siplv2", "siplv3"])
def test_pretrain_other_variants_run(variant):
    rec, seen = Recorder(), []
    pretrain_sipl(sipl(variant=variant, epochs=1, val_fraction=0.0), _images(40, 32), callback=rec,
                  monitor=lambda enc: seen.append(enc.eval()) or {"val_top1": 42.0})
    m = rec.epochs[0][1]
    assert math.isnan(m["val_pretext_acc"]) and math.isfinite(m["loss"]) and m["val_top1"] == 42.0
    assert len(seen) == 1 and seen[0].training  # the monitor gets the encoder; training mode restored
    assert m["kl_weight"] == (0.0 if variant == "opl" else 5.0)


def test_kl_weight_ramps_over_the_warm_up():
    from workloads.sipl.train import kl_weight
    assert [kl_weight(5.0, 0.0, p) for p in (0.0, 0.5, 3.0)] == [5.0, 5.0, 5.0]
    assert [kl_weight(5.0, 2.0, p) for p in (0.0, 0.5, 1.0, 2.0, 7.0)] == [0.0, 1.25, 2.5, 5.0, 5.0]


def test_warm_up_changes_training_only_while_it_lasts():
    """A KL warm-up trains differently (the first steps see a smaller KL weight) and reports
    the weight it reached; OPL has no KL term, so a warm-up changes nothing there."""
    imgs = _images()
    plain, ramp = Recorder(), Recorder()
    w_plain = _weights(pretrain_sipl(sipl(), imgs, callback=plain))
    w_ramp = _weights(pretrain_sipl(sipl(alpha_warmup_epochs=4), imgs, callback=ramp))
    # 115 training images (13 held out) in 4 batches: the last step of epoch e is at e - 1 + 3/4
    assert [m["kl_weight"] for _, m in ramp.epochs] == [5.0 * 0.75 / 4, 5.0 * 1.75 / 4]
    assert any(not torch.equal(w_plain[k], w_ramp[k]) for k in w_plain)
    opl = dict(variant="opl", epochs=1)
    _assert_same(_weights(pretrain_sipl(sipl(**opl), imgs)), _weights(pretrain_sipl(sipl(**opl, alpha_warmup_epochs=4),
                                                                                    imgs)))


def test_pretrain_non_finite_loss_and_bad_config():
    """A NaN or inf loss stops the pretext; bad settings are the schema's to refuse (the spec
    has no checks of its own but the patch grid's)."""
    with pytest.raises(NonFiniteLossError, match="SIPL pretext loss became inf at epoch 1, step 1"):
        pretrain_sipl(sipl(alpha=float("inf")), _images(40))
    for method, match in [({"alpha": -0.5}, "alpha"), ({"alpha_warmup_epochs": -1}, "alpha_warmup_epochs"),
                          ({"variant": "v4"}, "variant"), ({"lrr": 1.0}, "lrr"),
                          ({"geometry": {"image_size": 30}}, "image_size: 30 px is too small")]:
        with pytest.raises(ValidationError, match=match):
            cell_spec(method={"name": "sipl", **method}, optim={"optimizer": "adam"})
    with pytest.raises(ValueError, match="image_size 30 is too small"):
        geometry(image_size=30)


# ---------------------------------------------------------------------------- downstream
def _separable(n, seed):
    """Class 0 dark, class 1 bright (survives chromatic removal), with noise."""
    g = _gen(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    base = torch.where(y == 1, 170, 70).view(-1, 1, 1, 1)
    x = (base + torch.randint(-40, 41, (n, 3, 16, 16), generator=g)).clamp(0, 255).to(torch.uint8)
    return x, y


POOL = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten())  # a fixed "frozen encoder"
NORM = dict(mean=sipl_augment().mean, std=sipl_augment().std)


def test_downstream_learns_and_picks_epoch_on_val_only():
    train, val, test = _separable(200, 0), _separable(60, 1), _separable(60, 2)
    seen = []
    kw = dict(hidden=32, lr=1e-2, epochs=6, batch_size=64, seed=0, input_size=16, **NORM)
    r = downstream_mlp(POOL, train, val, test, 2, callback_epoch=lambda e, m: seen.append(e), **kw)
    assert seen == list(range(1, 7)) and len(r["val_acc_history"]) == 6
    assert r["best_val_acc"] == max(r["val_acc_history"]) >= 90.0 and r["test_acc"] >= 90.0
    assert r["best_epoch"] == r["val_acc_history"].index(r["best_val_acc"]) + 1
    # flipping the test labels changes nothing but the test accuracy: test never steers
    r2 = downstream_mlp(POOL, train, val, (test[0], 1 - test[1]), 2, **kw)
    assert (r2["val_acc_history"], r2["best_epoch"]) == (r["val_acc_history"], r["best_epoch"])
    assert r2["test_acc"] == pytest.approx(100.0 - r["test_acc"])



@pytest.mark.parametrize("bad", [{"epochs": 0}, {"hidden": 0}, {"lr": 0.0}])
def test_downstream_refuses_bad_head_arguments_before_encoding_anything(bad):
    class Refuses(nn.Module):
        def forward(self, x):
            raise AssertionError("the encoder ran before the arguments were checked")
    split = _separable(8, 0)
    kw = dict(hidden=32, lr=1e-2, epochs=2, batch_size=4, seed=0, input_size=16, **NORM) | bad
    with pytest.raises(ValueError, match="epochs and hidden must be >= 1 and lr > 0"):
        downstream_mlp(Refuses(), split, split, split, 2, **kw)

# ---------------------------------------------------------------------------- embeddings
def test_style_pairs_embeddings_and_plot(tmp_path):
    x, y = _separable(60, 3)
    out = style_pairs_embeddings(POOL, x, y, classes=(0, 1), n_per_class=6, augment=sipl_augment(), seed=0,
                                 input_size=16)
    emb, cls, style = out["embeddings"], out["class"], out["style"]
    assert emb.shape == (24, 12)
    assert cls.tolist() == [0] * 6 + [1] * 6 + [0] * 6 + [1] * 6 and style.tolist() == [0] * 12 + [1] * 12
    assert out["image"][:12].tolist() == out["image"][12:].tolist()
    assert _differ(emb[:12], emb[12:])  # two distinct styles
    # one scatter per (class, style) with its 6 points: colour = class, marker = style
    fig = style_pairs_figure(emb, cls, style, title="test")
    (ax,) = fig.axes
    labels = ["class 0, style A1", "class 0, style A2", "class 1, style A1", "class 1, style A2"]
    assert [col.get_label() for col in ax.collections] == labels
    assert [t.get_text() for t in ax.get_legend().get_texts()] == labels and ax.get_title() == "test"
    assert [len(col.get_offsets()) for col in ax.collections] == [6] * 4
    assert np.isfinite(np.concatenate([col.get_offsets() for col in ax.collections])).all()
    colour = [tuple(col.get_facecolor()[0]) for col in ax.collections]
    marker = [col.get_paths()[0].vertices.tobytes() for col in ax.collections]
    assert colour[0] == colour[1] != colour[2] == colour[3] and marker[0] == marker[2] != marker[1] == marker[3]
    path = plot_style_embeddings_2d(emb, cls, style, tmp_path / "styles.png", title="test")
    np.testing.assert_array_equal(pixels(path), pixels(fig))  # the PNG written is this figure
    with pytest.raises(ValueError, match="fewer than n_per_class"):
        style_pairs_embeddings(POOL, x, y, classes=(0, 1), n_per_class=1000, augment=sipl_augment(), input_size=16)


def test_first_batch_problems_are_logged_as_a_picture(tmp_path):
    """A fresh run logs one picture of its first batch's problems (image with both boxes, then the
    patches); it draws nothing at random, so training is the same with or without it."""
    from PIL import Image
    saved = []

    class Pictures(Recorder):
        def on_artifact(self, path, folder=None):
            saved.append(folder)
            Image.open(path).save(tmp_path / "problems.png")

    imgs = _images()
    rec = Pictures()
    w = _weights(pretrain_sipl(sipl(epochs=1), imgs, callback=rec))
    assert saved == ["pictures"]
    _assert_same(w, _weights(pretrain_sipl(sipl(epochs=1), imgs)))
    pic = np.asarray(Image.open(tmp_path / "problems.png").convert("RGB"))
    # siplv1: image + (c, n1) + (c, n2) = 5 tiles of 48 px ×3, 2-px padding, 8 rows
    assert pic.shape == (2 + 8 * (3 * 48 + 2), 2 + 5 * (3 * 48 + 2), 3)
    first = pic[2:2 + 144, 2:2 + 144].reshape(-1, 3)
    assert ((first == (0, 255, 0)).all(1)).sum() > 100 and ((first == (255, 0, 0)).all(1)).sum() > 100
    # the resumed run (epoch 2 of 2) logs no picture
    saved.clear()
    pretrain_sipl(sipl(), imgs, callback=Pictures(), resume=rec.states[0])
    assert saved == []
