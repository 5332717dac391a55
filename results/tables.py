"""Cells → paper-style tables: rows = method/augmentation, columns = metrics,
``mean ± std`` over seeds; unfinished cells are shown as such, never as zeros."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

# metric key -> column header, for the linear-probe experiments of the foundation
PROBE_COLUMNS = {
    "probe_top1": "Linear probe top-1",
    "probe_top5": "Linear probe top-5",
    "random_init_probe_top1": "Random-init probe top-1",
}


@dataclass
class Table:
    title: str
    frame: pd.DataFrame      # formatted strings, index = row label
    numeric: pd.DataFrame    # mean per (row, metric), for plots and tests

    def markdown(self) -> str:
        return to_markdown(self.frame, self.title)

    def latex(self) -> str:
        return to_latex(self.frame, self.title)

    def save(self, folder: str | Path, stem: str) -> dict[str, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"md": folder / f"{stem}.md", "csv": folder / f"{stem}.csv", "tex": folder / f"{stem}.tex"}
        paths["md"].write_text(self.markdown() + "\n")
        self.frame.to_csv(paths["csv"])
        paths["tex"].write_text(self.latex() + "\n")
        return paths


def mean_std(values: pd.Series, digits: int = 2) -> str:
    v = values.dropna()
    if v.empty:
        return "–"
    if len(v) == 1:
        return f"{v.iloc[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}"


def summary_table(cells: pd.DataFrame, columns: dict[str, str], title: str) -> Table:
    """One row per cell row label (in first-seen order), one column per metric, plus seeds/status."""
    rows, numeric = [], []
    for label, group in cells.groupby("row", sort=False):
        done = group[group["status"] == "FINISHED"]
        entry = {"": label}
        nums = {"": label}
        for key, header in columns.items():
            series = done[key] if key in done else pd.Series(dtype=float)
            entry[header] = mean_std(series)
            nums[header] = series.mean() if not series.dropna().empty else float("nan")
        entry["Seeds"] = str(len(done))
        others = group[group["status"] != "FINISHED"]["status"].str.lower().value_counts()
        entry["Not finished"] = ", ".join(f"{n} {s}" for s, n in others.items()) or ""
        rows.append(entry)
        numeric.append(nums)
    frame = pd.DataFrame(rows).set_index("")
    if not frame["Not finished"].any():
        frame = frame.drop(columns="Not finished")
    return Table(title, frame, pd.DataFrame(numeric).set_index(""))


def to_markdown(frame: pd.DataFrame, title: str = "") -> str:
    header = [frame.index.name or ""] + list(frame.columns)
    body = [[str(i)] + [str(v) for v in row] for i, row in zip(frame.index, frame.itertuples(index=False))]
    widths = [max(len(r[j]) for r in [header] + body) for j in range(len(header))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [f"**{title}**", ""] if title else []
    out += [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(r) for r in body]
    return "\n".join(out)


def to_latex(frame: pd.DataFrame, title: str = "") -> str:
    esc = lambda s: str(s).replace("±", r"$\pm$").replace("%", r"\%").replace("_", r"\_").replace("&", r"\&")  # noqa: E731
    cols = "l" + "c" * len(frame.columns)
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{esc(title)}}}", rf"\begin{{tabular}}{{{cols}}}",
           r"\toprule", " & ".join([""] + [esc(c) for c in frame.columns]) + r" \\", r"\midrule"]
    out += [" & ".join([esc(i)] + [esc(v) for v in row]) + r" \\" for i, row in zip(frame.index, frame.itertuples(index=False))]
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out)
