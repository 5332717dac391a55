"""One experiment, one driver: an invocation claims the cells it runs in the tracking store.

The claim lives on the invocation's parent run as tags: its owner (host, pid, start time), the
cell ids it runs, and a heartbeat the driver refreshes every HEARTBEAT_S seconds from a thread.
A claim is live while its parent run is RUNNING and its heartbeat is younger than STALE_S; a
driver that died (killed, machine lost) leaves a stale heartbeat, and its RUNNING cells are
resumed by the next invocation as before. Tags are all it uses, so it works through an MLflow
server as well as on a SQLite file.

Claiming is write-then-read: an invocation writes its claim, then reads the live claims of
the others. If any overlaps its cells it withdraws its own and refuses (or, with wait, retries
after a pause with jitter). Two invocations that start at the same instant may then both
withdraw, never both run: the one that reads second always sees the first's claim."""
from __future__ import annotations

import os
import random
import socket
import threading
import time
from dataclasses import dataclass

from mlflow.tracking import MlflowClient

from . import tracking
from .experiment import ConfigError

TAG_OWNER = "sassl.owner"           # "host pid 1234, started 2026-12-06 18:00:00 UTC"
TAG_HEARTBEAT = "sassl.heartbeat"   # Unix seconds of the driver's last sign of life
TAG_CLAIM = "sassl.claim"           # + ".0", ".1", ...: comma-separated cell ids (tags hold 5,000 characters)
CHUNK = 300                         # cell ids per claim tag (13 characters each)
HEARTBEAT_S = float(os.environ.get("SASSL_HEARTBEAT_S", "15"))
STALE_S = float(os.environ.get("SASSL_HEARTBEAT_STALE_S", str(4 * HEARTBEAT_S)))


class ClaimError(ConfigError):
    """Another live invocation runs some of these cells."""


@dataclass
class LiveClaim:
    run_id: str
    owner: str
    age_s: float        # seconds since its heartbeat
    cells: set[str]


def owner_text() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"


def claim_tags(cell_ids: list[str]) -> dict[str, str]:
    ids = sorted(cell_ids)
    chunks = [",".join(ids[i:i + CHUNK]) for i in range(0, len(ids), CHUNK)] or [""]
    return {f"{TAG_CLAIM}.{i}": chunk for i, chunk in enumerate(chunks)}


def live_claims(c: MlflowClient, experiment_id: str, exclude: str | None = None) -> list[LiveClaim]:
    """The claims of RUNNING invocations whose heartbeat is fresh."""
    runs = c.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=5000)
    now, out = time.time(), []
    for r in runs:
        t = r.data.tags
        if r.info.run_id == exclude or TAG_HEARTBEAT not in t:
            continue
        try:
            age = now - float(t[TAG_HEARTBEAT])
        except ValueError:
            continue
        if age > STALE_S:
            continue
        cells = {cid for k, v in t.items() if k.startswith(TAG_CLAIM + ".") for cid in v.split(",") if cid}
        out.append(LiveClaim(r.info.run_id, t.get(TAG_OWNER, "an unknown driver"), age, cells))
    return out


def conflicts(c: MlflowClient, experiment_id: str, cell_ids: list[str], me: str | None = None) -> list[LiveClaim]:
    mine = set(cell_ids)
    return [lc for lc in live_claims(c, experiment_id, exclude=me) if lc.cells & mine]


def held(found: list[LiveClaim], cell_ids: list[str]) -> str:
    """Which of ``cell_ids`` the first live claim holds, and whose it is."""
    lc = found[0]
    shared = sorted(lc.cells & set(cell_ids))
    more = f" and {len(shared) - 3} more" if len(shared) > 3 else ""
    return (f"{len(shared)} of its cells ({', '.join(shared[:3])}{more}) are being run by another invocation: "
            f"{lc.owner} (MLflow run {lc.run_id}, heartbeat {lc.age_s:.0f} s ago)")


def refusal(experiment: str, found: list[LiveClaim], cell_ids: list[str]) -> str:
    return (f"experiment {experiment!r}: {held(found, cell_ids)}. Wait for it to finish (or pass --wait); if that "
            f"driver is dead, its claim expires {STALE_S:.0f} s after its last heartbeat and the next run resumes "
            "its cells")


def claim(c: MlflowClient, experiment: str, experiment_id: str, run_id: str, cell_ids: list[str], *,
          wait: bool = False, log=print) -> None:
    """Claim ``cell_ids`` for the invocation whose parent run is ``run_id`` (see the module
    docstring); ClaimError names the live owner, unless ``wait``."""
    while True:
        tracking.set_tags(c, run_id, {TAG_OWNER: owner_text(), TAG_HEARTBEAT: f"{time.time():.3f}",
                                      **claim_tags(cell_ids)})
        found = conflicts(c, experiment_id, cell_ids, me=run_id)
        if not found:
            return
        release(c, run_id)
        if not wait:
            raise ClaimError(refusal(experiment, found, cell_ids))
        log(f"waiting: {held(found, cell_ids)}")
        time.sleep(HEARTBEAT_S * random.uniform(0.5, 1.5))


def release(c: MlflowClient, run_id: str) -> None:
    """Withdraw a claim (the cell ids; the owner stays for the record)."""
    tags = c.get_run(run_id).data.tags
    tracking.set_tags(c, run_id, {k: "" for k in tags if k.startswith(TAG_CLAIM + ".")})


class Heartbeat:
    """Refreshes the claim's heartbeat every HEARTBEAT_S seconds until stopped (a daemon thread:
    a killed driver stops beating, which is the point)."""

    def __init__(self, tracking_uri: str, run_id: str):
        self.c, self.run_id = tracking.client(tracking_uri), run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="sassl-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                tracking.set_tags(self.c, self.run_id, {TAG_HEARTBEAT: f"{time.time():.3f}"})
            except Exception:  # noqa: BLE001 - a store hiccup must not kill the driver; the next beat retries
                pass

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
