"""Hyperparameter-search summary: trials best first, the best configuration, and parameter
importances (fANOVA via Optuna) computed from the logged trials alone."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pandas as pd

from .collect import Search
from .tables import Table

SEED = 0  # fANOVA's random forest: fixed so a table rebuilds identically
PRIMITIVE = (type(None), bool, int, float, str)


@dataclass
class SearchSummary:
    search: Search
    trials: pd.DataFrame                 # this search's trials, ranked (best first, unranked last)
    params: list[str]                    # dotted paths, space order first
    best: dict = field(default_factory=dict)
    best_value: float | None = None
    best_source: str = ""
    importances: pd.Series | None = None  # dotted path -> importance (sums to 1), largest first
    notes: list[str] = field(default_factory=list)


def search_stems(experiment: str, searches: list[Search]) -> list[tuple[str, Search]]:
    """File stems: the newest search keeps <experiment>-search, older ones get their run id's prefix."""
    return [(f"{experiment}-search" + (f"-{s.run_id[:8]}" if i else ""), s) for i, s in enumerate(reversed(searches))]


def _fmt(v, objective: bool = False) -> str:
    if _missing(v):
        return "–"
    if objective and abs(v) >= 1:  # accuracies: fixed decimals line up; small values (losses) keep 4 digits
        return f"{v:.2f}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _status(row) -> str:
    if row["status"] == "FINISHED":
        return "stopped early" if row["stopped_early"] else "completed"
    return str(row["status"]).lower()


def summarize(search: Search, all_trials: pd.DataFrame) -> SearchSummary:
    trials = all_trials[all_trials["search_id"] == search.run_id].copy()
    logged = [c[len("trial."):] for c in trials.columns if c.startswith("trial.")]
    params = list(search.space) + [p for p in logged if p not in search.space]
    # only finished trials rank: a running or failed trial's last value is not its result
    trials["_value"] = trials["objective"].where(trials["status"] == "FINISHED")
    # trials that ran to the end first (a stopped trial's last value is from fewer epochs), unranked last
    trials["_group"] = trials["_value"].isna() * 2 + trials["stopped_early"].astype(bool)
    trials = trials.sort_values(["_group", "_value", "number"], ascending=[True, search.mode == "min", True],
                                na_position="last").drop(columns="_group")
    s = SearchSummary(search, trials.drop(columns="_value"), params)
    counts = trials.apply(_status, axis=1).value_counts() if len(trials) else pd.Series(dtype=int)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items()) or "none yet"
    s.notes.append(f"{len(trials)} trial{'s' * (len(trials) != 1)}: {summary}.")
    ranked = trials[trials["_value"].notna()]
    if search.best_params:
        s.best, s.best_value, s.best_source = search.best_params, search.best_value, "recorded by the search"
    elif len(ranked):
        top = ranked.iloc[0]
        s.best = {p: top.get(f"trial.{p}") for p in params}
        s.best_value = float(top["_value"])
        s.best_source = f"best trial so far ({top['trial_id']}); the search has not recorded one"
    s.importances, note = importances(search, ranked, params)
    if note:
        s.notes.append(note)
    return s


def _choice(v):
    return v if isinstance(v, PRIMITIVE) else json.dumps(v)


