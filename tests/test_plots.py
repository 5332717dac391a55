"""What each plot draws, read back from its matplotlib Axes and compared with the numbers it is
drawn from (hand-made cells, search trials, metric histories and style banks; no Ray, no MLflow): the
values of every line, bar, point and heat-map cell, which series carries which label, the axes'
labels and tick labels, and that the PNG written is that figure."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from results.collect import Search
from results.figures import pixels
from results.paired import paired_table
from results.plots import search_figure, search_plot, transfer_figure, transfer_heatmap
from results.search import SearchSummary
from results.sensitivity import sensitivity_figure, sensitivity_plot, sensitivity_table
from results.sipl import downstream_curves, downstream_figure, plot_downstream_curves
from results.style_embeddings import plot_style_embeddings, style_embeddings_figure
from results.transfer import transfer_table
from workloads.evaluation.sensitivity import SensitivityResult, plot_sensitivity
from workloads.sipl.embeddings import plot_style_embeddings_2d, style_pairs_figure

TARGETS = [("cifar10", "CIFAR-10"), ("dtd", "DTD")]
NAN = math.nan


def _cells(records: list[tuple[str, int, str, dict]]) -> pd.DataFrame:
    """A cells frame as results.collect.cell_runs returns it: (row, seed, status, metrics) each."""
    return pd.DataFrame([{"cell_id": f"{row}-{seed}", "row": row, "seed": seed, "status": status,
                          "run_id": f"run-{i}", "targets": TARGETS, **metrics}
                         for i, (row, seed, status, metrics) in enumerate(records)])


def _texts(items) -> list[str]:
    return [t.get_text() for t in items]


def _panels(fig):
    """The plotting Axes (a colorbar's Axes has no title)."""
    return [ax for ax in fig.axes if ax.get_title()]


# ---------------------------------------------------------------------------- transfer heat map
def _scores(lin_c, lin_d, ft_c, ft_d):
    return {"linear/cifar10/top1": lin_c, "linear/dtd/top1": lin_d,
            "finetune/cifar10/top1": ft_c, "finetune/dtd/top1": ft_d}


TRANSFER = _cells([("base", 0, "FINISHED", _scores(40, 50, 60, 70)),
                   ("base", 1, "FINISHED", _scores(42, 52, 62, 72)),
                   ("A", 0, "FINISHED", _scores(43, 55, 61, 74)),
                   ("A", 1, "FINISHED", _scores(45, 57, 61, 76)),
                   ("B", 0, "FINISHED", _scores(41, 53, 64, 71)),
                   ("B", 1, "FAILED", _scores(99, 99, 99, 99)),  # a failed seed's numbers are not drawn
                   ("C", 0, "RUNNING", {})])
MAPPING = {"A": "base", "B": "base", "C": "base"}
# Δ = row − base per seed, mean over the seeds both finished; C has none (grey cells)
DELTA = {"Linear probe": [[3.0, 5.0], [1.0, 3.0], [NAN, NAN]],
         "Fine-tune": [[0.0, 4.0], [4.0, 1.0], [NAN, NAN]]}


def test_transfer_heatmap_draws_each_rows_paired_delta_per_target():
    fig = transfer_figure(TRANSFER, MAPPING, "exp")
    panels = _panels(fig)
    assert _texts([ax.title for ax in panels]) == list(DELTA)
    # the numbers the paired table prints, column by column
    paired = paired_table(TRANSFER, transfer_table(TRANSFER, "t").keys, MAPPING, "p").numeric
    for ax, (name, expected) in zip(panels, DELTA.items()):
        image = ax.images[0]
        drawn = image.get_array()
        np.testing.assert_array_equal(drawn.filled(NAN), expected)
        assert drawn.mask.tolist() == np.isnan(expected).tolist()  # unfinished rows: masked (grey), not 0
        short = {"Linear probe": "Linear", "Fine-tune": "Fine-tune"}[name]
        np.testing.assert_array_equal(drawn.filled(NAN), paired[[f"Δ {short} · {label}" for _, label in TARGETS]])
        # each cell's text is its own value, at its own (column, row)
        cells = {(t.get_position(), t.get_text()) for t in ax.texts}
        assert cells == {((c, r), "–" if math.isnan(v) else f"{v:+.2f}")
                         for r, row in enumerate(expected) for c, v in enumerate(row)}
        assert _texts(ax.get_xticklabels()) == [label for _, label in TARGETS]
        assert list(ax.get_xticks()) == [0, 1] and list(ax.get_yticks()) == [0, 1, 2]
        # one colour scale for all panels, symmetric about 0 (white = no change), blue = better
        assert (image.norm.vmin, image.norm.vmax) == (-5.0, 5.0) and image.get_cmap().name == "RdBu"
    assert _texts(panels[0].get_yticklabels()) == ["A", "B", "C"]
    assert _texts(panels[1].get_yticklabels()) == ["", "", ""]  # the same rows: labelled once
    colorbar = next(ax for ax in fig.axes if ax not in panels)
    assert colorbar.get_ylabel() == "Δ top-1 vs base (mean of per-seed differences)"
    assert fig.get_suptitle() == "exp: top-1 change against the baseline row"


def test_transfer_heatmap_names_each_rows_baseline_when_there_are_several():
    cells = _cells([("b1", 0, "FINISHED", _scores(40, 50, 60, 70)), ("b2", 0, "FINISHED", _scores(30, 30, 30, 30)),
                    ("x", 0, "FINISHED", _scores(41, 52, 63, 74)), ("y", 0, "FINISHED", _scores(31, 35, 30, 20))])
    fig = transfer_figure(cells, {"x": "b1", "y": "b2"}, "exp")
    linear, finetune = _panels(fig)
    assert _texts(linear.get_yticklabels()) == ["x (vs b1)", "y (vs b2)"]
    np.testing.assert_array_equal(linear.images[0].get_array(), [[1, 2], [1, 5]])
    np.testing.assert_array_equal(finetune.images[0].get_array(), [[3, 4], [0, -10]])
    assert finetune.images[0].norm.vmin == -10 and finetune.images[0].norm.vmax == 10  # the largest |Δ| of all panels
    colorbar = next(ax for ax in fig.axes if not ax.get_title())
    assert colorbar.get_ylabel() == "Δ top-1 vs the row’s baseline (mean of per-seed differences)"
    assert transfer_figure(cells.drop(columns=[c for c in cells if "/" in c]), {"x": "b1"}, "exp") is None


# ---------------------------------------------------------------------------- search
def _summary(importances=True):
    search = Search("run", "lr-search", "FINISHED", 0, "val_top1", "max", {})
    trials = pd.DataFrame({"number": [3, 0, 1, 2, 4, 5],  # ranked order, as summarize leaves them
                           "status": ["FINISHED", "FINISHED", "FINISHED", "FINISHED", "FAILED", "RUNNING"],
                           "objective": [50.0, 30.0, 20.0, 45.0, 99.0, 98.0],
                           "stopped_early": [False, False, True, False, False, False]})
    imp = pd.Series({"optim.lr": 0.7, "optim.weight_decay": 0.2, "augmentation.style.stylized_layers": 0.1})
    return SearchSummary(search, trials, list(imp.index), importances=imp if importances else None)


def test_search_plot_draws_each_finished_trial_the_running_best_and_the_importances():
    fig = search_figure(_summary(), "exp")
    trials_ax, imp_ax = fig.axes
    completed, stopped = trials_ax.collections
    assert (completed.get_label(), stopped.get_label()) == ("completed", "stopped early")
    # (trial number, objective) of the finished trials; failed and running ones are not points
    assert completed.get_offsets().tolist() == [[0, 30.0], [2, 45.0], [3, 50.0]]
    assert stopped.get_offsets().tolist() == [[1, 20.0]]
    (best,) = trials_ax.lines
    assert best.get_label() == "best so far" and best.get_drawstyle() == "steps-post"
    assert list(best.get_xdata()) == [0, 1, 2, 3] and list(best.get_ydata()) == [30.0, 30.0, 45.0, 50.0]
    assert trials_ax.get_xlabel() == "trial (start order)" and trials_ax.get_ylabel() == "val_top1"
    assert _texts(trials_ax.get_legend().get_texts()) == ["completed", "stopped early", "best so far"]
    assert trials_ax.get_title() == "search lr-search" and fig.get_suptitle() == "exp: search objective"
    # horizontal bars, the largest at the top (the last bar is drawn highest)
    bars = imp_ax.containers[0]
    assert [b.get_width() for b in bars] == [0.1, 0.2, 0.7]
    assert [b.get_y() + b.get_height() / 2 for b in bars] == pytest.approx([0, 1, 2])
    assert _texts(imp_ax.get_yticklabels()) == ["augmentation.style.stylized_layers", "optim.weight_decay", "optim.lr"]
    assert imp_ax.get_xlabel() == "importance (fANOVA)" and imp_ax.get_title() == "parameter importances"


def test_search_plot_of_a_minimised_metric_without_importances():
    s = _summary(importances=False)
    s.search = Search("run", "loss-search", "FINISHED", 0, "loss", "min", {})
    fig = search_figure(s, "exp")
    assert len(fig.axes) == 1
    assert list(fig.axes[0].lines[0].get_ydata()) == [30.0, 20.0, 20.0, 20.0]  # running minimum
    s.trials["status"] = "FAILED"
    assert search_figure(s, "exp") is None


# ---------------------------------------------------------------------------- sensitivity (results)
AUGS, STAGES = ("crop", "jitter"), ("layer1", "layer4", "projector")


def _sens(base, seed):
    return {f"sensitivity/{a}/{s}": base + i + j / 10 + seed for i, a in enumerate(AUGS) for j, s in enumerate(STAGES)}


SENS = _cells([("vanilla", 0, "FINISHED", _sens(1.0, 0)), ("vanilla", 1, "FINISHED", _sens(1.0, 1)),
               ("CASSLE", 0, "FINISHED", _sens(3.0, 0)), ("CASSLE", 1, "FAILED", _sens(50.0, 0))])


def test_sensitivity_plot_draws_each_rows_mean_per_stage_per_augmentation():
    fig = sensitivity_figure(SENS, "exp")
    panels = fig.axes
    assert _texts([ax.title for ax in panels]) == list(AUGS)
    table = sensitivity_table(SENS, "t").numeric  # the table's value is the plot's layer4 point
    for i, (ax, aug) in enumerate(zip(panels, AUGS)):
        vanilla, cassle = ax.lines
        assert (vanilla.get_label(), cassle.get_label()) == ("vanilla", "CASSLE")  # the YAML's row order
        # vanilla: mean of seeds 0 and 1 (+0.5); CASSLE: its one finished seed (the failed one is not drawn)
        assert vanilla.get_ydata() == pytest.approx([1.5 + i + j / 10 for j in range(3)])
        assert cassle.get_ydata() == pytest.approx([3.0 + i + j / 10 for j in range(3)])
        assert list(vanilla.get_xdata()) == [0, 1, 2]
        assert _texts(ax.get_xticklabels()) == list(STAGES)
        assert vanilla.get_ydata()[1] == pytest.approx(table.loc["vanilla", aug])
        assert cassle.get_ydata()[1] == pytest.approx(table.loc["CASSLE", aug])
    assert panels[0].get_ylabel() == "InfoNCE (higher: less invariant)"
    assert _texts(fig.legends[0].get_texts()) == ["vanilla", "CASSLE"]
    assert fig.get_suptitle() == "exp: augmentation sensitivity"


def test_sensitivity_plot_leaves_a_gap_where_a_row_did_not_log_a_stage():
    cells = SENS.drop(columns=["sensitivity/crop/projector"]).copy()
    cells.loc[cells["row"] == "vanilla", "sensitivity/jitter/layer1"] = NAN
    jitter = sensitivity_figure(cells, "exp").axes[1]
    assert np.isnan(jitter.lines[0].get_ydata()[0]) and not np.isnan(jitter.lines[1].get_ydata()[0])
    assert sensitivity_figure(SENS.drop(columns=[c for c in SENS if c.startswith("sens")]), "exp") is None


# ---------------------------------------------------------------------------- sensitivity (workloads)
def test_sensitivity_artifact_draws_each_models_infonce_per_stage():
    stages = ("layer1", "layer2", "projector")
    van = SensitivityResult(AUGS, stages, torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64))
    cas = SensitivityResult(AUGS, stages, torch.tensor([[0.5, 0.25, 0.0], [7.0, 8.0, 9.5]], dtype=torch.float64))
    fig = plot_sensitivity({"vanilla": van, "CASSLE": cas}, title="MoCo v2")
    assert _texts([ax.title for ax in fig.axes]) == list(AUGS) and fig.get_suptitle() == "MoCo v2"
    for i, ax in enumerate(fig.axes):
        assert [line.get_label() for line in ax.lines] == ["vanilla", "CASSLE"]
        assert list(ax.lines[0].get_ydata()) == van.infonce[i].tolist()
        assert list(ax.lines[1].get_ydata()) == cas.infonce[i].tolist()
        assert _texts(ax.get_xticklabels()) == ["stage 1", "stage 2", "projector"]
    assert fig.axes[0].get_ylabel() == "InfoNCE"
    assert _texts(fig.axes[-1].get_legend().get_texts()) == ["vanilla", "CASSLE"]
    assert plot_sensitivity(van).axes[0].get_legend() is None  # one unnamed model: no legend


