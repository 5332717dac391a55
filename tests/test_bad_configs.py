"""The bad-input corpus: every file in tests/bad_configs/ is refused by `sassl run` before
anything starts, with a message naming the field and the problem, no traceback, and no
MLflow run. tests/bad_configs/expected.yaml maps each file to a substring of its message;
a first line `# args: ...` adds command-line options (e.g. `--profile`, `--set`)."""
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

CORPUS = Path(__file__).resolve().parent / "bad_configs"
EXPECTED = yaml.safe_load((CORPUS / "expected.yaml").read_text())
FILES = sorted(p.name for p in CORPUS.glob("*.yaml") if p.name != "expected.yaml")
ROOT = CORPUS.parents[1]

VALID = """name: control
tracking: {run_dir: runs}
data:
  pretrain: {name: cifar10-kit, split: train}
  limit: 64
backbone: {arch: resnet18, width: 0.25}
optim: {epochs: 1, batch_size: 32}
seeds: [0]
evaluation:
  targets:
    - {key: cifar10, data: {name: cifar10-kit, split: train}}
  linear_probe: {epochs: 1, lrs: [0.1]}
"""


def _sassl(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SASSL_RUN_DIR", "RAY_ADDRESS")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _extra_args(path: Path) -> list[str]:
    first = path.read_text().split("\n", 1)[0]
    return shlex.split(first[len("# args:"):]) if first.startswith("# args:") else []


def _mlflow_runs(db: Path) -> int:
    from mlflow.tracking import MlflowClient
    c = MlflowClient(tracking_uri=f"sqlite:///{db}")
    ids = [e.experiment_id for e in c.search_experiments()]
    return len(c.search_runs(ids)) if ids else 0


def test_corpus_is_complete():
    assert len(FILES) >= 25
    assert set(FILES) == set(EXPECTED), "every bad config needs exactly one expected message"
    assert all(isinstance(v, str) and len(v) >= 10 for v in EXPECTED.values())


def test_the_corpus_template_itself_is_valid(tmp_path):
    """The files are variations of this; it passing proves each failure is the file's own defect."""
    (tmp_path / "control.yaml").write_text(VALID)
    res = _sassl(["validate", "control.yaml"], tmp_path)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "runs" / "mlflow.db").exists()


@pytest.mark.parametrize("name", FILES)
def test_bad_config_is_refused(name, tmp_path):
    src = CORPUS / name
    shutil.copy(src, tmp_path / name)
    res = _sassl(["run", name, *_extra_args(src)], tmp_path)
    out = res.stdout + res.stderr
    flat = " ".join(out.split())
    assert res.returncode != 0, out
    assert res.returncode == 2, out  # the CLI's code for a bad experiment
    assert " ".join(EXPECTED[name].split()) in flat, out
    assert "Traceback" not in out, out
    db = tmp_path / "runs" / "mlflow.db"
    assert not db.exists() or _mlflow_runs(db) == 0
    assert not (tmp_path / "runs" / "ray").exists()
