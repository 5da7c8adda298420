"""One thesis style for every figure, writers for figures and LaTeX tables, and the
figures of the notebooks (data, baselines, attribution), drawn from their tables.

Figures are sized for an A4 thesis column (about 15 cm wide), saved as vector PDF plus
PNG under stable names so LaTeX documents can include them directly. Plotting functions
return the figure; the notebook names and saves it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import confusion_matrix

from .attribution.registry import METHODS
from .attribution.status import usable
from .schema import Example

COLUMN_WIDTH_IN = 5.9  # 15 cm
#: Order of method families in every method plot; null controls last, drawn in grey italics.
FAMILY_ORDER = ("attention", "gradient", "perturbation", "noise", "null")


def method_order(methods: Sequence[str]) -> list[str]:
    """``methods`` grouped by family (:data:`FAMILY_ORDER`, registry order within one)."""
    unique = list(dict.fromkeys(methods))
    known = list(METHODS)

    def key(name: str) -> tuple[int, int]:
        if name not in METHODS:
            return len(FAMILY_ORDER), unique.index(name)
        return FAMILY_ORDER.index(METHODS[name].family), known.index(name)

    return sorted(unique, key=key)


def mark_nulls(labels) -> None:
    """Grey italic tick labels for the null controls (random, position, length, rarity)."""
    for tick in labels:
        spec = METHODS.get(tick.get_text())
        if spec is not None and spec.family == "null":
            tick.set_color("0.45")
            tick.set_fontstyle("italic")


def set_theme() -> None:
    """Apply the thesis style (seaborn ``ticks``, paper context, embedded TrueType fonts)."""
    sns.set_theme(context="paper", style="ticks", palette="colorblind", font_scale=1.0)
    plt.rcParams.update(
        {
            "figure.figsize": (COLUMN_WIDTH_IN, COLUMN_WIDTH_IN * 0.6),
            "figure.dpi": 110,
            "savefig.dpi": 200,
            "savefig.bbox": "tight",
            "pdf.fonttype": 42,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )


def label_panel_grid(
    fig: plt.Figure,
    axes,
    titles: Sequence[str],
    ylabels: Sequence[str],
    xlabel: str,
    bottom: float = 0.06,
) -> None:
    """Label a rows × columns grid of panels: ``titles`` over the top row, ``ylabels`` on
    the first column, ``xlabel`` under the bottom row, and one legend (the first panel's
    entries) in a row below the grid."""
    for col, title in enumerate(titles):
        axes[0, col].set_title(title)
        axes[-1, col].set_xlabel(xlabel, fontsize="small")
    for row, label in enumerate(ylabels):
        axes[row, 0].set_ylabel(label, fontsize="small")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=max(len(labels), 1), fontsize="x-small")
    fig.tight_layout(rect=(0, bottom, 1, 1))


def save_figure(fig: plt.Figure, name: str, folder: Path) -> Path:
    """Save ``fig`` as ``<folder>/<name>.pdf`` and ``.png``; returns the PDF path.

    The PDF carries no creation date, so re-running a notebook with the same numbers
    leaves committed figures byte-identical (no spurious diffs in a thesis repository).
    """
    folder.mkdir(parents=True, exist_ok=True)
    pdf = folder / f"{name}.pdf"
    fig.savefig(pdf, metadata={"CreationDate": None})
    fig.savefig(folder / f"{name}.png")
    return pdf


def save_table(
    df: pd.DataFrame,
    name: str,
    folder: Path,
    float_format: str = "%.3f",
    caption: str | None = None,
) -> Path:
    """Save ``df`` as ``<folder>/<name>.tex`` (booktabs) and ``.csv``; returns the .tex path.

    A named index (e.g. the ``dataset`` of a ``groupby(...).describe()``) becomes columns,
    so no row loses what it is about; an unnamed one, or one that repeats a column, is
    dropped."""
    folder.mkdir(parents=True, exist_ok=True)
    named = [n for n in df.index.names if n is not None and n not in df.columns]
    if named:
        df = df.reset_index(level=named)
    tex = folder / f"{name}.tex"
    df.to_csv(folder / f"{name}.csv", index=False)
    latex = df.to_latex(
        index=False, float_format=float_format.__mod__, escape=True, caption=caption
    )
    tex.write_text(latex)
    return tex


def attribution_heatmap(
    scores: pd.DataFrame,
    words: list[str],
    *,
    highlight: set[int] = frozenset(),
    human: set[int] = frozenset(),
    title: str = "",
    value: str = "magnitude",
    max_words: int = 40,
) -> plt.Figure:
    """Input words (columns) × methods (rows), each row scaled to its own maximum.

    Args:
        scores: one row per method with ``method`` and the word-score array ``value``.
        words: the example's input words.
        highlight: positions of the model's own rationale words (bold, marked ``*``).
        human: positions of human-rationale words (underlined by a bar under the word).
        max_words: show only the first words of long inputs.
    """
    order = method_order(scores["method"])
    scores = scores.set_index("method").loc[order].reset_index()
    n = min(len(words), max_words)
    mat = np.stack([np.asarray(v, dtype=float)[:n] for v in scores[value]])
    peak = np.abs(mat).max(axis=1, keepdims=True)
    mat = mat / np.where(peak > 0, peak, 1.0)
    fig, ax = plt.subplots(
        figsize=(COLUMN_WIDTH_IN, 0.9 + 0.22 * len(mat)), constrained_layout=True
    )
    sns.heatmap(
        mat,
        ax=ax,
        cmap="rocket_r" if value == "magnitude" else "vlag",
        vmin=0 if value == "magnitude" else -1,
        vmax=1,
        cbar_kws={"label": "score / row max", "shrink": 0.8},
        linewidths=0.3,
        linecolor="white",
    )
    labels = [f"{w}*" if i in highlight else w for i, w in enumerate(words[:n])]
    ax.set_xticks(np.arange(n) + 0.5, labels, rotation=60, ha="right", fontsize=6.5)
    for i, tick in enumerate(ax.get_xticklabels()):
        if i in highlight:
            tick.set_fontweight("bold")
    for i in human:
        if i < n:
            ax.plot([i + 0.05, i + 0.95], [len(mat) + 0.15] * 2, color="C2", lw=2, clip_on=False)
    ax.set_yticks(np.arange(len(mat)) + 0.5, list(scores["method"]), rotation=0, fontsize=7)
    mark_nulls(ax.get_yticklabels())
    ax.set_title(title, fontsize=8, loc="left")
    return fig


def agreement_heatmap(square: pd.DataFrame, title: str = "") -> plt.Figure:
    """Method × method matrix of mean rank correlations (lower triangle, annotated),
    methods grouped by family."""
    order = method_order(square.index)
    square = square.loc[order, order]
    fig, ax = plt.subplots(
        figsize=(COLUMN_WIDTH_IN, COLUMN_WIDTH_IN * 0.8), constrained_layout=True
    )
    mask = np.triu(np.ones_like(square, dtype=bool), k=1)
    sns.heatmap(
        square,
        mask=mask,
        ax=ax,
        cmap="vlag",
        vmin=-1,
        vmax=1,
        annot=True,
        fmt=".2f",
        annot_kws={"fontsize": 6},
        cbar_kws={"label": "mean Spearman ρ", "shrink": 0.8},
        square=True,
    )
    ax.tick_params(labelsize=7)
    mark_nulls([*ax.get_xticklabels(), *ax.get_yticklabels()])
    ax.set_title(title, fontsize=8, loc="left")
    return fig


def save_figures(figures: Mapping[str, plt.Figure], folder: Path) -> list[Path]:
    """:func:`save_figure` for each ``name → figure``; returns the PDF paths."""
    return [save_figure(fig, name, folder) for name, fig in figures.items()]


# --------------------------------------------------------------------------- notebook 01


def label_distribution(counts: pd.DataFrame, xlabel: str) -> plt.Figure:
    """Horizontal counts of gold labels per dataset (one bar colour per label), from
    :func:`xalign_utils.reports.label_counts`."""
    fig, ax = plt.subplots()
    sns.barplot(data=counts, y="dataset", x="n", hue="label", ax=ax)
    ax.set(xlabel=xlabel, ylabel="")
    ax.legend(ncol=2, fontsize="x-small", frameon=False, loc="lower right")
    return fig


def dataset_sizes(validation: pd.DataFrame) -> plt.Figure:
    """Rows of each raw ``loader/split`` (log scale), from notebook 01's validation table."""
    sizes = validation[["loader", "split", "rows"]].assign(
        name=validation["loader"] + "/" + validation["split"]
    )
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 3.2))
    sns.barplot(data=sizes, y="name", x="rows", ax=ax, color="C0")
    ax.set(xscale="log", xlabel="rows in the raw files", ylabel="")
    return fig


