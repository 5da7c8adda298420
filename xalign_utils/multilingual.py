"""The multilingual (XNLI) track in notebook 07: accuracy and explanation–attribution
consistency per language, with the caveat measured.

The track is notebooks 01–04 run on ``DATASETS=xnli-en,xnli-de,...`` (``make xnli``), one
dataset per language (:func:`xalign_utils.data.nli.xnli_language_loader`), into its own
run folder (:attr:`~xalign_utils.config.RunConfig.run_name`). The prompts' instructions and
label words stay English; only the premise and hypothesis change language. The caveat is
measured per language, not asserted: accuracy against uniform chance (one-sided exact
binomial test) and against always answering the most common gold label, and the share of
the single most predicted label (a model that collapses onto one label scores that label's
share whatever the language).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.stats import binomtest
from statsmodels.stats.multitest import multipletests

from . import store
from .attribution.registry import methods_where
from .config import RunConfig
from .data.registry import LABELS
from .plots import COLUMN_WIDTH_IN
from .stats import bootstrap_ci

#: The track's languages in the default profile: English and two others (``make xnli``).
XNLI_TRACK = ("xnli-en", "xnli-de", "xnli-fr")
#: The explanation whose consistency with the attribution is reported per language.
EXPLANATION = "Top-Var list"


def track_config(cfg: RunConfig, languages: Sequence[str] = XNLI_TRACK) -> RunConfig:
    """The track's run config: ``cfg``'s profile on the XNLI languages, base model (its own
    run folder; ``make all ADAPTER=...`` does not run the track)."""
    return replace(cfg, datasets=tuple(languages), adapter=None)


def _tables(track: RunConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The track's notebook 02 predictions and notebook 04 consistency rows."""
    try:
        preds = store.read_table(track, "02_baselines", "predictions")
        cons = store.read_table(track, "04_metrics_validation", "consistency")
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"the XNLI track has not been run for profile {track.profile!r}: "
            f"`make xnli PROFILE={track.profile}` (notebooks 01-04 on "
            f"DATASETS={','.join(track.datasets)}) writes {track.run_dir}"
        ) from err
    return preds, cons


def _ci(values: Sequence[float], clusters: Sequence | None, seed: int) -> dict:
    return bootstrap_ci(np.asarray(values, dtype=float), seed=seed, clusters=clusters)


def per_language(
    cfg: RunConfig,
    languages: Sequence[str] = XNLI_TRACK,
    method: str = "input_x_gradient",
    seed: int = 0,
) -> pd.DataFrame:
    """One row per language: accuracy with its bootstrap CI and n; chance (uniform), the
    majority-gold baseline and the one-sided binomial p-value of accuracy > chance (and
    Holm over the languages); the most predicted label and its share; rank AUC of the
    Top-Var list against ``method``'s attribution and against the strongest null control
    (CIs over examples, undefined AUCs counted: a list naming no input word has none) and
    their paired difference."""
    preds, cons = _tables(track_config(cfg, languages))
    nulls = set(methods_where(family="null"))
    rows = []
    for lang in languages:
        p = preds[preds["dataset"] == lang]
        if p.empty:
            raise ValueError(f"{lang}: no predictions in the XNLI track's notebook 02 table")
        correct = (p["pred"] == p["label"]).to_numpy(float)
        acc = _ci(correct, None, seed)
        chance = 1 / len(LABELS[lang])
        c = cons[(cons["dataset"] == lang) & (cons["explanation"] == EXPLANATION)]
        means = c.groupby("method")["rank_auc"].mean().dropna()
        null_means = means[means.index.isin(nulls)]
        best_null = null_means.idxmax() if len(null_means) else None
        row = {
            "language": lang.removeprefix("xnli-"),
            "accuracy": acc["value"],
            "accuracy_ci_low": acc["ci_low"],
            "accuracy_ci_high": acc["ci_high"],
            "n": acc["n"],
            "chance": chance,
            "p_above_chance": binomtest(int(correct.sum()), len(correct), chance, "greater").pvalue,
            "majority_gold": p["label"].value_counts(normalize=True).max(),
            "top_predicted": p["pred"].value_counts().idxmax(),
            "top_predicted_share": p["pred"].value_counts(normalize=True).max(),
        }
        for name, m in (("rank_auc", method), ("rank_auc_best_null", best_null)):
            part = c[c["method"] == m] if m is not None else c.iloc[:0]
            ci = _ci(part["rank_auc"], part["id"], seed)
            row |= {name: ci["value"], f"{name}_ci_low": ci["ci_low"],
                    f"{name}_ci_high": ci["ci_high"], f"{name}_n": ci["n"],
                    f"{name}_undefined": ci["n_undefined"]}  # fmt: skip
        diff = _paired_difference(c, method, best_null, seed)
        row |= {"best_null": best_null, "diff_vs_null": diff["value"],
                "diff_vs_null_ci_low": diff["ci_low"], "diff_vs_null_ci_high": diff["ci_high"]}  # fmt: skip
        rows.append(row)
    out = pd.DataFrame(rows)
    out["p_above_chance_holm"] = multipletests(out["p_above_chance"], method="holm")[1]
    return out


