"""The documentation: the generated references match the code, the site builds with no broken
link, anchor or orphan page, every schema field and CLI option is described, the README stays
short, every example experiment validates from where its page puts it (its `base:` included),
every `sassl` command shown parses with the CLI, the README and the home page show the same
at-a-glance section, and no user page narrates how it was made."""
import os
import re
import shlex
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import typer
import yaml
from pydantic import BaseModel
from typer._click.exceptions import ClickException, UsageError  # Typer 0.29 ships its own click

from orchestrator.cli import app as cli_app
from orchestrator.config import ExperimentConfig
from orchestrator.experiment import ConfigError, load_experiment
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


# ---------------------------------------------------------------- what the pages show
# The pages a user reads: the README and the site's pages (the generated references included,
# since their blocks are what the CLI prints).
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _yaml_blocks() -> list[tuple[Path, str]]:
    """(page, YAML) of every YAML a page shows: ```yaml blocks, and the README's `cat <<'EOF'` files."""
    out = []
    for page in PAGES:
        text = page.read_text()
        out += [(page, block) for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]
        out += [(page, block) for block in re.findall(r"<<'EOF'\n(.*?)\nEOF", text, re.S)]
    return out


def _where(page: Path, block: str) -> str:
    """Where the page says a file with this YAML goes, relative to the repository root: the folder
    its `base:` line's comment names ("... in experiments/"), else the repository root if the
    page says so. A page that shows a `base:` without saying where fails."""
    base_line = re.search(r"^base:.*$", block, re.M)
    named = re.search(r"#.*\bin (\w[\w/.-]*)/", base_line.group(0)) if base_line else None
    if named:
        return named.group(1)
    if base_line and "repository root" not in page.read_text():
        pytest.fail(f"{_rel(page)}: shows `{base_line.group(0)}` but does not say where the file goes "
                    "(\"at the repository root\", or a comment on the base line naming the folder)")
    return "."


def _is_experiment(block: str) -> bool:
    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and "name" in data


def _examples() -> list[tuple[Path, str]]:
    """(page, YAML) of every example experiment (a YAML with a `name:`) on any page."""
    return [(page, block) for page, block in _yaml_blocks() if _is_experiment(block)]


def _experiments_dir(tmp_path: Path) -> None:
    """tmp_path/experiments: the shipped files as links, in a real folder an example can be
    written into without touching the repository."""
    (tmp_path / "experiments").mkdir()
    for f in (ROOT / "experiments").iterdir():
        (tmp_path / "experiments" / f.name).symlink_to(f)


@pytest.mark.parametrize("page, text", _examples(), ids=lambda v: _rel(v) if isinstance(v, Path) else None)
def test_the_worked_examples_are_valid_experiments(tmp_path, page, text):
    """Each example, saved where its page says, loads: every field valid, its `base:` found,
    no setting without effect."""
    _experiments_dir(tmp_path)
    where = tmp_path / _where(page, text)
    where.mkdir(parents=True, exist_ok=True)
    path = where / "example.yaml"
    path.write_text(text)
    exp = load_experiment(path)
    assert exp.cells and exp.warnings == [], exp.warnings
    assert exp.name == yaml.safe_load(text)["name"]


def test_the_examples_were_found():
    pages = {_rel(page) for page, _ in _examples()}
    assert len(_examples()) >= 6 and {"README.md", "docs/experiments.md"} <= pages, pages


@pytest.mark.parametrize("page, text", [(p, b) for p, b in _yaml_blocks() if re.search(r"^base:", b, re.M)],
                         ids=lambda v: _rel(v) if isinstance(v, Path) else None)
def test_every_base_path_resolves_from_where_the_page_puts_the_file(page, text):
    base = yaml.safe_load(text)["base"]
    where = _where(page, text)
    assert (ROOT / where / base).is_file(), (
        f"{_rel(page)}: `base: {base}` in a file at {where}/ names {where}/{base}, which does not exist")


def test_the_base_paths_were_found():
    assert sum(bool(re.search(r"^base:", b, re.M)) for _, b in _yaml_blocks()) >= 4


def test_every_yaml_fragment_on_a_page_is_valid(tmp_path):
    """A YAML block without a `name:` (a section or two of a file) is valid as the fields of an
    experiment: no unknown field, wrong type or out-of-range value."""
    fragments = [(page, block) for page, block in _yaml_blocks()
                 if not _is_experiment(block) and isinstance(yaml.safe_load(block), dict)]
    assert fragments
    for page, block in fragments:
        path = tmp_path / "fragment.yaml"
        path.write_text("name: fragment\n" + block)
        try:
            exp = load_experiment(path)
        except ConfigError as e:
            pytest.fail(f"{_rel(page)}: this block is not valid:\n{block}\n{e}")
        assert exp.cells


# ---------------------------------------------------------------- the commands the pages show
CLI = typer.main.get_command(cli_app)
PLACEHOLDER = re.compile(r"<[^<>\n]*>")  # <folder>, <search run id>, http://<head-ip>:8265


