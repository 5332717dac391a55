"""Load an experiment YAML, apply a profile, and expand its grid into cells.

Everything here runs before Ray or MLflow is touched, so a bad file costs nothing."""
from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from workloads.spec import CellSpec

from .config import CELL_FIELDS, METHOD_NAMES, CellConfig, ExperimentConfig, ViT, models_at
from .consistency import find, target_warnings, written_paths
from .pipelines import pipeline


class ConfigError(ValueError):
    """A problem with the experiment file, with the YAML path of the offending field."""


@dataclass(frozen=True)
class Cell:
    """One pretraining run and its evaluations."""
    cell_id: str          # hash of the resolved config: the cell's identity across invocations
    row: str              # table row label (variant and axis values, not the seed)
    seed: int
    overrides: dict[str, Any]
    config: dict[str, Any] = field(repr=False)
    # hash of everything but the evaluation: cells that differ only in their targets share
    # one pretrained backbone (the DAG's pretraining node)
    pretrain_id: str = ""
    row_index: int = 0    # the row's position in the YAML's grid: tables list rows in this order
    # the typed form the data plane reads, built before the stylizer is dropped from ``config``
    # (which stays a dict for the hash, the MLflow params and overrides)
    spec: CellSpec | None = field(default=None, repr=False, compare=False)


@dataclass
class Experiment:
    path: Path | None
    profile: str | None
    config: ExperimentConfig
    cells: list[Cell]
    # settings the file writes that have no effect (orchestrator/consistency.py), printed by the CLI
    warnings: list[str] = field(default_factory=list)
    sets: dict[str, Any] = field(default_factory=dict)  # the --set overrides as written (provenance)

    @property
    def name(self) -> str:
        return self.config.name


# ---------------------------------------------------------------- error text
_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "missing": "required field is missing",
    "too_short": "needs at least {min_length} item(s)",
}


def _loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part and not str(part).startswith(("function-", "tagged-union")) and part not in METHOD_NAMES:
            out += ("." if out else "") + str(part)
    return out


def format_validation_error(err: ValidationError, model: type, prefix: str = "") -> str:
    lines = []
    for e in err.errors(include_url=False):
        loc = tuple(e["loc"])
        ctx = e.get("ctx") or {}
        if e["type"] == "extra_forbidden":
            msg = "unknown field" + _suggest(loc, model)
        elif e["type"] in _MESSAGES:
            msg = _MESSAGES[e["type"]].format(**ctx)
        elif e["type"] == "value_error":
            msg = str(ctx.get("error", e["msg"]))
            loc_extra = msg.split(":", 1)
            if len(loc_extra) == 2 and " " not in loc_extra[0]:  # "crop_scale: ..." from a validator
                loc, msg = loc + (loc_extra[0],), loc_extra[1].strip()
        else:
            msg = e["msg"][0].lower() + e["msg"][1:] + f" (got {e.get('input')!r})"
        path = _loc(loc)
        line = f"{path}: {msg}" if path else msg
        lines.append(f"{prefix} {line}" if prefix else line)
    return "\n".join(lines)


def _suggest(loc: tuple, model: type) -> str:
    """'did you mean …' from the fields allowed at that place in the schema."""
    sections = models_at((p for p in loc[:-1] if p not in METHOD_NAMES), model)
    fields = list(dict.fromkeys(f for m in sections for f in m.model_fields))
    close = difflib.get_close_matches(str(loc[-1]), fields, n=1)
    return f" (did you mean {close[0]!r}?)" if close else (f"; allowed: {', '.join(fields)}" if fields else "")


# ---------------------------------------------------------------- loading
def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such experiment file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        raise ConfigError(f"{path}: the file is empty (an experiment needs at least a name)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of fields, got {type(raw).__name__}")
    return raw


