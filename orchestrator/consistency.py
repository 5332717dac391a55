"""Settings that contradict each other: a field an experiment writes that has no effect under
another of its settings (a pretrained stylizer is not trained, so its training fields do
nothing; style fields do nothing while style is off; ...).

Only what the experiment's own file writes is checked (its fields, the chosen profile's own
overrides, its rows and `--set`), not what it inherits through `base:`: a base file serves
several experiments, and its settings for SASSL rows are not a mistake in a table without any.
A field counts as unused when it is unused in every cell that writes it, so a base value meant
for some rows only is fine. The rules are listed in the configuration reference (generated
from RULES).

Besides the rules, warnings about whole resolved cells, whatever file wrote their settings:
a field of an evaluation target that its own other field overrides, and a cell at a paper's
scale (SCALE_ARCHS, or crops of SCALE_IMAGE_SIZE px and more) on workers without a GPU."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .config import DatasetRef, Evaluation, Style, models_at
from .pipelines import PIPELINES, pipeline

Cfg = dict[str, Any]  # a resolved cell config, with the experiment's `cluster`


@dataclass(frozen=True)
class Rule:
    fields: tuple[str, ...]          # dotted paths; a path covers every field under it
    when: str                        # the other setting, as the reference and the message say it
    unused: Callable[[Cfg, str], bool]  # (cell, field) → True when the field has no effect in this cell
    hint: str                        # what to do instead
    error: bool = False              # errors: the user surely expected an effect (silently wrong results)
    scope: Callable[[Cfg], bool] = lambda c: True  # the cells the rule speaks of


def _style_on(c: Cfg) -> bool:
    return c["augmentation"]["style"]["enabled"]


def _aug_aware(c: Cfg) -> bool:
    return "aug_mode" in c["method"]


_STYLIZER_TRAINING = ("stylizer.loss_network", "stylizer.loss_weights", "stylizer.steps", "stylizer.batch_size",
                      "stylizer.lr", "stylizer.content_weight", "stylizer.style_weight", "stylizer.tv_weight",
                      "stylizer.seed")
_STYLE_FIELDS = tuple(f"augmentation.style.{f}" for f in Style.model_fields if f != "enabled")
_CASSLE_ENCODER = tuple(f"method.{f}" for f in ("cond_mode", "encoder_depth", "encoder_width", "encoder_out_dim",
                                                "encoder_last_bn"))

def _settings(protocol: str) -> tuple[str, ...]:
    """An evaluation protocol's fields but its switch (writing `enabled: false` says it is off)."""
    return tuple(f"evaluation.{protocol}.{name}" for name in Evaluation.model_fields[protocol].annotation.model_fields
                 if name != "enabled")


