"""What a run records of the code, dependencies and data that made it, the lock file, stale
cells, and the claim that keeps two drivers off the same cells (unit level; the end-to-end cell's
tags are checked in test_e2e, two real drivers in test_faults)."""
import re
import shutil
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from orchestrator import claims, provenance, staleness, tracking
from workloads.data.fingerprint import fingerprint, folder_fingerprint, walk
from workloads.data.registry import open_source

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- code
def _git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                        "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"})


def test_git_state_sees_uncommitted_code_changes_and_ignores_other_files(tmp_path, monkeypatch):
    (tmp_path / "orchestrator").mkdir()
    (tmp_path / "orchestrator" / "a.py").write_text("x = 1\n")
    (tmp_path / "pyproject.toml").write_text("[project]\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "one")
    monkeypatch.setattr(provenance, "PROJECT_ROOT", tmp_path.resolve())
    clean = provenance.git_state()
    assert re.fullmatch(r"[0-9a-f]{40}", clean["commit"]) and clean["dirty"] == "false" and clean["diff"] == ""
    (tmp_path / "my_experiment.yaml").write_text("name: mine\n")  # a user's file: not the code
    assert provenance.git_state()["dirty"] == "false"
    before = provenance.package_hash(tmp_path)
    (tmp_path / "orchestrator" / "a.py").write_text("x = 2\n")
    edited = provenance.git_state()
    assert edited["dirty"] == "true" and len(edited["diff"]) == 12 and edited["commit"] == clean["commit"]
    assert provenance.package_hash(tmp_path) != before
    (tmp_path / "orchestrator" / "new.py").write_text("y = 1\n")  # an untracked code file counts too
    assert provenance.git_state()["diff"] != edited["diff"]


def test_without_a_checkout_the_submitters_state_is_used(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "PROJECT_ROOT", tmp_path.resolve())
    assert provenance.git_state() == {"commit": "unknown", "dirty": "unknown", "diff": ""}
    monkeypatch.setenv(provenance.ENV_COMMIT, "f" * 40)
    monkeypatch.setenv(provenance.ENV_DIRTY, "true")
    monkeypatch.setenv(provenance.ENV_DIFF, "abc")
    assert provenance.git_state() == {"commit": "f" * 40, "dirty": "true", "diff": "abc"}


def test_code_tags_name_versions_lock_profile_and_overrides():
    tags = provenance.code_tags("quick", {"optim.lr": 0.01}, "experiments/quickstart.yaml")
    assert tags[provenance.TAG_PROFILE] == "quick" and tags[provenance.TAG_SETS] == '{"optim.lr": 0.01}'
    assert tags[provenance.TAG_LOCK] == provenance.lock_hash() != "none"
    for lib in ("torch", "torchvision", "numpy", "pillow", "ray", "mlflow", "optuna", "scikit-learn", "scipy"):
        assert tags[provenance.TAG_DEP + lib]
    assert tags[provenance.TAG_SOURCE_NAME] == "experiments/quickstart.yaml"
    assert tags[provenance.TAG_DIRTY] in ("true", "false")
    # a staged copy (what `sassl submit` ships) hashes like the checkout it came from
    assert provenance.package_hash() == tags[provenance.TAG_PACKAGE]


def test_package_hash_of_a_submitted_copy_equals_the_checkouts(tmp_path):
    for name in provenance.CODE_PATHS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, tmp_path / name)
    assert provenance.package_hash(tmp_path) == provenance.package_hash()


def test_a_resumed_run_records_what_changed_beside_the_first_values():
    have = {provenance.TAG_PACKAGE: "a", provenance.TAG_LOCK: "l", "sassl.row": "x"}
    now = {provenance.TAG_PACKAGE: "b", provenance.TAG_LOCK: "l"}
    assert provenance.changed(have, now) == {provenance.TAG_PACKAGE + ".resumed": "b"}
    assert provenance.changed({**have, provenance.TAG_PACKAGE + ".resumed": "b"}, now) == {}


