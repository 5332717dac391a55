"""Submitting experiments to a Ray cluster through the Ray Jobs API.

The project (sources, experiment YAMLs, the packed data kit) is shipped as the job's
working directory; the job's driver runs `python -m orchestrator run … --address auto`
on the head node with the head node's Python environment."""
from __future__ import annotations

import os
import shlex
import shutil
import tempfile
import time
from pathlib import Path

from . import provenance
from .experiment import ConfigError, Experiment
from .ray_auth import use_token_if_present

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_JOBS_ADDRESS = "http://127.0.0.1:8265"
# shipped to the cluster: code and small assets only (Ray caps a working_dir at 500 MiB)
SHIPPED = ("orchestrator", "workloads", "results", "experiments", "pyproject.toml", "requirements.lock")
SUBMITTED_DIR = "_submitted"
AGENT_WAIT_S = 120


def jobs_address(address: str | None) -> str:
    return address or os.environ.get("RAY_JOBS_ADDRESS") or os.environ.get("RAY_ADDRESS") or DEFAULT_JOBS_ADDRESS


def _client(address: str | None):
    addr = jobs_address(address)
    use_token_if_present(addr)
    from ray.job_submission import JobSubmissionClient
    # Ray lets $RAY_ADDRESS override the address a client is given; an explicit --address wins here
    hidden = {k: os.environ.pop(k) for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS") if address and k in os.environ}
    try:
        return JobSubmissionClient(addr)
    except Exception as e:  # noqa: BLE001 - connection errors come in many types
        raise ConfigError(f"--address {addr}: cannot reach the Ray Jobs API ({type(e).__name__}: {e}); start a "
                          f"head node with `ray start --head --dashboard-host 127.0.0.1` or pass its "
                          f"http://<head>:8265 address") from None
    finally:
        os.environ.update(hidden)


def stage_project(exp: Experiment, dest: Path) -> str:
    """Copy the shipped parts of the project and the experiment file into ``dest``;
    returns the experiment file's path relative to it."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SHIPPED:
        src = PROJECT_ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    (dest / SUBMITTED_DIR).mkdir()
    rel = Path(SUBMITTED_DIR) / exp.path.name
    shutil.copy2(exp.path, dest / rel)
    return rel.as_posix()


def run_dir_override(exp: Experiment) -> list[str]:
    """A relative run_dir would land in the job's throw-away working directory:
    pin it to the absolute path it has here (the head node must see that path)."""
    cfg = exp.config.tracking
    if cfg.uri or Path(cfg.run_dir).is_absolute():
        return []
    return [f"tracking.run_dir={Path(cfg.run_dir).resolve()}"]


def submit(exp: Experiment, *, address: str | None, profile: str | None, sets: list[str],
           job_id: str | None = None) -> tuple[str, str]:
    """Submit ``exp`` (already validated here); returns (job id, the entrypoint)."""
    if exp.path is None:
        raise ConfigError("only an experiment file can be submitted")
    client = _client(address)
    sets = [*sets, *run_dir_override(exp)]
    with tempfile.TemporaryDirectory(prefix="sassl-job-") as tmp:
        rel = stage_project(exp, Path(tmp))
        argv = ["python", "-m", "orchestrator", "run", rel, "--address", "auto"]
        if profile:
            argv += ["--profile", profile]
        for s in sets:
            argv += ["--set", s]
        entrypoint = shlex.join(argv)  # every value quoted: nothing from the YAML or CLI reaches a shell unquoted
        env = {k: os.environ[k] for k in ("MLFLOW_TRACKING_URI",) if k in os.environ}
        # the job's copy has no git checkout: its runs name this checkout's commit, and the hash of
        # the package shipped (provenance.py), which the job's own hash of its code must equal
        env.update({**provenance.submit_env(), provenance.ENV_SUBMITTED: provenance.package_hash(Path(tmp))})
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                jid = client.submit_job(entrypoint=entrypoint, submission_id=job_id,
                                        runtime_env={"working_dir": tmp, "env_vars": env},
                                        metadata={"sassl.experiment": exp.name, "sassl.file": str(exp.path)})
                break
            except RuntimeError as e:  # a head node that just started has no job agent yet
                if "No available agent" not in str(e) or time.monotonic() > deadline:
                    raise ConfigError(f"job submission to {jobs_address(address)} failed: {e}") from None
                time.sleep(2)
    return jid, entrypoint


def status(job_id: str, address: str | None) -> dict:
    client = _client(address)
    try:
        info = client.get_job_info(job_id)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"job {job_id}: not found at {jobs_address(address)} ({e})") from None
    return {"job_id": job_id, "status": str(info.status.value if hasattr(info.status, "value") else info.status),
            "message": info.message or "", "entrypoint": info.entrypoint,
            "start_time": info.start_time, "end_time": info.end_time}


def logs(job_id: str, address: str | None) -> str:
    return _client(address).get_job_logs(job_id)


def follow(job_id: str, address: str | None, write) -> None:
    """Stream the job's logs until it ends."""
    import asyncio
    client = _client(address)

    async def go():
        async for chunk in client.tail_job_logs(job_id):
            write(chunk)
    asyncio.run(go())
