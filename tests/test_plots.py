"""Figures and tables land where LaTeX expects them, reproducibly."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from xalign_utils import plots, reports
from xalign_utils.plots import save_figure, save_table
from xalign_utils.schema import Example


def test_save_figure_is_byte_reproducible(tmp_path):
    def draw(folder):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        pdf = save_figure(fig, "line", folder)
        plt.close(fig)
        return pdf.read_bytes()

    first, second = draw(tmp_path / "a"), draw(tmp_path / "b")
    assert first == second and first.startswith(b"%PDF")
    assert (tmp_path / "a" / "line.png").exists()


def test_save_table_writes_booktabs_and_csv(tmp_path):
    tex = save_table(pd.DataFrame({"method": ["a_b"], "value": [0.12345]}), "t", tmp_path)
    body = tex.read_text()
    assert "\\toprule" in body and "a\\_b" in body and "0.123" in body
    assert pd.read_csv(tmp_path / "t.csv")["value"].iloc[0] == 0.12345


# --------------------------------------------------------------------------- notebook figures


def test_save_table_keeps_a_named_index_as_columns(tmp_path):
    """``groupby(...).describe()`` puts the group in the index: the saved table keeps it."""
    df = pd.DataFrame({"dataset": ["a", "a", "b"], "error": [0.1, 0.3, 0.2]})
    save_table(df.groupby("dataset")["error"].describe(), "d", tmp_path)
    saved = pd.read_csv(tmp_path / "d.csv")
    assert saved["dataset"].tolist() == ["a", "b"] and saved["count"].tolist() == [2, 1]
    save_table(df[df["error"] > 0.15], "u", tmp_path)  # an unnamed index is dropped
    assert pd.read_csv(tmp_path / "u.csv").columns.tolist() == ["dataset", "error"]


def _example(ex_id, dataset, label, rationale=None):
    words = ["the", "cat", "sat"]
    return Example(
        ex_id,
        dataset,
        "test",
        label,
        {"text": " ".join(words)},
        {"text": words},
        rationale=None if rationale is None else {"text": rationale},
    )


PREDICTIONS = pd.DataFrame(
    {
        "dataset": ["sst2"] * 3 + ["esnli"] * 2,
        "label": ["positive", "negative", "negative", "neutral", "entailment"],
        "pred": ["positive", "positive", "negative", "neutral", "neutral"],
    }
)


def test_label_distribution_counts_gold_labels(tmp_path):
    exs = {"sst2": [_example("1", "sst2", "positive"), _example("2", "sst2", "negative")]}
    counts = reports.label_counts(exs)
    assert counts[["label", "n", "share"]].values.tolist() == [
        ["positive", 1, 0.5],
        ["negative", 1, 0.5],
    ]
    fig = plots.label_distribution(counts, xlabel="evaluation examples")
    ax = fig.axes[0]
    assert sorted(p.get_width() for p in ax.patches if p.get_width()) == [1, 1]
    assert ax.get_xlabel() == "evaluation examples"
    assert plots.save_figures({"labels": fig}, tmp_path) == [tmp_path / "labels.pdf"]
    plt.close(fig)


def test_dataset_sizes_and_rationale_lengths():
    validation = pd.DataFrame({"loader": ["a", "b"], "split": ["test", "dev"], "rows": [10, 1000]})
    fig = plots.dataset_sizes(validation)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["a/test", "b/dev"]
    assert fig.axes[0].get_xscale() == "log"
    plt.close(fig)
    lengths = pd.DataFrame(
        {
            "dataset": ["x", "x", "y"],
            "rationale words": [1, 3, 10],
            "share of annotated words": [0.1, 0.3, 0.5],
        }
    )
    fig = plots.rationale_lengths(lengths)
    assert len(fig.axes) == 2 and fig.axes[0].get_xscale() == "symlog"
    plt.close(fig)


def test_label_shares_one_panel_per_dataset():
    fig = plots.label_shares(PREDICTIONS)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["dataset = esnli", "dataset = sst2"]  # sorted, as groupby gives them
    plt.close(fig)


def test_confusion_matrices_count_gold_by_predicted():
    labels = {"sst2": ("negative", "positive"), "esnli": ("entailment", "neutral", "contradiction")}
    fig = plots.confusion_matrices(PREDICTIONS, labels)
    sst2, esnli = fig.axes[:2]
    assert sst2.get_title() == "sst2" and esnli.get_title() == "esnli"
    # rows gold (negative, positive) × columns predicted: [[1, 1], [0, 1]]
    assert [t.get_text() for t in sst2.texts] == ["1", "1", "0", "1"]
    assert esnli.get_ylabel() == "" and sst2.get_ylabel() == "gold"
    plt.close(fig)
    one = plots.confusion_matrices(PREDICTIONS[PREDICTIONS["dataset"] == "sst2"], labels)
    assert len(one.axes) == 1
    plt.close(one)


def test_ci_dots_skips_undefined_rows():
    long = pd.DataFrame(
        {
            "dataset": ["a", "a", "b"],
            "system": ["Top-Var", "random", "Top-Var"],
            "value": [0.2, 0.3, np.nan],
            "ci_low": [0.1, 0.2, np.nan],
            "ci_high": [0.3, 0.4, np.nan],
        }
    )
    fig = plots.ci_dots(long, xlabel="F1")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Top-Var", "random"]
    assert ax.get_xlim() == (0, 1) and ax.get_xlabel() == "F1"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a"]
    plt.close(fig)


def test_runtime_bars_and_attribution_heatmaps():
    runtime = pd.DataFrame({"method": ["saliency", "lime"], "seconds_per_example": [0.01, 2.0]})
    fig = plots.runtime_bars(runtime)
    assert fig.axes[0].get_xscale() == "symlog"
    plt.close(fig)
    table = pd.DataFrame(
        {
            "dataset": ["sst2"] * 3,
            "id": ["1", "1", "2"],
            "method": ["saliency", "random", "saliency"],
            "status": ["ok"] * 3,
            "target_label": ["positive"] * 3,
            "words": [["the", "cat", "sat"]] * 3,
            "magnitude": [np.array([0.1, 0.5, 0.2]), np.array([0.3, 0.1, 0.2]), np.ones(3)],
        }
    )
    examples = {"1": _example("1", "sst2", "negative", [0, 1, 0])}
    figs = plots.attribution_heatmaps(table, {"sst2": ["1"]}, examples, {"1": {2}})
    assert list(figs) == ["03_attribution_heatmap_sst2_0"]
    ax = figs["03_attribution_heatmap_sst2_0"].axes[0]
    assert "gold: negative | predicted: positive" in ax.get_title(loc="left")
    assert "model's Top-Var words: sat" in ax.get_title(loc="left")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["the", "cat", "sat*"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["saliency", "random"]
    for fig in figs.values():
        plt.close(fig)


def test_method_plots_group_families_and_set_nulls_apart():
    import numpy as np
    import pandas as pd

    from xalign_utils.plots import attribution_heatmap, method_order

    assert method_order(["random", "saliency", "lime", "attention"]) == [
        "attention", "saliency", "lime", "random",
    ]  # fmt: skip
    scores = pd.DataFrame(
        {"method": ["random", "saliency", "attention"], "magnitude": [np.ones(3)] * 3}
    )
    fig = attribution_heatmap(scores, ["a", "b", "c"])
    ticks = fig.axes[0].get_yticklabels()
    assert [t.get_text() for t in ticks] == ["attention", "saliency", "random"]
    assert [t.get_fontstyle() for t in ticks] == ["normal", "normal", "italic"]
