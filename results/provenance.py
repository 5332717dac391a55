"""Tables that never mix silently.

A table row averages seeds. Its seeds should come from cells made the same way: one
configuration (besides the seed), one profile, one code version, one lock, the same data. The
cells collect.py picks (per row and seed, the newest cell of the chosen profile) may not be: an
edited YAML reran seed 0 only, a seed was added from a tree with uncommitted changes, another
lock, other data. Such a row is marked († in Markdown and LaTeX, a "Provenance" column in CSV)
and a block under the table lists its groups and their cells; ``strict`` refuses it instead.
Adding seeds, or re-ordering rows, is not a mix. Every table ends with one provenance line:
profile, commit(s), lock(s), machines."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .tables import MIX_MARK as MARK

# the columns (collect.cell_runs) that must agree within a row, with the names errors use
FIELDS = {"config_id": "config", "profile": "profile", "code": "code", "lock": "lock", "data": "data"}


class MixError(ValueError):
    """--strict: a row's seeds were made differently."""


@dataclass
class Mix:
    row: str
    fields: list[str]          # the FIELDS names that differ
    groups: list[pd.DataFrame]  # the row's cells, one frame per distinct combination


def _finished(cells: pd.DataFrame) -> pd.DataFrame:
    if cells.empty or "status" not in cells:
        return cells
    return cells[cells["status"] == "FINISHED"]


def mixes(cells: pd.DataFrame) -> list[Mix]:
    """The rows whose finished cells differ in any of FIELDS, in row order."""
    done = _finished(cells)
    out = []
    if done.empty or not set(FIELDS) <= set(done.columns):
        return out
    for row, group in done.groupby("row", sort=False):
        differ = [name for col, name in FIELDS.items() if group[col].nunique(dropna=False) > 1]
        if differ:
            parts = [g for _, g in group.groupby(list(FIELDS), sort=False, dropna=False)]
            out.append(Mix(row, differ, sorted(parts, key=lambda g: g["seed"].min())))
    return out


def _code_text(cell: pd.Series) -> str:
    commit = str(cell.get("commit", "unrecorded"))
    if commit == "unrecorded":  # a run from before sassl recorded provenance
        return f"commit unrecorded, code {cell['code']}"
    short = commit[:10] if commit != "unknown" else commit
    dirty = {"true": " + uncommitted changes", "false": "", "unknown": " (changes unknown)"}.get(str(cell.get("dirty")), "")
    return f"commit {short}{dirty}, code {cell['code']}"


def group_text(g: pd.DataFrame) -> str:
    first = g.iloc[0]
    seeds = ", ".join(str(s) for s in sorted(g["seed"]))
    runs = ", ".join(str(r)[:8] for r in g["run_id"])
    return (f"seed{'s' if len(g) > 1 else ''} {seeds}: config {first['config_id']}, profile {first['profile']}, "
            f"{_code_text(first)}, lock {first['lock']}, data {first['data']} (runs {runs})")


def block(found: list[Mix]) -> list[str]:
    """The lines under a table that list each mixed row's groups."""
    if not found:
        return []
    out = [f"{MARK} Mixed provenance: these rows average seeds that were made differently "
           "(`sassl tables --strict` refuses such a table; rerun the odd seeds to make the row whole)."]
    for m in found:
        out.append(f"{m.row} {MARK} differs in {', '.join(m.fields)}:")
        out += [f"  group {i}: {group_text(g)}" for i, g in enumerate(m.groups, start=1)]
    return out


def footer(cells: pd.DataFrame) -> str:
    """One line: the profile, code version(s), lock(s) and machines behind the table's cells."""
    done = _finished(cells)
    if done.empty or "commit" not in done:
        return ""
    versions = []
    for (commit, dirty, code), _ in done.groupby(["commit", "dirty", "code"], sort=False):
        text = _code_text(pd.Series({"commit": commit, "dirty": dirty, "code": code}))
        # a commit names the code unless the tree had changes: then only the code hash does
        versions.append(text.removeprefix("commit ") if str(dirty) == "true" else text.split(", code")[0][7:])
    versions = list(dict.fromkeys(versions))
    parts = [f"profile {', '.join(sorted(done['profile'].unique()))}",
             f"commit{'s' if len(versions) > 1 else ''} {'; '.join(versions)}",
             f"lock {', '.join(sorted(done['lock'].unique()))}",
             f"machines {', '.join(sorted(done['machine'].unique()))}"]
    return "Provenance: " + "; ".join(parts)


def check_strict(found: list[Mix]) -> None:
    if found:
        raise MixError("; ".join(f"row {m.row!r} mixes cells of different {', '.join(m.fields)} "
                                 f"({' vs '.join(group_text(g) for g in m.groups)})" for m in found))


def annotate(tables: dict, cells: pd.DataFrame, strict: bool = False) -> None:
    """Mark the mixed rows of every cell table (and its parts), add the block and the footer
    line; with ``strict`` raise MixError instead."""
    found = mixes(cells)
    if strict:
        check_strict(found)
    marks = {m.row: ", ".join(m.fields) for m in found}
    last = footer(cells)
    lines = block(found) + ([last] if last else [])
    for table in tables.values():
        for t in [table, *table.parts.values()]:
            t.marks = {row: why for row, why in marks.items() if row in t.frame.index}
        table.provenance = lines
