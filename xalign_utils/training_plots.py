"""Figures of notebook 05: loss curves, the metrics of every checkpoint and accuracy
against training size (the theme and saving of :mod:`xalign_utils.plots`)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import pandas as pd

from .plots import COLUMN_WIDTH_IN, label_panel_grid

#: Checkpoint metrics drawn, with their axis labels.
PANELS = {
    "correct": "accuracy",
    "align_ixg": "Input×Grad Top-Var F1",
    "align_prompted": "prompted Top-Var F1",
    "flipped": "flip rate (Input×Grad)",
}


def loss_curves(curves: pd.DataFrame, window: int = 10) -> plt.Figure:
    """Training loss per step (rolling mean over ``window`` steps), one line per run;
    the regulariser's term in a second panel when any run has one."""
    has_reg = bool((curves["reg"].abs() > 0).any())
    fig, axes = plt.subplots(1, 1 + has_reg, figsize=(6.3, 2.6), squeeze=False)
    for run, part in curves.groupby("run", sort=False):
        steps = part["step"]
        axes[0, 0].plot(steps, part["label_loss"].rolling(window, min_periods=1).mean(), label=run)
        if has_reg:
            axes[0, 1].plot(steps, part["reg"].rolling(window, min_periods=1).mean(), label=run)
    axes[0, 0].set(xlabel="step", ylabel="label loss")
    if has_reg:
        axes[0, 1].set(xlabel="step", ylabel="regulariser")
    axes[0, 0].legend(fontsize="small")
    fig.tight_layout()
    return fig


def checkpoint_metrics(summary: pd.DataFrame) -> plt.Figure:
    """Each metric of :data:`PANELS` against the training step, one line per dataset,
    with its 95% CI as a band; the zero-rate baseline as a dotted line under accuracy."""
    panels = [m for m in PANELS if summary[m].notna().any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.6), squeeze=False)
    for ax, metric in zip(axes[0], panels, strict=True):
        for dataset, part in summary.groupby("dataset", sort=False):
            part = part.sort_values("step")
            (line,) = ax.plot(part["step"], part[metric], marker="o", ms=3, label=dataset)
            band = part[f"{metric}_lo"], part[f"{metric}_hi"]
            ax.fill_between(part["step"], *band, color=line.get_color(), alpha=0.15, lw=0)
            if metric == "correct":
                ax.plot(part["step"], part["zero_rate"], ls=":", color=line.get_color())
        ax.set(xlabel="step", ylabel=PANELS[metric], ylim=(0, 1))
    axes[0, 0].legend(fontsize="small")
    fig.tight_layout()
    return fig


