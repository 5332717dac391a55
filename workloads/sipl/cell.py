"""A SIPL cell's evaluation: frozen encoder + MLP head on a target, figure 3's per-epoch
validation accuracy, figure 4's style-pair embedding plot; and a search's per-epoch objective."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from ..data.prepare import evaluation_is_lazy, target_splits
from ..spec import CellSpec, TargetSpec
from .downstream import downstream_mlp
from .embeddings import plot_style_embeddings_2d, style_pairs_embeddings
from .train import build_sipl_model


def build_encoder(spec: CellSpec, state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    encoder = build_sipl_model(spec).encoder
    if state is not None:
        encoder.load_state_dict(state)
    return encoder


def evaluate_sipl(spec: CellSpec, target: TargetSpec, encoder_state: dict[str, torch.Tensor], *,
                  cache_dir: str | Path | None, device: str = "cpu", with_test: bool = True,
                  epoch_hook: Callable[[int, dict[str, float]], None] | None = None,
                  plot_dir: str | Path | None = None) -> dict[str, Any]:
    """Downstream accuracy of the frozen encoder on a target: metrics ``mlp/<key>/…``, the
    per-epoch validation history and, with ``plot_dir``, the figure-4 embedding plot."""
    m, key = spec.method, target.key
    ds = m.downstream
    size = m.geometry.input_size
    mean, std = spec.augmentation.mean, spec.augmentation.std
    # batch by batch when a split is too large to decode first (data.loader auto and its budget):
    # the images are encoded once, so nothing is decoded twice
    splits = target_splits(target, image_size=size, cache_dir=cache_dir, with_test=with_test,
                           lazy=evaluation_is_lazy(spec.data, target, image_size=size))
    encoder = build_encoder(spec, encoder_state).to(device).eval()
    test = splits.test if with_test else splits.val  # a search's objective never reads test
    res = downstream_mlp(encoder, splits.train, splits.val, test, splits.num_classes, hidden=ds.hidden,
                         lr=ds.lr, epochs=ds.epochs, batch_size=ds.batch_size, seed=spec.seed,
                         device=device, mean=mean, std=std, input_size=size, callback_epoch=epoch_hook)
    metrics = {f"mlp/{key}/val_top1": res["best_val_acc"], f"mlp/{key}/best_epoch": res["best_epoch"]}
    if with_test:
        metrics[f"mlp/{key}/top1"] = res["test_acc"]
    out = {"metrics": metrics, "history": res["val_acc_history"], "split_file": splits.split_file, "plot": None}
    if plot_dir is not None:
        x, y = splits.val
        emb = style_pairs_embeddings(encoder, x, y, classes=(0, 1), n_per_class=min(50, int((y == 0).sum()),
                                                                                     int((y == 1).sum())),
                                     augment=m.augment, seed=spec.seed,
                                     input_size=size, device=device)
        path = Path(plot_dir) / "style_embeddings.png"
        plot_style_embeddings_2d(emb["embeddings"], emb["class"], emb["style"], path,
                                 f"{m.variant}: 2 classes × 2 styles (PCA 50 → t-SNE 2)")
        out["plot"] = str(path)
    return out


class SiplMonitor:
    """A search's per-epoch objective for SIPL: downstream validation accuracy of the frozen
    encoder on the first target (test split never read)."""

    def __init__(self, spec: CellSpec, target: TargetSpec, *, epochs: int,
                 cache_dir: str | Path | None, device: str | torch.device = "cpu"):
        m = spec.method  # the head trains ``epochs`` each time (a search's monitor.epochs)
        self.spec = replace(spec, method=replace(m, downstream=replace(m.downstream, epochs=epochs)))
        self.target, self.cache_dir, self.device = target, cache_dir, device

    def __call__(self, encoder: torch.nn.Module) -> dict[str, float]:
        res = evaluate_sipl(self.spec, self.target, encoder.state_dict(), cache_dir=self.cache_dir,
                            device=str(self.device), with_test=False)
        return {"val_top1": res["metrics"][f"mlp/{self.target.key}/val_top1"]}


def evaluate_target(spec: CellSpec, target: TargetSpec, encoder_state: dict[str, torch.Tensor], *,
                    cache_dir: str | Path | None, device: str = "cpu", progress: Callable[[str], None] | None = None,
                    artifact_dir: str | Path | None = None, method_state: dict[str, torch.Tensor] | None = None,
                    ) -> dict[str, Any]:
    """A SIPL cell's evaluation on one target, in the shape an SSL cell's evaluation returns
    (workloads.evaluation.evaluate.evaluate_target): metrics, split file, per-epoch history,
    artifacts. ``progress`` and ``method_state`` have no use here (no probes to report, no
    projector to analyse)."""
    res = evaluate_sipl(spec, target, encoder_state, cache_dir=cache_dir, device=device, plot_dir=artifact_dir)
    return {"metrics": res["metrics"], "split_file": res["split_file"], "artifacts": [res["plot"]] if res["plot"] else [],
            "history": {f"downstream/{target.key}/val_acc": res["history"]}}
