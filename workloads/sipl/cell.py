"""A SIPL cell as the orchestrator runs it: the resolved cell config (plain dict) → the pretext
training's config, and the cell's evaluation (frozen encoder + MLP head on a target, figure 3's
per-epoch validation accuracy, figure 4's style-pair embedding plot)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ..data.prepare import evaluation_is_lazy, target_splits
from .augment import augment_from_dict
from .downstream import downstream_mlp
from .embeddings import plot_style_embeddings_2d, style_pairs_embeddings
from .train import build_sipl_model


def sipl_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """pretrain_sipl's config from a resolved cell config (method: sipl, optim: adam)."""
    m, o, b = cfg["method"], cfg["optim"], cfg["backbone"]
    return {"seed": cfg["seed"], "variant": m["variant"], "alpha": m["alpha"],
            "alpha_warmup_epochs": m["alpha_warmup_epochs"], "arch": b["arch"],
            "width": b["width"], "stem": b["stem"], "embed_dim": m["embed_dim"], "head_hidden": m["head_hidden"],
            "geometry": dict(m["geometry"]), "augment": dict(m["augment"]), "lr": o["lr"],
            "weight_decay": o["weight_decay"], "batch_size": o["batch_size"], "epochs": o["epochs"],
            "val_fraction": m["val_fraction"]}


def build_encoder(cfg: dict[str, Any], state: dict[str, torch.Tensor] | None = None) -> torch.nn.Module:
    encoder = build_sipl_model(sipl_config(cfg)).encoder
    if state is not None:
        encoder.load_state_dict(state)
    return encoder


def evaluate_sipl(cfg: dict[str, Any], target: dict[str, Any], encoder_state: dict[str, torch.Tensor], *,
                  cache_dir: str | Path | None, device: str = "cpu", with_test: bool = True,
                  epoch_hook: Callable[[int, dict[str, float]], None] | None = None,
                  plot_dir: str | Path | None = None) -> dict[str, Any]:
    """Downstream accuracy of the frozen encoder on a target: metrics ``mlp/<key>/…``, the
    per-epoch validation history and, with ``plot_dir``, the figure-4 embedding plot."""
    m, key = cfg["method"], target["key"]
    ds = m["downstream"]
    size = m["geometry"]["input_size"]
    mean, std = cfg["augmentation"]["mean"], cfg["augmentation"]["std"]
    # batch by batch when a split is too large to decode first (data.loader auto and its budget):
    # the images are encoded once, so nothing is decoded twice
    splits = target_splits(target, image_size=size, cache_dir=cache_dir, with_test=with_test,
                           lazy=evaluation_is_lazy(cfg, target, image_size=size))
    encoder = build_encoder(cfg, encoder_state).to(device).eval()
    test = splits.test if with_test else splits.val  # a search's objective never reads test
    res = downstream_mlp(encoder, splits.train, splits.val, test, splits.num_classes, hidden=ds["hidden"],
                         lr=ds["lr"], epochs=ds["epochs"], batch_size=ds["batch_size"], seed=cfg["seed"],
                         device=device, mean=mean, std=std, input_size=size, callback_epoch=epoch_hook)
    metrics = {f"mlp/{key}/val_top1": res["best_val_acc"], f"mlp/{key}/best_epoch": res["best_epoch"]}
    if with_test:
        metrics[f"mlp/{key}/top1"] = res["test_acc"]
    out = {"metrics": metrics, "history": res["val_acc_history"], "split_file": splits.split_file, "plot": None}
    if plot_dir is not None:
        x, y = splits.val
        emb = style_pairs_embeddings(encoder, x, y, classes=(0, 1), n_per_class=min(50, int((y == 0).sum()),
                                                                                     int((y == 1).sum())),
                                     augment=augment_from_dict(dict(m["augment"])), seed=cfg["seed"],
                                     input_size=size, device=device)
        path = Path(plot_dir) / "style_embeddings.png"
        plot_style_embeddings_2d(emb["embeddings"], emb["class"], emb["style"], path,
                                 f"{m['variant']}: 2 classes × 2 styles (PCA 50 → t-SNE 2)")
        out["plot"] = str(path)
    return out


class SiplMonitor:
    """A search's per-epoch objective for SIPL: downstream validation accuracy of the frozen
    encoder on the first target (test split never read)."""

    def __init__(self, cfg: dict[str, Any], target: dict[str, Any], *, epochs: int,
                 cache_dir: str | Path | None, device: str | torch.device = "cpu"):
        self.cfg = {**cfg, "method": {**cfg["method"], "downstream": {**cfg["method"]["downstream"], "epochs": epochs}}}
        self.target, self.cache_dir, self.device = target, cache_dir, device

    def __call__(self, encoder: torch.nn.Module) -> dict[str, float]:
        res = evaluate_sipl(self.cfg, self.target, encoder.state_dict(), cache_dir=self.cache_dir,
                            device=str(self.device), with_test=False)
        return {"val_top1": res["metrics"][f"mlp/{self.target['key']}/val_top1"]}


def evaluate_target(cfg: dict[str, Any], target: dict[str, Any], encoder_state: dict[str, torch.Tensor], *,
                    cache_dir: str | Path | None, device: str = "cpu", progress: Callable[[str], None] | None = None,
                    artifact_dir: str | Path | None = None, method_state: dict[str, torch.Tensor] | None = None,
                    ) -> dict[str, Any]:
    """A SIPL cell's evaluation on one target, in the shape an SSL cell's evaluation returns
    (workloads.evaluation.evaluate.evaluate_target): metrics, split file, per-epoch history,
    artifacts. ``progress`` and ``method_state`` have no use here (no probes to report, no
    projector to analyse)."""
    res = evaluate_sipl(cfg, target, encoder_state, cache_dir=cache_dir, device=device, plot_dir=artifact_dir)
    return {"metrics": res["metrics"], "split_file": res["split_file"], "artifacts": [res["plot"]] if res["plot"] else [],
            "history": {f"downstream/{target['key']}/val_acc": res["history"]}}
