"""A Ray cluster of two nodes on one machine, built the way two cloud machines without a shared
disk look to sassl: the head node has no CPUs (every cell, Ray Train worker and evaluation task
runs on the other node), and the other node lives in its own mount namespace where a private
folder is bind-mounted over the run directory, so it cannot see what the driver writes there.
Beside them: an MLflow tracking server with proxied artifacts (`sassl ui`) and an S3-compatible
object store, moto's server mode (an emulator of S3, as Ray's own storage tests use)."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import VENV_BIN, ray_head
from orchestrator.ray_auth import token_available
from orchestrator.ray_exec import free_port

BUCKET = "sassl-test"


def start_logged(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A server in its own session, its output in ``log``: a pipe nobody reads fills up, and a
    server whose every request logs a line then blocks for ever (moto's did, mid-checkpoint)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
                                start_new_session=True)


def tail(log: Path, n: int = 3000) -> str:
    return log.read_text(errors="replace")[-n:] if log.is_file() else ""


def wait_http(url: str, what: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited: {tail(log)}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{what} did not answer at {url} in {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@contextlib.contextmanager
def s3_server(logs: Path):
    """moto's S3 emulator on 127.0.0.1 with one bucket → the variables a client needs to use it."""
    port, log = free_port(), logs / "moto.log"
    proc = start_logged([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        wait_http(env["AWS_ENDPOINT_URL"], "moto's S3 server", proc, log, timeout=60)
        req = urllib.request.Request(f"{env['AWS_ENDPOINT_URL']}/{BUCKET}", method="PUT")  # create the bucket
        urllib.request.urlopen(req, timeout=10)
        yield env
    finally:
        stop(proc)


@contextlib.contextmanager
def mlflow_server(run_dir: Path):
    """`sassl ui` on a free port → its http:// tracking URI (artifacts proxied by the server)."""
    port, log = free_port(), run_dir / "server.log"
    proc = start_logged([sys.executable, "-m", "orchestrator", "ui", "--run-dir", str(run_dir), "--port", str(port)],
                        log)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", "the MLflow server", proc, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def alive_nodes(dashboard: str) -> list[dict]:
    """The cluster's alive nodes, from its state API (with the token `ray start` wrote, if any)."""
    req = urllib.request.Request(f"{dashboard}/api/v0/nodes?limit=100")
    token = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if token_available() and token.is_file():
        req.add_header("Authorization", f"Bearer {token.read_text().strip()}")
    with urllib.request.urlopen(req, timeout=10) as r:
        nodes = json.load(r)["data"]["result"]["result"]
    return [n for n in nodes if n["state"] == "ALIVE"]


@dataclass
class TwoNodes:
    gcs: str                 # the head's address (RAY_ADDRESS of the drivers)
    dashboard: str           # the Jobs API / state API
    temp: str                # the head's Ray temp folder
    env: dict[str, str]      # what every process of the cluster and every driver sees (S3 variables)
    private_over: Path       # the folder the worker node sees as its own (over the run directory)
    private_root: Path       # where each worker node's private folders are made
    worker: subprocess.Popen | None = None
    started: int = 0
    log: list[str] = field(default_factory=list)
    temps: list[str] = field(default_factory=list)  # the worker nodes' Ray temp folders

    def start_worker(self, num_cpus: int = 2, timeout: float = 120) -> None:
        """A fresh worker node (an empty private folder: nothing left by an earlier one)."""
        self.started += 1
        private = self.private_root / f"node{self.started}"
        private.mkdir(parents=True)
        # its own Ray temp folder, as on another machine (two nodes' agents sharing one would
        # remove each other's unpacked job working directories)
        temp = tempfile.mkdtemp(prefix=f"rw{self.started}", dir="/tmp")
        self.temps.append(temp)
        before = {n["node_id"] for n in alive_nodes(self.dashboard)}
        script = (f"mount --bind {private} {self.private_over} && exec {VENV_BIN / 'ray'} start --block "
                  f"--address {self.gcs} --node-ip-address 127.0.0.1 --num-cpus {num_cpus} "
                  f"--temp-dir {temp} --disable-usage-stats --dashboard-agent-listen-port {free_port()}")
        env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", **self.env}
        if token_available():  # the head requires the token `ray start` wrote; a joining node must send it
            env["RAY_AUTH_MODE"] = "token"
        log = private.parent / f"node{self.started}.log"
        self.worker = start_logged(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], log, env)
        deadline = time.time() + timeout
        while not any(not n["is_head_node"] and n["node_id"] not in before for n in alive_nodes(self.dashboard)):
            if self.worker.poll() is not None:
                pytest.fail(f"the worker node did not start: {tail(log)}")
            if time.time() > deadline:
                pytest.fail(f"the worker node did not join in {timeout} s")
            time.sleep(1)

    def namespace_pids(self) -> list[int]:
        """Every process of the worker node: those in its mount namespace."""
        ns = os.readlink(f"/proc/{self.worker.pid}/ns/mnt")
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/mnt") == ns:
                        pids.append(int(entry))
        return pids

    def kill_worker(self) -> None:
        """SIGKILL to every process of the worker node at once, as when its machine is lost."""
        pids = self.namespace_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.worker.wait(timeout=30)
        self.log.append(f"killed {len(pids)} processes of worker node {self.started}")

    def stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.kill_worker()


@contextlib.contextmanager
def two_nodes(base: Path, private_over: Path, env: dict[str, str]):
    """Head (0 CPUs) + one worker node (2 CPUs) in its own mount namespace → TwoNodes."""
    private_over.mkdir(parents=True, exist_ok=True)
    temp = tempfile.mkdtemp(prefix="r2", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    try:
        with ray_head(num_cpus=0, extra_env=env, temp=temp) as (gcs, dashboard):
            cluster = TwoNodes(gcs, dashboard, temp, env, private_over, base / "private")
            try:
                cluster.start_worker()
                yield cluster
            finally:
                cluster.stop_worker()
                for t in cluster.temps:
                    shutil.rmtree(t, ignore_errors=True)
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def can_unshare() -> str | None:
    """Why a private mount namespace cannot be made here (None when it can)."""
    if shutil.which("unshare") is None:
        return "no `unshare` command"
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        res = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                              f"mount --bind {a} {b}"], capture_output=True, text=True)
    return None if res.returncode == 0 else f"the kernel refuses a private mount namespace: {res.stderr.strip()}"
