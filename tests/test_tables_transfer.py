"""Transfer, few-shot and search tables (and their plots) from a synthetic MLflow store with known values."""
import itertools
import json
import math

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from orchestrator import tracking
from results import build_tables, cell_runs, experiment_mapping, search_runs, summarize
from results.figures import pixels
from results.plots import build_plots, search_figure, transfer_figure
from results.sensitivity import sensitivity_figure

TARGETS = json.dumps([["cifar10", "CIFAR-10"], ["dtd", "DTD-10"]])
NAN = math.nan
_clock = itertools.count(1_700_000_000_000, 1000)  # explicit start times: row order must not hang on ms ties


@pytest.fixture
def store(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    return uri, MlflowClient(uri), tmp_path


def _run(c, exp_id, tags, params=None, metrics=None, status="FINISHED", name=None):
    run = c.create_run(exp_id, start_time=next(_clock), tags={k: str(v) for k, v in tags.items()}, run_name=name)
    rid = run.info.run_id
    if params:
        tracking.log_params(c, rid, params)
    if metrics:
        tracking.log_metrics(c, rid, metrics)
    if status != "RUNNING":
        c.set_terminated(rid, status)
    return rid


def _cell(c, exp_id, row, seed, style, status="FINISHED", metrics=None, targets=TARGETS):
    tags = {tracking.TAG_ROLE: "cell", tracking.TAG_CELL: f"{row}-{seed}", tracking.TAG_ROW: row,
            tracking.TAG_SEED: seed, tracking.TAG_TARGETS: targets}
    if status == "FAILED":
        tags[tracking.TAG_ERROR] = "loss became nan"
    return _run(c, exp_id, tags, {"augmentation.style.enabled": style, "optim.lr": 0.1}, metrics, status)


def _scores(lin_c, lin_d, ft_c=None, ft_d=None, fs=None):
    m = {"linear/cifar10/top1": lin_c, "linear/cifar10/top5": lin_c + 40, "linear/cifar10/lr": 0.1,
         "linear/dtd/top1": lin_d, "random_init/linear/cifar10/top1": 20.0, "random_init/linear/dtd/top1": 15.0,
         "pretrain/loss": 3.0}
    if ft_c is not None:
        m.update({"finetune/cifar10/top1": ft_c, "finetune/dtd/top1": ft_d, "finetune/cifar10/top5": 99.0})
    if fs is not None:  # (1-shot CIFAR-10, 10-shot CIFAR-10, 1-shot DTD, 10-shot DTD) episode means
        for (k, t), v in zip([(1, "cifar10"), (10, "cifar10"), (1, "dtd"), (10, "dtd")], fs):
            m.update({f"fewshot{k}/{t}/top1": v, f"fewshot{k}/{t}/top1_std": 3.0, f"fewshot{k}/{t}/top5": v + 30})
    return m


def _transfer_experiment(c):
    exp_id = c.create_experiment("transfer")
    _cell(c, exp_id, "None (baseline)", 0, False, metrics=_scores(40.0, 50.0, 60.0, 70.0, (20.0, 30.0, 25.0, 35.0)))
    _cell(c, exp_id, "None (baseline)", 1, False, metrics=_scores(42.0, 52.0, 62.0, 72.0, (22.0, 34.0, 25.0, 37.0)))
    _cell(c, exp_id, "DTD", 0, True, metrics=_scores(43.0, 55.0, 61.0, 74.0, (24.0, 31.0, 28.0, 40.0)))
    _cell(c, exp_id, "DTD", 1, True, metrics=_scores(45.0, 57.0, 61.0, 76.0, (26.0, 33.0, 30.0, 40.0)))
    _cell(c, exp_id, "Monet paintings", 0, True, metrics=_scores(41.0, 53.0, 64.0, 71.0, (21.0, 35.0, 26.0, 36.0)))
    _cell(c, exp_id, "Monet paintings", 1, True, status="FAILED")
    _cell(c, exp_id, "In-batch (CIFAR-10)", 0, True, status="RUNNING")


def test_transfer_table_bold_best_and_unfinished_cells(store):
    uri, c, tmp = store
    _transfer_experiment(c)
    tables = build_tables("transfer", uri)
    assert list(tables) == ["transfer-transfer", "transfer-fewshot"]
    t = tables["transfer-transfer"]
    main = t.markdown().split("\n\n**transfer: transfer top-1: paired")[0]
    assert main == "\n".join([
        "**transfer: transfer top-1 (mean ± std over seeds; best per column in bold)**",
        "",
        "|                     | Linear · CIFAR-10 | Linear · DTD-10  | Fine-tune · CIFAR-10 | Fine-tune · DTD-10 | Seeds | Not finished |",  # noqa: E501
        "|---------------------|-------------------|------------------|----------------------|--------------------|-------|--------------|",  # noqa: E501
        "| None (baseline)     | 41.00 ± 1.41      | 51.00 ± 1.41     | 61.00 ± 1.41         | 71.00 ± 1.41       | 2     |              |",  # noqa: E501
        "| DTD                 | **44.00 ± 1.41**  | **56.00 ± 1.41** | 61.00 ± 0.00         | **75.00 ± 1.41**   | 2     |              |",  # noqa: E501
        "| Monet paintings     | 41.00             | 53.00            | **64.00**            | 71.00              | 1     | 1 failed     |",  # noqa: E501
        "| In-batch (CIFAR-10) | –                 | –                | –                    | –                  | 0     | 1 running    |",  # noqa: E501
    ])
    assert t.numeric.loc["DTD", "Fine-tune · DTD-10"] == pytest.approx(75.0)
    tex = t.latex()
    assert r"& \multicolumn{2}{c}{Linear probe} & \multicolumn{2}{c}{Fine-tune} &  &  \\" in tex
    assert r"\cmidrule(lr){2-3}\cmidrule(lr){4-5}" in tex
    assert r" & CIFAR-10 & DTD-10 & CIFAR-10 & DTD-10 & Seeds & Not finished \\" in tex
    assert r"\textbf{44.00 $\pm$ 1.41}" in tex and r"In-batch (CIFAR-10) & – & – & – & – & 0 & 1 running \\" in tex
    saved = t.save(tmp / "tables", "transfer-transfer")
    csv = saved["csv"].read_text()
    assert "**" not in csv and "44.00 ± 1.41" in csv
    # paired by seed against the style-off row: DTD has 2 pairs, Monet 1 (its seed 1 failed), In-batch none
    paired = t.parts["paired"]
    assert paired.frame.loc["DTD"].tolist() == ["None (baseline)", "+3.00 ± 0.00*", "+5.00 ± 0.00*",
                                                "+0.00 ± 12.71", "+4.00 ± 0.00*", "2"]
    assert paired.frame.loc["Monet paintings"].tolist() == ["None (baseline)", "+1.00", "+3.00", "+4.00", "+1.00", "1"]
    assert paired.frame.loc["In-batch (CIFAR-10)"].tolist()[1:] == ["–", "–", "–", "–", "0"]
    assert "None (baseline)" not in paired.frame.index
    assert "| +3.00 ± 0.00* " in t.markdown() and r" & +3.00 $\pm$ 0.00* & " in t.latex()
    assert "+0.00 ± 12.71" in saved["csv:paired"].read_text()


def test_fewshot_table(store):
    uri, c, _ = store
    _transfer_experiment(c)
    t = build_tables("transfer", uri)["transfer-fewshot"]
    assert list(t.frame.columns) == ["1-shot top-1 · CIFAR-10", "1-shot top-1 · DTD-10", "10-shot top-1 · CIFAR-10",
                                     "10-shot top-1 · DTD-10", "Seeds", "Not finished"]
    assert t.frame.loc["None (baseline)"].tolist() == ["21.00 ± 1.41", "25.00 ± 0.00", "32.00 ± 2.83", "36.00 ± 1.41",
                                                       "2", ""]
    assert t.frame.loc["Monet paintings", "10-shot top-1 · CIFAR-10"] == "35.00"
    assert t.frame.loc["In-batch (CIFAR-10)", "1-shot top-1 · DTD-10"] == "–"
    md = t.markdown()
    assert "**25.00 ± 1.41**" in md and "**40.00 ± 0.00**" in md and "**35.00**" in md  # best per column
    assert r"\multicolumn{2}{c}{10-shot top-1}" in t.latex()


def test_linear_only_transfer_omits_the_finetune_block(store):
    uri, c, _ = store
    exp_id = c.create_experiment("linear-only")
    _cell(c, exp_id, "None (baseline)", 0, False, metrics=_scores(40.0, 50.0))
    _cell(c, exp_id, "DTD", 0, True, metrics=_scores(43.0, 49.0))
    t = build_tables("linear-only", uri)
    assert list(t) == ["linear-only-transfer"]
    assert t["linear-only-transfer"].markdown().splitlines()[2:6] == [
        "|                 | Linear · CIFAR-10 | Linear · DTD-10 | Seeds |",
        "|-----------------|-------------------|-----------------|-------|",
        "| None (baseline) | 40.00             | **50.00**       | 1     |",
        "| DTD             | **43.00**         | 49.00           | 1     |",
    ]
    # one pair: the difference, no interval
    paired = t["linear-only-transfer"].parts["paired"].frame
    assert paired.loc["DTD"].tolist() == ["None (baseline)", "+3.00", "-1.00", "1"]


# one parameter (lr) fully determines the objective; wd and layers are uncorrelated with it
LRS = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2]
WDS = [0.05, 0.01, 0.09, 0.03, 0.07, 0.02]
LAYERS = [4, 8, 13, 13, 8, 4]  # each value's trials have the same mean objective
SPACE = {"optim.lr": {"type": "loguniform", "low": 1e-4, "high": 1e-1},
         "optim.weight_decay": {"type": "uniform", "low": 0.0, "high": 0.1},
         "augmentation.style.stylized_layers": {"type": "categorical", "values": [4, 8, 10, 13]}}