def _distribution(spec: dict, seen: list):
    """An Optuna distribution from the space entry, widened to cover every logged value
    (create_trial rejects values outside it; a space edited between runs must not crash the table)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
    kind = spec.get("type")
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen)
    if kind == "categorical" or not numeric:
        choices = [_choice(v) for v in spec.get("values", [])]
        return CategoricalDistribution(choices + [v for v in dict.fromkeys(map(_choice, seen)) if v not in choices])
    lo, hi = min([spec.get("low", min(seen))] + seen), max([spec.get("high", max(seen))] + seen)
    if kind == "int" or (kind is None and all(isinstance(v, int) for v in seen)):
        return IntDistribution(int(lo), int(hi), log=bool(spec.get("log", False)))
    return FloatDistribution(float(lo), float(hi), log=kind == "loguniform" or bool(spec.get("log", False)))


def importances(search: Search, ranked: pd.DataFrame, params: list[str]) -> tuple[pd.Series | None, str]:
    """fANOVA importances over the finished trials (stopped-early ones at their last value); None and a
    note when they cannot be estimated."""
    if len(ranked) < 2:
        return None, f"Parameter importances need at least 2 finished trials (have {len(ranked)})."
    if ranked["_value"].nunique() < 2:
        return None, "Parameter importances omitted: every finished trial has the same objective."
    import optuna
    from optuna.distributions import IntDistribution
    # .tolist() gives Python scalars (numpy ints are not ints to Optuna's checks)
    columns = {p: [None if _missing(v) else v for v in ranked[f"trial.{p}"].tolist()]
               for p in params if f"trial.{p}" in ranked}
    dists = {p: _distribution(search.space.get(p, {}), [v for v in vs if v is not None])
             for p, vs in columns.items() if any(v is not None for v in vs)}
    cast = {p: (int if isinstance(d, IntDistribution) else _choice) for p, d in dists.items()}
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" chatter in the CLI output
    try:
        study = optuna.create_study(direction="maximize" if search.mode == "max" else "minimize")
        for i, value in enumerate(ranked["_value"].tolist()):
            values = {p: cast[p](columns[p][i]) for p in dists if columns[p][i] is not None}
            study.add_trial(optuna.trial.create_trial(params=values, distributions={p: dists[p] for p in values},
                                                      value=float(value)))
        result = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=SEED))
    except Exception as e:  # noqa: BLE001 - a table without importances beats no table
        return None, f"Parameter importances could not be estimated: {e}"
    finally:
        optuna.logging.set_verbosity(verbosity)
    if not result:
        return None, "Parameter importances omitted: no parameter varies across the finished trials."
    note = f"Importances: fANOVA (Optuna, seed {SEED}) over {len(ranked)} finished trials"
    stopped = int(ranked["stopped_early"].sum())
    return pd.Series(result, dtype=float).sort_values(ascending=False), note + (
        f", {stopped} of them stopped early (at their last value)." if stopped else ".")


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def search_table(s: SearchSummary, experiment: str) -> Table:
    better = "higher" if s.search.mode == "max" else "lower"
    title = (f"{experiment}: search {s.search.name} ({s.search.status.lower()}), objective {s.search.metric}, "
             f"{better} is better; trials best first")
    rows = [{"Trial": r["trial_id"], **{p: _fmt(r.get(f"trial.{p}")) for p in s.params},
             "Objective": _fmt(r["objective"] if r["status"] == "FINISHED" else None, True), "Status": _status(r)}
            for _, r in s.trials.iterrows()]
    frame = pd.DataFrame(rows, columns=["Trial", *s.params, "Objective", "Status"]).set_index("Trial")
    numeric = s.trials.set_index("trial_id")[["objective"]].rename_axis("Trial")
    table = Table(title, frame, numeric, notes=list(s.notes))
    if s.best:
        keys = list(dict.fromkeys([*s.params, *s.best]))
        best = pd.DataFrame({"Value": [_fmt(s.best.get(p)) for p in keys]}, index=pd.Index(keys, name="Parameter"))
        best_title = f"Best configuration ({s.search.metric} = {_fmt(s.best_value, True)}; {s.best_source})"
        table.parts["best"] = Table(best_title, best, pd.DataFrame())
    if s.importances is not None:
        imp = pd.DataFrame({"Importance": [f"{v:.3f}" for v in s.importances]},
                           index=pd.Index(s.importances.index, name="Parameter"))
        table.parts["importance"] = Table("Parameter importances", imp, s.importances.to_frame("Importance"))
    return table