def _paired_difference(c: pd.DataFrame, method: str, null: str | None, seed: int) -> dict:
    """Rank AUC of ``method`` minus the null's on the examples both score (CI over
    examples): the comparison the two separate CIs cannot make."""
    if null is None:
        return {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    wide = c.pivot_table(index="id", columns="method", values="rank_auc", aggfunc="mean")
    if method not in wide:
        return {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan}
    both = wide[[method, null]].dropna()
    return bootstrap_ci((both[method] - both[null]).to_numpy(), seed=seed)


def figure(table: pd.DataFrame) -> plt.Figure:
    """Two panels per language: accuracy with its CI against chance (dashed) and the
    majority-gold baseline (dotted); the Top-Var list's rank AUC against the attribution
    and against the strongest null control, with CIs, against 0.5 (no agreement)."""
    fig, (acc, auc) = plt.subplots(1, 2, figsize=(COLUMN_WIDTH_IN, 2.2), sharey=True)
    y = np.arange(len(table))
    acc.errorbar(table["accuracy"], y, xerr=_err(table, "accuracy"), fmt="o", color="C0")
    acc.scatter(table["chance"], y, marker="|", color="0.4", label="chance")
    acc.scatter(table["majority_gold"], y, marker="x", color="0.4", label="majority gold")
    acc.set(xlabel="accuracy", xlim=(0, 1), yticks=y, yticklabels=table["language"])
    acc.legend(frameon=False, fontsize=7)
    for k, (col, label) in enumerate(
        (("rank_auc", "attribution"), ("rank_auc_best_null", "best null"))
    ):
        auc.errorbar(table[col], y + 0.15 * (k - 0.5), xerr=_err(table, col), fmt="o",
                     color=f"C{k + 1}", label=label)  # fmt: skip
    auc.axvline(0.5, color="0.6", lw=0.6)
    auc.set(xlabel=f"rank AUC ({EXPLANATION})", xlim=(0, 1))
    auc.legend(frameon=False, fontsize=7)
    acc.invert_yaxis()
    return fig


def _err(table: pd.DataFrame, col: str) -> np.ndarray:
    return np.vstack([table[col] - table[f"{col}_ci_low"], table[f"{col}_ci_high"] - table[col]])


def available(cfg: RunConfig, languages: Sequence[str] = XNLI_TRACK) -> bool:
    """Whether the track's notebook 02 and 04 tables exist for ``cfg``'s profile."""
    track = track_config(cfg, languages)
    return all(
        store.table_path(track, stage, name).is_file()
        for stage, name in (
            ("02_baselines", "predictions"),
            ("04_metrics_validation", "consistency"),
        )
    )
