"""A pretrained backbone evaluated on one target: linear probe (plus the random-init control),
fine-tuning and few-shot, as the config asks. Metric names: ``<kind>/<target key>/<metric>``."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.prepare import evaluation_is_lazy, target_splits
from ..models.backbones import build_backbone
from ..spec import CellSpec, TargetSpec, to_dict
from .features import cached_features, extract_features, state_digest
from .few_shot import few_shot
from .finetune import fine_tune
from . import frozen_protocols as frozen
from .probe import linear_probe


def evaluate_target(spec: CellSpec, target: TargetSpec, backbone_state: dict[str, torch.Tensor], *,
                    cache_dir: str | Path | None, device: str = "cpu", progress: Callable[[str], None] | None = None,
                    artifact_dir: str | Path | None = None,
                    method_state: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """{"metrics", "split_file" (the saved train/val indices), "history" (per-epoch curves by
    metric name), "artifacts" (files written to ``artifact_dir``)}."""
    ev, key = spec.evaluation, target.key
    size = spec.data.image_size
    mean, std = spec.augmentation.mean, spec.augmentation.std
    say = progress or (lambda _msg: None)
    # read batch by batch when the split is too large to decode (features and fine-tuning alike)
    lazy = evaluation_is_lazy(spec.data, target)
    splits = target_splits(target, image_size=size, cache_dir=cache_dir, lazy=lazy)
    regression = splits.train[1].is_floating_point()  # 300W: landmark coordinates, not classes

    def make_backbone():
        return build_backbone(**spec.backbone.architecture(spec.data.image_size))

    def extractor(backbone):
        return lambda images: extract_features(backbone, images, mean, std, device=device)

    def features(backbone, cache_path=None):
        extract = extractor(backbone)

        def compute():
            train = (extract(splits.train[0]), splits.train[1])
            if target.ten_crop:  # CUB: ten crops of each training image, read at 8/7 of the side
                big = target_splits(target, image_size=round(size * 8 / 7), cache_dir=cache_dir, lazy=lazy,
                                    with_test=False).train
                train = frozen.ten_crop_features(extract, big[0], big[1], size)
            return [train] + [(extract(x), y) for x, y in (splits.val, splits.test)]
        feats, hit = cached_features(cache_path, compute)
        if hit:
            say(f"{key}: features from the cache")
        return feats

    def probe(backbone, cache_path=None) -> dict[str, Any]:
        pc = ev.linear_probe
        feats = features(backbone, cache_path)
        res = linear_probe(*feats, splits.num_classes, lrs=list(pc.lrs), epochs=pc.epochs,
                           batch_size=pc.batch_size, momentum=pc.momentum, seed=spec.seed)
        return {"result": res, "feats": feats}

    backbone = make_backbone()
    backbone.load_state_dict(backbone_state)
    cache_file = _feature_cache_file(spec, target, backbone_state, cache_dir)
    if regression:  # the classification protocols do not apply
        say(f"{key}: ridge regression")
        metrics = frozen.regression(features(backbone, cache_file), ev.lbfgs, key)
        return {"metrics": metrics, "split_file": splits.split_file, "history": {}, "artifacts": []}
    say(f"{key}: linear probe")
    out = probe(backbone, cache_file)
    metrics = out["result"].as_metrics(f"linear/{key}")
    if ev.few_shot.shots:
        say(f"{key}: few-shot")
        (xtr, ytr), (xva, yva), (xte, yte) = out["feats"]
        res = few_shot(torch.cat([xtr, xva]), torch.cat([ytr, yva]), xte, yte,
                       shots=tuple(ev.few_shot.shots), episodes=ev.few_shot.episodes, seed=spec.seed)
        for k, r in res.items():
            metrics.update(r.as_metrics(f"fewshot{k}/{key}"))
    if ev.lbfgs.enabled or ev.corruptions.enabled:  # one classifier: clean test and corrupted test
        lb = ev.lbfgs
        say(f"{key}: L-BFGS logistic regression ({lb.l2_exponents[2]} λ values)")
        classifier = frozen.lbfgs_classifier(out["feats"], splits.num_classes, lb,
                                             frozen.select_by(spec, target.metric))
        if lb.enabled:
            metrics.update(classifier.result(*out["feats"][2]).as_metrics(f"lbfgs/{key}"))
        if ev.corruptions.enabled:
            metrics.update(frozen.corruption_robustness(
                extractor(backbone), classifier, splits.test, ev.corruptions, key, cache_dir,
                {"target": to_dict(target), "size": size}, say))
    if ev.rotation.enabled:
        say(f"{key}: rotation prediction")
        metrics.update(frozen.rotation_prediction(extractor(backbone), (splits.train, splits.val, splits.test),
                                                  ev.lbfgs, key))
    artifacts = []
    if ev.retrieval.enabled:
        say(f"{key}: retrieval")
        xte, yte = out["feats"][2]
        metrics.update(frozen.retrieval(xte, yte, ev.retrieval, key))
        if artifact_dir is not None and ev.retrieval.figure_queries:
            artifacts.append(frozen.retrieval_figure(
                splits.test[0], yte, xte, ev.retrieval, f"{target.label or key}: nearest neighbours",
                Path(artifact_dir) / "retrieval.png"))
    if ev.fine_tune.enabled:
        ft = ev.fine_tune
        res = fine_tune(make_backbone, backbone_state, splits.train, splits.val, splits.test, splits.num_classes,
                        mean=mean, std=std, lrs=list(ft.lrs), epochs=ft.epochs, batch_size=ft.batch_size,
                        momentum=ft.momentum, seed=spec.seed, device=device,
                        progress=lambda phase, e, n: say(f"{key}: {phase} epoch {e}/{n}"))
        metrics.update(res.as_metrics(f"finetune/{key}"))
    if ev.linear_probe.random_init_control:
        say(f"{key}: random-init control")
        metrics.update(_cached_control(spec, target, cache_dir, lambda: _control(spec, key, make_backbone, probe)))
    if ev.sensitivity.enabled and artifact_dir is not None and method_state is not None:
        say(f"{key}: augmentation sensitivity")
        res, plot = _sensitivity(spec, method_state, frozen.test_sample(splits.test[0], ev.sensitivity.images),
                                 artifact_dir)
        metrics.update(res.as_metrics())
        artifacts.append(plot)
    if ev.conditioning_check.enabled and artifact_dir is not None and method_state is not None:
        say(f"{key}: conditioning check (CASSLE Eq. 2)")
        found = _conditioning(spec, method_state, frozen.test_sample(splits.test[0], ev.conditioning_check.images),
                              artifact_dir)
        if found is not None:  # a projector that does not read ω has nothing to check
            metrics.update(found[0].as_metrics())
            artifacts.append(found[1])
    return {"metrics": metrics, "split_file": splits.split_file, "history": {}, "artifacts": artifacts}


def _sensitivity(spec: CellSpec, method_state: dict[str, torch.Tensor], images: torch.Tensor,
                 artifact_dir: str | Path):
    """Sensitivity of the trained method (backbone stages + projector) and the plot file."""
    import matplotlib
    matplotlib.use("Agg")
    from ..methods.build import build_model
    from .sensitivity import method_sensitivity, plot_sensitivity
    model = build_model(spec)
    model.load_state_dict(method_state)
    aug = spec.augmentation
    res = method_sensitivity(model.eval(), images, mean=aug.mean, std=aug.std,
                             generator=torch.Generator().manual_seed(spec.seed))
    fig = plot_sensitivity(res, title=f"augmentation sensitivity ({spec.method.name})")
    path = Path(artifact_dir) / "augmentation_sensitivity.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return res, str(path)


def _conditioning(spec: CellSpec, method_state: dict[str, torch.Tensor], images: torch.Tensor,
                  artifact_dir: str | Path):
    """(CASSLE's Eq. 2 check of the trained projector, its histogram file); None when the
    projector is not conditioned on ω."""
    from ..methods.build import build_model
    from .conditioning_check import conditioning_check, plot_conditioning_check
    model = build_model(spec)
    model.load_state_dict(method_state)
    projector = getattr(model, "projector", None)
    if not getattr(projector, "needs_omega", False):
        return None
    aug = spec.augmentation
    res = conditioning_check(model.backbone, projector, images, aug.view1, mean=aug.mean, std=aug.std,
                             generator=torch.Generator().manual_seed(spec.seed))
    fig = plot_conditioning_check(res)
    path = Path(artifact_dir) / "conditioning_check.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    return res, str(path)


def _control(spec: CellSpec, key: str, make_backbone, probe) -> dict[str, float]:
    torch.manual_seed(spec.seed)
    return probe(make_backbone())["result"].as_metrics(f"random_init/linear/{key}")


def _key_digest(key: dict[str, Any]) -> str:
    """A cache file's name from everything its content depends on."""
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _feature_cache_file(spec: CellSpec, target: TargetSpec, backbone_state: dict[str, torch.Tensor],
                        cache_dir: str | Path | None) -> Path | None:
    """Features depend on the backbone's weights, the target's splits and the preprocessing only."""
    if cache_dir is None:
        return None
    key = {"weights": state_digest(backbone_state), "backbone": spec.backbone.architecture(spec.data.image_size),
           "target": to_dict(target), "image_size": spec.data.image_size, "mean": spec.augmentation.mean,
           "std": spec.augmentation.std}
    return Path(cache_dir) / "features" / f"{target.key}-{_key_digest(key)}.pt"


def _cached_control(spec: CellSpec, target: TargetSpec, cache_dir: str | Path | None,
                    compute) -> dict[str, float]:
    """The random-init control depends only on architecture, seed, data and probe settings,
    so variants that differ in pretraining (say, with and without SASSL) share one."""
    if cache_dir is None:
        return compute()
    key = {"seed": spec.seed, "backbone": spec.backbone.architecture(spec.data.image_size)}
    key.update(image_size=spec.data.image_size, mean=spec.augmentation.mean, std=spec.augmentation.std,
               probe=to_dict(spec.evaluation.linear_probe), target=to_dict(target))
    path = Path(cache_dir) / "controls" / f"random_init-{_key_digest(key)}.json"
    if path.is_file():
        return json.loads(path.read_text())
    metrics = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(metrics))
    os.replace(tmp, path)  # parallel cells may race; either result is the same
    return metrics
