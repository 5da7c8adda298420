"""Statistics every metric module shares: guards, set-F1, top-k, rank correlation,
bootstrap CIs (per example, per cluster of rows, paired), paired tests with Holm
correction and their power, CI formatting, and the :class:`MetricSpec` of each metric.

Per-example metrics return ``nan`` when undefined (no annotated word, empty human
rationale, constant scores); the aggregation helpers count those rows instead of
dropping them silently. This module imports nothing from the package.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
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
        function: the per-example function (``None`` for a column a table fills).
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
    """Positions of the ``k`` highest scores among ``among`` (default: all), highest first
    (ties: earlier position first): an explanation built from scores (an oracle) keeps
    the ranking for graded metrics; use ``set(...)`` where only membership matters."""
    cand = np.arange(len(scores)) if among is None else np.asarray(among, dtype=int)
    if k <= 0 or len(cand) == 0:
        return []
    vals = np.asarray(scores, dtype=float)[cand]
    order = np.lexsort((cand, -vals))  # by score descending, then by position
    return [int(c) for c in cand[order[:k]]]


def rank_corr(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman ρ of two paired vectors; NaN when undefined (fewer than two values, a
    NaN, or a constant side)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) < 2 or has_nan(x) or has_nan(y) or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def token_f1(predicted: Sequence[int], rationale: Sequence[int | None]) -> float:
    """Token-level F1 between predicted word positions and a human rationale, unannotated
    words (``None``) excluded; NaN when no word is annotated or the rationale is empty."""
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


def _codes(clusters: Sequence, keep: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Cluster labels (of the rows in ``keep``) as codes ``0..g-1`` and their number ``g``."""
    labels = pd.Series(list(clusters), dtype=object)
    codes, uniques = pd.factorize(labels if keep is None else labels[np.asarray(keep, bool)])
    if (codes < 0).any():
        raise ValueError("every row needs a cluster label (found a missing one)")
    return codes.astype(np.intp), len(uniques)


def _rows(draws: np.ndarray, codes: np.ndarray) -> Iterator[np.ndarray]:
    """Row indices of each resample (a row of cluster ``draws``), by index arithmetic."""
    counts = np.bincount(codes)
    order, starts = np.argsort(codes, kind="stable"), np.cumsum(counts) - counts
    for d in draws:
        c = counts[d]
        yield order[np.repeat(starts[d], c) + np.arange(c.sum()) - np.repeat(np.cumsum(c) - c, c)]


