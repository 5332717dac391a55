"""Tables and plots rebuilt from MLflow alone."""
from __future__ import annotations

from .collect import NoRunsError, cell_runs
from .tables import PROBE_COLUMNS, Table, summary_table


def build_tables(experiment: str, tracking_uri: str) -> dict[str, Table]:
    """Every table of an experiment, keyed by file stem."""
    cells = cell_runs(tracking_uri, experiment)
    title = f"{experiment}: linear probe on frozen features (mean ± std over seeds)"
    return {experiment: summary_table(cells, PROBE_COLUMNS, title)}


__all__ = ["build_tables", "cell_runs", "summary_table", "Table", "NoRunsError"]
