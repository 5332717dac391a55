"""Transfer (SASSL table 2) and few-shot (table 6) tables: rows = style dataset, columns = targets.

Metric keys per target key T: linear/T/top1, finetune/T/top1, fewshot<K>/T/top1."""
from __future__ import annotations

import re

import pandas as pd

from .tables import Table, metric_table

KINDS = {"linear": ("Linear probe", "Linear"), "lbfgs": ("Logistic regression (L-BFGS)", "L-BFGS"),
         "finetune": ("Fine-tune", "Fine-tune")}  # key -> (group, short)
METRIC = re.compile(r"^(linear|lbfgs|finetune|fewshot(\d+))/(.+)/top1$")


def targets(cells: pd.DataFrame) -> list[tuple[str, str]]:
    """(key, label) in the YAML's order from the sassl.targets tags (first seen wins); targets that
    only appear in metric names (older runs) follow, labelled by their key."""
    out: dict[str, str] = {}
    for tag in cells.get("targets", pd.Series(dtype=object)).dropna():
        for key, label in tag:
            out.setdefault(key, label)
    for col in cells.columns:
        m = METRIC.match(str(col))
        if m:
            out.setdefault(m.group(3), m.group(3))
    return list(out.items())


def kinds(cells: pd.DataFrame) -> list[str]:
    """Evaluation kinds with at least one value in any cell, in table order."""
    present = {m.group(1) for c in cells.columns if (m := METRIC.match(str(c))) and cells[c].notna().any()}
    return [k for k in KINDS if k in present]


def shots(cells: pd.DataFrame) -> list[int]:
    return sorted({int(m.group(2)) for c in cells.columns
                   if (m := METRIC.match(str(c))) and m.group(2) and cells[c].notna().any()})


def needs_transfer_table(cells: pd.DataFrame) -> bool:
    return len(targets(cells)) > 1 or bool({"finetune", "lbfgs"} & set(kinds(cells)))


def transfer_table(cells: pd.DataFrame, title: str) -> Table:
    """Column groups Linear probe / Fine-tune, one top-1 column per target; a kind nobody logged is left out."""
    columns, groups = {}, []
    for kind in kinds(cells) or ["linear"]:
        group, short = KINDS[kind]
        for key, label in targets(cells):
            columns[f"{short} · {label}"] = f"{kind}/{key}/top1"
            groups.append((group, label))
    return metric_table(cells, columns, title, bold=True, groups=groups)


def fewshot_table(cells: pd.DataFrame, title: str) -> Table:
    """k-shot top-1: mean over seeds of each seed's episode mean, ± std over seeds."""
    columns, groups = {}, []
    for k in shots(cells):
        for key, label in targets(cells):
            if f"fewshot{k}/{key}/top1" in cells:
                columns[f"{k}-shot top-1 · {label}"] = f"fewshot{k}/{key}/top1"
                groups.append((f"{k}-shot top-1", label))
    return metric_table(cells, columns, title, bold=True, groups=groups)


def ranked_table(cells: pd.DataFrame, kind: str, title: str) -> Table:
    """One column per target (top-1, or the target's own metric for L-BFGS) plus the average rank
    over targets (CASSLE tables 2 and 4): rows ranked by their mean per target (1 = best, ties
    share the average rank)."""
    from .cassle import METRIC_NAMES, metric_key, target_metric
    _, short = KINDS[kind]
    columns = {}  # top-1 unless the target reports another metric (CASSLE: mean per-class, R²)
    for key, label in targets(cells):
        metric = target_metric(cells, key)
        header = f"{short} · {label}" + ("" if metric == "top1" else f" ({METRIC_NAMES[metric]})")
        columns[header] = metric_key(cells, key) if kind == "lbfgs" else f"{kind}/{key}/top1"
    table = metric_table(cells, columns, title, bold=True)
    ranks = table.numeric[list(columns)].rank(ascending=False, method="average")
    avg = ranks.mean(axis=1, skipna=True)
    table.frame.insert(len(columns), "Avg. rank", [f"{v:.2f}" for v in avg])
    table.numeric["Avg. rank"] = avg
    if table.bold is not None:
        table.bold.insert(len(columns), "Avg. rank", (avg == avg.min()) & avg.notna() & (avg.notna().sum() > 1))
    return table