def _objective(lr):
    return round(40.0 + 5.0 * math.log10(lr / 1e-4), 2)


def _search(c, exp_id, name, trials, best=None):
    """trials: (params, objective or None, status, stopped_early)."""
    tags = {tracking.TAG_ROLE: "search", tracking.TAG_SEARCH_METRIC: "val_top1", tracking.TAG_SEARCH_MODE: "max",
            tracking.TAG_SEARCH_SPACE: json.dumps(SPACE)}
    parent = _run(c, exp_id, tags, name=name, status="RUNNING")
    for i, (params, value, status, stopped) in enumerate(trials):
        tags = {tracking.TAG_ROLE: "trial", tracking.TAG_SEARCH_ID: parent, tracking.TAG_TRIAL_ID: f"{name}-t{i}",
                tracking.TAG_PARENT: parent}
        if stopped:
            tags[tracking.TAG_STOPPED_EARLY] = "true"
        rid = _run(c, exp_id, tags, {f"trial.{k}": v for k, v in params.items()}, status="RUNNING")
        if value is not None:
            for step in (1, 2, 3):  # per-epoch values; the final (step 0) one is what ranks
                tracking.log_metrics(c, rid, {"objective": value - 10 + step}, step=step)
            tracking.log_metrics(c, rid, {"objective": value}, step=0)
        c.set_terminated(rid, status)
    if best:
        tracking.log_params(c, parent, {f"best.{k}": v for k, v in best[0].items()})
        tracking.log_metrics(c, parent, {"best_value": best[1]})
        c.set_terminated(parent, "FINISHED")
    return parent