# ---------------------------------------------------------------- data
def test_folder_fingerprint_ignores_where_the_data_lies_but_not_what_it_is(tmp_path):
    a = tmp_path / "a" / "cls"
    a.mkdir(parents=True)
    for i in range(5):
        (a / f"{i}.png").write_bytes(b"x" * (100 + i))
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    fa, fb = folder_fingerprint(walk(tmp_path / "a")), folder_fingerprint(walk(tmp_path / "b"))
    assert fa == fb and fa.files == 5 and fa.bytes == 510
    (tmp_path / "b" / "cls" / "5.png").write_bytes(b"y")
    assert folder_fingerprint(walk(tmp_path / "b")).digest != fa.digest
    (tmp_path / "b" / "cls" / "5.png").unlink()
    (tmp_path / "b" / "cls" / "0.png").write_bytes(b"x" * 99)  # same names, one size differs
    assert folder_fingerprint(walk(tmp_path / "b")).digest != fa.digest


def test_kit_fingerprints_differ_by_split_and_are_stable():
    train = fingerprint(open_source("cifar10-kit", split="train", image_size=32))
    test = fingerprint(open_source("cifar10-kit", split="test", image_size=32))
    assert train.kind == "kit" and train.digest != test.digest
    assert fingerprint(open_source("cifar10-kit", split="train", image_size=16)) == train  # size is not the data
    assert train.text().startswith("kit:")


# ---------------------------------------------------------------- the lock
def test_the_lock_pins_every_requirement_within_pyprojects_ranges():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    locked = {}
    for line in (ROOT / provenance.LOCK_FILE).read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if m:
            locked[canonicalize_name(m.group(1))] = m.group(2)
    missing = [str(r) for r in reqs if canonicalize_name(r.name) not in locked]
    assert not missing, f"not in {provenance.LOCK_FILE}: {missing} (run scripts/lock.sh)"
    outside = [f"{r} (locked {locked[canonicalize_name(r.name)]})" for r in reqs
               if not r.specifier.contains(locked[canonicalize_name(r.name)], prereleases=True)]
    assert not outside, f"pyproject.toml's ranges refuse the locked versions: {outside} (run scripts/lock.sh)"
    setup = (ROOT / "scripts" / "setup_env.sh").read_text()
    assert f"-c {provenance.LOCK_FILE}" in setup


# ---------------------------------------------------------------- stale cells
def test_a_cell_made_by_other_code_or_lock_is_stale():
    now = {provenance.TAG_PACKAGE: "p1", provenance.TAG_LOCK: "l1", provenance.TAG_COMMIT: "b" * 40,
           provenance.TAG_DIRTY: "false"}
    assert staleness.why_stale(dict(now), now) is None
    why = staleness.why_stale({**now, provenance.TAG_PACKAGE: "p0", provenance.TAG_COMMIT: "a" * 40,
                               provenance.TAG_DIRTY: "true"}, now)
    assert why.startswith("other code (commit aaaaaaaaaa with uncommitted changes; now bbbbbbbbbb)")
    assert "another lock (l0; now l1)" in staleness.why_stale({**now, provenance.TAG_LOCK: "l0"}, now)
    assert "unrecorded" in staleness.why_stale({}, now)


# ---------------------------------------------------------------- one experiment, one driver
@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "HEARTBEAT_S", 0.2)
    monkeypatch.setattr(claims, "STALE_S", 1.0)
    c = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    return c, c.create_experiment("claims", artifact_location=(tmp_path / "a").as_uri())


def test_a_live_claim_refuses_an_overlapping_one_and_expires_when_its_driver_stops(store):
    c, exp_id = store
    first = c.create_run(exp_id, tags={tracking.TAG_ROLE: "experiment"}).info.run_id
    claims.claim(c, "claims", exp_id, first, ["a", "b"])
    second = c.create_run(exp_id, tags={tracking.TAG_ROLE: "experiment"}).info.run_id
    claims.claim(c, "claims", exp_id, second, ["c"])  # other cells: no conflict
    third = c.create_run(exp_id, tags={tracking.TAG_ROLE: "experiment"}).info.run_id
    with pytest.raises(claims.ClaimError, match=rf"1 of its cells \(b\) are being run by another invocation: .* pid "):
        claims.claim(c, "claims", exp_id, third, ["b", "d"])
    # the refused one withdrew its claim: "d" is free for a fourth
    assert not claims.conflicts(c, exp_id, ["d"])
    beat = claims.Heartbeat(c.tracking_uri, first).start()
    time.sleep(1.5)  # past STALE_S: only the beating first claim is still live
    assert [lc.run_id for lc in claims.live_claims(c, exp_id)] == [first]
    beat.stop()
    time.sleep(1.2)
    claims.claim(c, "claims", exp_id, third, ["b", "d"])  # the first driver stopped beating: taken over