# ---------------------------------------------------------------------------- SIPL figure 3
def test_sipl_curves_draw_the_mean_over_seeds_of_each_rows_history(monkeypatch):
    from types import SimpleNamespace

    import results.sipl

    histories = {"r0": [10.0, 20.0, 30.0], "r1": [12.0, 26.0],  # SIPLv1; the shorter cuts both to 2 epochs
                 "r2": [50.0, 40.0, 60.0]}  # SIPLv3

    class Store:  # MLflow's get_metric_history, steps in any order
        def __init__(self, uri):
            pass

        def get_metric_history(self, run_id, key):
            assert key == "downstream/cifar10/val_acc" and run_id in histories, (run_id, key)
            return [SimpleNamespace(step=i, value=v) for i, v in reversed(list(enumerate(histories[run_id])))]

    monkeypatch.setattr(results.sipl, "MlflowClient", Store)
    records = [{"row": row, "seed": seed, "status": status, "run_id": rid, "targets": TARGETS[:1]}
               for row, seed, status, rid in (("SIPLv1", 0, "FINISHED", "r0"), ("SIPLv1", 1, "FINISHED", "r1"),
                                              ("SIPLv3", 0, "FINISHED", "r2"), ("SIPLv3", 1, "FAILED", "never read"))]
    curves = downstream_curves("sqlite:///unused.db", pd.DataFrame(records))
    fig = downstream_figure(curves, "sipl")
    (ax,) = fig.axes
    v1, v3 = ax.lines
    assert (v1.get_label(), v3.get_label()) == ("SIPLv1", "SIPLv3")
    assert list(v1.get_xdata()) == [1, 2] and list(v1.get_ydata()) == [11.0, 23.0]
    assert list(v3.get_xdata()) == [1, 2, 3] and list(v3.get_ydata()) == [50.0, 40.0, 60.0]
    assert ax.get_xlabel() == "downstream epoch" and ax.get_ylabel() == "validation accuracy (%)"
    assert _texts(ax.get_legend().get_texts()) == ["SIPLv1", "SIPLv3"]
    assert ax.get_title() == "sipl: frozen encoder + MLP head (mean over seeds)"
    assert downstream_figure({}, "sipl") is None


