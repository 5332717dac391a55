"""`sassl rehearse`: how long one target's evaluation takes in a cell, per pipeline.

Each function is named by its pipeline (``Pipeline.rehearse_evaluation``) and runs inside the
rehearsal's Ray task: ``(spec, target, first, device) -> figures``, where ``first`` says the
target is the cell's first (the one the sensitivity analysis and SIPL's embedding plot use).
The figures are floats (logged to MLflow) plus two strings: ``timed`` (the protocols timed, for
the table) and ``note`` (what is not in the estimate, and why). Every cost is measured on a
sample through the code the run uses and scaled to the target's real sizes."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from ..spec import REGRESSION_DATASETS, CellSpec, LbfgsSpec, TargetSpec
from .timing import SAMPLE, timed

ROWS = 4096                # feature rows the probe heads are timed on (their cost is linear in rows)
LBFGS_TIMED_ITERATIONS = 10
SENSITIVITY_SAMPLE = 32    # images the sensitivity analysis is timed on (ten forward passes each)


@dataclass
class _Target:
    """A target's images as the run splits them (workloads.data.prepare.target_splits)."""
    train: Any                 # the training split's source
    fit: int                   # images the probes fit on
    val: int                   # validation images (from val_split, or carved from train)
    test: int
    classes: int
    val_split: bool            # validation is the dataset's own split, not carved from train

    @property
    def images(self) -> int:  # decoded and encoded once each
        return len(self.train) + self.test + (self.val if self.val_split else 0)


def _target(target: TargetSpec, size: int) -> _Target:
    from ..data.prepare import open_ref
    data, frac = target.data, target.label_fraction
    train = open_ref(data, size)
    test = len(open_ref(target.test_ref, size))
    if target.val_split:
        fit, val = len(train), len(open_ref(data.with_split(target.val_split), size))
    else:
        fit = round(len(train) * (1 - target.val_fraction))
        val = len(train) - fit
    classes = max(2, len(getattr(train, "classes", []) or []))
    return _Target(train, round(fit * frac), round(val * frac), test, classes, bool(target.val_split))


def _decoded_sample(t: _Target) -> tuple[torch.Tensor, float]:
    """The first SAMPLE training images, decoded as the run decodes them, and seconds per image."""
    from ..data.lazy import LazyImages
    k = min(SAMPLE, len(t.train))
    t0 = time.perf_counter()
    x = LazyImages(t.train, threads=torch.get_num_threads())[:k]  # no more threads than the piece's CPUs
    return x, (time.perf_counter() - t0) / k