def test_wait_returns_once_the_other_invocation_ends(store):
    c, exp_id = store
    first = c.create_run(exp_id, tags={tracking.TAG_ROLE: "experiment"}).info.run_id
    claims.claim(c, "claims", exp_id, first, ["a"])
    beat = claims.Heartbeat(c.tracking_uri, first).start()
    second = c.create_run(exp_id, tags={tracking.TAG_ROLE: "experiment"}).info.run_id
    said = []
    waiter = threading.Thread(target=claims.claim, args=(c, "claims", exp_id, second, ["a"]),
                              kwargs={"wait": True, "log": said.append})
    waiter.start()
    time.sleep(0.6)
    assert waiter.is_alive() and said and "being run by another invocation" in said[0]
    c.set_terminated(first, "FINISHED")  # the first invocation ends
    beat.stop()
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert [lc.run_id for lc in claims.live_claims(c, exp_id)] == [second]


def test_validate_states_read_the_store_without_creating_one(tmp_path):
    """`sassl validate`'s per-cell state: to run (no store: none is created), finished, stale."""
    import yaml

    from orchestrator.experiment import load_experiment
    cfg = {"name": "states", "tracking": {"run_dir": str(tmp_path / "runs")},
           "data": {"pretrain": {"name": "cifar10-kit"}, "image_size": 32}, "seeds": [0, 1]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(cfg))
    exp = load_experiment(tmp_path / "s.yaml")
    assert set(staleness.cell_states(exp).values()) == {"to run"}
    assert not (tmp_path / "runs").exists()
    c = MlflowClient(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    exp_id = c.create_experiment("states", artifact_location=(tmp_path / "a").as_uri())
    now = provenance.code_tags()
    for cell, package in zip(exp.cells, (now[provenance.TAG_PACKAGE], "older")):
        run = c.create_run(exp_id, tags={tracking.TAG_ROLE: "cell", tracking.TAG_CELL: cell.cell_id,
                                         provenance.TAG_PACKAGE: package, provenance.TAG_LOCK: now[provenance.TAG_LOCK],
                                         provenance.TAG_COMMIT: "a" * 40})
        c.set_terminated(run.info.run_id, "FINISHED")
    states = staleness.cell_states(exp)
    assert states[exp.cells[0].cell_id] == "finished"
    assert states[exp.cells[1].cell_id].startswith("stale: other code (commit aaaaaaaaaa")


def test_dataset_inputs_survive_a_concurrent_insert_and_never_fail_a_cell(tmp_path, monkeypatch):
    """Two cells logging one dataset at once collide in MLflow's insert (UNIQUE constraint failed:
    datasets.experiment_id, datasets.name, datasets.digest, seen in the suite): retried; a store
    that keeps refusing leaves a tag, not a failed cell."""
    import yaml
    from mlflow.exceptions import MlflowException

    from orchestrator.cell_task import log_datasets
    from orchestrator.experiment import load_experiment
    from orchestrator.input_checks import check_inputs
    cfg = {"name": "inputs", "tracking": {"run_dir": str(tmp_path / "runs")},
           "data": {"pretrain": {"name": "cifar10-kit"}, "image_size": 32}}
    (tmp_path / "i.yaml").write_text(yaml.safe_dump(cfg))
    exp = load_experiment(tmp_path / "i.yaml")
    prints = check_inputs(exp)
    c = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    exp_id = c.create_experiment("inputs", artifact_location=(tmp_path / "a").as_uri())
    real, calls = c.log_inputs, []

    def collide_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.experiment_id")
        return real(*args, **kwargs)
    monkeypatch.setattr(c, "log_inputs", collide_once)
    run = c.create_run(exp_id).info.run_id
    log_datasets(c, run, exp.cells[0], prints)
    assert len(calls) == 2
    assert {d.dataset.name for d in c.get_run(run).inputs.dataset_inputs} == {"cifar10-kit/train", "cifar10-kit/test"}
    monkeypatch.setattr(c, "log_inputs", lambda *a, **k: (_ for _ in ()).throw(MlflowException("refused")))
    other = c.create_run(exp_id).info.run_id
    log_datasets(c, other, exp.cells[0], prints)  # does not raise
    assert "refused" in c.get_run(other).data.tags["sassl.data_inputs_error"]
