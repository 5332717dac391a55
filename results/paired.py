"""Paired seed statistics: each row against its baseline row, seed by seed.

Rows of a grid share seeds (same initialisation, same data order), so "is this row better than
the baseline with these seeds?" is a paired question: per seed s the difference
d_s = row_s − baseline_s, then the mean of the d_s with a 95 % confidence interval, from the
t distribution with n − 1 degrees of freedom (or, as an option, a percentile bootstrap over the
pairs). A seed that either row lacks (unfinished, failed, metric missing) is left out of that
row's pairs, and the table says how many pairs each value rests on.

Which row is a row's baseline: the experiment's ``tables.baseline`` (one row name or several),
recorded on the MLflow experiment by ``sassl run``; with several, each row is compared with the
closest baseline above it in the grid's order (so ``[MoCo v2, SimCLR, Barlow Twins]`` compares
"SimCLR + CASSLE" with "SimCLR"; rows above the first baseline use the first). Without the setting, the single row with style augmentation
off, when there is exactly one (the SASSL tables), is the baseline of every other row."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from .collect import tables_settings
from .tables import Table

CI_METHODS = ("t", "bootstrap")
LEVEL = 0.95
BOOTSTRAP_SAMPLES = 10_000
MARK = "*"   # the interval excludes 0


class BaselineError(ValueError):
    """A baseline named on the command line is not a row of the experiment."""


@dataclass(frozen=True)
class Paired:
    """A paired mean difference and its interval; lo/hi are NaN with fewer than two pairs."""
    mean: float
    lo: float
    hi: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        return self.n >= 2 and (self.lo > 0 or self.hi < 0)

    def text(self, digits: int = 2, pairs_expected: int | None = None) -> str:
        """"+1.23 ± 0.45*": mean ± half-width (symmetric for t; the bootstrap's interval is shown
        as [lo, hi]); "(n=2)" when this value rests on fewer pairs than the row's."""
        if self.n == 0:
            return "–"
        out = f"{self.mean:+.{digits}f}"
        if self.n >= 2:
            half = (self.hi - self.lo) / 2
            symmetric = math.isclose(self.mean - self.lo, self.hi - self.mean, rel_tol=1e-6, abs_tol=1e-9)
            out += f" ± {half:.{digits}f}" if symmetric else f" [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"
            out += MARK if self.excludes_zero else ""
        if pairs_expected is not None and self.n != pairs_expected:
            out += f" (n={self.n})"
        return out


def paired_interval(diffs, method: str = "t", level: float = LEVEL, seed: int = 0) -> Paired:
    """Mean of the paired differences with its ``level`` interval (see the module docstring)."""
    if method not in CI_METHODS:
        raise ValueError(f"ci: choose one of {CI_METHODS}, got {method!r}")
    d = np.asarray([x for x in diffs if np.isfinite(x)], dtype=float)
    n = len(d)
    if n == 0:
        return Paired(math.nan, math.nan, math.nan, 0)
    mean = float(d.mean())
    if n == 1:
        return Paired(mean, math.nan, math.nan, 1)
    if method == "t":
        half = float(stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / math.sqrt(n))
        return Paired(mean, mean - half, mean + half, n)
    # percentile bootstrap of the mean over resampled pairs; seeded, so a table rebuilds the same
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, size=(BOOTSTRAP_SAMPLES, n))].mean(axis=1)
    lo, hi = np.quantile(means, [0.5 - level / 2, 0.5 + level / 2])
    return Paired(mean, float(lo), float(hi), n)


def baseline_map(rows: list[str], baselines: list[str]) -> dict[str, str]:
    """row -> the closest baseline above it in ``rows``' order (rows above the first baseline: the
    first one, so a single baseline is every row's); baselines map to nothing. Unknown names are
    ignored."""
    present = [r for r in rows if r in set(baselines)]
    if not present:
        return {}
    out, current = {}, present[0]
    for row in rows:
        if row in present:
            current = row
        else:
            out[row] = current
    return out


def pairs(cells: pd.DataFrame, row: str, base: str, key: str) -> pd.Series:
    """Per seed (index) the difference row − base of metric ``key``, over seeds both have FINISHED."""
    done = cells[cells["status"] == "FINISHED"]
    if key not in done:
        return pd.Series(dtype=float)
    a = done[done["row"] == row].set_index("seed")[key]
    b = done[done["row"] == base].set_index("seed")[key]
    d = (a - b.reindex(a.index)).dropna()
    return d.sort_index()


