"""Failures as one line: what a cell's or trial's MLflow run and the live table show."""
from __future__ import annotations


def short_error(e: BaseException) -> str:
    """The root cause's last line, not Ray's multi-page wrapper."""
    while e.__cause__ is not None:
        e = e.__cause__
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Exception" in ln:
            return ln[:2000]
    return (lines[-1] if lines else type(e).__name__)[:2000]