# ---------------------------------------------------------------------------- t-SNE scatters
def _clusters(sizes: dict[str, int], dim: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """One tight, far-apart cluster per name."""
    rng = np.random.default_rng(seed)
    return {name: (rng.normal(size=(n, dim)) * 0.1 + 20.0 * np.eye(dim)[i]).astype(np.float32)
            for i, (name, n) in enumerate(sizes.items())}


def _apart(groups: list[np.ndarray]) -> bool:
    """Every point is nearer to its own group's centre than to any other group's."""
    centres = np.stack([g.mean(0) for g in groups])
    return all((np.linalg.norm(g[:, None] - centres[None], axis=2).argmin(1) == i).all() for i, g in enumerate(groups))


def test_style_embeddings_draw_one_scatter_per_dataset_with_its_own_points():
    banks = _clusters({"wikiart": 30, "dtd": 12, "cifar10-kit": 20})
    fig = style_embeddings_figure(banks, max_per_dataset=25, title="t")
    (ax,) = fig.axes
    # sorted by name; a bank over max_per_dataset is subsampled, and its label says how many points
    labels = ["cifar10-kit (20)", "dtd (12)", "wikiart (25)"]
    assert [col.get_label() for col in ax.collections] == labels
    assert _texts(ax.get_legend().get_texts()) == labels
    assert [len(col.get_offsets()) for col in ax.collections] == [20, 12, 25]
    # the banks are far apart: each scatter must be one of the t-SNE's clusters, not a mix
    assert _apart([np.asarray(col.get_offsets()) for col in ax.collections])
    assert ax.get_title() == "t" and len(ax.get_xticks()) == len(ax.get_yticks()) == 0


def test_sipl_style_pairs_colour_by_class_and_marker_by_style():
    sizes = {(0, 0): 6, (1, 0): 8, (0, 1): 10, (1, 1): 12}  # (class, style) -> points
    groups = _clusters({f"{k}": n for k, n in sizes.items()}, dim=16)
    emb = torch.from_numpy(np.concatenate(list(groups.values())))
    cls = torch.tensor([c for (c, _), n in sizes.items() for _ in range(n)])
    style = torch.tensor([s for (_, s), n in sizes.items() for _ in range(n)])
    fig = style_pairs_figure(emb, cls, style, title="SIPLv3")
    (ax,) = fig.axes
    cols = ax.collections
    order = [(0, 0), (0, 1), (1, 0), (1, 1)]  # class-major
    assert [col.get_label() for col in cols] == [f"class {c}, style A{s + 1}" for c, s in order]
    assert [len(col.get_offsets()) for col in cols] == [sizes[k] for k in order]
    assert _apart([np.asarray(col.get_offsets()) for col in cols])
    colour = [tuple(col.get_facecolor()[0][:3]) for col in cols]
    marker = [col.get_paths()[0].vertices.tobytes() for col in cols]
    assert colour[0] == colour[1] != colour[2] == colour[3]
    assert marker[0] == marker[2] != marker[1] == marker[3]
    assert ax.get_title() == "SIPLv3" and len(ax.get_legend().get_texts()) == 4


# ---------------------------------------------------------------------------- the PNG is the figure
class _Projection:
    """A stand-in for t-SNE (its layout is not what this test checks): the first two coordinates."""

    def __init__(self, **kw):
        pass

    def fit_transform(self, x):
        return np.asarray(x)[:, :2]


def test_each_png_written_is_the_figure_checked_above(tmp_path, monkeypatch):
    import sklearn.manifold

    import results.style_embeddings
    monkeypatch.setattr(results.style_embeddings, "TSNE", _Projection)
    monkeypatch.setattr(sklearn.manifold, "TSNE", _Projection)
    cases = [
        (transfer_heatmap(TRANSFER, MAPPING, tmp_path / "t.png", "exp"), transfer_figure(TRANSFER, MAPPING, "exp"), {}),
        (search_plot(_summary(), tmp_path / "s.png", "exp"), search_figure(_summary(), "exp"), {}),
        (sensitivity_plot(SENS, tmp_path / "sens.png", "exp"), sensitivity_figure(SENS, "exp"), {}),
        (plot_downstream_curves({"a": np.array([1.0, 2.0])}, tmp_path / "d" / "c.png", "exp"),
         downstream_figure({"a": np.array([1.0, 2.0])}, "exp"), {"bbox_inches": None}),
    ]
    banks = _clusters({"a": 10, "b": 10})
    cases.append((plot_style_embeddings(banks, tmp_path / "e.png"), style_embeddings_figure(banks),
                  {"bbox_inches": None}))
    emb = torch.from_numpy(np.concatenate(list(_clusters({"0": 5, "1": 5, "2": 5, "3": 5}).values())))
    cls, style = torch.tensor([0] * 5 + [1] * 5 + [0] * 5 + [1] * 5), torch.tensor([0] * 10 + [1] * 10)
    cases.append((plot_style_embeddings_2d(emb, cls, style, tmp_path / "p.png", title="x"),
                  style_pairs_figure(emb, cls, style, title="x"), {}))
    for path, fig, options in cases:
        written = pixels(path)
        assert written.shape[2] == 4 and (written[..., :3] < 128).any(), path  # not blank
        np.testing.assert_array_equal(written, pixels(fig, **options), err_msg=str(path))
    assert transfer_heatmap(TRANSFER, {}, tmp_path / "none.png", "exp") is None and not (tmp_path / "none.png").exists()
