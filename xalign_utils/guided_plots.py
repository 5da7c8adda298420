"""Figures of notebook 06: what steering explanations bought and cost (the theme and
saving of :mod:`xalign_utils.plots`)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from .plots import label_panel_grid

#: Costs drawn against the consistency gained, with their axis labels.
COSTS = {
    "comp_gain": "Δ comprehensiveness gain\n(named − random words)",
    "log_ppl": "Δ log-perplexity\n(unsteered model)",
    "answer_correct": "Δ accuracy of the\nstated answer",
}


def tradeoff(effects: pd.DataFrame, x_metric: str = "rank_auc_eval") -> plt.Figure:
    """One panel per dataset × cost: each condition's mean paired difference from greedy
    in consistency with the evaluation method (x) against the cost (y), 95% CIs both
    ways, from :func:`xalign_utils.guided_runs.pooled_effects`."""
    datasets = list(dict.fromkeys(effects["dataset"]))
    conditions = list(dict.fromkeys(effects["condition"]))
    colours = dict(zip(conditions, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    fig, axes = plt.subplots(
        len(COSTS), len(datasets), figsize=(2.3 * len(datasets), 2.1 * len(COSTS)),
        squeeze=False, sharex="col",
    )  # fmt: skip
    wide = effects.set_index(["dataset", "condition", "metric"])
    for col, dataset in enumerate(datasets):
        for row, metric in enumerate(COSTS):
            ax = axes[row, col]
            for cond in conditions:
                try:
                    x, y = wide.loc[(dataset, cond, x_metric)], wide.loc[(dataset, cond, metric)]
                except KeyError:
                    continue
                ax.errorbar(
                    x["mean_diff"], y["mean_diff"],
                    xerr=[[x["mean_diff"] - x["diff_ci_low"]], [x["diff_ci_high"] - x["mean_diff"]]],
                    yerr=[[y["mean_diff"] - y["diff_ci_low"]], [y["diff_ci_high"] - y["mean_diff"]]],
                    fmt="o", ms=4, capsize=2, color=colours[cond], label=cond,
                )  # fmt: skip
            ax.axhline(0, color="grey", lw=0.6)
            ax.axvline(0, color="grey", lw=0.6)
    label_panel_grid(
        fig, axes, datasets, list(COSTS.values()), "Δ rank AUC (evaluation method)", bottom=0.05
    )
    return fig
