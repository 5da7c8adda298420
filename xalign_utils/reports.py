"""Tables and sentences generated from result tables: attribution health, runtime,
agreement between methods, and paired tests in words (prose that stays true on re-runs).

Input everywhere is the tidy table of :func:`xalign_utils.attribution.attribute` (one row
per example × method, word-score arrays in ``signed``/``magnitude``).
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from .stats import bootstrap_ci, rank_corr


def health(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset × method: rows, failures and what was detected along the way.

    Columns: ``n`` (rows), ``ok``, ``context_overflow``, ``nonfinite_rows`` (rows with a
    NaN/inf score, zeroed), ``words_without_tokens`` and ``truncated_words`` (totals),
    ``seconds_per_example`` (mean), ``ig_delta_abs`` (IG's mean completeness error
    |Σ attributions − (f(x) − f(baseline))|), ``ig_relative_error`` (its median relative to
    |f(x) − f(baseline)|) and ``noiser_sigma`` (mean noise scale).
    """
    g = df.assign(
        ok=df["status"].eq("ok"),
        overflow=df["status"].eq("context_overflow"),
        nonfinite_row=df.get("nonfinite", pd.Series(0, index=df.index)).fillna(0).gt(0),
    ).groupby(["dataset", "method"], sort=False)
    out = pd.DataFrame(
        {
            "n": g.size(),
            "ok": g["ok"].sum(),
            "context_overflow": g["overflow"].sum(),
            "nonfinite_rows": g["nonfinite_row"].sum(),
            "words_without_tokens": g["words_without_tokens"].sum(),
            "truncated_words": g["truncated_words"].sum(),
            "seconds_per_example": g["seconds"].mean(),
        }
    )
    if "ig_delta" in df:
        out["ig_delta_abs"] = g["ig_delta"].apply(lambda s: s.abs().mean())
        # Σ attributions = (f(x) − f(0)) + δ, so the gap is recoverable from each row
        gap = df["signed"].map(lambda a: float(np.sum(a)) if isinstance(a, np.ndarray) else np.nan)
        rel = (df["ig_delta"].abs() / (gap - df["ig_delta"]).abs()).where(df["ig_delta"].notna())
        out["ig_relative_error"] = rel.groupby([df["dataset"], df["method"]], sort=False).median()
    if "noiser_sigma" in df:
        out["noiser_sigma"] = g["noiser_sigma"].mean()
    return out.reset_index()


def pairwise_agreement(df: pd.DataFrame, score: str = "magnitude") -> pd.DataFrame:
    """Spearman rank correlation between every pair of methods, per example.

    Returns one row per example × method pair (both orders not repeated) with ``rho``
    (NaN when a score vector is constant, e.g. a method that gives every word 0).
    """
    ok = df[df["status"].eq("ok")]
    wide = ok.pivot_table(index=["dataset", "id"], columns="method", values=score, aggfunc="first")
    rows = []
    methods = list(dict.fromkeys(ok["method"]))
    for (dataset, ex_id), rec in wide.iterrows():
        for a, b in combinations(methods, 2):
            sa, sb = rec.get(a), rec.get(b)
            if not isinstance(sa, np.ndarray) or not isinstance(sb, np.ndarray):
                continue  # a method not run on this example (subset sizes differ)
            rows.append({"dataset": dataset, "id": ex_id, "a": a, "b": b, "rho": rank_corr(sa, sb)})
    return pd.DataFrame(rows, columns=["dataset", "id", "a", "b", "rho"])


