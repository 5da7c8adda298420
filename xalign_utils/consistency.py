"""Consistency between a model's own explanation and an attribution (DESIGN.md §8).

An explanation is first mapped to input-word positions (word lists: the tolerant parser
of :mod:`xalign_utils.explanations`; free text: the words it cites). Each metric then
compares that set with one attribution method's word scores. Every function returns NaN
when the comparison is undefined (empty explanation, explanation covering every word,
constant or zero scores, NaN scores); callers count those.

Rank AUC, F1@k and mass lift compare *sets*: the order of the positions does not
matter. Graded Spearman reads the order of a word list (first named = most important)
and is not computed for free text, whose cited words have no order (NaN, counted).

Chance levels: rank AUC 0.5, attribution-mass lift 1, F1@k = k/n in expectation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .attribution.status import usable
from .explanations import is_word_list
from .stats import MetricSpec, has_nan, rank_corr, set_f1, top_k

#: The metric that reads an explanation's order; NaN for explanations without one.
GRADED = "graded_spearman"


def _positions(explained: Sequence[int], n: int) -> np.ndarray:
    """The explained positions as a sorted set within ``0..n-1`` (order dropped)."""
    return np.array(sorted({int(p) for p in explained if 0 <= int(p) < n}), dtype=int)


def rank_auc(scores: Sequence[float], explained: Sequence[int]) -> float:
    """Probability that an explanation word outscores a non-explanation word (ties ½):
    the Mann–Whitney AUC. NaN when either group is empty."""
    s = np.asarray(scores, dtype=float)
    pos = _positions(explained, len(s))
    n_pos, n_neg = len(pos), len(s) - len(pos)
    if n_pos == 0 or n_neg == 0 or has_nan(s):
        return float("nan")
    ranks = rankdata(s)  # average ranks handle ties
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def f1_at_k(scores: Sequence[float], explained: Sequence[int], k: int | None = None) -> float:
    """F1 between the attribution's top-k words and the explanation words
    (k = explanation size by default). NaN for an empty explanation or k = 0."""
    s = np.asarray(scores, dtype=float)
    pos = set(_positions(explained, len(s)).tolist())
    k = len(pos) if k is None else k
    if not pos or k <= 0 or has_nan(s):
        return float("nan")
    return set_f1(top_k(s, k), pos)


def mass_lift(magnitudes: Sequence[float], explained: Sequence[int]) -> float:
    """Share of attribution mass on explanation words ÷ their share of words (chance 1).
    NaN for an empty explanation or zero total mass."""
    m = np.abs(np.asarray(magnitudes, dtype=float))
    pos = _positions(explained, len(m))
    if len(pos) == 0 or has_nan(m) or m.sum() <= 0:
        return float("nan")
    return float((m[pos].sum() / m.sum()) / (len(pos) / len(m)))


def graded_spearman(scores: Sequence[float], grades: Sequence[float]) -> float:
    """Spearman ρ between attribution scores and graded explanation importance over the
    *graded* words only (grade > 0: the words a list names, first-named highest).

    Whether the named words outrank the rest is rank AUC's question; this one asks
    whether the list orders its own words as the attribution does, so an explanation
    that names the top-k words in score order gets ρ = 1. NaN with fewer than three
    graded words (two give only ±1) or when either side is constant.
    """
    s, g = np.asarray(scores, dtype=float), np.asarray(grades, dtype=float)
    named = g > 0
    if named.sum() < 3:
        return float("nan")
    return rank_corr(s[named], g[named])


def list_grades(explained_in_order: Sequence[int], n: int) -> np.ndarray:
    """Grades from a word list's order: the first named word gets the highest grade
    (``len − rank``), unnamed words 0; repeats and out-of-range positions are ignored.

    ``explained_in_order`` must be in the order the list names its words
    (:attr:`xalign_utils.explanations.ParsedList.positions`), not sorted."""
    grades = np.zeros(n)
    seen: list[int] = []
    for p in explained_in_order:
        if 0 <= int(p) < n and int(p) not in seen:
            seen.append(int(p))
    for rank, p in enumerate(seen):
        grades[p] = len(seen) - rank
    return grades


def profile_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """CC-SHAP-style distance of two input-attribution profiles: ``1 − cosine`` of the
    L1-normalised signed profiles (0: same direction, 1: orthogonal, 2: opposite).
    NaN when either profile is all zero."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    nx, ny = np.abs(x).sum(), np.abs(y).sum()
    if nx == 0 or ny == 0 or np.isnan(nx) or np.isnan(ny):
        return float("nan")
    x, y = x / nx, y / ny
    return float(1 - x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))


def _graded(magnitudes: Sequence[float], explained: Sequence[int]) -> float:
    return graded_spearman(magnitudes, list_grades(explained, len(magnitudes)))


#: The consistency family: an explanation's words against one attribution's word
#: magnitudes, with the value an uninformative explanation gets.
METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec(
            "rank_auc", rank_auc, chance=0.5, description="P(explained word outranks another)"
        ),
        MetricSpec(
            "f1_at_k", f1_at_k, description="F1 of the top-|explanation| words (chance k/n)"
        ),
        MetricSpec(
            "mass_lift", mass_lift, chance=1.0, description="attribution mass share ÷ word share"
        ),
        MetricSpec(GRADED, _graded, chance=0.0, description="ρ with the list's order"),
    )
}


def consistency_row(
    magnitudes: Sequence[float], explained: Sequence[int], graded: bool = True
) -> dict:
    """All consistency metrics of one explanation (positions in the order the explanation
    names them) against one attribution's word magnitudes.

    Args:
        graded: whether the order of ``explained`` means importance (a word list); when
            not (free text), graded Spearman is NaN.
    """
    return {
        name: spec.function(magnitudes, explained) if graded or name != GRADED else np.nan
        for name, spec in METRICS.items()
    }


def graded_flags(explanations: pd.DataFrame) -> pd.Series:
    """Per explanation row, whether its positions are graded: its ``graded`` column when
    there is one, else whether its ``role`` is a word list, else True (explanations built
    in order: oracle top-k, random draws, a planted trigger)."""
    if "graded" in explanations:
        return explanations["graded"].astype(bool)
    if "role" in explanations:
        return explanations["role"].map(is_word_list).astype(bool)
    return pd.Series(True, index=explanations.index, dtype=bool)


def consistency_table(attributions: pd.DataFrame, explanations: pd.DataFrame) -> pd.DataFrame:
    """Every explanation against every attribution method of the same example.

    Args:
        attributions: rows of :func:`xalign_utils.attribution.attribute`.
        explanations: one row per example × explanation type with ``id``, ``explanation``
            (the type's name) and ``positions`` (explained input words, in the order
            named); optionally ``graded`` or ``role`` (see :func:`graded_flags`): free
            text gets no graded Spearman.

    Returns:
        One row per example × explanation type × method with the metrics of
        :func:`consistency_row`, ``n_explained`` and ``n_words``.
    """
    ok = usable(attributions)
    expl = explanations[["id", "explanation", "positions"]].assign(
        graded=graded_flags(explanations)
    )
    merged = ok.merge(expl, on="id")
    rows = []
    for rec in merged.itertuples():
        mags = np.asarray(rec.magnitude, dtype=float)
        pos = [int(p) for p in rec.positions]
        rows.append(
            {
                "id": rec.id,
                "dataset": rec.dataset,
                "method": rec.method,
                "explanation": rec.explanation,
                "n_explained": len(_positions(pos, len(mags))),
                "n_words": len(mags),
                **consistency_row(mags, pos, graded=bool(rec.graded)),
            }
        )
    return pd.DataFrame(rows)
