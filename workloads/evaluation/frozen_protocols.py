"""CASSLE's evaluations on a frozen backbone beyond the linear probes (docs/methods.md, "CASSLE's
evaluations"): rotation prediction (Table 7), robustness to weather corruptions (Table 8),
retrieval (Figure 5), landmark regression (300W) and ten-crop training features (CUB). Each
takes the backbone and the target's splits as evaluate_target prepared them and returns metrics
named ``<protocol>/<target key>/…``."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import torch

from ..data.prepare import limited_positions, take
from ..spec import CellSpec, CorruptionsSpec, LbfgsSpec, RetrievalSpec
from .features import Mapped, extract_features
from .lbfgs import LbfgsClassifier, fit_lbfgs_classifier, l2_grid, lbfgs_linear_eval, top1_accuracy
from .regression import ridge_eval
from .retrieval import retrieval_metrics, retrieval_picture
from .rotation import ROTATIONS

Split = tuple  # (images: uint8 N×3×S×S tensor or lazy images, labels)
Extract = Callable[[object], torch.Tensor]  # images (or a Mapped view of them) -> N×D features


def ten_crop_features(extract: Extract, images, labels: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features of the four corner crops, the centre crop and their mirror images (torchvision's
    TenCrop) of ``images`` (read at 8/7 of ``size``, as 256 for 224); every crop keeps its label."""
    from torchvision.transforms.v2.functional import ten_crop
    feats = [extract(Mapped(images, lambda x, c=c: ten_crop(x, [size, size])[c])) for c in range(10)]
    return torch.cat(feats), labels.repeat(10)


def rotation_prediction(extract: Extract, splits: tuple[Split, Split, Split], lb: LbfgsSpec, key: str) -> dict[str, float]:
    """4-way rotation classifier (0/90/180/270°) on frozen features, fit with the L-BFGS protocol."""
    feats = []
    for images, _ in splits:
        xs = [extract(Mapped(images, lambda x, k=k: torch.rot90(x, k, dims=(2, 3)))) for k in range(len(ROTATIONS))]
        feats.append((torch.cat(xs), torch.arange(len(ROTATIONS)).repeat_interleave(len(xs[0]))))
    res = lbfgs_linear_eval(*feats, len(ROTATIONS), l2_values=l2_grid(*lb.l2_exponents), max_iter=lb.max_iter)
    return {f"rotation/{key}/top1": res.top1, f"rotation/{key}/l2": res.chosen_l2}


def corruption_robustness(extract: Extract, classifier: LbfgsClassifier, test: Split, cfg: CorruptionsSpec,
                          key: str, cache_dir: str | Path | None, cache_key: dict,
                          say: Callable[[str], None]) -> dict[str, float]:
    """The clean-trained classifier on corrupted test images: top-1 per corruption and severity,
    the mean over severities per corruption, and on the same (clean) images for reference."""
    from .corruptions import corrupt
    images, labels = test
    keep = sample_positions(len(labels), cfg.images)  # the same images for every cell
    images, labels = take(images, keep), labels[keep]
    n = len(keep)
    out = {f"corruption/{key}/clean": top1_accuracy(classifier.predict(extract(images)), labels.long())}
    for name in cfg.names:
        accs = []
        for sev in cfg.severities:
            say(f"{key}: {name} at severity {sev}")
            bad = _corrupted(images, name, sev, cfg.seed, cache_dir, {**cache_key, "n": n}, corrupt)
            acc = top1_accuracy(classifier.predict(extract(bad)), labels.long())
            out[f"corruption/{key}/{name}/{sev}"] = acc
            accs.append(acc)
        out[f"corruption/{key}/{name}/mean"] = sum(accs) / len(accs)
    return out


def sample_positions(n: int, k: int | None) -> torch.Tensor:
    """k of n test images, a fixed random subset in order (all of them for k None or ≥ n): test
    splits are often sorted by class (the kit's CIFAR-10: its first 2,000 images are 2 classes)."""
    return limited_positions(n, k)


def test_sample(images, k: int | None):
    """The images of :func:`sample_positions` (decoded, for a lazy split)."""
    keep = sample_positions(len(images), k)
    out = take(images, keep)
    return out if isinstance(out, torch.Tensor) else out[:len(out)]


def _corrupted(images, name: str, severity: int, seed: int, cache_dir, cache_key: dict, corrupt) -> torch.Tensor:
    """The corrupted copy, kept on disk: every cell of an experiment scores the same images."""
    def make() -> torch.Tensor:
        x = images if isinstance(images, torch.Tensor) else images[:len(images)]
        return corrupt(x, name, severity, seed)
    if cache_dir is None:
        return make()
    digest = hashlib.sha256(json.dumps({**cache_key, "name": name, "severity": severity, "seed": seed},
                                       sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = Path(cache_dir) / "corruptions" / f"{name}-{severity}-{digest}.pt"
    if path.is_file():
        return torch.load(path, weights_only=True)
    x = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(x, tmp)
    os.replace(tmp, path)
    return x


def retrieval(feats: torch.Tensor, labels: torch.Tensor, cfg: RetrievalSpec, key: str) -> dict[str, float]:
    return retrieval_metrics(feats, labels, tuple(cfg.k)).as_metrics(f"retrieval/{key}")


def retrieval_figure(images, labels: torch.Tensor, feats: torch.Tensor, cfg: RetrievalSpec, title: str,
                     path: Path) -> str:
    """The per-cell picture: ``figure_queries`` queries spread over the test split, each with its
    nearest neighbours (the same queries in every cell of the experiment)."""
    n = len(labels)
    queries = [int(i * n / cfg.figure_queries) for i in range(cfg.figure_queries)]
    fig = retrieval_picture(images, labels, feats, queries, cfg.figure_neighbours, title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return str(path)


def regression(features: list[tuple[torch.Tensor, torch.Tensor]], lb: LbfgsSpec, key: str) -> dict[str, float]:
    """Ridge regression of the targets (300W's landmarks) on frozen features, scored by R²."""
    return ridge_eval(*features, l2_values=l2_grid(*lb.l2_exponents)).as_metrics(f"ridge/{key}")


def lbfgs_classifier(features: list[tuple[torch.Tensor, torch.Tensor]], num_classes: int, lb: LbfgsSpec,
                     select_by: str) -> LbfgsClassifier:
    return fit_lbfgs_classifier(features[0], features[1], num_classes, l2_values=l2_grid(*lb.l2_exponents),
                                select_by=select_by, max_iter=lb.max_iter)


def select_by(spec: CellSpec, metric: str | None) -> str:
    """The validation metric that chooses λ for a target: its own metric, else the probe's."""
    return metric if metric in ("top1", "mean_per_class") else spec.evaluation.lbfgs.select_by
