"""Untrusted files (experiment YAMLs, checkpoints, weights) cannot run code."""
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [p for d in ("orchestrator", "workloads", "results", "scripts", "benchmarks") for p in (ROOT / d).rglob("*.py")]


class Evil:
    def __reduce__(self):  # unpickling this would run code
        return (Path("/tmp/sassl-evil-ran").touch, ())


def test_yaml_python_tags_are_refused(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "evil.yaml").write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n')
    res = subprocess.run([sys.executable, "-m", "orchestrator", "validate", "evil.yaml"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "not valid YAML" in res.stderr
    assert not marker.exists()


def test_pickled_objects_in_a_stylizer_checkpoint_are_refused(tmp_path):
    from workloads.stylize.model import load_stylizer
    Path("/tmp/sassl-evil-ran").unlink(missing_ok=True)
    path = tmp_path / "stylizer.pt"
    torch.save({"config": {}, "state_dict": {}, "extra": Evil()}, path)
    with pytest.raises(ValueError, match="could not be read"):
        load_stylizer(path, expected={})
    assert not Path("/tmp/sassl-evil-ran").exists()


def test_no_unsafe_loaders_or_shell_strings_in_the_sources():
    problems, loads = [], 0
    for path in SOURCES:
        text = path.read_text()
        for m in re.finditer(r"torch\.load\(([^()]|\([^()]*\))*\)", text):
            loads += 1
            if "weights_only=True" not in m.group(0):
                problems.append(f"{path.name}: {m.group(0)[:60]}")
        for bad in ("yaml.load(", "yaml.unsafe_load", "shell=True", "os.system(", "os.popen(", "allow_pickle=True",
                    "pickle.load"):
            if bad in text:
                problems.append(f"{path.name}: {bad}")
    assert loads >= 8 and len(SOURCES) > 40 and not problems, problems