def _bash_lines(text: str) -> list[str]:
    """The lines of a page's ```bash blocks, continuations joined, heredoc bodies left out."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        block = re.sub(r"<<'(\w+)'\n.*?\n\1\n", "\n", block, flags=re.S)  # cat > f <<'EOF' ... EOF
        out += [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return out


def _sassl_words(line: str) -> list[str] | None:
    """The arguments after `sassl` (or `.venv/bin/sassl`, `python -m orchestrator`), else None;
    placeholders such as `<folder>` become a word, a comment and a trailing `&` are dropped."""
    if not re.match(r"(\S*/)?(sassl|python\S*)\s", line):
        return None
    words = shlex.split(PLACEHOLDER.sub("X", line), comments=True)
    while words and words[-1] == "&":
        words.pop()
    if words and (words[0] == "sassl" or words[0].endswith("/sassl")):
        return words[1:]
    if len(words) > 2 and words[1:3] == ["-m", "orchestrator"] and "python" in words[0]:
        return words[3:]
    return None


def _commands() -> list[tuple[str, str]]:
    return [(_rel(page), line) for page in PAGES for line in _bash_lines(page.read_text())
            if _sassl_words(line) is not None]


def parse_cli(line: str) -> None:
    """Parse a shown command with the CLI's own parser, without running it: the subcommand
    exists, every option it names exists, values have the right types, required arguments are
    there. A synopsis's optional groups (`[--alpha 1.0]`, `[a | b]`) are left out of the parse,
    but the options they name must exist too. Raises UsageError on a mistake."""
    words = _sassl_words(line)
    cmd, names = CLI, ["sassl"]
    ctx = cmd.context_class(cmd, info_name="sassl")
    while hasattr(cmd, "commands"):  # a group: the next word names its subcommand
        if not words:
            raise UsageError(f"`{' '.join(names)}` needs a subcommand", ctx)
        name, words = words[0], words[1:]
        sub = cmd.get_command(ctx, name)
        if sub is None:
            raise UsageError(f"no command `{' '.join(names)} {name}`", ctx)
        cmd, names = sub, names + [name]
        ctx = cmd.context_class(cmd, info_name=name, parent=ctx)
    known = {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}
    named = {w.strip("[]").split("=")[0] for w in words}
    unknown = sorted(o for o in named if o.startswith("-") and not re.fullmatch(r"-[\d.]+", o) and o not in known)
    if unknown:
        raise UsageError(f"`{' '.join(names)}` has no option {', '.join(unknown)}", ctx)
    required, optional = [], 0  # the words outside a synopsis's [ ... ] groups
    for w in words:
        optional += w.startswith("[")
        if not optional:
            required.append(w)
        optional -= optional > 0 and w.endswith("]")
    cmd.make_context(" ".join(names), required, parent=ctx.parent)


@pytest.mark.parametrize("page, line", _commands())
def test_every_command_shown_parses_with_the_cli(page, line):
    try:
        parse_cli(line)
    except ClickException as e:
        pytest.fail(f"{page}: `{line}`: {e.format_message()}")


def test_the_commands_were_found():
    commands = _commands()
    subcommands = {_sassl_words(line)[0] for _, line in commands}
    assert len(commands) >= 30 and {"run", "validate", "tables", "rehearse", "submit", "ui", "stylize", "pack",
                                    "plot"} <= subcommands, subcommands


@pytest.mark.parametrize("line", [
    "sassl runn my.yaml",                                   # no such command
    "sassl run my.yaml --profil quick",                     # no such option
    "sassl rehearse experiments/quickstart.yaml --steps x",  # not an integer
    "sassl tables",                                         # its argument missing
    "sassl plot",                                           # a group without its subcommand
    "sassl stylize --content a/ --style b/ [--alphaa 1.0]",  # a synopsis naming no such option
])
def test_a_wrong_command_does_not_parse(line):
    with pytest.raises(UsageError):
        parse_cli(line)


# ---------------------------------------------------------------- the at-a-glance section
GLANCE = re.compile(r"<!-- at a glance.*?-->\n(.*?)<!-- end of at a glance -->", re.S)


def test_the_readme_and_the_home_page_show_the_same_at_a_glance():
    readme = GLANCE.search((ROOT / "README.md").read_text())
    home = GLANCE.search((ROOT / "docs" / "index.md").read_text())
    assert readme and home
    assert readme.group(1).replace("](docs/", "](") == home.group(1)
    for heading in ("What a run does", "Which paper table each file reproduces", "Where a run's files go",
                    "What each profile costs"):
        assert heading in home.group(1)
    assert "```mermaid" in home.group(1)


def test_the_glance_table_names_every_paper_table_file():
    glance = GLANCE.search((ROOT / "docs" / "index.md").read_text()).group(1)
    files = sorted(p.name for p in (ROOT / "experiments").glob("*.yaml") if re.fullmatch(r"[a-z]+_table\d.*", p.stem))
    assert [f for f in files if f"`{f}`" not in glance] == []


def test_mermaid_blocks_are_rendered_by_the_site():
    conf = (ROOT / "mkdocs.yml").read_text()
    assert re.search(r"custom_fences:\s*\n\s*- name: mermaid\s*\n\s*class: mermaid", conf), \
        "pymdownx.superfences needs the mermaid custom fence, else ```mermaid shows as code"


# ---------------------------------------------------------------- how the pages are written
USER_PAGES = [p for p in PAGES if "reference" not in p.relative_to(ROOT).parts]  # generated pages left out
NARRATION = {
    "an issue number": r"\b[Ii]ssues? \d+|\bthe issue\b",
    "first person": r"\b(?:I|we|We|our|Our|ours|us)\b(?![./)\-])",
    "a time of day": r"\b(?:morning|afternoon|evening|tonight|overnight)\b",
}


def _prose(text: str) -> str:
    """A page without its code blocks and code spans (commands and names may say anything)."""
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


@pytest.mark.parametrize("page", USER_PAGES, ids=_rel)
def test_no_page_narrates_how_it_was_made(page):
    prose = _prose(page.read_text())
    found = [f"{what}: ...{prose[max(0, m.start() - 40):m.end() + 40]!r}..."
             for what, pattern in NARRATION.items() for m in re.finditer(pattern, prose)]
    assert found == [], "\n".join(found)
