"""Tables and sentences generated from result tables (prose that stays true on re-runs).

- data (notebook 01): raw files against their published counts, rationale sizes, prompt
  lengths, and what they show;
- baselines (notebook 02): the performance and human-alignment findings in words;
- attribution (notebook 03): run health, runtime, agreement between methods, the
  examples to draw, and paired tests in words.

Attribution input is the tidy table of :func:`xalign_utils.attribution.attribute` (one row
per example × method, word-score arrays in ``signed``/``magnitude``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations

import numpy as np
import pandas as pd

from .attribution.registry import METHODS
from .attribution.status import flagged, usable
from .data import summarise
from .prompts import TASKS, render
from .schema import Example
from .stats import bootstrap_ci, rank_corr


def health(df: pd.DataFrame) -> pd.DataFrame:
    """Per dataset × method: rows, failures and what was detected along the way.

    Columns: ``n`` (rows), ``ok``, ``context_overflow``, ``nonfinite_rows`` (rows with a
    NaN/inf score, zeroed), ``words_without_tokens`` and ``truncated_words`` (totals),
    ``seconds_per_example`` (mean), ``ig_delta_abs`` (IG's mean completeness error
    |Σ attributions − (f(x) − f(baseline))|), ``ig_relative_error`` (its median relative to
    |f(x) − f(baseline)|), ``noiser_sigma`` (mean noise scale) and ``noiser_flagged`` (rows
    whose Noiser search kept no scores, left out of every metric: :mod:`.attribution.status`;
    σ is averaged over the others) and ``noiser_nonmonotone`` (tokens losing the prediction
    at σ*).
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
        rows = flagged(df)
        keys = [df["dataset"], df["method"]]
        out["noiser_flagged"] = rows.groupby(keys, sort=False).sum()
        # flagged rows carry σ = 0: the mean is over the others
        out["noiser_sigma"] = df["noiser_sigma"].where(~rows).groupby(keys, sort=False).mean()
    if "noiser_nonmonotone" in df:
        out["noiser_nonmonotone"] = g["noiser_nonmonotone"].sum(min_count=1)
    return out.reset_index()


