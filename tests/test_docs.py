"""The documentation: the generated references match the code, the site builds with no broken
link, anchor or orphan page, every schema field and CLI option is described, the README stays
short, and the worked examples are valid experiments."""
import os
import re
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from orchestrator.config import ExperimentConfig
from orchestrator.experiment import load_experiment
from orchestrator.reference import missing_help

ROOT = Path(__file__).resolve().parents[1]
CLEAN_ENV = {k: v for k, v in os.environ.items() if k not in ("SASSL_RUN_DIR", "MLFLOW_TRACKING_URI")}


def test_the_generated_references_match_the_code():
    res = subprocess.run([sys.executable, "-m", "orchestrator.reference", "--check"], cwd=ROOT, env=CLEAN_ENV,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr + "\nrun `python -m orchestrator.reference` and commit"


def test_every_schema_field_has_a_description():
    missing, seen = [], set()

    def walk(model, prefix):
        for name, info in model.model_fields.items():
            if not (info.description or "").strip():
                missing.append(prefix + name)
            for a in typing.get_args(info.annotation) or (info.annotation,):
                for m in typing.get_args(a) or (a,):
                    if isinstance(m, type) and issubclass(m, BaseModel) and m not in seen:
                        seen.add(m)
                        walk(m, f"{prefix}{name}.")
    walk(ExperimentConfig, "")
    assert len(seen) > 20 and not missing, missing


def test_every_cli_option_has_help():
    assert missing_help() == []


def test_the_site_builds_strict(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    assert mkdocs.is_file(), "the docs extra is not installed (bash scripts/setup_env.sh installs it)"
    res = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                         env={**CLEAN_ENV, "NO_MKDOCS_2_WARNING": "1"}, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "site" / "reference" / "configuration" / "index.html").is_file()


def test_the_readme_is_short_and_its_links_exist():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    assert any(link.startswith("docs/") for link in links)
    assert [link for link in links if "://" not in link and not (ROOT / link).exists()] == []


def _examples() -> list[tuple[str, str]]:
    """(where the file would live, YAML) of every example experiment in the README and the guide."""
    readme = (ROOT / "README.md").read_text()
    out = [(".", block) for block in re.findall(r"<<'EOF'\n(.*?)\nEOF", readme, re.S)]
    guide = (ROOT / "docs" / "experiments.md").read_text()
    out += [("docs", block) for block in re.findall(r"```yaml\n(.*?)```", guide, re.S) if "name:" in block]
    return out


@pytest.mark.parametrize("where, text", _examples())
def test_the_worked_examples_are_valid_experiments(tmp_path, where, text):
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    (tmp_path / where).mkdir(exist_ok=True)
    path = tmp_path / where / "example.yaml"
    path.write_text(text)
    exp = load_experiment(path)
    assert exp.cells and exp.warnings == [], exp.warnings
    assert exp.name == yaml.safe_load(text)["name"]


def test_the_examples_were_found():
    assert len(_examples()) >= 5