def _random_features(fit: int, dim: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of the real width for a fit on ``fit`` rows, at most ROWS of them (a head's or a
    solver's cost depends on the sizes, not the values, and is linear in rows)."""
    rows = max(16, min(ROWS, fit))
    g = torch.Generator().manual_seed(0)
    return torch.randn(rows, dim, generator=g), torch.randint(0, classes, (rows,), generator=g)


# ---------------------------------------------------------------- SSL methods
def ssl_evaluation(spec: CellSpec, target: TargetSpec, first: bool, device) -> dict[str, Any]:
    """Decoding, features, the linear probe (and its random-init control), few-shot (it reads the
    probe's features), fine-tuning, L-BFGS (per iteration, with its bound) and, on the first
    target, the sensitivity analysis."""
    from ..evaluation.features import extract_features
    from ..evaluation.probe import linear_probe
    ev, size = spec.evaluation, spec.data.image_size
    mean, std = spec.augmentation.mean, spec.augmentation.std
    t = _target(target, size)
    x, decode = _decoded_sample(t)
    backbone = _backbone(spec)
    feat_s, feats = timed(extract_features, backbone, x, mean, std, device=device)
    feat = feat_s / len(x)
    if target.data.name in REGRESSION_DATASETS:  # 300W: features and a ridge fit, nothing else
        ridge = _ridge_cost(ev.lbfgs, t.fit, t.val, t.test, feats.shape[1])
        return {"images": float(t.images), "decode_s_per_image": decode, "features_s_per_image": feat,
                "ridge_s": ridge, "feature_dim": float(feats.shape[1]),
                "estimate_s": t.images * (decode + feat) + ridge, "timed": "ridge regression", "note": ""}
    pc = ev.linear_probe
    f, y = _random_features(t.fit, feats.shape[1], t.classes)
    n = len(f)
    probe_s, _ = timed(linear_probe, (f, y), (f[: n // 4], y[: n // 4]), (f[: n // 4], y[: n // 4]), t.classes,
                       lrs=[pc.lrs[0]], epochs=1, batch_size=pc.batch_size, momentum=pc.momentum)
    per_sample_epoch = probe_s / (n + n + n // 4)  # one fit, then the refit on train + val
    probe = per_sample_epoch * pc.epochs * (len(pc.lrs) * t.fit + t.fit + t.val)
    passes = 2 if pc.random_init_control else 1
    figures = {"images": float(t.images), "decode_s_per_image": decode, "features_s_per_image": feat,
               "probe_s": probe, "feature_dim": float(feats.shape[1])}
    estimate = t.images * decode + passes * (t.images * feat + probe)
    timed_protocols = ["linear probe"] + ["control"] * pc.random_init_control + ["few-shot"] * bool(
        ev.few_shot.shots)
    notes = []
    if ev.fine_tune.enabled:
        figures["finetune_s"] = _fine_tune_cost(spec, backbone, x, t, feat, device)
        estimate += figures["finetune_s"]
        timed_protocols.append("fine-tuning")
    if ev.lbfgs.enabled:
        figures.update(lbfgs_cost(ev.lbfgs, t.fit, t.val, t.classes, feats.shape[1]))
        timed_protocols.append("L-BFGS")
        notes.append(f"L-BFGS not in the estimate (its iterations depend on the features): "
                     f"{figures['lbfgs_s_per_iteration']:.3g} s per iteration, at most "
                     f"{figures['lbfgs_bound_s']:.0f} s ({ev.lbfgs.max_iter} iterations per fit)")
    if ev.sensitivity.enabled and first:
        figures["sensitivity_s"] = _sensitivity_cost(spec, x, min(ev.sensitivity.images, t.test), device)
        estimate += figures["sensitivity_s"]
        timed_protocols.append("sensitivity")
    if target.ten_crop:  # nine more crops of every training image (read at 8/7 of the side)
        figures["ten_crop_s"] = 9 * t.fit * feat + len(t.train) * decode * (8 / 7) ** 2
        estimate += figures["ten_crop_s"]
        timed_protocols.append("ten-crop")
    if ev.rotation.enabled:  # every image at four angles, then a 4-way L-BFGS fit on 4× the rows
        figures["rotation_s"] = 4 * t.images * feat
        estimate += figures["rotation_s"]
        rot = lbfgs_cost(ev.lbfgs, 4 * t.fit, 4 * t.val, 4, feats.shape[1])
        figures["rotation_lbfgs_s_per_iteration"] = rot["lbfgs_s_per_iteration"]
        timed_protocols.append("rotation")
        notes.append(f"rotation's L-BFGS not in the estimate: {rot['lbfgs_s_per_iteration']:.3g} s per iteration")
    if ev.corruptions.enabled:
        figures["corruptions_s"] = _corruption_cost(ev.corruptions, x, t.test, feat)
        estimate += figures["corruptions_s"]
        timed_protocols.append("corruptions")
        notes.append("corrupted images are made once per experiment (cached), the first cell pays for them")
    if ev.retrieval.enabled:
        figures["retrieval_s"] = _retrieval_cost(ev.retrieval, t.test, feats.shape[1])
        estimate += figures["retrieval_s"]
        timed_protocols.append("retrieval")
    if ev.conditioning_check.enabled and first:
        figures["conditioning_s"] = _conditioning_cost(spec, x, min(ev.conditioning_check.images, t.test), device)
        estimate += figures["conditioning_s"]
        if figures["conditioning_s"] > 0:  # a projector that reads ω (else the check is skipped)
            timed_protocols.append("conditioning check")
    return {**figures, "estimate_s": estimate, "timed": " + ".join(timed_protocols), "note": "; ".join(notes)}


def _fine_tune_cost(spec: CellSpec, backbone, x: torch.Tensor, t: _Target, feat: float, device) -> float:
    """Seconds of the target's fine-tuning: one epoch of workloads' fine_tune on the decoded
    sample (fit, then refit on it and 2 more) gives the seconds per image trained; the run trains
    each lr on train and refits the best on train + val, for its epochs, and predicts val per lr
    and test once (at about the features' cost)."""
    from ..evaluation.finetune import fine_tune
    ft = spec.evaluation.fine_tune
    k = len(x)
    y = torch.arange(k) % 2
    seconds, _ = timed(fine_tune, lambda: _backbone(spec), backbone.state_dict(), (x, y), (x[:2], y[:2]),
                       (x[:2], y[:2]), 2, mean=spec.augmentation.mean, std=spec.augmentation.std,
                       lrs=[ft.lrs[0]], epochs=1, batch_size=min(ft.batch_size, k), momentum=ft.momentum,
                       device=device)
    per_image = seconds / (2 * k + 2)
    trained = ft.epochs * (len(ft.lrs) * t.fit + t.fit + t.val)
    return per_image * trained + feat * (len(ft.lrs) * t.val + t.test)


def lbfgs_cost(lb: LbfgsSpec, fit: int, val: int, classes: int, dim: int) -> dict[str, float]:
    """L-BFGS's seconds per iteration at the target's size: the run's solver for a few iterations
    on features of the real width at the grid's weakest λ (the slowest to converge), scaled
    linearly in rows as its matmuls are; and its bound, every fit of the λ grid and the refit on
    train + val run to ``max_iter``. The run stops a fit once it converges, usually far earlier,
    and logs the iterations it took (``lbfgs/<target>/iterations``)."""
    from ..evaluation.lbfgs import fit_logistic_lbfgs, l2_grid
    x, y = _random_features(fit, dim, classes)
    rows = len(x)
    grid = l2_grid(*lb.l2_exponents)
    seconds, (_, _, iterations) = timed(fit_logistic_lbfgs, x, y, classes, min(grid), max_iter=LBFGS_TIMED_ITERATIONS)
    per_row = seconds / max(1, iterations) / rows
    return {"lbfgs_s_per_iteration": per_row * fit,
            "lbfgs_bound_s": per_row * lb.max_iter * (len(grid) * fit + fit + val)}


def _sensitivity_cost(spec: CellSpec, x: torch.Tensor, images: int, device) -> float:
    """The sensitivity analysis of a cell (workloads.evaluation.evaluate._sensitivity's call) on
    a few decoded images, scaled to the images it reads."""
    from ..evaluation.sensitivity import method_sensitivity
    from ..methods.build import build_model
    m = max(2, min(SENSITIVITY_SAMPLE, len(x)))
    model = build_model(spec).to(device).eval()
    t0 = time.perf_counter()
    method_sensitivity(model, x[:m].to(device), mean=spec.augmentation.mean, std=spec.augmentation.std,
                       generator=torch.Generator().manual_seed(0))
    return (time.perf_counter() - t0) / m * images


def _ridge_cost(lb: LbfgsSpec, fit: int, val: int, test: int, dim: int) -> float:
    """The ridge regression of a regression target (136 outputs: 300W's landmarks), run as the
    evaluation runs it on features of the real width and rows (a closed form per λ: cheap)."""
    from ..evaluation.lbfgs import l2_grid
    from ..evaluation.regression import ridge_eval
    g = torch.Generator().manual_seed(0)
    parts = [(torch.randn(max(4, n), dim, generator=g), torch.randn(max(4, n), 136, generator=g))
             for n in (min(fit, ROWS), min(val, ROWS), min(test, ROWS))]
    seconds, _ = timed(ridge_eval, *parts, l2_values=l2_grid(*lb.l2_exponents))
    return seconds * max(1.0, (fit + val) / max(4, min(fit, ROWS) + min(val, ROWS)))


def _corruption_cost(cfg, x: torch.Tensor, test: int, feat: float) -> float:
    """Each corruption at each severity on the test images it reads: the corruption itself,
    timed on the decoded sample at the middle severity, and the features of the result."""
    from ..evaluation.corruptions import corrupt
    n = test if cfg.images is None else min(cfg.images, test)
    sample = x[: max(2, min(8, len(x)))]
    per_image = 0.0
    for name in cfg.names:
        seconds, _ = timed(corrupt, sample, name, 3, 0)
        per_image += seconds / len(sample)
    return len(cfg.severities) * n * (per_image + len(cfg.names) * feat)


def _retrieval_cost(cfg, test: int, dim: int) -> float:
    """Nearest neighbours of every test image among the others: timed on up to 2,048 random
    features of the real width and scaled quadratically (every query against every image)."""
    from ..evaluation.retrieval import retrieval_metrics
    rows = max(8, min(2048, test))
    g = torch.Generator().manual_seed(0)
    feats, labels = torch.randn(rows, dim, generator=g), torch.randint(0, 10, (rows,), generator=g)
    seconds, _ = timed(retrieval_metrics, feats, labels, tuple(cfg.k))
    return seconds * (test / rows) ** 2


def _conditioning_cost(spec: CellSpec, x: torch.Tensor, images: int, device) -> float:
    """CASSLE's Eq. 2 check on a few decoded images, scaled to the images it reads; 0 for a
    projector that does not read ω (the check is skipped)."""
    from ..evaluation.conditioning_check import conditioning_check
    from ..methods.build import build_model
    model = build_model(spec).to(device).eval()
    projector = getattr(model, "projector", None)
    if not getattr(projector, "needs_omega", False):
        return 0.0
    m = max(2, min(SENSITIVITY_SAMPLE, len(x)))
    t0 = time.perf_counter()
    conditioning_check(model.backbone, projector, x[:m].to(device), spec.augmentation.view1,
                       mean=spec.augmentation.mean, std=spec.augmentation.std, generator=torch.Generator().manual_seed(0))
    return (time.perf_counter() - t0) / m * images


def _backbone(spec: CellSpec):
    from ..models.backbones import build_backbone
    return build_backbone(**spec.backbone.architecture(spec.data.image_size))


# ---------------------------------------------------------------- SIPL
def sipl_evaluation(spec: CellSpec, target: TargetSpec, first: bool, device) -> dict[str, Any]:
    """SIPL's downstream classifier: decoding at the encoder's input size, encoding every image
    once with the pretext encoder, and the MLP head's epochs on features of the real size."""
    from ..sipl.cell import build_encoder
    from ..sipl.downstream import encode_images, fit_head
    m = spec.method
    ds, size = m.downstream, m.geometry.input_size
    t = _target(target, size)
    x, decode = _decoded_sample(t)
    enc_s, feats = timed(encode_images, build_encoder(spec), x, mean=spec.augmentation.mean,
                         std=spec.augmentation.std, input_size=size, device=device)
    encode = enc_s / len(x)
    f, y = _random_features(t.fit, feats.shape[1], t.classes)
    n = len(f)
    q = max(1, n // 4)
    head_s, _ = timed(fit_head, (f, y), (f[:q], y[:q]), (f[:q], y[:q]), t.classes, hidden=ds.hidden, lr=ds.lr,
                      epochs=1, batch_size=ds.batch_size, seed=0)
    per_row = head_s / (n + 2 * q)  # an epoch trains on train and scores val; test is scored once
    head = per_row * (ds.epochs * (t.fit + t.val) + t.test)
    figures = {"images": float(t.images), "decode_s_per_image": decode, "features_s_per_image": encode,
               "head_s": head, "feature_dim": float(feats.shape[1])}
    return {**figures, "estimate_s": t.images * (decode + encode) + head, "timed": "MLP head",
            "note": "the embedding plot (at most 200 images) not timed" if first else ""}
