"""Comparisons the metric tables are read through (DESIGN.md §8, statistical discipline):
cluster-bootstrap CIs, the one confirmatory test per question (its primary metric against
random, pooled over datasets, Holm), and each method against the strongest null
attribution. The per-example tables come from :mod:`xalign_utils.metric_tables`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .attribution.registry import methods_where
from .stats import (
    MetricSpec,
    bootstrap_ci,
    ci_table,
    paired_tests,
    percentile_bootstrap,
    rank_corr,
)

#: Consistency's primary metric (DESIGN.md §8).
PRIMARY_CONSISTENCY = "rank_auc"


#: The primary metric of each question (DESIGN.md §8): tested confirmatorily, Holm within
#: the question; every other metric is an effect size with a CI, marked exploratory.
PRIMARY = {
    "plausibility": "topvar_f1",
    "faithfulness": "comp_aopc",
    "consistency": PRIMARY_CONSISTENCY,
}


def ci_and_tests(
    table: pd.DataFrame,
    metrics: Sequence[str],
    by: Sequence[str],
    test_by: Sequence[str],
    seed: int = 0,
    primary: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster-bootstrap CIs per ``by`` group and paired tests against random.

    Rows share examples (several methods, explanations or draws per example), so CIs
    resample examples (``id``) and n counts examples. The tests compare each method with
    the random attribution per ``test_by`` group; only ``primary`` is confirmatory (Holm
    over its tests), the other metrics are reported as exploratory effect sizes. Each
    test row carries the smallest p it could reach (``min_p``) and whether that is below
    its Holm threshold (``can_reject``).
    """
    metrics = list(metrics)
    cis = ci_table(table, by, metrics, seed=seed, cluster="id")
    tests = paired_tests(
        table, test_by, metrics, cluster="id", primary=[primary] if primary else True, seed=seed
    )
    return cis, tests


def pooled_primary_tests(
    table: pd.DataFrame, question: str, by: Sequence[str] = (), seed: int = 0
) -> pd.DataFrame:
    """The confirmatory test of a question: its primary metric, each method against random,
    pooled over datasets (examples as clusters) so the profile's n can reject; Holm over
    the methods (and ``by`` groups)."""
    if PRIMARY[question] not in table:
        raise KeyError(f"the {question} table has no column {PRIMARY[question]!r}")
    pooled = table.assign(_all="all datasets")
    return paired_tests(
        pooled,
        [*by, "_all"],
        PRIMARY[question],
        cluster="id",
        primary=True,
        seed=seed,
    ).drop(columns="_all")


def metric_directions(metrics: Mapping[str, MetricSpec]) -> pd.Series:
    """``higher_is_better`` of each metric of a family (e.g. ``faithfulness.METRICS``)."""
    return pd.Series({m: s.higher_is_better for m, s in metrics.items()}, name="higher_is_better")


def against_nulls(
    table: pd.DataFrame,
    metrics: Sequence[str] | Mapping[str, MetricSpec],
    directions: Mapping[str, bool] | None = None,
    by: Sequence[str] = ("dataset",),
    seed: int = 0,
) -> pd.DataFrame:
    """Each method's mean metric minus the *best* null attribution's (random, position,
    tokens per word, rarity) per ``by`` group, with a cluster-bootstrap CI over examples.

    "Best" is the null with the highest mean in the metric's good direction
    (``directions[metric]``: higher is better; by default the ``higher_is_better`` of
    ``metrics`` given as a family of :class:`~xalign_utils.stats.MetricSpec`), so a method
    only beats the nulls when it beats the strongest of them on the same examples.
    """
    if directions is None:
        directions = {m: s.higher_is_better for m, s in metrics.items()}
    nulls = set(methods_where(family="null"))
    rows = []
    for key, grp in table.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for metric in metrics:
            sign = 1.0 if directions.get(metric, True) else -1.0
            wide = grp.pivot_table(index="id", columns="method", values=metric, aggfunc="mean")
            present = [m for m in wide.columns if m in nulls]
            if not present:
                continue
            best = max(present, key=lambda m: sign * wide[m].mean())
            for method in [m for m in wide.columns if m not in nulls]:
                both = wide[[method, best]].dropna()
                ci = bootstrap_ci((both[method] - both[best]).to_numpy(), seed=seed)
                rows.append(
                    dict(zip(by, key, strict=True))
                    | {"metric": metric, "method": method, "best_null": best}
                    | {k: ci[k] for k in ("value", "ci_low", "ci_high", "n")}
                )
    columns = [*by, "metric", "method", "best_null", "value", "ci_low", "ci_high", "n"]
    return pd.DataFrame(rows, columns=columns)


def position_correlation(
    attributions: pd.DataFrame, by: Sequence[str] = ("dataset", "method"), seed: int = 0
) -> pd.DataFrame:
    """Mean over examples of Spearman ρ(word magnitude, word index), per ``by`` group, with
    a bootstrap CI: how much of a method's ranking is just position (rollout, for one,
    accumulates towards late tokens) before its agreement with anything is read."""
    rho = attributions.assign(
        rho=[rank_corr(m, np.arange(len(m))) for m in attributions["magnitude"]]
    )
    return ci_table(rho, list(by), ["rho"], seed=seed, cluster="id")


def log_ratio_to_random(
    table: pd.DataFrame,
    metric: str,
    random: str = "random",
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Each method's mean ``metric`` as ``log(mean_method / mean_random)`` on the examples
    both share, per dataset, with a percentile bootstrap CI that resamples those examples
    (pairs kept together).

    The ratio is NaN when either mean is not positive: a random baseline that is on
    average ≤ 0 (erasing random words *raises* the prediction's probability) gives no
    scale to compare against. Resamples where it is undefined are left out of the CI and
    counted in ``n_boot_undefined``.
    """

    def ratio(m: np.ndarray, r: np.ndarray) -> float:
        mm, rr = m.mean(), r.mean()
        return float(np.log(mm / rr)) if mm > 0 and rr > 0 else np.nan

    out = []
    rng = np.random.default_rng(seed)
    for dataset, part in table.groupby("dataset", sort=False):
        wide = part.pivot_table(index="id", columns="method", values=metric, aggfunc="first")
        if random not in wide:
            continue
        for method in wide.columns:
            both = wide[[random]].assign(_m=wide[method]).dropna()
            m, r = both["_m"].to_numpy(), both[random].to_numpy()
            row = {
                "dataset": dataset,
                "method": method,
                "metric": metric,
                "log_ratio": ratio(m, r) if len(both) else np.nan,
                "ci_low": np.nan,
                "ci_high": np.nan,
                "n": len(both),
                "n_boot_undefined": 0,
            }
            if not np.isnan(row["log_ratio"]):
                row["ci_low"], row["ci_high"], row["n_boot_undefined"] = percentile_bootstrap(
                    lambda i, m=m, r=r: ratio(m[i], r[i]), len(both), rng, n_boot, level
                )
            out.append(row)
    columns = ["dataset", "method", "metric", "log_ratio", "ci_low", "ci_high", "n"]
    return pd.DataFrame(out, columns=[*columns, "n_boot_undefined"])
