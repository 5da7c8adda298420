"""Statistics every metric module shares: guards, set-F1, top-k, rank correlation,
bootstrap CIs (per example and paired), paired tests with Holm correction, CI formatting,
and the :class:`MetricSpec` each metric family registers its metrics with.

Per-example metrics return ``nan`` when undefined (no annotated word, empty human
rationale, constant scores); the aggregation helpers count those rows instead of
dropping them silently. This module imports nothing from the package.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import spearmanr, wilcoxon
from statsmodels.stats.multitest import multipletests


@dataclass(frozen=True)
class MetricSpec:
    """A metric and how to read it: one registry entry of a metric family.

    Attributes:
        name: column name in the family's tables (``rank_auc``).
        function: the per-example function (``None`` for a column that a table-level
            computation fills, e.g. erasure AOPC).
        higher_is_better: direction (``False`` for sufficiency, where lower is better).
        chance: the value of an uninformative explanation or attribution (``None`` when
            it depends on the example, e.g. F1@k = k/n).
        description: one line for tables and figure captions.
    """

    name: str
    function: Callable[..., float] | None = None
    higher_is_better: bool = True
    chance: float | None = None
    description: str = ""


def has_nan(scores: Sequence[float]) -> bool:
    """True when any score is NaN (the metric is then undefined for that example)."""
    return bool(np.isnan(np.asarray(scores, dtype=float)).any())


def set_f1(chosen: set[int] | Sequence[int], gold: set[int] | Sequence[int]) -> float:
    """F1 of two position sets (``2·|A∩B| / (|A|+|B|)``); 0 when they share nothing."""
    a, b = set(chosen), set(gold)
    tp = len(a & b)
    return 2 * tp / (len(a) + len(b)) if tp else 0.0


def top_k(scores: Sequence[float], k: int, among: Sequence[int] | None = None) -> list[int]:
    """Positions of the ``k`` highest scores (ties: earlier position first), sorted.

    Args:
        among: candidate positions (default: all).
    """
    cand = np.arange(len(scores)) if among is None else np.asarray(among, dtype=int)
    if k <= 0 or len(cand) == 0:
        return []
    vals = np.asarray(scores, dtype=float)[cand]
    order = np.lexsort((cand, -vals))  # by score descending, then by position
    return sorted(int(c) for c in cand[order[:k]])


def rank_corr(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman ρ of two paired vectors; NaN when undefined (fewer than two values, a
    NaN, or a constant side)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or has_nan(x) or has_nan(y) or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def token_f1(predicted: Sequence[int], rationale: Sequence[int | None]) -> float:
    """Token-level F1 between predicted word positions and a human rationale.

    Unannotated words (``None``) are excluded from both sides. Undefined (``nan``) when
    no word is annotated or the human rationale is empty.
    """
    annotated = {i for i, v in enumerate(rationale) if v is not None}
    gold = {i for i, v in enumerate(rationale) if v == 1}
    if not annotated or not gold:
        return float("nan")
    return set_f1(set(predicted) & annotated, gold)


def random_topk(rationale: Sequence[int | None], k: int, rng: np.random.Generator) -> list[int]:
    """``k`` random annotated positions: the random Top-Var baseline."""
    annotated = [i for i, v in enumerate(rationale) if v is not None]
    k = min(k, len(annotated))
    return sorted(rng.choice(annotated, size=k, replace=False).tolist()) if k else []


def percentile_bootstrap(
    statistic: Callable[[np.ndarray], float],
    n: int,
    rng: np.random.Generator,
    n_boot: int = 1000,
    level: float = 0.95,
) -> tuple[float, float, int]:
    """Percentile CI of ``statistic(indices)`` over ``n_boot`` resamples of ``n`` units.

    ``statistic`` gets the resampled unit indices, so paired data stay paired. Resamples
    where it is NaN (undefined) are left out of the CI and counted.

    Returns:
        ``(ci_low, ci_high, n_resamples_undefined)``; NaN bounds if none is defined.
    """
    idx = rng.integers(0, n, size=(n_boot, n))
    stats = np.array([statistic(i) for i in idx], dtype=float)
    defined = stats[~np.isnan(stats)]
    if defined.size == 0:
        return np.nan, np.nan, int(stats.size)
    alpha = (1 - level) / 2
    low, high = np.quantile(defined, [alpha, 1 - alpha])
    return float(low), float(high), int(stats.size - defined.size)


def bootstrap_ci(
    values: Sequence[float],
    n_boot: int = 1000,
    seed: int = 0,
    statistic: Callable[[np.ndarray], float] = np.mean,
    level: float = 0.95,
) -> dict:
    """Percentile bootstrap CI over examples; ``nan`` values are counted, not used.

    Returns:
        ``{"value", "ci_low", "ci_high", "n", "n_undefined"}``.
    """
    arr = np.asarray(values, dtype=float)
    defined = arr[~np.isnan(arr)]
    out = {
        "value": np.nan,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "n": int(defined.size),
        "n_undefined": int(arr.size - defined.size),
    }
    if defined.size == 0:
        return out
    low, high, _ = percentile_bootstrap(
        lambda i: statistic(defined[i]), defined.size, np.random.default_rng(seed), n_boot, level
    )
    out.update(value=float(statistic(defined)), ci_low=low, ci_high=high)
    return out


def bootstrap_paired(
    y_true: Sequence,
    y_pred: Sequence,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Bootstrap CI of a metric computed on (true, predicted) pairs, resampling examples."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    low, high, _ = percentile_bootstrap(
        lambda i: metric(t[i], p[i]), len(t), np.random.default_rng(seed), n_boot, level
    )
    return {
        "value": float(metric(t, p)),
        "ci_low": low,
        "ci_high": high,
        "n": len(t),
        "n_undefined": 0,
    }


def spearman_ci(
    x: Sequence[float], y: Sequence[float], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict:
    """Spearman ρ between paired values with a percentile bootstrap CI over pairs.

    Pairs with a NaN on either side are counted in ``n_undefined``; ρ is NaN with fewer
    than three pairs or a constant side. Resamples that come out constant are skipped
    (ρ is undefined on them), so the CI uses only defined resamples.

    Returns:
        ``{"value", "ci_low", "ci_high", "n", "n_undefined"}`` like :func:`bootstrap_ci`.
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    out = {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "n": int(a.size)}
    out["n_undefined"] = int(ok.size - a.size)

    def rho(i: np.ndarray) -> float:
        return rank_corr(a[i], b[i])

    if a.size < 3 or np.isnan(rho(np.arange(a.size))):
        return out
    low, high, _ = percentile_bootstrap(rho, a.size, np.random.default_rng(seed), n_boot, level)
    out.update(value=rho(np.arange(a.size)), ci_low=low, ci_high=high)
    return out


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of exact matches."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def macro_f1_fn(labels: Sequence[str]) -> Callable[[np.ndarray, np.ndarray], float]:
    """Macro-F1 over a fixed label set; a class with no gold and no predicted example
    scores 0, as scikit-learn's ``f1_score(..., zero_division=0)`` does."""

    def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        t, p = np.asarray(y_true), np.asarray(y_pred)
        scores = []
        for lab in labels:
            tp = np.sum((t == lab) & (p == lab))
            denom = np.sum(t == lab) + np.sum(p == lab)
            scores.append(2 * tp / denom if denom else 0.0)
        return float(np.mean(scores))

    return macro_f1