RULES: tuple[Rule, ...] = (
    Rule(_STYLIZER_TRAINING, "the stylizer is not trained (`stylizer.pretrained` or `stylizer.checkpoint` is set)",
         lambda c, f: bool(c["stylizer"]["pretrained"] or c["stylizer"]["checkpoint"]),
         "set `stylizer.pretrained: null` to train a stylizer with them, or remove them", error=True, scope=_style_on),
    Rule(("stylizer.embed_dim", "stylizer.image_size"), "`stylizer.pretrained` is set (a fixed network)",
         lambda c, f: bool(c["stylizer"]["pretrained"]),
         "the size SASSL stylizes at is `augmentation.style.image_size`; set `stylizer.pretrained: null` "
         "to train a stylizer of another architecture or size", error=True, scope=_style_on),
    Rule(("stylizer",) + _STYLE_FIELDS, "`augmentation.style.enabled` is false", lambda c, f: not _style_on(c),
         "turn style on in the rows that should use it (`augmentation.style.enabled: true`), or remove them"),
    Rule(("augmentation.style.shift",), "`augmentation.style.source` is not `in_batch`",
         lambda c, f: c["augmentation"]["style"]["source"] != "in_batch", "remove it", scope=_style_on),
    Rule(("augmentation.style.style_data",), "`augmentation.style.source` is not `external`",
         lambda c, f: c["augmentation"]["style"]["source"] != "external",
         "set `augmentation.style.source: external` to stylize with that dataset", scope=_style_on),
    Rule(_CASSLE_ENCODER, "`method.aug_mode` is not `cassle`", lambda c, f: c["method"]["aug_mode"] != "cassle",
         "set `method.aug_mode: cassle` in the rows that condition the projector", scope=_aug_aware),
    Rule(("method.augself_weight", "method.augself_hidden_dim"), "`method.aug_mode` is not `augself`",
         lambda c, f: c["method"]["aug_mode"] != "augself", "set `method.aug_mode: augself`", scope=_aug_aware),
    Rule(("method.omega_parts", "method.omega_shuffle"), "`method.aug_mode` is `vanilla`", lambda c, f: c["method"]["aug_mode"] == "vanilla",
         "set `method.aug_mode` to `cassle` or `augself`", scope=_aug_aware),
    Rule(("optim.momentum",), "`optim.optimizer` is `adamw` (Adam's moments, no momentum term)",
         lambda c, f: c["optim"]["optimizer"] == "adamw", "remove it"),
    Rule(("backbone.width", "backbone.stem"), "`backbone.arch` is a Vision Transformer",
         lambda c, f: c["backbone"]["arch"].startswith("vit_"), "remove them (a ViT's size is its `arch`)"),
    Rule(("method.alpha", "method.alpha_warmup_epochs"), "`method.variant` is `opl` (no KL term)",
         lambda c, f: c["method"].get("variant") == "opl", "remove them, or choose another variant",
         scope=lambda c: "variant" in c["method"]),
    Rule(tuple(dict.fromkeys(f for p in PIPELINES.values() for f in p.ignores)),
         "the method does not read them (" + "; ".join(p.ignores_reason for p in PIPELINES.values() if p.ignores) + ")",
         lambda c, f: any(f == i or f.startswith(i + ".") for i in pipeline(c).ignores),
         "set the method's own fields instead (`method.*`)"),
    Rule(("data.stream_decode", "data.stream_decode_cpus"), "`data.loader` is `memory`",
         lambda c, f: c["data"]["loader"] == "memory", "set `data.loader: stream` (or `auto`) to stream"),
    Rule(("data.stream_decode_cpus",), "`data.stream_decode` is not `ray_data`",
         lambda c, f: c["data"]["stream_decode"] != "ray_data", "set `data.stream_decode: ray_data`"),
    Rule(("data.memory_budget_gb",), "`data.loader` is not `auto`", lambda c, f: c["data"]["loader"] != "auto",
         "set `data.loader: auto` to let the budget choose"),
    # a protocol's settings while it is off (writing `enabled: false` itself is saying so, not a slip)
    *(Rule(_settings(p), f"`evaluation.{p}.enabled` is false",
           lambda c, f, p=p: not c["evaluation"][p]["enabled"], f"set `evaluation.{p}.enabled: true`")
      for p in ("fine_tune", "sensitivity", "conditioning_check", "corruptions", "retrieval")),
    # the L-BFGS grid and iterations also serve rotation prediction and the corruptions' classifier
    Rule(_settings("lbfgs"), "`evaluation.lbfgs.enabled`, `evaluation.rotation.enabled` and "
         "`evaluation.corruptions.enabled` are false",
         lambda c, f: not any(c["evaluation"][p]["enabled"] for p in ("lbfgs", "rotation", "corruptions")),
         "set `evaluation.lbfgs.enabled: true`"),
    Rule(("evaluation.few_shot.episodes",), "`evaluation.few_shot.shots` is empty",
         lambda c, f: not c["evaluation"]["few_shot"]["shots"], "give `shots`, e.g. `[1, 10]`"),
    Rule(("backbone.sync_bn",), "`cluster.num_workers` is 1 (one batch: nothing to synchronise)",
         lambda c, f: c["cluster"]["num_workers"] == 1, "remove it, or train on several workers"),
)


def written_paths(tree: Any, prefix: str = "") -> set[str]:
    """Dotted paths of the leaves of a (partial) YAML mapping; a dotted key is a path already."""
    if not isinstance(tree, dict) or not tree:
        return {prefix} if prefix else set()
    out: set[str] = set()
    for k, v in tree.items():
        out |= written_paths(v, f"{prefix}.{k}" if prefix else str(k))
    return out


