"""Failures as one line: what a cell's or trial's MLflow run and the live table show."""
from __future__ import annotations

# where the exception that really failed hides inside the wrappers on its way to the driver:
# Ray Train's WorkerGroupError keeps each rank's failure in worker_failures, which wraps the
# user's exception (UserExceptionWithTraceback._base_exc); its ControllerError keeps
# controller_failure; a Ray task's error keeps `cause`; Python's own chaining __cause__
_WRAPPED = ("_base_exc", "controller_failure", "cause", "__cause__")


def root_cause(e: BaseException) -> BaseException:
    """The exception at the bottom of Ray's and Python's wrappers; of a failed worker group,
    rank 0's (else the lowest failed rank's), which is the one whose traceback matters."""
    seen: set[int] = set()
    while id(e) not in seen:
        seen.add(id(e))
        failures = getattr(e, "worker_failures", None)
        if isinstance(failures, dict) and failures:
            e = failures[min(failures)]
            continue
        inner = next((x for x in (getattr(e, a, None) for a in _WRAPPED) if isinstance(x, BaseException)), None)
        if inner is None:
            break
        e = inner
    return e


def short_error(e: BaseException) -> str:
    """``Type: message`` of the root cause, on one line (not Ray's multi-page wrapper, whose first
    line, "[Rank 0 Error Snippet]:", says nothing). A message that is itself a traceback text
    gives its last line naming an error."""
    root = root_cause(e)
    lines = [ln.strip() for ln in str(root).strip().splitlines() if ln.strip()]
    if len(lines) > 1 and any(ln.startswith("Traceback") for ln in lines):
        named = [ln for ln in lines if "Error" in ln or "Exception" in ln]
        message = named[-1] if named else lines[-1]
    else:
        message = " ".join(lines)
    name = type(root).__name__
    if not message:
        return name
    if message.startswith(f"{name}:") or message.split(":", 1)[0].endswith(("Error", "Exception")):
        return message[:2000]
    return f"{name}: {message}"[:2000]