def deep_merge(base: dict[str, Any], child: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in child.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def read_with_base(path: str | Path, _seen: tuple = ()) -> dict[str, Any]:
    """``base: other.yaml`` (relative to this file) is deep-merged under this file; the
    base's grid is replaced, not merged, since a table's rows are its own."""
    path = Path(path).resolve()
    if path in _seen:
        raise ConfigError(f"{path}: 'base' files form a cycle")
    raw = read_yaml(path)
    if "base" not in raw:
        return raw
    ref = raw.pop("base")
    if not isinstance(ref, str):
        raise ConfigError(f"{path}: base: expected a file name, got {ref!r}")
    parent = read_with_base(path.parent / ref, _seen + (path,))
    parent.pop("grid", None)
    return deep_merge(parent, raw)


def load_experiment(path: str | Path, profile: str | None = None,
                    overrides: dict[str, Any] | None = None) -> Experiment:
    raw = read_with_base(path)
    refuse_cell_seed(raw, profile, overrides)
    exp = build_experiment(raw, profile, overrides, written=written_by(read_yaml(path), profile))
    exp.path = Path(path).resolve()  # Ray may change the working directory of a job's driver later
    return exp


def refuse_cell_seed(raw: dict[str, Any], profile: str | None, overrides: dict[str, Any] | None) -> None:
    """A written ``seed`` would be replaced by each entry of ``seeds`` without a word: refuse it
    wherever a user can write it (the file and its bases, the chosen profile, a row, ``--set``)."""
    profiles = raw.get("profiles") if isinstance(raw.get("profiles"), dict) else {}
    variants = (raw.get("grid") or {}).get("variants") if isinstance(raw.get("grid"), dict) else None
    places = ["seed"] if "seed" in raw else []
    if profile and isinstance(profiles.get(profile), dict) and "seed" in profiles[profile]:
        places.append(f"profiles.{profile}.seed")
    places += [f"grid.variants[{i}].set.seed" for i, v in enumerate(variants or [])
               if isinstance(v, dict) and isinstance(v.get("set"), dict) and "seed" in v["set"]]
    if overrides and "seed" in overrides:
        places.append("--set seed")
    if places:
        raise ConfigError(f"{', '.join(places)}: a cell's seed comes from `seeds` (one cell per entry), so this "
                          "value would be replaced; write `seeds: [N]` instead")


def written_by(own: dict[str, Any], profile: str | None) -> set[str]:
    """The dotted paths a file writes itself (its fields and its own part of the chosen profile),
    not those it inherits through ``base:``: the fields the consistency checks speak of."""
    fields = {k: v for k, v in own.items() if k not in ("base", "grid", "profiles")}
    profiles = own.get("profiles") if isinstance(own.get("profiles"), dict) else {}
    chosen = profiles.get(profile) if profile else None
    return written_paths(fields) | (written_paths(chosen) if isinstance(chosen, dict) else set())


def build_experiment(raw: dict[str, Any], profile: str | None = None,
                     overrides: dict[str, Any] | None = None, written: set[str] | None = None) -> Experiment:
    """``written``: the paths the consistency checks treat as set by the user (default: all of
    ``raw``'s and its profile's); ``--set`` overrides and each row's own fields always count."""
    if written is None:
        written = written_by(raw, profile)
    base = validate(raw, ExperimentConfig)
    # only as written: once dumped, every config carries `variants: []`
    if "variants" in base.grid.model_fields_set and not base.grid.variants:
        raise ConfigError("grid.variants: empty list; give at least one variant ({name, set}), "
                          "or remove the key for a single configuration")
    data = base.model_dump(mode="json")
    if profile is not None:
        if profile not in base.profiles:
            avail = ", ".join(sorted(base.profiles)) or "none defined"
            raise ConfigError(f"--profile {profile}: unknown profile (available: {avail})")
        data = apply_overrides(data, base.profiles[profile], f"profiles.{profile}")
    if overrides:
        data = apply_overrides(data, overrides, "--set")
    base = validate(data, ExperimentConfig)
    cells = expand_cells(base)
    check_baselines(base, cells)
    if base.search is not None:
        check_search_space(base, cells[0])
    return Experiment(None, profile, base, cells, check_consistency(base, cells, written | written_paths(overrides or {})),
                      dict(overrides or {}))


def check_consistency(exp: ExperimentConfig, cells: list[Cell], written: set[str]) -> list[str]:
    """Fields written but without effect: an error (raised) where the user surely expected one,
    else the warnings returned (orchestrator/consistency.py)."""
    cluster = exp.cluster.model_dump(mode="json")
    configs = [{**cell.config, "cluster": cluster} for cell in cells]
    findings = find([(c, written | written_paths(cell.overrides)) for c, cell in zip(configs, cells)])
    errors = [f.message() for f in findings if f.rule.error]
    if errors:
        raise ConfigError("\n".join(errors))
    return [f.message() for f in findings if not f.rule.error] + target_warnings(configs)


def check_baselines(exp: ExperimentConfig, cells: list[Cell]) -> None:
    """Every ``tables.baseline`` must name a row of the grid (variant name, with its axis values).
    A search has one configuration and compares trials, not rows: a baseline it inherits is unused."""
    if exp.search is not None:
        return
    rows = list(dict.fromkeys(cell.row for cell in cells))
    for name in exp.tables.baselines():
        if name not in rows:
            close = difflib.get_close_matches(name, rows, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"tables.baseline: {name!r} is not a row of this grid{hint}; rows: "
                              + ", ".join(repr(r) for r in rows))


def check_search_space(exp: ExperimentConfig, cell: Cell) -> None:
    """Every searched path must name a field, and its bounds must be valid values there."""
    for path, space in exp.search.space.items():
        samples = space.values if space.type == "categorical" else [space.low, space.high]
        for value in samples:
            if space.type == "int":
                value = int(value)
            sets = {path: value}
            head, _, last = path.rpartition(".")
            sibling = f"{head}.{1 - int(last)}" if last in ("0", "1") else None
            if sibling in exp.search.space:  # both bounds of a range searched: test [v, v]
                sets[sibling] = value
            cfg = apply_overrides(cell.config if "stylizer" in cell.config else
                                  {**cell.config, "stylizer": exp.stylizer.model_dump(mode="json")},
                                  sets, "search.space")
            try:
                CellConfig.model_validate(cfg)
            except ValidationError as e:
                raise ConfigError(format_validation_error(e, CellConfig, f"search.space.{path} = {value!r}:")) from None


def validate(data: dict[str, Any], model: type, prefix: str = ""):
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, model, prefix)) from None


