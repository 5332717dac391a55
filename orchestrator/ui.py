"""`sassl ui`: the MLflow UI and tracking server over an experiment's store."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from rich.console import Console

from .experiment import ConfigError


# MLflow 3.17's UI opens in its GenAI workspace (traces, token usage, an assistant) whatever the
# experiment's `mlflow.experimentKind` tag says (tracking.EXPERIMENT_KIND, still set for UIs that
# read it): this query parameter switches it to model training, which it then remembers
WORKFLOW = "workflowType=machine_learning"


def home_url(base: str) -> str:
    return f"{base.rstrip('/')}/#/experiments?{WORKFLOW}"


def experiment_url(base: str, experiment_id: str) -> str:
    """An experiment's runs in the UI (not its GenAI overview)."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}?{WORKFLOW}"


def server_argv(run_dir: Path, backend_store_uri: str | None, host: str, port: int) -> list[str]:
    """The `mlflow server` command line (an argv list: nothing is parsed by a shell).

    Runs logged through this server's http:// URI store their artifacts under
    <run_dir>/artifacts via the server (--serve-artifacts), so workers on other nodes need
    no shared filesystem; runs logged straight to the SQLite file keep their file:// artifacts."""
    run_dir = run_dir.resolve()
    if backend_store_uri is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        backend_store_uri = f"sqlite:///{run_dir / 'mlflow.db'}"
    if not 0 < port < 65536:
        raise ConfigError(f"--port {port}: must be in 1..65535")
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
            "--artifacts-destination", (run_dir / "artifacts").as_uri(), "--serve-artifacts",
            "--host", host, "--port", str(port), "--workers", "1"]


def serve(run_dir: Path, backend_store_uri: str | None, host: str, port: int, console: Console) -> None:
    argv = server_argv(run_dir, backend_store_uri, host, port)
    shown = "127.0.0.1" if host in ("127.0.0.1", "localhost") else host
    console.print(f"MLflow UI: {home_url(f'http://{shown}:{port}')}  (store {argv[argv.index('--backend-store-uri') + 1]})\n"
                  f"log to it from other nodes with tracking.uri: http://<this host>:{port} "
                  f"(needs --host 0.0.0.0 or this host's address)", highlight=False)
    if host == "0.0.0.0":
        console.print("[yellow]listening on every interface: anyone who can reach this port can read and "
                      "write the store[/]")
    sys.stdout.flush()
    # MLflow 3 starts a job runner and 7 job consumers beside the server (about 2 GB and their
    # start-up CPU) for features sassl does not use; a user's own setting wins
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(argv[0], argv)  # the server replaces this process: Ctrl-C stops it directly
