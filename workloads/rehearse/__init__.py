"""`sassl rehearse`'s data plane: the timing tools (timing.py), a few training steps of each
kind of run through the run's own entries (steps.py), and each target's evaluation timed per
pipeline (evaluation.py)."""
from .timing import SAMPLE, Rehearsed, StepTimer, peak_memory_mb, reset_peak_memory, run_steps, timed

__all__ = ["SAMPLE", "Rehearsed", "StepTimer", "peak_memory_mb", "reset_peak_memory", "run_steps", "timed"]