def _is_section(field: str) -> bool:
    """Whether a dotted path names a section of fields (`augmentation.view1`), not one value (a
    number, a list, a dataset reference)."""
    models = models_at(field.split("."))
    return bool(models) and DatasetRef not in models


def _covers(field: str, paths: Iterable[str]) -> list[str]:
    """The written paths a rule's field covers, as they are reported: a section's fields by
    their own path, a value (even one written key by key, like a dataset) by the field's."""
    section = _is_section(field)
    return sorted({p if section and p.startswith(field + ".") else field
                   for p in paths if p == field or p.startswith(field + ".") or field.startswith(p + ".")})


@dataclass(frozen=True)
class Finding:
    paths: tuple[str, ...]
    rule: Rule

    def message(self) -> str:
        what = "has" if len(self.paths) == 1 else "have"
        return f"{', '.join(self.paths)}: {what} no effect: {self.rule.when}; {self.rule.hint}"


def find(cells: list[tuple[Cfg, set[str]]]) -> list[Finding]:
    """``cells``: (resolved config with `cluster`, paths the experiment wrote for that cell).
    A finding per rule: the written paths unused in every in-scope cell that writes them. A path
    is reported by the first rule that finds it (the errors come first), so once."""
    findings, reported = [], set()
    for rule in RULES:
        bad: set[str] = set()
        for f in rule.fields:
            users = [(c, _covers(f, written)) for c, written in cells if rule.scope(c) and _covers(f, written)]
            if users and all(rule.unused(c, f) for c, _ in users):
                bad |= {p for _, ps in users for p in ps}
        bad -= reported
        if bad:
            reported |= bad
            findings.append(Finding(tuple(sorted(bad)), rule))
    return findings


def target_warnings(cells: list[Cfg]) -> list[str]:
    """The warnings about whole cells (their `cluster` included): a target's overridden fields
    (target_field_warnings), then a cell at a paper's scale without a GPU (scale_warnings)."""
    return target_field_warnings(cells) + scale_warnings(cells)


# a cell at a paper's scale: these backbones (ResNet-50 and larger), or crops of this side and more
SCALE_ARCHS = ("resnet50", "vit_base")
SCALE_IMAGE_SIZE = 160


def scale_warnings(cells: list[Cfg]) -> list[str]:
    """One warning when cells at a paper's scale would train on workers without a GPU
    (`cluster.gpus_per_worker` 0). Not an error: `sassl rehearse` times such cells on CPUs on
    purpose, and a short try of a large backbone on CPUs runs."""
    big = [c for c in cells if c["cluster"]["gpus_per_worker"] == 0
           and (c["backbone"]["arch"] in SCALE_ARCHS or c["data"]["image_size"] >= SCALE_IMAGE_SIZE)]
    if not big:
        return []
    shapes = sorted({f"{c['backbone']['arch']} at {c['data']['image_size']} px" for c in big})
    return [f"cluster.gpus_per_worker: 0, but {len(big)} of {len(cells)} cell(s) are at a paper's scale "
            f"({', '.join(shapes)}) and would train on CPUs; give each worker a GPU "
            "(`cluster.gpus_per_worker: 1`), or train a smaller backbone on smaller crops (e.g. `--profile cpu`)"]


def target_field_warnings(cells: list[Cfg]) -> list[str]:
    """Within one evaluation target: a field its own other field overrides."""
    out: list[str] = []
    for c in cells:
        for i, t in enumerate(c["evaluation"]["targets"]):
            where = f"evaluation.targets[{i}] ({t['key']})"
            if t["val_split"] and t["val_fraction"] != 0.1:
                out.append(f"{where}.val_fraction: has no effect: the target has its own val_split "
                           f"{t['val_split']!r}; remove one of them")
            if t["test_data"] and t["test_split"] != "test":
                out.append(f"{where}.test_split: has no effect: test_data is set; remove one of them")
    return list(dict.fromkeys(out))
