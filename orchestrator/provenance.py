"""What made a run's numbers, recorded as MLflow tags on every run sassl creates (cells,
stylizer runs, search parents and trials, rehearsals, invocations' parent runs):

- code: the git commit (MLflow's own `mlflow.source.git.commit`), whether the code had
  uncommitted changes and a hash of them, a hash of the code files themselves (the same on the
  head node of a `sassl submit` job, which has no git checkout: the submitting checkout's commit
  travels with the job in environment variables), `sassl.version`;
- dependencies: the hash of `requirements.lock` and the versions of the libraries that change
  numbers;
- data: one fingerprint per dataset reference (workloads/data/fingerprint.py);
- the profile and the `--set` overrides as written.

Computed once per invocation on the driver. A cell continued by a later invocation keeps the
values it started with; what the later one has differently is added under `<tag>.resumed`
(as the machine params are)."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
LOCK_FILE = "requirements.lock"
# the files whose content is "the code" (a user's experiment YAMLs and run folders are not);
# an uncommitted change to the lock makes the tree dirty too, but the lock has a hash of its own
CODE_PATHS = ("orchestrator", "workloads", "results", "pyproject.toml")
GIT_PATHS = CODE_PATHS + (LOCK_FILE,)
# the libraries whose version can change a number
LIBRARIES = ("torch", "torchvision", "numpy", "pillow", "ray", "mlflow", "optuna", "scikit-learn", "scipy", "timm")

TAG_COMMIT = "mlflow.source.git.commit"
TAG_SOURCE_NAME = "mlflow.source.name"
TAG_SOURCE_TYPE = "mlflow.source.type"
TAG_DIRTY = "sassl.code.dirty"        # "true" / "false" / "unknown" (no git checkout, nothing passed on)
TAG_DIFF = "sassl.code.diff"          # hash of the uncommitted changes to GIT_PATHS; "" when clean
TAG_PACKAGE = "sassl.code.package"    # hash of the code files' content (git or not)
TAG_VERSION = "sassl.version"
TAG_LOCK = "sassl.lock"               # hash of requirements.lock ("none" without one)
TAG_DEP = "sassl.dep."                # + library name: its version
TAG_DATA = "sassl.data"               # hash of every dataset fingerprint of the run
TAG_DATA_REF = "sassl.data."          # + "<name>.<split>": that dataset's fingerprint
TAG_PROFILE = "sassl.profile"
TAG_SETS = "sassl.sets"               # JSON of the --set overrides as written ({} without)
TAG_CONFIG = "sassl.config_id"        # hash of a cell's configuration without its seed
RESUMED = ".resumed"

# `sassl submit` hands the submitting checkout's git state to the job's driver through these
ENV_COMMIT, ENV_DIRTY, ENV_DIFF = "SASSL_SOURCE_COMMIT", "SASSL_SOURCE_DIRTY", "SASSL_SOURCE_DIFF"
ENV_SUBMITTED = "SASSL_SOURCE_PACKAGE"  # the package hash as the submitter computed it


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.decode(errors="replace") if out.returncode == 0 else None


def package_hash(root: Path = PROJECT_ROOT) -> str:
    """A hash of every file under CODE_PATHS (caches and build leftovers aside): the same bytes
    give the same hash on any machine, with or without git."""
    h = hashlib.sha256()
    for name in CODE_PATHS:
        p = root / name
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p] if p.is_file() else []
        for f in files:
            rel = f.relative_to(root).as_posix()
            if "__pycache__" in rel or rel.endswith(".pyc") or ".egg-info" in rel:
                continue
            h.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


def git_state() -> dict[str, str]:
    """{commit, dirty, diff} of this checkout's code and lock (GIT_PATHS), else what a submitter passed
    on in the environment, else "unknown"."""
    top = _git("rev-parse", "--show-toplevel")
    if top is not None and Path(top.strip()).resolve() == PROJECT_ROOT:
        commit = (_git("rev-parse", "HEAD") or "").strip() or "unknown"
        diff = _git("diff", "HEAD", "--binary", "--", *GIT_PATHS) or ""
        untracked = (_git("ls-files", "--others", "--exclude-standard", "--", *GIT_PATHS) or "").split()
        blob = diff.encode() + b"".join(f.encode() + b"\0" + (PROJECT_ROOT / f).read_bytes()
                                        for f in sorted(untracked) if (PROJECT_ROOT / f).is_file())
        dirty = bool(blob)
        return {"commit": commit, "dirty": str(dirty).lower(), "diff": _short(blob) if dirty else ""}
    return {"commit": os.environ.get(ENV_COMMIT, "unknown"), "dirty": os.environ.get(ENV_DIRTY, "unknown"),
            "diff": os.environ.get(ENV_DIFF, "")}


def lock_hash(root: Path = PROJECT_ROOT) -> str:
    p = root / LOCK_FILE
    return _short(p.read_bytes()) if p.is_file() else "none"


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def sassl_version() -> str:
    try:
        return metadata.version("sassl")
    except metadata.PackageNotFoundError:
        return "unknown"


def code_tags(profile: str | None = None, sets: dict[str, Any] | None = None,
              source: str | None = None) -> dict[str, str]:
    """The tags every run of an invocation shares: code, dependencies, profile, overrides."""
    git = git_state()
    tags = {TAG_COMMIT: git["commit"], TAG_DIRTY: git["dirty"], TAG_DIFF: git["diff"], TAG_PACKAGE: package_hash(),
            TAG_VERSION: sassl_version(), TAG_LOCK: lock_hash(), TAG_SOURCE_TYPE: "LOCAL",
            TAG_PROFILE: profile or "default", TAG_SETS: json.dumps(sets or {}, sort_keys=True, default=str),
            **{TAG_DEP + k: v for k, v in library_versions().items()}}
    submitted = os.environ.get(ENV_SUBMITTED)
    if submitted:  # a `sassl submit` job: the package it ran must be the one submitted
        tags["sassl.code.submitted_package"] = submitted
    if source:
        tags[TAG_SOURCE_NAME] = source
    return tags


def submit_env() -> dict[str, str]:
    """What `sassl submit` passes to the job so its runs name the submitting checkout's code."""
    git = git_state()
    return {ENV_COMMIT: git["commit"], ENV_DIRTY: git["dirty"], ENV_DIFF: git["diff"]}


def data_key(ref: dict[str, Any]) -> str:
    """A dataset reference as a tag-key suffix: "cifar10-kit.train"."""
    return f"{ref['name']}.{ref['split']}"


def data_tags(fingerprints: dict[str, str], keys: list[str]) -> dict[str, str]:
    """The data tags of a run that reads the datasets ``keys`` (data_key of each reference)."""
    mine = {k: fingerprints[k] for k in dict.fromkeys(keys) if k in fingerprints}
    tags = {TAG_DATA_REF + k: v for k, v in mine.items()}
    tags[TAG_DATA] = _short(json.dumps(sorted(mine.items())).encode()) if mine else "none"
    return tags


def config_id(config: dict[str, Any]) -> str:
    """A cell's configuration without its seed: the cells of one row made the same way share it."""
    from .experiment import cell_hash
    return cell_hash({k: v for k, v in config.items() if k != "seed"})


def changed(have: dict[str, str], now: dict[str, str]) -> dict[str, str]:
    """The `.resumed` tags of a run continued with ``now``: what differs from the tags it has."""
    return {k + RESUMED: v for k, v in now.items()
            if k in have and have[k] != v and not k.endswith(RESUMED) and k + RESUMED not in have}
