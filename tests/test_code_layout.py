"""The code's layout rules, checked by reading the source (only the schema is imported, for the
method names): no import cycle inside orchestrator/, no module importing another's private
names, no method-name switch outside the pipeline registry, and no reference to a method file
the repository lacks."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from orchestrator.config import METHOD_NAMES

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("orchestrator", "workloads", "results")


def _modules(package: str) -> dict[str, Path]:
    return {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in (ROOT / package).rglob("*.py")}


def _imports(module: str, path: Path) -> list[tuple[str, list[str]]]:
    """(imported module, names) for every import in the file, function-level ones included."""
    out = []
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: len(module.split(".")) - node.level + (1 if is_pkg else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [a.name for a in node.names]
            # `from . import x` imports the module package.x
            if not node.module:
                out += [(f"{target}.{n}", []) for n in names]
            else:
                out.append((target, names))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


def test_no_import_cycle_inside_orchestrator():
    mods = _modules("orchestrator")
    graph = {m: {t for t, _ in _imports(m, p) if t in mods and t != m} for m, p in mods.items()}
    cycles = []

    def visit(m, stack):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        for n in sorted(graph[m]):
            if n not in done:
                visit(n, stack + [m])
    done: set[str] = set()
    for m in sorted(graph):
        visit(m, [])
        done.add(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def test_no_module_imports_another_modules_private_names():
    offenders = []
    for package in PACKAGES:
        for m, p in _modules(package).items():
            for target, names in _imports(m, p):
                if target.split(".")[0] in PACKAGES:
                    offenders += [f"{m}: from {target} import {n}" for n in names
                                  if n.startswith("_") and not n.startswith("__")]
    assert not offenders, offenders


def test_the_method_reference_is_in_the_repository_and_nothing_cites_one_outside():
    assert (ROOT / "docs" / "methods.md").is_file()
    cited = []
    for p in [ROOT / "README.md", *(q for pkg in (*PACKAGES, "experiments", "tests", "benchmarks")
                                    for q in (ROOT / pkg).rglob("*") if q.suffix in {".py", ".yaml", ".md"})]:
        text = p.read_text()
        cited += [f"{p.relative_to(ROOT)}: {m}" for m in re.findall(r"METHODS\.md|papers/\w+\.(?:md|txt)", text)
                  if p.name != "test_code_layout.py"]
        for doc in set(re.findall(r"\bdocs/[\w./-]+\.md\b", text)):
            assert (ROOT / doc).is_file(), f"{p.relative_to(ROOT)} cites {doc}, which the repository lacks"
    assert not cited, cited


# a comparison with a method's name: ==, !=, `in (...)`
_NAMES = "|".join(METHOD_NAMES)
SWITCH = re.compile(rf"""(==|!=|\bin)\s*[\(\[{{]?\s*["']({_NAMES})["']|["']({_NAMES})["']\s*(==|!=)""")


def test_no_method_name_switch_outside_the_pipeline_registry():
    """A comparison with a method's name (==, !=, in (...)) belongs in orchestrator/pipelines.py."""
    found = []
    for package in PACKAGES:
        for m, p in _modules(package).items():
            if m == "orchestrator.pipelines":
                continue
            found += [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for i, line in enumerate(p.read_text().splitlines(), 1)
                      if SWITCH.search(line)]
    assert not found, found


def test_the_switch_finder_sees_a_switch():
    assert SWITCH.search('if cfg["method"]["name"] == "sipl":')
    assert SWITCH.search("kind = 'mlp' if name in ('sipl', 'x') else 1")
    assert not SWITCH.search('name: Literal["sipl"] = "sipl"')
