"""The one channel through which a workload talks to whoever runs it.

Workloads never import Ray or MLflow; the orchestrator passes a subclass that
forwards these calls to Ray Train (checkpoints), a progress board and MLflow."""
from __future__ import annotations

from typing import Any, Callable


class Callback:
    def on_progress(self, stage: str, epoch: int, step: int, steps: int, metrics: dict[str, float]) -> None:
        """Frequent and cheap: where training is now (for progress bars)."""

    def on_step(self, stage: str, epoch: int, step: int, steps: int) -> None:
        """After every optimisation step (a rehearsal times steps and stops after a few by raising)."""

    def on_epoch_end(self, stage: str, epoch: int, metrics: dict[str, float],
                     state: Callable[[], dict[str, Any]]) -> None:
        """Once per epoch: metrics to record; ``state()`` builds a resumable checkpoint."""

    def on_artifact(self, path: str, folder: str | None = None) -> None:
        """A file (picture, weights) worth keeping with the run."""


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss; the cell must stop and be marked failed."""
