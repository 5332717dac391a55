"""Deterministic, class-balanced index splits, and their JSON form.

Splits are index arrays into a source. They are computed per class (so every split keeps the
class proportions) from a seeded numpy Generator only, so the same labels + seed give the same
split on any machine. Overlapping splits are rejected wherever splits are made or loaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch


def _as_numpy(labels: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {labels.shape}")
    return labels.astype(np.int64, copy=False)


def _check_disjoint(split: dict[str, np.ndarray]) -> None:
    every = np.concatenate([np.asarray(v).ravel() for v in split.values()]) if split else np.empty(0)
    if len(np.unique(every)) == len(every):
        return
    names = list(split)
    for a in range(len(names)):
        if len(np.unique(split[names[a]])) != len(split[names[a]]):
            raise ValueError(f"split {names[a]!r} repeats indices")
        for b in range(a + 1, len(names)):
            both = np.intersect1d(split[names[a]], split[names[b]])
            if len(both):
                raise ValueError(f"splits {names[a]!r} and {names[b]!r} overlap ({len(both)} indices, "
                                 f"e.g. {both[:5].tolist()})")


def stratified_split(labels: torch.Tensor | np.ndarray, fractions: dict[str, float],
                     seed: int) -> dict[str, np.ndarray]:
    """Split indices 0..N-1 into named parts with the given fractions, per class.

    Within each class (label -1 = unlabelled is treated as one group, so an unlabelled set gets
    a plain random split) the shuffled indices are cut at round(n * cumulative fraction), so the
    parts of a class add up to round(n * sum(fractions)). Fractions summing below 1 leave the
    rest unused. Returns sorted int64 index arrays.
    """
    if not fractions:
        raise ValueError("fractions is empty")
    names = list(fractions)
    fr = np.asarray([fractions[n] for n in names], dtype=np.float64)
    if (fr <= 0).any() or fr.sum() > 1 + 1e-9:
        raise ValueError(f"fractions must be > 0 and sum to at most 1, got {fractions}")
    labels = _as_numpy(labels)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    bounds_frac = np.concatenate([[0.0], np.cumsum(fr)])
    for cls in np.unique(labels):  # sorted, so the rng is consumed in a fixed order
        idx = rng.permutation(np.flatnonzero(labels == cls))
        bounds = np.floor(len(idx) * bounds_frac + 0.5).astype(int).clip(max=len(idx))
        for k, n in enumerate(names):
            parts[n].append(idx[bounds[k]:bounds[k + 1]])
    split = {n: np.sort(np.concatenate(p)).astype(np.int64) for n, p in parts.items()}
    _check_disjoint(split)
    return split


def class_balanced_subset(labels: torch.Tensor | np.ndarray, fraction_or_per_class: float | int,
                          seed: int) -> np.ndarray:
    """Sorted indices of a labelled subset with the same share of every class.

    A float in (0, 1] takes that fraction of each class (at least one image per class, e.g.
    0.01 for "1 % of the labels"); an int k >= 1 takes exactly k per class (k-shot; a class with
    fewer than k images is an error). Unlabelled entries (-1) are never selected.
    """
    labels = _as_numpy(labels)
    classes = np.unique(labels[labels >= 0])
    if len(classes) == 0:
        raise ValueError("class_balanced_subset needs labelled data (all labels are -1)")
    amount = fraction_or_per_class
    if isinstance(amount, bool) or not isinstance(amount, (int, float, np.integer, np.floating)):
        raise ValueError(f"fraction_or_per_class must be a float in (0, 1] or an int >= 1, got {amount!r}")
    is_fraction = isinstance(amount, (float, np.floating))
    if (is_fraction and not 0 < amount <= 1) or (not is_fraction and amount < 1):
        raise ValueError(f"fraction_or_per_class must be a float in (0, 1] or an int >= 1, got {amount!r}")
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in classes:
        idx = rng.permutation(np.flatnonzero(labels == cls))
        k = max(1, int(np.floor(len(idx) * amount + 0.5))) if is_fraction else int(amount)
        if k > len(idx):
            raise ValueError(f"class {cls} has only {len(idx)} examples, {k} requested")
        chosen.append(idx[:k])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def save_split(split: dict[str, np.ndarray], path: str | Path) -> None:
    """Write {name: sorted indices} as JSON (readable, diffable, stable across numpy versions)."""
    split = {n: np.asarray(v, dtype=np.int64) for n, v in split.items()}
    _check_disjoint(split)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({n: v.tolist() for n, v in split.items()}) + "\n")


def load_split(path: str | Path) -> dict[str, np.ndarray]:
    split = {n: np.asarray(v, dtype=np.int64) for n, v in json.loads(Path(path).read_text()).items()}
    _check_disjoint(split)
    return split
