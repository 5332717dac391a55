"""What several test files share: one real Ray cluster for the end-to-end tests of a pytest run.

Starting and stopping a local Ray in every `sassl run` costs seconds each time; the e2e tests
that only run experiments share one head node instead (`shared_ray`), which their `sassl`
subprocesses join through RAY_ADDRESS (orchestrator/ray_exec.connect). Tests that need a
cluster of their own (killing a driver together with its Ray) do not use it. Under pytest-xdist
(scripts/test.sh runs two workers) each worker process has its own head node."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from orchestrator.ray_exec import free_port

VENV_BIN = Path(sys.executable).parent


@contextlib.contextmanager
def ray_head(num_cpus: int = 2, extra_env: dict[str, str] | None = None, temp: str | None = None):
    """A head node on 127.0.0.1 → (GCS address, dashboard URL). `--block` ties every Ray process
    to this one, so SIGTERM stops exactly this cluster (unlike `ray stop`, which would stop every
    Ray on the machine). ``extra_env``: variables every process of the cluster sees; ``temp``:
    Ray's temp folder (other nodes on this machine join with the same one)."""
    temp = temp or tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    port, dash = free_port(), free_port()
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **(extra_env or {})}  # the jobs' `python` is this venv's
    env.pop("RAY_ADDRESS", None)
    # the cluster's workers find its state API by this, not by looking for Ray on the machine
    # (which fails when other Ray instances run there: orchestrator/ray_exec.connect)
    env["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{dash}"
    # node IP 127.0.0.1: drivers on this machine join it at the address they are given
    proc = subprocess.Popen([str(VENV_BIN / "ray"), "start", "--head", "--block", "--port", str(port),
                             "--node-ip-address", "127.0.0.1",
                             "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash), "--num-cpus", str(num_cpus),
                             "--include-dashboard", "true", "--temp-dir", temp, "--disable-usage-stats",
                             # the agent's HTTP port (the Jobs API's way in) defaults to 52365 on every
                             # node: a second cluster on this machine (another xdist worker's, the two-node
                             # tests') would find it taken and run without one
                             "--dashboard-agent-listen-port", str(free_port())],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    dashboard = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            try:
                urllib.request.urlopen(f"{dashboard}/api/version", timeout=2)
            except urllib.error.HTTPError:  # 401 without a token: the server is up
                break
            except OSError:
                time.sleep(1)
            else:
                break
        else:
            pytest.fail("the Ray head node did not start in 120 s")
        yield f"127.0.0.1:{port}", dashboard
    finally:
        # SIGTERM lets `ray start --block` stop its processes (it takes ~30 s); the process group
        # (its own session) is killed after 5 s: nothing of this throwaway cluster needs saving
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_ray():
    """One Ray cluster (2 CPUs, as a local one here) for the whole pytest run (one per xdist
    worker); `sassl` commands started by the tests join it. SASSL_TEST_OWN_RAY=1 gives every
    run its own cluster again."""
    if os.environ.get("SASSL_TEST_OWN_RAY") == "1":
        yield None
        return
    with ray_head() as (gcs, dashboard):
        os.environ["RAY_ADDRESS"] = gcs
        try:
            yield dashboard
        finally:
            os.environ.pop("RAY_ADDRESS", None)


@pytest.fixture
def own_ray(monkeypatch):
    """For a test whose `sassl run` must start (and lose) its own local Ray."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