def agreement_matrix(pairs: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Mean ρ per method pair with a bootstrap 95% CI, its n and undefined count.

    Returns a long table (``a``, ``b``, ``value``, ``ci_low``, ``ci_high``, ``n``,
    ``n_undefined``);
    :func:`to_square` turns it into the symmetric matrix a heat map needs.
    """
    rows = []
    for (a, b), grp in pairs.groupby(["a", "b"], sort=False):
        rows.append({"a": a, "b": b, **bootstrap_ci(grp["rho"].to_numpy(), seed=seed)})
    return pd.DataFrame(rows)


def to_square(long: pd.DataFrame, value: str = "value") -> pd.DataFrame:
    """Symmetric method × method matrix from :func:`agreement_matrix` (diagonal 1)."""
    methods = list(dict.fromkeys(list(long["a"]) + list(long["b"])))
    mat = pd.DataFrame(np.eye(len(methods)), index=methods, columns=methods)
    for rec in long.itertuples():
        mat.loc[rec.a, rec.b] = mat.loc[rec.b, rec.a] = getattr(rec, value)
    return mat


def interpretation(health_table: pd.DataFrame, agreement: pd.DataFrame) -> list[str]:
    """A few sentences read off this run's tables (no numbers typed by hand)."""
    out = []
    speed = health_table.groupby("method")["seconds_per_example"].mean()
    # the random baseline and methods riding on a shared pass cost ~nothing: leave them out
    speed = speed[(speed.index != "random") & (speed > 1e-3)].sort_values()
    if len(speed):
        fast, slow = speed.index[0], speed.index[-1]
        out.append(
            f"Runtime spans {speed[slow] / speed[fast]:,.0f}×: {fast} takes "
            f"{speed[fast]:.2f} s per example, {slow} {speed[slow]:.1f} s (one-pass methods "
            "that reuse a shared forward/backward cost almost nothing on top)."
        )
    if "ig_delta_abs" in health_table and health_table["ig_delta_abs"].notna().any():
        err = health_table.dropna(subset=["ig_delta_abs"])
        out.append(
            "Integrated gradients' completeness error |Σ attributions − (f(x) − f(0))| "
            f"averages {err['ig_delta_abs'].mean():.3f} log-probability units at the step "
            f"count used, a median {100 * err['ig_relative_error'].median():.0f}% of "
            "|f(x) − f(0)|; where that is large, raise IG_STEPS before trusting IG."
        )
    flagged = health_table[["context_overflow", "nonfinite_rows"]].sum()
    out.append(
        f"{int(flagged['context_overflow'])} prompts exceeded the context and "
        f"{int(flagged['nonfinite_rows'])} rows had NaN/inf scores; "
        f"{int(health_table['words_without_tokens'].sum())} words had no token of their own."
    )
    real = agreement[(agreement["a"] != "random") & (agreement["b"] != "random")].dropna(
        subset=["value"]
    )
    if len(real):
        hi, lo = real.loc[real["value"].idxmax()], real.loc[real["value"].idxmin()]
        rnd = agreement[(agreement["a"] == "random") | (agreement["b"] == "random")]["value"]
        out.append(
            f"The closest pair is {hi['a']}–{hi['b']} (mean ρ = {hi['value']:.2f}, n = "
            f"{hi['n']}); the most distant is {lo['a']}–{lo['b']} (ρ = {lo['value']:.2f}). "
            f"Pairs with the random baseline average ρ = {rnd.mean():.2f}, the level that "
            "means no agreement."
        )
    return out


def tests_in_words(
    tests: pd.DataFrame, by: Sequence[str], condition: str = "method", reference: str = "random"
) -> list[str]:
    """Sentences from :func:`paired_tests` output: one per group where some condition
    differs from the reference after Holm correction (with its direction), and one for
    all the groups where nothing does.

    For metrics where smaller is better (sufficiency) "below" is the favourable side;
    the sentence states the direction, the reader the meaning.
    """
    out: list[str] = []
    if tests.empty:
        return out
    nulls, null_n = 0, []
    for key, grp in tests.groupby(list(by), sort=False):
        key = key if isinstance(key, tuple) else (key,)
        hit = grp[grp["reject"].astype(bool)]
        up = hit[hit["median_diff"] > 0][condition].tolist()
        down = hit[hit["median_diff"] < 0][condition].tolist()
        if not up and not down:
            nulls += 1
            null_n += grp["n"].tolist()
            continue
        parts = [f"above {reference}: {', '.join(map(str, up))}"] if up else []
        parts += [f"below {reference}: {', '.join(map(str, down))}"] if down else []
        n = f"n = {int(grp['n'].min())}–{int(grp['n'].max())} pairs"
        out.append(f"{', '.join(map(str, key))}: {'; '.join(parts)} ({n}).")
    if nulls:
        others = "the other " if out else "all "
        out.append(
            f"Nothing differs from {reference} after Holm correction in {others}{nulls} "
            f"group(s) of {' × '.join(by)} (n = {min(null_n)}–{max(null_n)} pairs)."
        )
    return out