def rationale_lengths(lengths: pd.DataFrame) -> plt.Figure:
    """Box plots of rationale words (symlog) and their share of annotated words, per
    dataset, from :func:`xalign_utils.reports.rationale_lengths`."""
    fig, axes = plt.subplots(1, 2, figsize=(COLUMN_WIDTH_IN, 2.6))
    sns.boxplot(data=lengths, y="dataset", x="rationale words", ax=axes[0], showfliers=False)
    axes[0].set(xscale="symlog", ylabel="")
    sns.boxplot(
        data=lengths, y="dataset", x="share of annotated words", ax=axes[1], showfliers=False
    )
    axes[1].set(ylabel="", yticklabels=[])
    return fig


# --------------------------------------------------------------------------- notebook 02


def label_shares(predictions: pd.DataFrame) -> plt.Figure:
    """Share of each label among gold labels and among predictions, one panel per dataset
    (label bias at a glance)."""
    both = pd.concat(
        [
            predictions.assign(kind="gold", value=predictions["label"]),
            predictions.assign(kind="predicted", value=predictions["pred"]),
        ]
    )
    shares = (
        both.groupby(["dataset", "kind"])["value"]
        .value_counts(normalize=True)
        .rename("share")
        .reset_index()
    )
    g = sns.catplot(
        data=shares,
        kind="bar",
        x="value",
        y="share",
        hue="kind",
        col="dataset",
        sharex=False,
        height=2.2,
        aspect=0.9,
    )
    g.set_axis_labels("", "share of examples")
    for ax in g.axes.flat:
        ax.tick_params(axis="x", rotation=30)
    return g.figure