def loss_summary(curves: pd.DataFrame, first: int = 10, last: int = 10) -> pd.DataFrame:
    """Per run of ``curves`` (column ``run``): its steps and the mean label loss (and
    regulariser, where logged) over the ``first`` and the ``last`` steps, the numbers the
    text quotes from :func:`loss_curves`' figure."""
    rows = []
    for run, part in curves.groupby("run", sort=False):
        row = {"run": run, "steps": len(part), "first_steps": first, "last_steps": last}
        for col in ("label_loss", "reg"):
            if col in part:
                row |= {f"{col}_first": part[col].head(first).mean(),
                        f"{col}_last": part[col].tail(last).mean()}  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def tradeoff(
    summary: pd.DataFrame, y_metrics: tuple[str, ...] = ("comp_aopc", "rank_auc")
) -> plt.Figure:
    """One panel per dataset (columns) × metric of ``y_metrics`` (rows): accuracy (x)
    against the metric (y) for each λ (colour), 95% CIs both ways, from a long
    :func:`~xalign_utils.stats.ci_table` by ``dataset`` and ``lam``."""
    wide = summary.pivot_table(
        index=["dataset", "lam"], columns="metric", values=["value", "ci_low", "ci_high"]
    )
    datasets = list(dict.fromkeys(wide.index.get_level_values("dataset")))
    lams = sorted(wide.index.get_level_values("lam").unique())
    colours = dict(zip(lams, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    fig, axes = plt.subplots(
        len(y_metrics), len(datasets), figsize=(COLUMN_WIDTH_IN, 1.1 + 1.9 * len(y_metrics)),
        squeeze=False, sharex="col",
    )  # fmt: skip
    for col, dataset in enumerate(datasets):
        for row, metric in enumerate(y_metrics):
            ax = axes[row, col]
            for lam in lams:
                if (dataset, lam) not in wide.index:
                    continue
                r = wide.loc[(dataset, lam)]
                x, y = r[("value", "correct")], r[("value", metric)]
                ax.errorbar(
                    x, y, xerr=[[x - r[("ci_low", "correct")]], [r[("ci_high", "correct")] - x]],
                    yerr=[[y - r[("ci_low", metric)]], [r[("ci_high", metric)] - y]],
                    fmt="o", ms=4, capsize=2, color=colours[lam], label=f"λ = {lam:g}",
                )  # fmt: skip
    label_panel_grid(fig, axes, datasets, y_metrics, "accuracy")
    return fig


def competence_curves(
    summary: pd.DataFrame, probes: pd.DataFrame, targets: Mapping[str, float]
) -> plt.Figure:
    """Accuracy against training examples per dataset, one panel per dataset of
    ``summary``: notebook 05's checkpoints (column ``examples_per_dataset``; evaluation
    examples, 95% CI band), the bench probes of :func:`xalign_utils.competence.probe_table`
    (held-out training examples, Wilson CI, labelled with their CPU minutes), the target
    (dashed) and the evaluation set's zero-rate baseline (dotted)."""
    datasets = list(dict.fromkeys(summary["dataset"]))
    fig, axes = plt.subplots(
        1, len(datasets), figsize=(COLUMN_WIDTH_IN, 2.5), sharey=True, squeeze=False
    )
    sources = list(dict.fromkeys(probes["source"]))  # one marker and colour per probe
    markers = dict(zip(sources, "s^Dv<>", strict=False))
    colours = {source: f"C{i + 1}" for i, source in enumerate(sources)}
    for ax, dataset in zip(axes[0], datasets, strict=True):
        part = summary[summary["dataset"] == dataset].sort_values("examples_per_dataset")
        x = part["examples_per_dataset"]
        ax.plot(x, part["correct"], marker="o", ms=3, color="C0", label="notebook 05")
        ax.fill_between(x, part["correct_lo"], part["correct_hi"], color="C0", alpha=0.15, lw=0)
        for k, (source, rows) in enumerate(probes[probes["dataset"] == dataset].groupby(
            "source", sort=False
        )):  # fmt: skip
            err = [rows["accuracy"] - rows["ci_low"], rows["ci_high"] - rows["accuracy"]]
            x = rows["examples_per_dataset"] + 12 * k  # probes of one size side by side
            ax.errorbar(x, rows["accuracy"], yerr=err, ls="none", marker=markers[source], ms=4,
                        capsize=2, color=colours[source], label=source)  # fmt: skip
            above = k % 2 == 0  # alternate above / below, then stack, so labels never overlap
            dy = 3 + 7 * (k // 2)
            ax.annotate(f"{rows['minutes'].max():.0f} min",
                        (x.iloc[-1], rows["ci_high" if above else "ci_low"].iloc[-1]),
                        xytext=(0, dy if above else -dy), textcoords="offset points", ha="center",
                        va="bottom" if above else "top", fontsize=6)  # fmt: skip
        if dataset in targets:
            ax.axhline(targets[dataset], color="0.3", ls="--", lw=0.8, label="target")
        ax.axhline(part["zero_rate"].iloc[0], color="0.5", ls=":", lw=0.8, label="zero rate")
        ax.set(title=dataset, ylim=(0, 1))
    axes[0, 0].set_ylabel("accuracy")
    fig.supxlabel("training examples of the dataset (one epoch)", y=0.19, fontsize="small")
    entries = {}  # every panel's entries, once each (one probe trained on SST-2 alone)
    for ax in axes[0]:
        entries |= {lab: h for h, lab in zip(*ax.get_legend_handles_labels(), strict=True)}
    fig.legend(entries.values(), entries.keys(), loc="lower center", ncol=3, fontsize="x-small",
               frameon=False)  # fmt: skip
    fig.subplots_adjust(left=0.09, right=0.99, top=0.9, bottom=0.36, wspace=0.1)
    return fig
