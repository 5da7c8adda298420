"""One thesis style for every figure, and writers for figures and LaTeX tables.

Figures are sized for an A4 thesis column (about 15 cm wide), saved as vector PDF plus
PNG under stable names so LaTeX documents can include them directly.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
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
    """Save ``fig`` as ``<folder>/<name>.pdf`` and ``.png``; returns the PDF path."""
    folder.mkdir(parents=True, exist_ok=True)
    pdf = folder / f"{name}.pdf"
    fig.savefig(pdf)
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
