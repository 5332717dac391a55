"""A search's objective, measured after every pretraining epoch: a linear probe on frozen
features, fit on a class-balanced subset of a target's training data and scored on its
validation split. The test split is never opened (``with_test=False``). With data.loader
stream (or auto beyond the memory budget) the images are decoded batch by batch."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data.prepare import evaluation_is_lazy, take, target_splits
from ..data.splits import class_balanced_subset
from ..spec import CellSpec, MonitorSpec
from .features import extract_features
from .probe import topk_accuracy, train_linear


class ValidationMonitor:
    def __init__(self, spec: CellSpec, monitor: MonitorSpec, *, cache_dir: str | Path | None,
                 device: str | torch.device = "cpu"):
        target, train_size = spec.evaluation.targets[0], monitor.train_size
        # batch by batch when the target is too large to decode (data.loader), as the evaluation:
        # then every epoch decodes the subset and the validation split again, memory stays flat
        splits = target_splits(target, image_size=spec.data.image_size, cache_dir=cache_dir, with_test=False,
                               lazy=evaluation_is_lazy(spec.data, target))
        x, y = splits.train
        if train_size < len(y):
            keep = torch.as_tensor(class_balanced_subset(y, train_size / len(y), seed=target.split_seed))
            x, y = take(x, keep), y[keep]
        self.train, self.val, self.num_classes = (x, y), splits.val, splits.num_classes
        self.mean, self.std = spec.augmentation.mean, spec.augmentation.std
        self.lr, self.epochs, self.seed, self.device = monitor.lr, monitor.epochs, spec.seed, device

    def __call__(self, backbone: nn.Module) -> dict[str, float]:
        (xtr, ytr), (xva, yva) = [(extract_features(backbone, x, self.mean, self.std, device=self.device), y)
                                  for x, y in (self.train, self.val)]
        mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
        head = train_linear((xtr - mu) / sd, ytr, self.num_classes, lr=self.lr, epochs=self.epochs,
                            batch_size=256, seed=self.seed)
        with torch.no_grad():
            return {"val_top1": topk_accuracy(head((xva - mu) / sd), yva, 1)}