def confusion_matrices(
    predictions: pd.DataFrame, labels: Mapping[str, Sequence[str]]
) -> plt.Figure:
    """Gold × predicted counts, one panel per dataset (labels cut to 7 characters)."""
    groups = list(predictions.groupby("dataset", sort=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(COLUMN_WIDTH_IN, 2.2))
    axes = np.atleast_1d(axes)
    for ax, (name, df) in zip(axes, groups, strict=True):
        labs = list(labels[name])
        cm = confusion_matrix(df["label"], df["pred"], labels=labs)
        short = [lab[:7] for lab in labs]
        sns.heatmap(
            cm,
            annot=True,
            fmt="d",
            cbar=False,
            ax=ax,
            cmap="Blues",
            xticklabels=short,
            yticklabels=short,
        )
        ax.set(title=name, xlabel="predicted", ylabel="gold" if ax is axes[0] else "")
    return fig


def ci_dots(
    long: pd.DataFrame,
    *,
    y: str = "system",
    hue: str = "dataset",
    xlabel: str = "",
    xlim: tuple[float, float] | None = (0, 1),
) -> plt.Figure:
    """Point estimates with 95% CI bars: one row per ``y`` level, one colour per ``hue``.

    Args:
        long: ``value``, ``ci_low``, ``ci_high`` per ``y`` × ``hue`` (rows with no value,
            e.g. undefined for a dataset without rationales, are not drawn).
    """
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.6))
    plot = long.dropna(subset=["value"])
    levels = list(dict.fromkeys(plot[y]))
    for j, (name, g) in enumerate(plot.groupby(hue, sort=False)):
        pos = np.array([levels.index(s) for s in g[y]]) + 0.15 * (j - 0.5)
        ax.errorbar(
            g["value"],
            pos,
            xerr=[g["value"] - g["ci_low"], g["ci_high"] - g["value"]],
            fmt="o",
            capsize=2,
            label=name,
            color=f"C{j}",
        )
    ax.set_yticks(range(len(levels)), levels)
    ax.invert_yaxis()
    ax.legend(frameon=False, title="95% bootstrap CI")
    ax.set(xlabel=xlabel, ylabel="")
    if xlim is not None:
        ax.set_xlim(*xlim)
    return fig