def _search_experiment(c):
    exp_id = c.create_experiment("search-only")
    _search(c, exp_id, "old", [({"optim.lr": 1e-3, "optim.weight_decay": 0.01, "augmentation.style.stylized_layers": 4},
                                41.0, "FINISHED", False)])
    trials = [({"optim.lr": lr, "optim.weight_decay": wd, "augmentation.style.stylized_layers": n},
               _objective(lr), "FINISHED", i == 0) for i, (lr, wd, n) in enumerate(zip(LRS, WDS, LAYERS))]
    trials.append(({"optim.lr": 5e-2, "optim.weight_decay": 0.04, "augmentation.style.stylized_layers": 10},
                   None, "FAILED", False))
    best = {"optim.lr": 3e-2, "optim.weight_decay": 0.02, "augmentation.style.stylized_layers": 4}
    _search(c, exp_id, "lr-search", trials, best=(best, _objective(3e-2)))


def test_search_table_order_best_and_importances(store):
    uri, c, tmp = store
    _search_experiment(c)
    tables = build_tables("search-only", uri)  # no cells: only search tables
    assert len(tables) == 2 and list(tables)[0] == "search-only-search"
    t = tables["search-only-search"]
    assert list(t.frame.index) == [f"lr-search-t{i}" for i in (5, 4, 3, 2, 1, 0, 6)]  # best first, failed last
    assert list(t.frame.columns) == [*SPACE, "Objective", "Status"]
    assert t.frame["Status"].tolist() == ["completed"] * 5 + ["stopped early", "failed"]
    assert t.frame["Objective"].tolist()[:2] == ["52.39", "50.00"] and t.frame["Objective"].tolist()[-1] == "–"
    assert t.numeric.loc["lr-search-t5", "objective"] == pytest.approx(_objective(3e-2))  # step 0, not step 3
    assert t.frame.loc["lr-search-t2", "augmentation.style.stylized_layers"] == "13"  # parsed back to an int
    assert t.parts["best"].frame["Value"].tolist() == ["0.03", "0.02", "4"]
    imp = t.parts["importance"].numeric["Importance"]
    assert set(imp.index) == set(SPACE) and imp.idxmax() == "optim.lr"
    assert imp["optim.lr"] > max(imp["optim.weight_decay"], imp["augmentation.style.stylized_layers"]) + 0.1
    again = build_tables("search-only", uri)["search-only-search"].parts["importance"].numeric["Importance"]
    assert again.tolist() == imp.tolist()  # seeded: the table rebuilds identically
    md = t.markdown()
    assert "stopped early" in md and "Parameter importances" in md and "Best configuration" in md
    assert "7 trials: 5 completed, 1 stopped early, 1 failed." in md
    old = next(v for k, v in tables.items() if k != "search-only-search")
    assert "importance" not in old.parts and "need at least 2 finished trials (have 1)" in old.markdown()
    saved = t.save(tmp / "tables", "search-only-search")
    assert saved["csv:importance"].exists() and r"\begin{tabular}" in saved["tex"].read_text()