def apply_overrides(data: dict[str, Any], overrides: dict[str, Any], where: str) -> dict[str, Any]:
    """Set dotted paths (``optim.lr: 0.1``; ``augmentation.style.alpha.0`` is an item of a
    range); a path that names no existing field is an error."""
    data = copy.deepcopy(data)
    for dotted, value in overrides.items():
        node, parts = data, dotted.split(".")
        for i, part in enumerate(parts):
            key: Any = part
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                key = int(part)
            elif not isinstance(node, dict) or part not in node:
                here = ".".join(parts[:i]) or "the top level"
                allowed = sorted(node) if isinstance(node, dict) else []
                close = difflib.get_close_matches(part, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{where}.{dotted}: {here} has no field {part!r}{hint}")
            if i == len(parts) - 1:
                node[key] = value
            else:
                node = node[key]
    return data


# ---------------------------------------------------------------- grid
# fields added after stores with finished cells existed: at these values they leave a cell's
# identity as it was, so upgrading sassl does not rerun finished work
IDENTITY_NEUTRAL = {"optim.precision": "fp32", "optim.compile": False, "optim.deterministic": False,
                    "backbone.sync_bn": False,
                    "data.loader": "auto", "data.memory_budget_gb": 2.0, "data.stream_decode": "worker",
                    "data.stream_decode_cpus": 1.0,
                    "backbone.vit": ViT().model_dump(mode="json"), "optim.scale_lr": "none",
                    "method.omega_shuffle": False,
                    # CASSLE's evaluations (issue 43): off, they leave every earlier cell's id as it was
                    "evaluation.conditioning_check": {"enabled": False, "images": 5000},
                    "evaluation.rotation": {"enabled": False},
                    "evaluation.corruptions": {"enabled": False, "names": ["fog", "frost", "snow", "brightness"],
                                               "severities": [1, 2, 3, 4, 5], "images": None, "seed": 0},
                    "evaluation.retrieval": {"enabled": False, "k": [1, 4], "figure_queries": 6,
                                             "figure_neighbours": 4},
                    "evaluation.targets.*.metric": None, "evaluation.targets.*.ten_crop": False}


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` without the IDENTITY_NEUTRAL fields that hold their neutral value."""
    out = copy.deepcopy(config)
    for dotted, neutral in IDENTITY_NEUTRAL.items():
        *head, last = dotted.split(".")
        nodes = [out]
        for part in head:  # `*`: every item of a list (each target)
            if part == "*":
                nodes = [item for n in nodes if isinstance(n, list) for item in n]
            else:
                nodes = [n.get(part, {}) if isinstance(n, dict) else {} for n in nodes]
        for node in nodes:
            if isinstance(node, dict) and last in node and node[last] == neutral:
                del node[last]
    return out


def cell_hash(config: dict[str, Any]) -> str:
    blob = json.dumps(identity(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def pretrain_hash(config: dict[str, Any]) -> str:
    return cell_hash({k: v for k, v in config.items() if k != "evaluation"})


def expand_cells(exp: ExperimentConfig) -> list[Cell]:
    """variants × axis values × seeds → validated cells (one pretraining each)."""
    base = {k: v for k, v in exp.model_dump(mode="json").items() if k in CELL_FIELDS}
    variants = exp.grid.variants or [None]
    axes = list(exp.grid.axes.items())
    combos = list(itertools.product(*[vals for _, vals in axes])) if axes else [()]
    cells, seen, rows = [], {}, {}
    for variant, combo, seed in itertools.product(variants, combos, exp.seeds):
        overrides = dict(variant.set) if variant else {}
        overrides.update({path: v for (path, _), v in zip(axes, combo)})
        label_parts = ([variant.name] if variant else []) + [f"{p}={v}" for (p, _), v in zip(axes, combo)]
        row = ", ".join(label_parts) or exp.name
        where = f"grid.variants[{variants.index(variant)}].set" if variant else "grid.axes"
        cfg_dict = apply_overrides(base, {**overrides, "seed": seed}, where)
        cfg = validate(cfg_dict, CellConfig, prefix=f"cell '{row}' (seed {seed}):")
        resolved = cfg.model_dump(mode="json")
        spec = CellSpec.from_dict(resolved)
        if not resolved["augmentation"]["style"]["enabled"]:
            resolved.pop("stylizer")  # not part of this cell's identity
        if resolved["optim"]["precision"] == "fp16" and exp.cluster.gpus_per_worker == 0:
            raise ConfigError(f"cell '{row}' (seed {seed}): optim.precision: fp16 needs a GPU "
                              "(cluster.gpus_per_worker > 0); on CPUs use bf16 or fp32")
        problem = pipeline(resolved).limits(resolved, exp.cluster.num_workers)
        if problem:
            raise ConfigError(f"cell '{row}' (seed {seed}): {problem}")
        if resolved["optim"]["batch_size"] % exp.cluster.num_workers:
            raise ConfigError(f"optim.batch_size: {resolved['optim']['batch_size']} is not divisible by "
                              f"cluster.num_workers {exp.cluster.num_workers}")
        cid = cell_hash(resolved)
        if cid in seen:
            raise ConfigError(f"grid: cells {seen[cid]} and '{row}' (seed {seed}) resolve to the same "
                              "configuration; remove the duplicate")
        seen[cid] = f"'{row}' (seed {seed})"
        cells.append(Cell(cid, row, seed, overrides, resolved, pretrain_hash(resolved), rows.setdefault(row, len(rows)),
                          spec))
    return cells


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → {'optim.lr': 0.06, ...} (MLflow params)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else k
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out
