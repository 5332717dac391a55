"""Tables and plots rebuilt from MLflow alone."""
from __future__ import annotations

from .cassle import cassle_tables
from .collect import NoRunsError, Search, cell_runs, search_runs
from .paired import BaselineError, experiment_mapping, paired_table
from .provenance import MixError, annotate
from .sensitivity import has_sensitivity, sensitivity_table
from .sipl import is_sipl, sipl_table
from .search import SearchSummary, search_stems, search_table, summarize
from .tables import PROBE_COLUMNS, Table, summary_table
from .throughput import latest_throughput, throughput_table
from .transfer import fewshot_table, kinds, needs_transfer_table, ranked_table, shots, targets, transfer_table


def build_tables(experiment: str, tracking_uri: str, baselines: list[str] | None = None,
                 ci: str | None = None, profile: str | None = None, strict: bool = False) -> dict[str, Table]:
    """Every table the experiment's runs support, keyed by file stem: <experiment> (one target,
    linear probe only) or <experiment>-transfer, -ranks, -sensitivity, -fewshot, -search. Each
    cell table with a baseline row gets a "paired" part: Δ to the baseline, paired by seed, with
    its confidence interval (results/paired.py). ``baselines``/``ci`` override what the last
    `sassl run` recorded from the YAML's `tables` block. ``profile``: whose cells (default: the
    newest invocation's); a row whose seeds were made differently is marked, or with ``strict``
    refused (MixError; results/provenance.py)."""
    cells = cell_runs(tracking_uri, experiment, allow_empty=True, profile=profile)
    searches, trials = search_runs(tracking_uri, experiment)
    rehearsed = latest_throughput(tracking_uri, experiment)
    if cells.empty and not searches and rehearsed is None:
        raise NoRunsError(f"experiment {experiment!r} in {tracking_uri} has no cell runs yet (nor search or "
                          "rehearsal runs); run it with `sassl run` (or time it with `sassl rehearse`)")
    out: dict[str, Table] = {}
    if not cells.empty and is_sipl(cells):
        out[f"{experiment}-sipl"] = sipl_table(
            cells, f"{experiment}: best validation accuracy, pretext and downstream (mean ± std over seeds)")
    elif not cells.empty:
        if needs_transfer_table(cells):
            out[f"{experiment}-transfer"] = transfer_table(
                cells, f"{experiment}: transfer top-1 (mean ± std over seeds; best per column in bold)")
        else:
            target = (targets(cells) or [("?", "?")])[0][0]
            out[experiment] = summary_table(
                cells, target, f"{experiment}: linear probe on frozen features (mean ± std over seeds)")
        if "lbfgs" in kinds(cells):
            out[f"{experiment}-ranks"] = ranked_table(
                cells, "lbfgs", f"{experiment}: L-BFGS logistic regression top-1 per target and average rank "
                                "(mean ± std over seeds; best in bold)")
        out.update(cassle_tables(cells, experiment))
        if has_sensitivity(cells):
            out[f"{experiment}-sensitivity"] = sensitivity_table(
                cells, f"{experiment}: augmentation sensitivity, InfoNCE of image vs augmented image at the "
                       "backbone output (higher: less invariant; mean ± std over seeds)")
        if shots(cells):
            out[f"{experiment}-fewshot"] = fewshot_table(
                cells, f"{experiment}: few-shot top-1 (mean over seeds of the episode means ± std over seeds; "
                       "best per column in bold)")
    add_paired_parts(out, cells, tracking_uri, experiment, baselines, ci)
    annotate(out, cells, strict)
    for stem, search in search_stems(experiment, searches):
        out[stem] = search_table(summarize(search, trials), experiment)
    if rehearsed is not None:
        rows, run_id = rehearsed
        out[f"{experiment}-throughput"] = throughput_table(
            rows, f"{experiment}: throughput of the default augmentation and SASSL's (rehearsal {run_id[:8]})")
    return out


def add_paired_parts(tables: dict[str, Table], cells, tracking_uri: str, experiment: str,
                     baselines: list[str] | None, ci: str | None) -> None:
    """The paired Δ part of every cell table, when the experiment has a baseline row."""
    mapping, recorded_ci = experiment_mapping(cells, tracking_uri, experiment, baselines)
    if not mapping:
        return
    for table in tables.values():
        if table.keys:
            title = table.title.split(" (")[0] + ": paired difference to the baseline row (95 % CI over seeds)"
            table.parts["paired"] = paired_table(cells, table.keys, mapping, title, ci or recorded_ci)


__all__ = ["build_tables", "cell_runs", "search_runs", "summary_table", "transfer_table", "fewshot_table",
           "search_table", "summarize", "Search", "SearchSummary", "Table", "NoRunsError", "BaselineError", "MixError", "PROBE_COLUMNS"]