def test_plots_are_written(store):
    uri, c, tmp = store
    _transfer_experiment(c)
    _search_experiment(c)
    paths = build_plots("transfer", uri, tmp / "plots") + build_plots("search-only", uri, tmp / "plots")
    names = [p.name for p in paths]
    assert names[0] == "transfer-transfer-delta.png" and "search-only-search.png" in names and len(names) == 3
    # the heat map: each row's paired Δ (the paired table's numbers) per kind and target, labelled
    cells = cell_runs(uri, "transfer")
    fig = transfer_figure(cells, experiment_mapping(cells, uri, "transfer")[0], "transfer")
    paired = build_tables("transfer", uri)["transfer-transfer"].parts["paired"].numeric
    panels = [ax for ax in fig.axes if ax.get_title()]  # not the colorbar
    assert [ax.get_title() for ax in panels] == ["Linear probe", "Fine-tune"]
    expected = {"Linear": [[3.0, 5.0], [1.0, 3.0], [NAN, NAN]], "Fine-tune": [[0.0, 4.0], [4.0, 1.0], [NAN, NAN]]}
    for ax, (short, delta) in zip(panels, expected.items()):
        drawn = ax.images[0].get_array().filled(NAN)
        np.testing.assert_array_equal(drawn, delta)
        np.testing.assert_array_equal(drawn, paired[[f"Δ {short} · CIFAR-10", f"Δ {short} · DTD-10"]])
        assert [t.get_text() for t in ax.get_xticklabels()] == ["CIFAR-10", "DTD-10"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == list(paired.index) == [
        "DTD", "Monet paintings", "In-batch (CIFAR-10)"]
    assert fig.axes[-1].get_ylabel() == "Δ top-1 vs None (baseline) (mean of per-seed differences)"
    np.testing.assert_array_equal(pixels(paths[0]), pixels(fig))  # the PNG written is this figure
    # the search: each finished trial's objective (the table's) at its start order, the running best,
    # and the table's importances, largest on top
    searches, trials = search_runs(uri, "search-only")
    summary = summarize(searches[-1], trials)
    fig = search_figure(summary, "search-only")
    table = build_tables("search-only", uri)["search-only-search"]
    objective = {int(i.rsplit("-t", 1)[1]) + 1: v for i, v in table.numeric["objective"].dropna().items()}
    assert len(objective) == 6  # the failed trial has none
    completed, stopped = fig.axes[0].collections
    assert stopped.get_offsets().tolist() == [[1, 40.0]]
    assert completed.get_offsets().tolist() == [[n, objective[n]] for n in range(2, 7)]
    assert list(fig.axes[0].lines[0].get_ydata()) == [objective[n] for n in range(1, 7)]  # rising: best so far
    assert fig.axes[0].get_ylabel() == "val_top1"
    importance = table.parts["importance"].numeric["Importance"]
    assert [b.get_width() for b in fig.axes[1].containers[0]] == importance.tolist()[::-1]
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == list(importance.index)[::-1]
    assert importance.index[0] == "optim.lr"
    np.testing.assert_array_equal(pixels(tmp / "plots" / "search-only-search.png"), pixels(fig))
    exp_id = c.create_experiment("single")
    _cell(c, exp_id, "baseline", 0, False, metrics={"linear/cifar10/top1": 40.0},
          targets=json.dumps([["cifar10", "CIFAR-10"]]))
    assert build_plots("single", uri, tmp / "plots") == []


def test_a_superseded_cell_of_the_same_row_and_seed_is_not_counted(tmp_path):
    from mlflow.tracking import MlflowClient

    from orchestrator import tracking
    from results import cell_runs
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    c = MlflowClient(uri)
    exp_id = c.create_experiment("edited", artifact_location=(tmp_path / "a").as_uri())
    for cell_id, value in (("old", 10.0), ("new", 20.0)):  # the YAML changed between the two runs
        run = c.create_run(exp_id, tags={tracking.TAG_ROLE: "cell", tracking.TAG_CELL: cell_id,
                                         tracking.TAG_ROW: "baseline", tracking.TAG_SEED: 0})
        tracking.log_metrics(c, run.info.run_id, {"linear/cifar10/top1": value})
        c.set_terminated(run.info.run_id, "FINISHED")
    cells = cell_runs(uri, "edited")
    assert list(cells["cell_id"]) == ["new"] and cells["linear/cifar10/top1"].tolist() == [20.0]


def test_lbfgs_rank_table_average_ranks(store):
    uri, c, _ = store
    exp_id = c.create_experiment("cassle")
    # per target: A best on CIFAR-10, C best on DTD; B ties A on DTD
    values = {"A": (50.0, 30.0), "B": (40.0, 30.0), "C": (45.0, 35.0)}
    for row, (cifar, dtd) in values.items():
        for seed in (0, 1):
            _cell(c, exp_id, row, seed, False, metrics={
                "linear/cifar10/top1": 1.0, "linear/dtd/top1": 1.0,
                "lbfgs/cifar10/top1": cifar + seed, "lbfgs/dtd/top1": dtd - seed,
                "lbfgs/cifar10/mean_per_class": cifar, "lbfgs/dtd/mean_per_class": dtd})
    tables = build_tables("cassle", uri)
    ranks = tables["cassle-ranks"]
    # CIFAR-10 ranks A 1, C 2, B 3; DTD ranks C 1, A and B share 2.5
    assert ranks.numeric.loc["A", "Avg. rank"] == pytest.approx((1 + 2.5) / 2)
    assert ranks.numeric.loc["B", "Avg. rank"] == pytest.approx((3 + 2.5) / 2)
    assert ranks.numeric.loc["C", "Avg. rank"] == pytest.approx((2 + 1) / 2)
    assert ranks.frame.loc["A", "L-BFGS · CIFAR-10"] == "50.50 ± 0.71"
    assert ranks.bold.loc["C", "Avg. rank"] and not ranks.bold.loc["A", "Avg. rank"]
    assert "Logistic regression (L-BFGS)" in {g for g, _ in tables["cassle-transfer"].groups}


def test_rows_follow_the_yaml_order_not_the_start_order(store):
    # cells run in parallel, so the YAML's third row can start first; tables list rows by the
    # row index each cell records; a run without the tag (logged by an older sassl) comes last
    uri, c, _ = store
    exp_id = c.create_experiment("ordered")
    for row, index in (("third", 2), ("first", 0), ("untagged", None), ("second", 1)):
        rid = _cell(c, exp_id, row, 0, False, metrics={"linear/cifar10/top1": 1.0, "lbfgs/cifar10/top1": 1.0})
        if index is not None:
            tracking.set_tags(c, rid, {tracking.TAG_ROW_INDEX: index})
    tables = build_tables("ordered", uri)
    assert list(tables["ordered-ranks"].frame.index) == ["first", "second", "third", "untagged"]


def test_sensitivity_table_and_plot(store):
    uri, c, tmp = store
    exp_id = c.create_experiment("sens")
    for row, base in (("vanilla", 1.0), ("CASSLE", 2.0)):
        for seed in (0, 1):
            metrics = {"linear/cifar10/top1": 1.0}
            for i, aug in enumerate(("crop", "jitter")):
                for j, stage in enumerate(("layer1", "layer2", "layer3", "layer4", "projector")):
                    metrics[f"sensitivity/{aug}/{stage}"] = base + i + j / 10 + seed
            _cell(c, exp_id, row, seed, False, metrics=metrics)
    table = build_tables("sens", uri)["sens-sensitivity"]
    # the backbone output (layer4), not the projector: mean over seeds base + i + 0.3 + 0.5
    assert list(table.numeric.columns) == ["crop", "jitter"]
    assert table.numeric.loc["vanilla", "crop"] == pytest.approx(1.8)
    assert table.numeric.loc["CASSLE", "jitter"] == pytest.approx(3.8)
    assert table.frame.loc["CASSLE", "crop"] == "2.80 ± 0.71"
    paths = build_plots("sens", uri, tmp / "plots")
    assert paths == [tmp / "plots" / "sens-sensitivity.png"]
    # one panel per augmentation, one line per row: the mean over seeds at each stage; at layer4, the table's
    fig = sensitivity_figure(cell_runs(uri, "sens"), "sens")
    assert [ax.get_title() for ax in fig.axes] == ["crop", "jitter"]
    for i, ax in enumerate(fig.axes):
        assert [t.get_text() for t in ax.get_xticklabels()] == ["layer1", "layer2", "layer3", "layer4", "projector"]
        assert [line.get_label() for line in ax.lines] == ["vanilla", "CASSLE"]
        for line, base in zip(ax.lines, (1.0, 2.0)):
            assert line.get_ydata() == pytest.approx([base + i + j / 10 + 0.5 for j in range(5)])
            assert line.get_ydata()[3] == pytest.approx(table.numeric.loc[line.get_label(), ax.get_title()])
    np.testing.assert_array_equal(pixels(paths[0]), pixels(fig))


def test_a_trial_stopped_early_ranks_after_the_finalists(store):
    # ASHA stopped t0 at a rung where it lost; its last value (fewer epochs) may still be the
    # highest number, as in a real 2-epoch search whose objective fell in epoch 2
    uri, c, _ = store
    exp_id = c.create_experiment("asha")
    params = {"optim.weight_decay": 0.01, "augmentation.style.stylized_layers": 4}
    _search(c, exp_id, "s", [({"optim.lr": 1e-2, **params}, 29.6, "FINISHED", True),
                             ({"optim.lr": 2e-2, **params}, 28.2, "FINISHED", False),
                             ({"optim.lr": 3e-2, **params}, 27.0, "FINISHED", False),
                             ({"optim.lr": 4e-2, **params}, None, "FAILED", False)])
    t = build_tables("asha", uri)["asha-search"]
    assert list(t.frame.index) == ["s-t1", "s-t2", "s-t0", "s-t3"]
    assert t.parts["best"].frame["Value"].tolist()[0] == "0.02"  # no recorded best: the top finalist


def test_search_best_is_chosen_among_the_trials_that_trained_longest():
    from types import SimpleNamespace as R

    from orchestrator.search import best_result
    stopped = R(metrics={"val_top1": 29.6, "epoch": 1})
    finalists = [R(metrics={"val_top1": 28.2, "epoch": 2}), R(metrics={"val_top1": 27.0, "epoch": 2})]
    nan = R(metrics={"val_top1": float("nan"), "epoch": 2})
    assert best_result([stopped, *finalists, nan], "val_top1", "max") is finalists[0]
    assert best_result([stopped, *finalists], "val_top1", "min") is finalists[1]
    assert best_result([stopped], "val_top1", "max") is stopped
    assert best_result([nan], "val_top1", "max") is None