def task_performance(
    predictions: pd.DataFrame, labels_by_dataset: dict[str, Sequence[str]], seed: int = 0
) -> pd.DataFrame:
    """Accuracy and macro-F1 with CIs, and the zero-rate baseline, per dataset.

    Args:
        predictions: columns ``dataset``, ``label`` (gold) and ``pred``.
    """
    rows = []
    for dataset, df in predictions.groupby("dataset", sort=False):
        labels = labels_by_dataset[dataset]
        majority = df["label"].value_counts().idxmax()
        for name, fn in (("accuracy", accuracy), ("macro_f1", macro_f1_fn(labels))):
            rows.append(
                {
                    "dataset": dataset,
                    "metric": name,
                    "system": "model",
                    **bootstrap_paired(df["label"], df["pred"], fn, seed=seed),
                }
            )
            zero = np.array([majority] * len(df))
            rows.append(
                {
                    "dataset": dataset,
                    "metric": name,
                    "system": "zero-rate",
                    **bootstrap_paired(df["label"], zero, fn, seed=seed),
                }
            )
    return pd.DataFrame(rows)


def format_ci(row: pd.Series, scale: float = 100.0, digits: int = 1) -> str:
    """``value [low, high]`` for tables (×100 by default)."""
    if np.isnan(row["value"]):
        return "n/a"
    f = f"{{:.{digits}f}}"
    return f"{f.format(row['value'] * scale)} [{f.format(row['ci_low'] * scale)}, {f.format(row['ci_high'] * scale)}]"


def ci_table(
    df: pd.DataFrame, by: Sequence[str], metrics: Sequence[str], seed: int = 0
) -> pd.DataFrame:
    """Mean of each metric per group with a bootstrap 95% CI, n and the undefined count.

    Returns a long table: the ``by`` columns, ``metric``, ``value``, ``ci_low``,
    ``ci_high``, ``n``, ``n_undefined``.
    """
    rows = []
    for key, grp in df.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        for m in metrics:
            rows.append(
                {**dict(zip(by, key, strict=True)), "metric": m, **bootstrap_ci(grp[m], seed=seed)}
            )
    return pd.DataFrame(rows)


def paired_tests(
    df: pd.DataFrame,
    by: Sequence[str],
    metric: str | Sequence[str],
    *,
    condition: str = "method",
    reference: str = "random",
    unit: str = "id",
) -> pd.DataFrame:
    """Wilcoxon signed-rank test of each condition against ``reference`` on shared units,
    per group and metric, with Holm correction over all tests of the table (statsmodels):
    pass every metric of a table in one call so that the correction covers all of them.

    Returns ``by``, ``metric``, ``condition``, ``n`` (pairs with both values defined),
    ``median_diff``, ``p``, ``p_holm``, ``reject`` (at 0.05 after correction).
    """
    rows = []
    metric_names = [metric] if isinstance(metric, str) else list(metric)
    for (key, grp), name in itertools.product(df.groupby(list(by), sort=False), metric_names):
        key = key if isinstance(key, tuple) else (key,)
        wide = grp.pivot_table(index=unit, columns=condition, values=name, aggfunc="first")
        if reference not in wide:
            continue
        for cond in wide.columns:
            if cond == reference:
                continue
            both = wide[[cond, reference]].dropna()
            diff = both[cond] - both[reference]
            p = (
                float(wilcoxon(both[cond], both[reference]).pvalue)
                if len(both) >= 2 and (diff != 0).any()
                else np.nan
            )
            rows.append(
                {
                    **dict(zip(by, key, strict=True)),
                    "metric": name,
                    condition: cond,
                    "n": len(both),
                    "median_diff": float(diff.median()) if len(both) else np.nan,
                    "p": p,
                }
            )
    out = pd.DataFrame(rows)
    if len(out):
        tested = out["p"].notna()
        out["p_holm"] = np.nan
        out["reject"] = False
        if tested.any():
            reject, p_holm, _, _ = multipletests(out.loc[tested, "p"], method="holm")
            out.loc[tested, "p_holm"] = p_holm
            out.loc[tested, "reject"] = reject
    return out
