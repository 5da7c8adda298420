"""Checks that a consistency metric means what it claims (notebook 04, DESIGN.md §8).

- random explanations of the same size must score at chance;
- an explanation equal to the attribution's top-k must score the maximum;
- cascading randomisation of the model's parameters, top layer down (Adebayo et al.
  2018), must move the scores;
- stochastic methods must be stable across seeds.
"""

from __future__ import annotations

import zlib
from itertools import combinations

import numpy as np
import pandas as pd

from . import consistency
from .attribution.registry import METHODS
from .stats import rank_corr, top_k


def random_explanations(
    explanations: pd.DataFrame, n_words: dict[str, int], seed: int = 0, draws: int = 1
) -> pd.DataFrame:
    """Same examples and sizes as ``explanations``, words drawn uniformly (seeded per id).

    With ``draws > 1`` each explanation gets that many independent draws, named
    ``random (<type>) #<d>``: averaging over draws shrinks the Monte-Carlo noise of the
    chance check, which a single draw re-scored against every method would hide.
    """
    rows = []
    for rec in explanations.itertuples():
        n = n_words[rec.id]
        size = min(len(set(rec.positions)), n)
        for d in range(draws):
            key = f"{rec.id}/{rec.explanation}" + (f"/{d}" if draws > 1 else "")
            rng = np.random.default_rng([seed, zlib.crc32(key.encode())])
            rows.append(
                {
                    "id": rec.id,
                    "explanation": f"random ({rec.explanation})" + (f" #{d}" if draws > 1 else ""),
                    "positions": rng.choice(n, size, replace=False).tolist(),
                }
            )
    return pd.DataFrame(rows, columns=["id", "explanation", "positions"])


def oracle_explanations(attributions: pd.DataFrame, explanations: pd.DataFrame) -> pd.DataFrame:
    """Per example × method: the method's own top-k words, k = the explanation's size.

    Returns rows with ``id``, ``method``, ``explanation`` and ``positions``; the
    consistency of each with *its* method must be maximal (up to ties at the k-th
    score). Methods whose scores are constant for an example are skipped.
    """
    size = {(r.id, r.explanation): len(set(r.positions)) for r in explanations.itertuples()}
    rows = []
    for rec in attributions[attributions["status"].eq("ok")].itertuples():
        if np.ptp(np.asarray(rec.magnitude, dtype=float)) == 0:
            continue  # constant scores have no top-k
        for (ex_id, name), k in size.items():
            if ex_id == rec.id and k:
                rows.append(
                    {
                        "id": rec.id,
                        "method": rec.method,
                        "explanation": f"top-k of the method ({name})",
                        "positions": top_k(np.asarray(rec.magnitude, dtype=float), k),
                    }
                )
    return pd.DataFrame(rows, columns=["id", "method", "explanation", "positions"])


def seed_agreement(tables: dict[int, pd.DataFrame]) -> pd.DataFrame:
    """Spearman ρ of word magnitudes between every pair of seeds, per example × method."""
    rows = []
    for (s1, t1), (s2, t2) in combinations(tables.items(), 2):
        merged = t1.merge(t2, on=["id", "method"], suffixes=("_a", "_b"))
        for rec in merged.itertuples():
            rows.append(
                {
                    "id": rec.id,
                    "method": rec.method,
                    "seeds": f"{s1}-{s2}",
                    "rho": rank_corr(np.asarray(rec.magnitude_a), np.asarray(rec.magnitude_b)),
                }
            )
    return pd.DataFrame(rows, columns=["id", "method", "seeds", "rho"])


#: Chance level of each consistency metric (F1@k has none: it depends on k/n).
CHANCE = {  # verdict rows: the metrics with a fixed chance level first
    name: consistency.METRICS[name].chance
    for name in ("rank_auc", "mass_lift", "graded_spearman", "f1_at_k")
}
#: Methods expected to find the planted trigger that enter the verdict's faithfulness
#: check. Noiser is expected faithful too (the planted test checks it) but, the
#: costliest, runs on too few examples per profile to enter the verdict.
FAITHFUL = tuple(
    name for name, spec in METHODS.items() if spec.expected_faithful and spec.cost != "costliest"
)