def pairwise_agreement(df: pd.DataFrame, score: str = "magnitude") -> pd.DataFrame:
    """Spearman rank correlation between every pair of methods, per example.

    Returns one row per example × method pair (both orders not repeated) with ``rho``
    (NaN when a score vector is constant, e.g. a method that gives every word 0).
    """
    ok = usable(df)
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
            f"count used; its median per dataset is {100 * err['ig_relative_error'].min():.1f}–"
            f"{100 * err['ig_relative_error'].max():.1f}% of |f(x) − f(0)|; where that is "
            "large, raise IG_STEPS before trusting IG."
        )
    flagged = health_table[["context_overflow", "nonfinite_rows"]].sum()
    out.append(
        f"{int(flagged['context_overflow'])} prompts exceeded the context and "
        f"{int(flagged['nonfinite_rows'])} rows had NaN/inf scores; "
        f"{int(health_table['words_without_tokens'].sum())} words had no token of their own."
    )
    nulls = [name for name, spec in METHODS.items() if spec.family == "null"]
    # null controls are left out: two of them are built as opposites (ρ = −1)
    real = agreement[~agreement["a"].isin(nulls) & ~agreement["b"].isin(nulls)].dropna(
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


# --------------------------------------------------------------------------- notebook 01


def source_validation(
    raw: Mapping[tuple[str, str], Sequence[Example]], published: Mapping[tuple[str, str], int]
) -> pd.DataFrame:
    """One row per raw ``(loader, split)``: rows read, rows published, whether they match,
    and :func:`xalign_utils.data.summarise`'s counts (without the label counts)."""
    table = pd.DataFrame(
        [
            {
                "loader": name,
                "split": split,
                "rows": len(raw[(name, split)]),
                "published": expected,
                **{k: v for k, v in summarise(raw[(name, split)]).items() if k != "labels"},
            }
            for (name, split), expected in published.items()
        ]
    )
    table["matches"] = table["rows"] == table["published"]
    return table


def label_by_meta(examples: Sequence[Example], key: str) -> pd.DataFrame:
    """Cross-table of gold labels × ``meta[key]`` (e.g. e-SNLI's annotation scope), with margins."""
    labels = pd.Series([ex.label for ex in examples], name="label")
    values = pd.Series([ex.meta[key] for ex in examples], name=key)
    return pd.crosstab(labels, values, margins=True)


def label_counts(examples_by_dataset: Mapping[str, Sequence[Example]]) -> pd.DataFrame:
    """Gold labels per dataset: ``dataset``, ``label``, ``n`` and ``share`` of the dataset
    (notebook 01's ``01_label_distribution`` table and figure)."""
    labels = pd.DataFrame(
        [{"dataset": d, "label": ex.label} for d, exs in examples_by_dataset.items() for ex in exs]
    )
    counts = labels.value_counts(["dataset", "label"], sort=False).rename("n").reset_index()
    return counts.assign(share=counts["n"] / counts.groupby("dataset")["n"].transform("sum"))


def split_summary(splits: Mapping[tuple[str, str], Sequence[Example]]) -> pd.DataFrame:
    """One row per ``(dataset, role)`` split with :func:`xalign_utils.data.summarise`'s counts."""
    return pd.DataFrame(
        [{"dataset": d, "role": r, **summarise(exs)} for (d, r), exs in splits.items()]
    )


def rationale_lengths(examples_by_source: Mapping[str, Sequence[Example]]) -> pd.DataFrame:
    """Per annotated example: rationale words and their share of the annotated words.

    Examples without an annotated word are left out (they have no rationale to measure).

    Returns:
        ``dataset`` (the key of ``examples_by_source``), ``id``, ``rationale words``,
        ``share of annotated words``.
    """
    rows = []
    for name, examples in examples_by_source.items():
        for ex in examples:
            r = [v for v in ex.flat_rationale() if v is not None]
            if r:
                rows.append(
                    {
                        "dataset": name,
                        "id": ex.id,
                        "rationale words": sum(r),
                        "share of annotated words": sum(r) / len(r),
                    }
                )
    return pd.DataFrame(
        rows, columns=["dataset", "id", "rationale words", "share of annotated words"]
    )


def prompt_lengths(
    tokenizer, splits: Mapping[tuple[str, str], Sequence[Example]], context: int
) -> pd.DataFrame:
    """Classification-prompt lengths of every evaluation example of a classification dataset.

    Returns:
        ``dataset``, ``id``, ``tokens`` (whole prompt), ``input tokens``, ``words without
        tokens`` (input words that received no token) and ``over context``.
    """
    rows = []
    for (name, role), examples in splits.items():
        if role != "eval" or name not in TASKS:
            continue
        for ex in examples:
            rp = render(tokenizer, ex, "classify")
            rows.append(
                {
                    "dataset": name,
                    "id": ex.id,
                    "tokens": len(rp.input_ids),
                    "input tokens": len(rp.input_positions),
                    "words without tokens": sum(1 for s in rp.word_tokens if not s),
                    "over context": len(rp.input_ids) > context,
                }
            )
    return pd.DataFrame(rows)


def data_interpretation(
    validation: pd.DataFrame, splits: pd.DataFrame, lengths: pd.DataFrame, context: int
) -> list[str]:
    """Sentences on notebook 01's tables: raw files vs. published counts, truncation,
    prompt lengths against the context."""
    bad = validation[~validation["matches"]]
    out = [
        f"All {len(validation)} raw files parse and match their published row counts."
        if bad.empty
        else f"{len(bad)} of {len(validation)} raw files do not match their published counts: "
        + ", ".join(bad["loader"] + "/" + bad["split"])
        + "."
    ]
    truncated = splits[splits["truncated_rows"] > 0]
    out.append(
        "No sampled input was truncated."
        if truncated.empty
        else "Truncation cut "
        + "; ".join(
            f"{int(t.truncated_rows)} of {int(t.n)} {t.dataset} {t.role} inputs "
            f"({int(t.truncated_rationale_words)} rationale words lost)"
            for t in truncated.itertuples()
        )
        + "."
    )
    if len(lengths):
        longest = lengths.loc[lengths["tokens"].idxmax()]
        out.append(
            f"The longest evaluation prompt has {int(longest['tokens'])} tokens "
            f"({longest['dataset']}) of the model's {context}; "
            f"{int(lengths['over context'].sum())} exceed the context and "
            f"{int(lengths['words without tokens'].sum())} input words have no token."
        )
    return out


# --------------------------------------------------------------------------- notebook 02


def ci_relation(a: Mapping, b: Mapping) -> str:
    """``above``/``below`` when two 95% CIs do not overlap (a conservative criterion),
    else ``not distinguishable from``."""
    if a["ci_low"] > b["ci_high"]:
        return "above"
    if a["ci_high"] < b["ci_low"]:
        return "below"
    return "not distinguishable from"


def baseline_interpretation(
    performance: pd.DataFrame,
    predictions: pd.DataFrame,
    alignment: pd.DataFrame,
    rationales: pd.DataFrame,
    datasets: Sequence[str],
) -> list[str]:
    """One Markdown sentence group per dataset: accuracy against the zero-rate baseline,
    the most predicted label, Top-Var F1 against random Top-Var, and the share of word
    lists that name no input word.

    Args:
        performance: :func:`xalign_utils.stats.task_performance` output.
        predictions: ``dataset`` and ``pred`` per example.
        alignment: :func:`xalign_utils.baselines.alignment_summary` output.
        rationales: parsed word lists (``dataset``, ``parse_failure``).
    """
    out = []
    acc = performance[performance["metric"] == "accuracy"]
    for d in datasets:
        model_acc = acc[(acc["dataset"] == d) & (acc["system"] == "model")].iloc[0]
        zero_acc = acc[(acc["dataset"] == d) & (acc["system"] == "zero-rate")].iloc[0]
        top = predictions.loc[predictions["dataset"] == d, "pred"].value_counts(normalize=True)
        line = (
            f"**{d}**: accuracy {model_acc['value']:.1%} is {ci_relation(model_acc, zero_acc)} "
            f"the zero-rate baseline ({zero_acc['value']:.1%}); {top.iloc[0]:.0%} of "
            f"predictions are `{top.index[0]}`."
        )
        tv = alignment[(alignment["dataset"] == d) & (alignment["system"] == "Top-Var")]
        rnd = alignment[(alignment["dataset"] == d) & (alignment["system"] == "random Top-Var")]
        if len(tv) and len(rnd) and not np.isnan(tv.iloc[0]["value"]):
            line += (
                f" Prompted Top-Var rationales reach token F1 {tv.iloc[0]['value']:.2f} with "
                f"the human rationale, {ci_relation(tv.iloc[0], rnd.iloc[0])} random Top-Var "
                f"({rnd.iloc[0]['value']:.2f})."
            )
        fails = rationales.loc[rationales["dataset"] == d, "parse_failure"].mean()
        out.append(line + f" {fails:.0%} of its word lists name no input word.")
    return out


# --------------------------------------------------------------------------- notebook 03


def plan_table(plan: Sequence[tuple[Sequence[str], Sequence[Example]]]) -> pd.DataFrame:
    """The attribution plan (:func:`xalign_utils.runner.attribution_plan`) as a table."""
    return pd.DataFrame(
        [{"methods": ", ".join(ms), "examples": len(exs)} for ms, exs in plan],
        columns=["methods", "examples"],
    )


def runtime(health_table: pd.DataFrame) -> pd.DataFrame:
    """Seconds per example per method, averaged over datasets weighted by rows that ran
    (at least 1, so a dataset where nothing ran still counts), fastest first."""
    return (
        health_table.groupby("method", sort=False)
        .apply(lambda g: np.average(g["seconds_per_example"], weights=g["ok"].clip(lower=1)))
        .rename("seconds_per_example")
        .sort_values()
        .reset_index()
    )


def model_rationale_positions(
    rationales: pd.DataFrame, role: str = "rationale_topk", label_source: str = "gold"
) -> dict[str, set[int]]:
    """Input-word positions the model itself named, per example id (notebook 02's lists;
    those of another label source where ``label_source``'s were not asked for)."""
    sources = set(rationales["label_source"])
    source = label_source if label_source in sources else next(iter(sorted(sources)), None)
    own = rationales[(rationales["role"] == role) & (rationales["label_source"] == source)]
    return {i: {int(p) for p in pos} for i, pos in zip(own["id"], own["positions"], strict=True)}


def heatmap_examples(table: pd.DataFrame, datasets: Sequence[str], n: int) -> dict[str, list[str]]:
    """Per dataset, the first ``n`` example ids (in table order) on which the most methods
    ran without error: the examples every method can be compared on."""
    out = {}
    for dataset in datasets:
        sub = usable(table[table["dataset"] == dataset])
        counts = sub.groupby("id")["method"].nunique()
        out[dataset] = [i for i in dict.fromkeys(sub["id"]) if counts[i] == counts.max()][:n]
    return out