# --------------------------------------------------------------------------- notebook 03


def runtime_bars(runtime: pd.DataFrame) -> plt.Figure:
    """Seconds per example per method (symlog), from :func:`xalign_utils.reports.runtime`."""
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 3.0))
    order = method_order(runtime["method"])
    sns.barplot(runtime, x="seconds_per_example", y="method", order=order, ax=ax, color="C0")
    mark_nulls(ax.get_yticklabels())
    ax.set_xscale("symlog", linthresh=0.01)
    ax.set_xlabel("seconds per example (symlog)")
    ax.set_ylabel("")
    return fig


def attribution_heatmaps(
    table: pd.DataFrame,
    shown: Mapping[str, Sequence[str]],
    examples_by_id: Mapping[str, Example],
    own_positions: Mapping[str, set[int]],
    prefix: str = "03_attribution_heatmap",
) -> dict[str, plt.Figure]:
    """:func:`attribution_heatmap` of each chosen example, titled with its gold and target
    labels and the words the model named in its own rationale.

    Args:
        table: attribution rows (``dataset``, ``id``, ``status``, ``method``,
            ``target_label``, ``words``, ``magnitude``).
        shown: dataset → example ids to draw
            (:func:`xalign_utils.reports.heatmap_examples`).
        examples_by_id: the evaluation examples (human rationales, words, gold label).
        own_positions: id → positions the model named
            (:func:`xalign_utils.reports.model_rationale_positions`).

    Returns:
        ``<prefix>_<dataset>_<k>`` → figure, in the order of ``shown``.
    """
    figures = {}
    for dataset, ids in shown.items():
        sub = usable(table[table["dataset"] == dataset])
        for k, ex_id in enumerate(ids):
            ex, rows = examples_by_id[ex_id], sub[sub["id"] == ex_id]
            own = own_positions.get(ex_id, set())
            human = {i for i, v in enumerate(ex.flat_rationale() or []) if v == 1}
            named = [ex.flat_words()[i] for i in sorted(own)]
            title = (
                f"{dataset} {ex_id} | gold: {ex.label} | predicted: {rows['target_label'].iloc[0]}"
                f" | model's Top-Var words: {', '.join(named) or '(none in the input)'}"
            )
            figures[f"{prefix}_{dataset}_{k}"] = attribution_heatmap(
                rows, list(rows["words"].iloc[0]), highlight=own, human=human, title=title
            )
    return figures


def ig_paths(path: pd.DataFrame) -> plt.Figure:
    """f(α·x) − f(0) along integrated gradients' path, one line per example, one panel
    per dataset (notebook 03): where the curve jumps, few steps miss the total."""
    if path.empty:  # a run without integrated gradients
        fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 1.2))
        ax.text(0.5, 0.5, "no integrated-gradients attributions in this run", ha="center")
        ax.set_axis_off()
        return fig
    rel = path.assign(
        value=path["value"] - path.groupby("id")["value"].transform(lambda v: v.iloc[0])
    )
    datasets = list(dict.fromkeys(rel["dataset"]))
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(COLUMN_WIDTH_IN, 2.4), squeeze=False, sharey=False
    )
    for ax, name in zip(axes[0], datasets, strict=True):
        part = rel[rel["dataset"] == name]
        sns.lineplot(part, x="alpha", y="value", units="id", estimator=None, lw=0.7, ax=ax)
        ax.set(title=name, xlabel="α", ylabel="f(α·x) − f(0)" if ax is axes[0][0] else "")
    return fig