def verdict(
    checks: pd.DataFrame, cascade: pd.DataFrame, planted: pd.DataFrame, tracking: pd.DataFrame
) -> pd.DataFrame:
    """Which consistency metric passes which validation check (True/False/NaN = not testable).

    Args:
        checks: :func:`xalign_utils.metrics.ci_table` of random (``kind`` "random
            explanation") and oracle ("oracle top-k") explanations.
        cascade: CI table by ``layers_randomised`` × explanation.
        planted: CI table by method on the planted-evidence model.
        tracking: Spearman ρ per method × metric with the explanation's comprehensiveness,
            with its CI (:func:`xalign_utils.metrics.spearman_ci`).

    A metric "tracks comprehensiveness" when ρ's CI lies above 0 for at least one
    attribution method and for more methods than it lies below 0; a median ρ > 0 alone
    would pass half the time on noise.
    """
    rows = []
    for metric, chance in CHANCE.items():
        rnd = checks[(checks["kind"] == "random explanation") & (checks["metric"] == metric)]
        ora = checks[(checks["kind"] == "oracle top-k") & (checks["metric"] == metric)]
        at_chance = (
            np.nan
            if chance is None or rnd.empty
            else bool(rnd["ci_low"].iloc[0] - 0.02 <= chance <= rnd["ci_high"].iloc[0] + 0.02)
        )
        reference = rnd["value"].iloc[0] if not rnd.empty else np.nan
        oracle_max = bool(ora["ci_low"].iloc[0] > reference) if not ora.empty else np.nan
        if metric in {"rank_auc", "f1_at_k"} and not ora.empty:  # maximum 1; ties cost a little
            oracle_max = bool(ora["value"].iloc[0] >= 0.99)
        c = cascade[cascade["metric"] == metric]
        if c.empty:
            moves = np.nan
        else:
            first = c[c["layers_randomised"] == c["layers_randomised"].min()]
            last = c[c["layers_randomised"] == c["layers_randomised"].max()]
            both = first.merge(last, on="explanation", suffixes=("_0", "_all")).dropna(
                subset=["value_0", "value_all"]
            )
            apart = (both["ci_low_all"] > both["ci_high_0"]) | (
                both["ci_high_all"] < both["ci_low_0"]
            )
            moves = bool(apart.any()) if len(both) else np.nan
        p = planted[planted["metric"] == metric].set_index("method")
        if "random" in p.index and p.index.isin(FAITHFUL).any():
            faithful = p[p.index.isin(FAITHFUL)]
            ranks = bool((faithful["value"] > p.loc["random", "ci_high"]).mean() >= 0.75)
        else:
            ranks = np.nan
        t = tracking[(tracking["metric"] == metric) & (tracking["method"] != "random")]
        t = t.dropna(subset=["ci_low", "ci_high"])
        above, below = int((t["ci_low"] > 0).sum()), int((t["ci_high"] < 0).sum())
        tracks = bool(above >= 1 and above > below) if len(t) else np.nan
        row = {
            "metric": metric,
            "random_at_chance": at_chance,
            "oracle_is_maximal": oracle_max,
            "moves_under_randomisation": moves,
            "planted_ranks_faithful_first": ranks,
            "tracks_explanation_comprehensiveness": tracks,
        }
        tested = [v for k, v in row.items() if k != "metric" and isinstance(v, bool)]
        row["passed"] = f"{sum(tested)}/{len(tested)}"
        rows.append(row)
    return pd.DataFrame(rows)


def verdict_sentences(table: pd.DataFrame) -> list[str]:
    """One sentence per metric from :func:`verdict`, best first."""
    score = table["passed"].map(lambda s: int(s.split("/")[0]) / max(int(s.split("/")[1]), 1))
    out = []
    for _, row in table.assign(score=score).sort_values("score", ascending=False).iterrows():
        failed = [
            k.replace("_", " ") for k, v in row.items() if isinstance(v, (bool, np.bool_)) and not v
        ]
        out.append(
            f"{row['metric']}: passes {row['passed']} checks"
            + (f"; fails: {', '.join(failed)}." if failed else ".")
        )
    return out