def _cluster_means(codes: np.ndarray, x: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Mean of the rows of each resample of clusters, from per-cluster sums (vectorised)."""
    g = draws.shape[1]
    sums, counts = np.bincount(codes, x, g), np.bincount(codes, minlength=g)
    return sums[draws].sum(1) / counts[draws].sum(1)


def _percentiles(stats: np.ndarray, level: float) -> tuple[float, float, int]:
    defined = stats[~np.isnan(stats)]
    if defined.size == 0:
        return np.nan, np.nan, int(stats.size)
    alpha = (1 - level) / 2
    low, high = np.quantile(defined, [alpha, 1 - alpha])
    return float(low), float(high), int(stats.size - defined.size)


def percentile_bootstrap(
    statistic: Callable[[np.ndarray], float],
    n: int,
    rng: np.random.Generator,
    n_boot: int = 1000,
    level: float = 0.95,
    *,
    clusters: Sequence | None = None,
) -> tuple[float, float, int]:
    """Percentile CI ``(ci_low, ci_high, n_resamples_undefined)`` of ``statistic(indices)``
    over ``n_boot`` resamples of ``n`` units; NaN bounds if no resample is defined.

    ``statistic`` gets the resampled unit indices, so paired data stay paired; with
    ``clusters`` (a label per unit), whole clusters with all their units. Resamples where
    the statistic is NaN (undefined) are left out of the CI and counted.
    """
    if clusters is None:
        samples = rng.integers(0, n, size=(n_boot, n))
    else:
        codes, g = _codes(clusters)
        samples = _rows(rng.integers(0, g, size=(n_boot, g)), codes)
    return _percentiles(np.array([statistic(i) for i in samples], dtype=float), level)


_NO_CI = {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan}


def cluster_bootstrap_diff(
    a: Sequence[float],
    b: Sequence[float],
    clusters_a: Sequence,
    clusters_b: Sequence,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Cluster-bootstrap CI of ``statistic(a) − statistic(b)``: two conditions measured on
    the same clusters with any rows per cluster (one explanation, five random draws per
    example). Each resample draws clusters and takes their rows on both sides; clusters
    undefined on a side are left out (their rows: ``n_unpaired``). Returns
    :func:`bootstrap_ci`'s dict with ``n_unpaired``. Aligned rows: ``bootstrap_ci(a - b)``.
    """
    x = np.concatenate([np.asarray(a, dtype=float), np.asarray(b, dtype=float)])
    labels = pd.Series([*clusters_a, *clusters_b], dtype=object)
    side, ok = np.arange(x.size) < len(a), ~np.isnan(x)
    keep = ok & labels.isin(set(labels[ok & side]) & set(labels[ok & ~side])).to_numpy()
    codes, g = _codes(labels, keep)
    out = _NO_CI | {"n": g, "n_rows": int(keep.sum()), "n_undefined": int(x.size - ok.sum())}
    out["n_unpaired"] = int(ok.sum() - keep.sum())
    if g == 0:
        return out
    x, side = x[keep], side[keep]
    draws = np.random.default_rng(seed).integers(0, g, size=(n_boot, g))
    if statistic is np.mean:
        boot = np.subtract(*(_cluster_means(codes[s], x[s], draws) for s in (side, ~side)))
    else:
        boot = np.array(
            [statistic(x[i][side[i]]) - statistic(x[i][~side[i]]) for i in _rows(draws, codes)]
        )
    low, high, _ = _percentiles(boot, level)
    return out | {"value": statistic(x[side]) - statistic(x[~side]), "ci_low": low, "ci_high": high}


def bootstrap_ci(
    values: Sequence[float],
    n_boot: int = 1000,
    seed: int = 0,
    statistic: Callable[[np.ndarray], float] = np.mean,
    level: float = 0.95,
    *,
    clusters: Sequence | None = None,
) -> dict:
    """Percentile bootstrap CI over examples, ``{"value", "ci_low", "ci_high", "n",
    "n_undefined"}``; ``nan`` values are counted, not used.

    ``clusters`` (a label per value, e.g. the example id) makes it a cluster bootstrap,
    since rows of example × explanation × draw are not independent (DESIGN.md §8):
    clusters are resampled with replacement, each with all its rows; ``n`` counts
    clusters and ``n_rows`` is added. The mean then uses per-cluster sums (vectorised).
    """
    arr = np.asarray(values, dtype=float)
    ok = ~np.isnan(arr)
    x, rng, codes = arr[ok], np.random.default_rng(seed), None
    out = _NO_CI | {"n": int(x.size), "n_undefined": int(arr.size - x.size)}
    if clusters is not None:
        codes, out["n"] = _codes(clusters, ok)
        out["n_rows"] = int(x.size)
    if x.size == 0:
        return out
    if codes is not None and statistic is np.mean:
        draws = rng.integers(0, out["n"], size=(n_boot, out["n"]))
        low, high, _ = _percentiles(_cluster_means(codes, x, draws), level)
    else:
        low, high, _ = percentile_bootstrap(
            lambda i: statistic(x[i]), x.size, rng, n_boot, level, clusters=codes
        )
    return out | {"value": float(statistic(x)), "ci_low": low, "ci_high": high}


def bootstrap_paired(
    y_true: Sequence,
    y_pred: Sequence,
    metric: Callable[[np.ndarray, np.ndarray], float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    *,
    clusters: Sequence | None = None,
) -> dict:
    """Bootstrap CI of a metric computed on (true, predicted) pairs, resampling examples
    (or whole ``clusters``: ``n`` is then their number, and ``n_rows`` is added)."""
    t, p, rng = np.asarray(y_true), np.asarray(y_pred), np.random.default_rng(seed)
    low, high, _ = percentile_bootstrap(
        lambda i: metric(t[i], p[i]), len(t), rng, n_boot, level, clusters=clusters
    )
    out = {"value": float(metric(t, p)), "ci_low": low, "ci_high": high, "n": len(t)}
    out["n_undefined"] = 0
    if clusters is not None:
        out.update(n=_codes(clusters)[1], n_rows=len(t))
    return out


def spearman_ci(
    x: Sequence[float],
    y: Sequence[float],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    *,
    clusters: Sequence | None = None,
) -> dict:
    """Spearman ρ between paired values with a percentile bootstrap CI over pairs (or
    ``clusters`` of pairs), in :func:`bootstrap_ci`'s dict. Pairs with a NaN on either side
    are counted in ``n_undefined``; ρ is NaN with fewer than three pairs or a constant
    side. Resamples that come out constant (ρ undefined) are left out of the CI.
    """
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    out = _NO_CI | {"n": int(a.size), "n_undefined": int(ok.size - a.size)}
    codes = None
    if clusters is not None:
        codes, out["n"] = _codes(clusters, ok)
        out["n_rows"] = int(a.size)

    def rho(i: np.ndarray) -> float:
        return rank_corr(a[i], b[i])

    if a.size < 3 or np.isnan(rho(np.arange(a.size))):
        return out
    rng = np.random.default_rng(seed)
    low, high, _ = percentile_bootstrap(rho, a.size, rng, n_boot, level, clusters=codes)
    out.update(value=rho(np.arange(a.size)), ci_low=low, ci_high=high)
    return out


#: Paired tests :func:`min_attainable_p` knows; alternatives: two-sided, greater, less.
PAIRED_TEST_NAMES = ("wilcoxon", "sign", "permutation")


def min_attainable_p(n: int, test: str = "wilcoxon", alternative: str = "two-sided") -> float:
    """Smallest p-value a paired test can give with ``n`` pairs (non-zero differences):
    above α/m it cannot reject whatever the data, and not rejecting is no evidence of no
    effect (DESIGN.md §8). ``wilcoxon``: scipy's p for the most extreme data (all signs
    equal): 2/2ⁿ two-sided (1/2ⁿ one-sided) up to n = 50, its normal approximation above;
    ``sign`` (exact binomial), ``permutation`` (exact sign flips): 2/2ⁿ (1/2ⁿ).
    """
    if test not in PAIRED_TEST_NAMES or alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"unknown {test!r} or {alternative!r}; tests: {PAIRED_TEST_NAMES}")
    if n < 1:
        return 1.0
    if test == "wilcoxon":
        extreme = np.arange(1.0, n + 1) * (-1 if alternative == "less" else 1)
        return float(wilcoxon(extreme, alternative=alternative).pvalue)
    return float(min(1.0, 0.5**n * (2 if alternative == "two-sided" else 1)))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of exact matches."""
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def macro_f1_fn(labels: Sequence[str]) -> Callable[[np.ndarray, np.ndarray], float]:
    """Macro-F1 over a fixed label set; a class with no gold and no predicted example
    scores 0, as scikit-learn's ``f1_score(..., zero_division=0)`` does."""

    def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        t, p = np.asarray(y_true), np.asarray(y_pred)
        counts = [
            (np.sum((t == lab) & (p == lab)), np.sum(t == lab) + np.sum(p == lab)) for lab in labels
        ]
        return float(np.mean([2 * tp / denom if denom else 0.0 for tp, denom in counts]))

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
        zero = np.array([df["label"].value_counts().idxmax()] * len(df))
        fns = {"accuracy": accuracy, "macro_f1": macro_f1_fn(labels_by_dataset[dataset])}
        for name, fn in fns.items():
            for system, pred in (("model", df["pred"]), ("zero-rate", zero)):
                ci = bootstrap_paired(df["label"], pred, fn, seed=seed)
                rows.append({"dataset": dataset, "metric": name, "system": system, **ci})
    return pd.DataFrame(rows)


def format_ci(row: pd.Series, scale: float = 100.0, digits: int = 1) -> str:
    """``value [low, high]`` for tables (×100 by default)."""
    if np.isnan(row["value"]):
        return "n/a"
    f = f"{{:.{digits}f}}"
    return f"{f.format(row['value'] * scale)} [{f.format(row['ci_low'] * scale)}, {f.format(row['ci_high'] * scale)}]"


def ci_table(
    df: pd.DataFrame,
    by: Sequence[str],
    metrics: Sequence[str],
    seed: int = 0,
    *,
    cluster: str | None = None,
    n_boot: int = 1000,
) -> pd.DataFrame:
    """Mean of each metric per group with a bootstrap 95% CI, n and the undefined count.

    ``cluster``: a column of cluster labels (``"id"`` where a group has several rows per
    example) for a cluster bootstrap; ``n`` then counts clusters, and ``n_rows`` is added.
    Returns a long table: the ``by`` columns, ``metric``, ``value``, ``ci_low``,
    ``ci_high``, ``n``, ``n_undefined``.
    """
    rows = []
    for key, grp in df.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        clusters = None if cluster is None else grp[cluster]
        for m in metrics:
            ci = bootstrap_ci(grp[m], n_boot=n_boot, seed=seed, clusters=clusters)
            rows.append({**dict(zip(by, key, strict=True)), "metric": m, **ci})
    empty = [*by, "metric", "value", "ci_low", "ci_high", "n", "n_undefined"]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=empty)  # e.g. no such method