def paired_means(cells: pd.DataFrame, key: str, mapping: dict[str, str]) -> pd.Series:
    """row -> mean paired difference to its baseline (NaN without pairs); for the Δ heat maps."""
    return pd.Series({row: (d.mean() if len(d := pairs(cells, row, base, key)) else math.nan)
                      for row, base in mapping.items()}, dtype=float)


def paired_table(cells: pd.DataFrame, columns: dict[str, str], mapping: dict[str, str], title: str,
                 method: str = "t") -> Table:
    """One row per compared row: "Baseline", one Δ column per metric column, "Pairs" (seeds
    both rows finished). ``columns``: {header: metric key}, as the main table's."""
    rows, numeric = [], []
    finished = cells[cells["status"] == "FINISHED"]
    for row, base in mapping.items():
        seeds = set(finished.loc[finished["row"] == row, "seed"]) & set(finished.loc[finished["row"] == base, "seed"])
        entry, nums = {"": row, "Baseline": base}, {"": row}
        for header, key in columns.items():
            p = paired_interval(pairs(cells, row, base, key).to_numpy(), method)
            entry[f"Δ {header}"] = p.text(pairs_expected=len(seeds))
            nums[f"Δ {header}"] = p.mean
        entry["Pairs"] = str(len(seeds))
        rows.append(entry)
        numeric.append(nums)
    frame = pd.DataFrame(rows).set_index("")
    kind = "t distribution, n − 1 degrees of freedom" if method == "t" else \
        f"percentile bootstrap over the pairs, {BOOTSTRAP_SAMPLES:,} resamples"
    note = (f"Δ: mean over seeds of (row − baseline), paired by seed, ± the half-width of its "
            f"{LEVEL:.0%} confidence interval ({kind}); {MARK}: the interval excludes 0. "
            "Pairs: seeds both rows finished; a value on fewer pairs says (n=…). With one pair there is no interval.")
    # no bold here: the marker says it, and "**…*" would be ambiguous Markdown
    return Table(title, frame, pd.DataFrame(numeric).set_index(""), notes=[note])


# ------------------------------------------------------------------ which rows are baselines
def configured(tag: str | None) -> tuple[list[str] | None, str]:
    """The experiment's recorded ``tables`` settings: (baseline rows or None, ci method)."""
    try:
        data = json.loads(tag) if tag else {}
    except ValueError:
        data = {}
    base = data.get("baseline")
    base = [base] if isinstance(base, str) else (list(base) if base else None)
    ci = data.get("ci", "t")
    return base, ci if ci in CI_METHODS else "t"


def style_off_row(cells: pd.DataFrame) -> str | None:
    """The one row whose cells all have style augmentation off; None when that is not exactly one row."""
    # object compare: None (param not logged) is not "off", numpy's False is
    off = cells.groupby("row", sort=False)["style"].agg(
        lambda s: len(s) > 0 and bool((s.astype(object) == False).all()))  # noqa: E712
    rows = list(off[off].index)
    return rows[0] if len(rows) == 1 else None


def resolve_mapping(cells: pd.DataFrame, baselines: list[str] | None) -> dict[str, str]:
    """row -> its baseline row, from the configured baselines, else the single style-off row."""
    rows = list(dict.fromkeys(cells["row"]))
    if baselines:
        return baseline_map(rows, baselines)
    off = style_off_row(cells)
    return {} if off is None else {r: off for r in rows if r != off}


def experiment_mapping(cells: pd.DataFrame, tracking_uri: str, experiment: str,
                       baselines: list[str] | None = None) -> tuple[dict[str, str], str]:
    """(row -> baseline row, ci method) for an experiment's cells: ``baselines`` given on the
    command line (each must be a row, else BaselineError), else what `sassl run` recorded."""
    recorded, ci = configured(tables_settings(tracking_uri, experiment))
    if cells.empty:
        return {}, ci
    rows = list(dict.fromkeys(cells["row"]))
    unknown = [b for b in baselines or [] if b not in rows]
    if unknown:
        raise BaselineError(f"baseline {unknown[0]!r} is not a row of experiment {experiment!r}; rows: "
                            + ", ".join(repr(r) for r in rows))
    return resolve_mapping(cells, baselines or recorded), ci


__all__ = ["experiment_mapping", "BaselineError", "Paired", "paired_interval", "baseline_map", "pairs", "paired_means", "paired_table", "configured",
           "style_off_row", "resolve_mapping", "CI_METHODS"]
