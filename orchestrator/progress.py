"""Live progress of every cell: workers push updates to a tiny Ray actor, the
driver polls it and draws one table row per cell."""
from __future__ import annotations

import time
from typing import Any

import ray
from rich.console import Console
from rich.live import Live
from rich.table import Table


@ray.remote(num_cpus=0)
class ProgressBoard:
    def __init__(self):
        self.rows: dict[str, dict[str, Any]] = {}

    def update(self, cell_id: str, fields: dict[str, Any]) -> None:
        self.rows.setdefault(cell_id, {}).update(fields, updated=time.time())

    def snapshot(self) -> dict[str, dict[str, Any]]:
        return self.rows


def render(rows: dict[str, dict[str, Any]], order: list[str], title: str) -> Table:
    table = Table(title=title, expand=False)
    for col in ("cell", "row", "seed", "status", "epoch", "step", "loss", "img/s", "result"):
        table.add_column(col, justify="right" if col in {"seed", "epoch", "step", "loss", "img/s"} else "left")
    for cid in order:
        r = rows.get(cid, {})
        epoch = f"{r['epoch']}/{r['epochs']}" if "epoch" in r else ""
        step = f"{r['step']}/{r['steps']}" if "step" in r else ""
        loss = f"{r['loss']:.3f}" if "loss" in r else ""
        ips = f"{r['images_per_s']:.0f}" if "images_per_s" in r else ""
        status = r.get("status", "queued")
        style = {"finished": "green", "failed": "red", "skipped": "dim"}.get(status, "")
        table.add_row(cid, r.get("row", ""), str(r.get("seed", "")), f"[{style}]{status}[/]" if style else status,
                      epoch, step, loss, ips, str(r.get("result", "")))
    return table


class LiveProgress:
    """Context manager that redraws the board until the cells are done."""

    def __init__(self, board, order: list[str], title: str, console: Console | None = None):
        self.board, self.order, self.title = board, order, title
        self.console = console or Console()
        self.live = Live(console=self.console, refresh_per_second=2, transient=False)
        self.printed: dict[str, tuple] = {}  # off a terminal: one line per status/epoch change

    def __enter__(self):
        self.live.__enter__()
        return self

    def refresh(self) -> dict[str, dict[str, Any]]:
        rows = ray.get(self.board.snapshot.remote())
        order = self.order + [k for k in rows if k not in self.order]  # rows that appear later (trials)
        self.live.update(render(rows, order, self.title))
        if not self.console.is_terminal:
            self._log_changes(rows)
        return rows

    def _log_changes(self, rows: dict[str, dict[str, Any]]) -> None:
        for cid in self.order + [k for k in rows if k not in self.order]:
            r = rows.get(cid, {})
            key = (r.get("status"), r.get("epoch"))
            if not r or self.printed.get(cid) == key:
                continue
            self.printed[cid] = key
            parts = [time.strftime("%H:%M:%S"), cid, r.get("row", ""), f"seed {r.get('seed', '')}", str(r.get("status"))]
            if "epoch" in r:
                parts.append(f"epoch {r['epoch']}/{r['epochs']} loss {r.get('loss', float('nan')):.3f} "
                             f"{r.get('images_per_s', 0):.0f} img/s")
            if r.get("result"):
                parts.append(str(r["result"]))
            print(" | ".join(parts), flush=True)

    def __exit__(self, *exc):
        try:
            self.refresh()
        finally:
            self.live.__exit__(*exc)
