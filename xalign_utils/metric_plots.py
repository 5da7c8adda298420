"""Notebook 04's metric figures: points per method and dataset, rank-AUC heat maps, and
faithfulness as a log ratio to random with CIs (thesis style of :mod:`xalign_utils.plots`)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from .plots import COLUMN_WIDTH_IN, ci_dots, mark_nulls, method_order


def metric_points(
    ci: pd.DataFrame, metrics: Sequence[str], y: str = "method", hue: str = "dataset"
) -> plt.Figure:
    """One panel per metric: each ``y`` group's mean (points by ``hue``) from a long CI
    table, with a reference line at 0 (notebook 04's AOPC figure)."""
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(COLUMN_WIDTH_IN, 3.2), sharey=True, squeeze=False
    )
    order = method_order(ci[y]) if y == "method" else None
    for ax, metric in zip(axes[0], metrics, strict=True):
        sns.pointplot(
            ci[ci["metric"] == metric],
            x="value",
            y=y,
            order=order,
            hue=hue,
            ax=ax,
            linestyle="none",
            dodge=0.4,
            errorbar=None,
            markersize=3,
        )
        ax.set_title(metric.replace("_", " "), fontsize=8)
        ax.set(xlabel="", ylabel="")
        ax.axvline(0, color="0.6", lw=0.6)
        mark_nulls(ax.get_yticklabels())
        if ax is not axes[0][0] and ax.get_legend() is not None:
            ax.get_legend().remove()
    return fig


def metric_heatmap(
    ci: pd.DataFrame, metric: str, index: str, columns: str, center: float, label: str
) -> plt.Figure:
    """``index`` × ``columns`` heatmap of one metric's means from a long CI table, centred
    on the metric's chance level (notebook 04's rank-AUC figure)."""
    square = ci[ci["metric"] == metric].pivot(index=index, columns=columns, values="value")
    if columns == "method":
        square = square[method_order(square.columns)]
    if index == "method":
        square = square.loc[method_order(square.index)]
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 0.8 + 0.4 * len(square)))
    sns.heatmap(
        square,
        annot=True,
        fmt=".2f",
        cmap="vlag",
        center=center,
        vmin=center - 0.3,
        vmax=center + 0.3,
        ax=ax,
        annot_kws={"fontsize": 6},
        cbar_kws={"label": label},
    )
    ax.set(xlabel="", ylabel="")
    ax.tick_params(labelsize=7)
    mark_nulls([*ax.get_xticklabels(), *ax.get_yticklabels()])
    return fig


def log_ratio_dots(ratios: pd.DataFrame, metric: str) -> plt.Figure:
    """Each method's ``log(mean / mean random)`` on ``metric`` with its 95% CI, one colour
    per dataset, methods grouped by family, nulls in italics, 0 (= random) marked."""
    part = ratios[ratios["metric"] == metric]
    if "prompts" in part:  # every prompt, not the greedy = gold subset
        part = part[part["prompts"] == "all"]
    part = part.rename(columns={"log_ratio": "value"})
    order = method_order(part["method"])
    part = part.assign(_o=part["method"].map(order.index)).sort_values("_o", kind="stable")
    fig = ci_dots(part, y="method", xlabel=f"log({metric} / random)", xlim=None)
    ax = fig.axes[0]
    ax.axvline(0, color="0.6", lw=0.6)
    mark_nulls(ax.get_yticklabels())
    return fig


def cascade_lines(casc_ci: pd.DataFrame) -> plt.Figure:
    """Rank AUC against input×gradient as the model's layers are randomised from the top
    (one line per explanation), against 0.5 (no agreement): Adebayo et al.'s check."""
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.6))
    d = casc_ci[casc_ci["metric"] == "rank_auc"]
    sns.lineplot(d, x="layers_randomised", y="value", hue="explanation", marker="o", ax=ax)
    ax.axhline(0.5, color="0.6", lw=0.6, ls="--")
    ax.set_ylabel("rank AUC (input×gradient)")
    return fig


def k_sensitivity_lines(k_table: pd.DataFrame) -> plt.Figure:
    """Mean F1 of each method's top-k words against the Top-Var list, for each fixed k."""
    fig, ax = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.8))
    sns.lineplot(
        k_table, x="k", y="f1", hue="method", errorbar=None, ax=ax, marker="o", markersize=3
    )
    ax.legend(fontsize=6, ncol=2)
    return fig