def _paired_effect(d: np.ndarray, n_boot: int, seed: int) -> dict:
    """One comparison's columns from its paired differences ``d``."""
    ci = bootstrap_ci(d, n_boot=n_boot, seed=seed)
    p = float(wilcoxon(d).pvalue) if len(d) >= 2 and (d != 0).any() else np.nan
    median = float(np.median(d)) if len(d) else np.nan
    out = {"n": len(d), "median_diff": median, "mean_diff": ci["value"]}
    out |= {"diff_ci_low": ci["ci_low"], "diff_ci_high": ci["ci_high"], "p": p}
    return out | {"min_p": min_attainable_p(int((d != 0).sum()))}


def paired_tests(
    df: pd.DataFrame,
    by: Sequence[str],
    metric: str | Sequence[str],
    *,
    condition: str = "method",
    reference: str = "random",
    unit: str | Sequence[str] = "id",
    cluster: str | None = None,
    primary: bool | str | Sequence[str] = True,
    alpha: float = 0.05,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Wilcoxon signed-rank test of each condition against ``reference`` on shared units
    (column(s) ``unit``), per group and metric, Holm-corrected over the table's primary
    tests (statsmodels): pass every metric of a table in one call.

    ``cluster`` (the example column, where units have several rows or share examples):
    values are averaged per unit × condition, differences per cluster; the test runs
    over clusters. Without it (old behaviour) a unit's first row is used. ``primary``:
    ``True`` (all tests confirmatory, old behaviour), ``False`` or the primary metric
    name(s); the rest are ``role`` "exploratory": raw ``p``, no ``p_holm``, no ``reject``.

    Returns ``by``, ``metric``, ``condition``, ``n`` (pairs or clusters), ``median_diff``,
    ``mean_diff`` and its bootstrap CI, ``p``, ``min_p`` (:func:`min_attainable_p`),
    (``n_rows``), ``role``, ``p_holm``, ``reject``, ``alpha_m`` (α/m, m = primary tests; α
    if exploratory), ``can_reject`` (``min_p <= alpha_m``; none can: Holm rejects nothing);
    no rows, but those columns, when nothing can be compared (e.g. no human rationales)."""
    rows = []
    names = [metric] if isinstance(metric, str) else list(metric)
    units = [unit] if isinstance(unit, str) else list(unit)
    index = units if cluster is None else list(dict.fromkeys([cluster, *units]))
    agg = "first" if cluster is None else "mean"
    for (key, grp), name in itertools.product(df.groupby(list(by), sort=False), names):
        key = key if isinstance(key, tuple) else (key,)
        wide = grp.pivot_table(index=index, columns=condition, values=name, aggfunc=agg)
        for cond in [c for c in wide.columns if c != reference] if reference in wide else []:
            both = wide[[cond, reference]].dropna()
            diff = both[cond] - both[reference]
            row = dict(zip(by, key, strict=True)) | {"metric": name, condition: cond}
            extra = {}
            if cluster is not None:  # n_rows: the table rows behind the clusters' differences
                used = grp[grp[condition].isin([cond, reference]) & grp[name].notna()]
                extra["n_rows"] = int(used.set_index(index).index.isin(both.index).sum())
                diff = diff.groupby(level=cluster, sort=False).mean()
            rows.append(row | _paired_effect(diff.to_numpy(dtype=float), n_boot, seed) | extra)
    cols = "n median_diff mean_diff diff_ci_low diff_ci_high p min_p role p_holm reject alpha_m"
    out = pd.DataFrame(rows, columns=None if rows else [*by, "metric", condition, *cols.split()])
    if len(out):
        if isinstance(primary, bool | str):
            primary = names if primary is True else [primary] if primary else []
        is_primary = out["metric"].isin(primary)
        out["role"] = np.where(is_primary, "primary", "exploratory")
        tested = out["p"].notna() & is_primary
        out["p_holm"] = np.nan
        out["reject"] = False
        if tested.any():
            reject, p_holm, _, _ = multipletests(out.loc[tested, "p"], alpha, method="holm")
            out.loc[tested, "p_holm"] = p_holm
            out.loc[tested, "reject"] = reject
        out["alpha_m"] = np.where(is_primary, alpha / max(int(tested.sum()), 1), alpha)
    out["can_reject"] = out["min_p"] <= out["alpha_m"]
    return out
