"""One thesis style for every figure, and writers for figures and LaTeX tables.

Figures are sized for an A4 thesis column (about 15 cm wide), saved as vector PDF plus
PNG under stable names so LaTeX documents can include them directly.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

COLUMN_WIDTH_IN = 5.9  # 15 cm


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
    """Save ``df`` as ``<folder>/<name>.tex`` (booktabs) and ``.csv``; returns the .tex path."""
    folder.mkdir(parents=True, exist_ok=True)
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
    ax.set_title(title, fontsize=8, loc="left")
    return fig


def agreement_heatmap(square: pd.DataFrame, title: str = "") -> plt.Figure:
    """Method × method matrix of mean rank correlations (lower triangle, annotated)."""
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
    ax.set_title(title, fontsize=8, loc="left")
    return fig
