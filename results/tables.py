"""Cells → paper-style tables: rows = method/augmentation, columns = metrics,
``mean ± std`` over seeds; unfinished cells are shown as such, never as zeros."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

MIX_MARK = "†"  # a row whose seeds were made differently (results/provenance.py)
# column header -> metric key template ({t} = the target key), for single-target linear-probe experiments
PROBE_COLUMNS = {
    "Linear probe top-1": "linear/{t}/top1",
    "Linear probe top-5": "linear/{t}/top5",
    "Random-init probe top-1": "random_init/linear/{t}/top1",
}


@dataclass
class Table:
    title: str
    frame: pd.DataFrame      # formatted strings, index = row label
    numeric: pd.DataFrame    # mean per (row, metric), for plots and tests
    bold: pd.DataFrame | None = None           # same shape as frame: cells to emphasise (Markdown/LaTeX only)
    groups: list[tuple[str, str]] | None = None  # per column (group, label): a two-level LaTeX header
    notes: list[str] = field(default_factory=list)
    parts: dict[str, "Table"] = field(default_factory=dict)  # further tables, printed after this one
    keys: dict[str, str] = field(default_factory=dict)  # column header -> metric key (for paired Δ tables)
    # results/provenance.py: row label -> the fields its seeds differ in, and the lines (the
    # mixed rows' groups, then one provenance line) printed after the table and its parts
    marks: dict[str, str] = field(default_factory=dict)
    provenance: list[str] = field(default_factory=list)

    def _marked(self) -> pd.DataFrame:
        """The frame with a mixed row's label followed by the mark (Markdown and LaTeX)."""
        if not self.marks:
            return self.frame
        return self.frame.rename(index={row: f"{row} {MIX_MARK}" for row in self.marks})

    def csv_frame(self) -> pd.DataFrame:
        """The frame with a "Provenance" column naming what a mixed row's seeds differ in."""
        if not self.marks:
            return self.frame
        return self.frame.assign(Provenance=[f"mixed: {self.marks[r]}" if r in self.marks else ""
                                             for r in self.frame.index])

    def markdown(self) -> str:
        out = [to_markdown(self._marked(), self.title, self.bold)] + [f"Note: {n}" for n in self.notes]
        tail = ["\n".join(self.provenance)] if self.provenance else []
        return "\n\n".join(out + [p.markdown() for p in self.parts.values()] + tail)

    def latex(self) -> str:
        out = [to_latex(self._marked(), self.title, self.bold, self.groups, self.notes + self.provenance)]
        return "\n\n".join(out + [p.latex() for p in self.parts.values()])

    def save(self, folder: str | Path, stem: str) -> dict[str, Path]:
        """<stem>.md/.tex hold everything; CSV holds one frame per file (<stem>-<part>.csv for parts)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"md": folder / f"{stem}.md", "csv": folder / f"{stem}.csv", "tex": folder / f"{stem}.tex"}
        paths["md"].write_text(self.markdown() + "\n")
        self.csv_frame().to_csv(paths["csv"])
        paths["tex"].write_text(self.latex() + "\n")
        for name, part in self.parts.items():
            paths[f"csv:{name}"] = folder / f"{stem}-{name}.csv"
            part.csv_frame().to_csv(paths[f"csv:{name}"])
        return paths


def mean_std(values: pd.Series, digits: int = 2) -> str:
    v = values.dropna()
    if v.empty:
        return "–"
    if len(v) == 1:
        return f"{v.iloc[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def metric_table(cells: pd.DataFrame, columns: dict[str, str], title: str, *, bold: bool = False,
                 groups: list[tuple[str, str]] | None = None) -> Table:
    """One row per cell row label (in first-seen order), one column per {header: metric key}, over
    FINISHED cells, plus Seeds and (when any) Not finished. ``bold`` marks the best mean per column."""
    rows, numeric = [], []
    for label, group in cells.groupby("row", sort=False):
        done = group[group["status"] == "FINISHED"]
        entry, nums = {"": label}, {"": label}
        for header, key in columns.items():
            series = done[key] if key in done else pd.Series(dtype=float)
            entry[header] = mean_std(series)
            nums[header] = series.mean() if not series.dropna().empty else float("nan")
        entry["Seeds"] = str(len(done))
        others = group[group["status"] != "FINISHED"]["status"].str.lower().value_counts()
        entry["Not finished"] = ", ".join(f"{n} {s}" for s, n in others.items()) or ""
        rows.append(entry)
        numeric.append(nums)
    frame = pd.DataFrame(rows).set_index("")
    numeric = pd.DataFrame(numeric).set_index("")
    if not frame["Not finished"].any():
        frame = frame.drop(columns="Not finished")
    if groups is not None:
        groups = groups + [("", c) for c in frame.columns[len(columns):]]
    return Table(title, frame, numeric, best_mask(frame, numeric) if bold else None, groups, keys=dict(columns))


def best_mask(frame: pd.DataFrame, numeric: pd.DataFrame) -> pd.DataFrame:
    """True on the highest mean of each metric column; a column with fewer than two values has no best."""
    mask = pd.DataFrame(False, index=frame.index, columns=frame.columns)
    for col in numeric.columns:
        v = numeric[col].astype(float)
        if v.notna().sum() >= 2:
            mask[col] = np.isclose(v, v.max()) & v.notna()
    return mask


def summary_table(cells: pd.DataFrame, target: str, title: str) -> Table:
    """The single-target linear-probe layout (paper tables 1, 3, 5, 7, 8)."""
    return metric_table(cells, {h: k.format(t=target) for h, k in PROBE_COLUMNS.items()}, title)


def _cells(frame: pd.DataFrame, bold: pd.DataFrame | None, wrap) -> list[list[str]]:
    return [[str(v) if bold is None or not bold.iat[i, j] else wrap(str(v)) for j, v in enumerate(row)]
            for i, row in enumerate(frame.itertuples(index=False))]


def to_markdown(frame: pd.DataFrame, title: str = "", bold: pd.DataFrame | None = None) -> str:
    header = [frame.index.name or ""] + list(frame.columns)
    body = [[str(i)] + r for i, r in zip(frame.index, _cells(frame, bold, lambda s: f"**{s}**"))]
    widths = [max(len(r[j]) for r in [header] + body) for j in range(len(header))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [f"**{title}**", ""] if title else []
    out += [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in body]
    return "\n".join(out)


def esc(s) -> str:
    s = str(s).replace("\\", r"\textbackslash{}")
    for a, b in (("%", r"\%"), ("_", r"\_"), ("&", r"\&"), ("#", r"\#"), ("$", r"\$"), ("±", r"$\pm$"),
                 ("Δ", r"$\Delta$"), ("†", r"$^\dagger$"), ("−", r"$-$"), ("ω", r"$\omega$"), ("β", r"$\beta$"), ("α", r"$\alpha$")):
        s = s.replace(a, b)
    return s


def to_latex(frame: pd.DataFrame, title: str = "", bold: pd.DataFrame | None = None,
             groups: list[tuple[str, str]] | None = None, notes: list[str] = ()) -> str:
    cols = "l" + "c" * len(frame.columns)
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{esc(title)}}}",
           rf"\begin{{tabular}}{{{cols}}}", r"\toprule"]
    if groups and any(g for g, _ in groups):
        out += _two_level_header(groups)
    else:
        out.append(" & ".join([""] + [esc(c) for c in frame.columns]) + r" \\")
    out.append(r"\midrule")
    body = _cells(frame.map(esc), bold, lambda s: rf"\textbf{{{s}}}")
    out += [" & ".join([esc(i)] + r) + r" \\" for i, r in zip(frame.index, body)]
    out += [r"\bottomrule", r"\end{tabular}"]
    out += [rf"\par\footnotesize {esc(n)}" for n in notes]
    return "\n".join(out + [r"\end{table}"])


def _two_level_header(groups: list[tuple[str, str]]) -> list[str]:
    """Group labels spanning their columns (\\multicolumn, \\cmidrule under each), then the column labels."""
    top, rules, col = [""], [], 2
    i = 0
    while i < len(groups):
        j = i
        while j < len(groups) and groups[j][0] == groups[i][0]:
            j += 1
        name, span = groups[i][0], j - i
        if name:
            top.append(rf"\multicolumn{{{span}}}{{c}}{{{esc(name)}}}")
            rules.append(rf"\cmidrule(lr){{{col}-{col + span - 1}}}")
        else:
            top += [""] * span
        col, i = col + span, j
    return [" & ".join(top) + r" \\", "".join(rules), " & ".join([""] + [esc(label) for _, label in groups]) + r" \\"]
