"""Notebook 02's tables: task performance, greedy answers, elicited word lists and free
text, their parse statistics, and the human-alignment summaries.

The expensive part (generation) is two calls, :func:`elicit_rationales` and
:func:`elicit_free_text`, whose raw outputs the notebook caches under the config hash;
everything else is a cheap function of those tables, so the parser or a summary can
change without re-running the model. Per-example alignment scores come from
:func:`xalign_utils.plausibility.human_alignment`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from . import scoring
from .config import RunConfig
from .decoding.generation import greedy_texts
from .explanations import elicit_many, parse_outputs
from .schema import Example
from .stats import bootstrap_ci, format_ci

#: Word-list rationale prompts (Fayyaz et al. 2024): unbounded and exactly k words.
WORD_LIST_ROLES = ("rationale_unbound", "rationale_topk")
#: Free-text explanation prompts: explanation before or after the answer.
FREE_TEXT_ROLES = ("explain_then_predict", "predict_then_explain")


def rationale_sources(rationale_labels: str) -> list[str]:
    """The label sources of ``RATIONALE_LABELS`` (``"gold,pred"`` → ``["gold", "pred"]``)."""
    return [s.strip() for s in rationale_labels.split(",")]


def raw_rationales_name(cfg: RunConfig) -> str:
    """Stored name of the raw word-list generations (``rationales_raw_gold``).

    The label sources name the table (they are not in the config hash), so asking about
    predicted labels too never overwrites the gold-label generations.
    """
    return "rationales_raw_" + cfg.rationale_labels.replace(",", "_")


def predict(model, tokenizer, examples: Sequence[Example], cfg: RunConfig) -> pd.DataFrame:
    """:func:`xalign_utils.scoring.predict` with the greedy answers decoded on the shared
    prompt prefix's cache (:func:`xalign_utils.decoding.generation.greedy_texts`)."""
    return scoring.predict(
        model,
        tokenizer,
        examples,
        cfg.batch_size,
        gen_batch_size=cfg.gen_batch_size,
        generator=greedy_texts,
    )


def explained(examples: Sequence[Example], cfg: RunConfig) -> list[Example]:
    """The examples notebook 02 elicits explanations for: the first ``cfg.n_explain`` of
    each dataset (all of them when it is 0).

    Raises:
        ValueError: ``n_explain`` below ``n_attr``: notebook 04 would meet attributed
            examples without explanations.
    """
    if not cfg.n_explain:
        return list(examples)
    if cfg.n_explain < cfg.n_attr:
        raise ValueError(f"N_EXPLAIN={cfg.n_explain} is below N_ATTR={cfg.n_attr}: notebook 04 "
                         "reads the explanations of every attributed example")  # fmt: skip
    seen: dict[str, int] = {}
    out = []
    for ex in examples:
        seen[ex.dataset] = seen.get(ex.dataset, 0) + 1
        if seen[ex.dataset] <= cfg.n_explain:
            out.append(ex)
    return out


def elicit_rationales(
    model, tokenizer, examples: Sequence[Example], predictions: pd.DataFrame, cfg: RunConfig
) -> pd.DataFrame:
    """Raw Unbound and Top-Var word lists for every :func:`explained` example and label
    source.

    Args:
        predictions: :func:`xalign_utils.scoring.predict` output (``id``, ``pred``), for
            the ``pred`` label source.
        cfg: supplies ``rationale_labels``, ``topk_fixed``, ``max_new_tokens`` and
            ``gen_batch_size``.

    Returns:
        :func:`xalign_utils.explanations.elicit` rows with a ``label_source`` column,
        source by source, role by role.
    """
    examples = explained(examples, cfg)
    predicted = dict(zip(predictions["id"], predictions["pred"], strict=True))
    sources = rationale_sources(cfg.rationale_labels)
    asked = {
        source: {ex.id: ex.label if source == "gold" else predicted[ex.id] for ex in examples}
        for source in sources
    }
    # greedy decoding: the same prompt (gold = predicted label) is generated once
    unique = {
        (ex.id, role, asked[source][ex.id]): (ex, role, asked[source][ex.id])
        for source in sources
        for role in WORD_LIST_ROLES
        for ex in examples
    }
    requests = list(unique.values())
    df = elicit_many(
        model,
        tokenizer,
        requests,
        fixed_k=cfg.topk_fixed,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.gen_batch_size,
    )
    done = {(r["id"], r["role"], r["asked_label"]): r for r in df.to_dict("records")}
    frames = [
        pd.DataFrame([done[(ex.id, role, asked[source][ex.id])] for ex in examples]).assign(
            label_source=source
        )
        for source in sources
        for role in WORD_LIST_ROLES
    ]
    return pd.concat(frames, ignore_index=True)


def elicit_free_text(model, tokenizer, examples: Sequence[Example], cfg: RunConfig) -> pd.DataFrame:
    """Raw explain-then-predict and predict-then-explain outputs of the :func:`explained`
    examples (twice the word-list token budget, as explanations are sentences), role by
    role."""
    examples = explained(examples, cfg)
    return elicit_many(
        model,
        tokenizer,
        [(ex, role, ex.label) for role in FREE_TEXT_ROLES for ex in examples],
        max_new_tokens=2 * cfg.max_new_tokens,
        batch_size=cfg.gen_batch_size,
    )


def parse_free_text(
    raw: pd.DataFrame, examples_by_id: dict[str, Example], predictions: pd.DataFrame
) -> pd.DataFrame:
    """Parsed free-text explanations with the scored prediction (``pred``) of each example,
    so an answer that contradicts the model's own prediction can be counted."""
    return parse_outputs(raw, examples_by_id).merge(predictions[["id", "pred"]], on="id")


def ci_pivot(long: pd.DataFrame, index: str | list[str], columns: str | list[str]) -> pd.DataFrame:
    """Wide table of ``value [ci_low, ci_high]`` strings (×100) from a long CI table (empty
    when there is nothing to show, e.g. no dataset of the run has human rationales)."""
    if long.empty:
        return pd.DataFrame(index=pd.Index([], name=index if isinstance(index, str) else None))
    return long.assign(score=long.apply(format_ci, axis=1)).pivot_table(
        index=index, columns=columns, values="score", aggfunc="first"
    )


def performance_table(performance: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """Dataset × (metric, system) table of :func:`xalign_utils.stats.task_performance`
    with CIs, and each dataset's number of examples ``n``."""
    table = ci_pivot(performance, "dataset", ["metric", "system"])
    table[("n", "")] = predictions.groupby("dataset").size()
    return table


def greedy_summary(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: share of greedy answers naming a label, share agreeing with the scored
    prediction, and the mean probability mass on the verbalisers."""
    return (
        predictions.assign(
            greedy_parsed=predictions["greedy_label"].notna(),
            greedy_agrees=predictions["greedy_label"] == predictions["pred"],
        )
        .groupby("dataset")
        .agg(
            greedy_parse_rate=("greedy_parsed", "mean"),
            greedy_agreement=("greedy_agrees", "mean"),
            mean_label_mass=("label_mass", "mean"),
        )
    )


def parse_statistics(rationales: pd.DataFrame) -> pd.DataFrame:
    """Per dataset × role × label source: n, parse-failure rate, share of listed words
    not in the input (pooled over lists), mean list length, share that hit the token limit.
    """
    return rationales.groupby(["dataset", "role", "label_source"]).agg(
        n=("id", "size"),
        parse_failure_rate=("parse_failure", "mean"),
        out_of_input_rate=(
            "n_out_of_input",
            lambda s: s.sum() / max(rationales.loc[s.index, "n_items"].sum(), 1),
        ),
        mean_items=("n_items", "mean"),
        hit_token_limit=("hit_limit", "mean"),
    )


def parse_status(rationales: pd.DataFrame) -> pd.DataFrame:
    """Counts of each parse status (``ok``, ``sentence``, ``no_match`` ...) per dataset × role."""
    return rationales.pivot_table(
        index=["dataset", "role"], columns="status", values="id", aggfunc="count", fill_value=0
    )


def free_text_statistics(free_text: pd.DataFrame) -> pd.DataFrame:
    """Per dataset × role: answer-parse failures, answers matching the scored prediction,
    empty explanations, mean number of cited input words, share that hit the token limit.

    Args:
        free_text: :func:`parse_free_text` output.
    """
    return (
        free_text.assign(
            answer_matches_prediction=free_text["answer"] == free_text["pred"],
            n_cited=free_text["positions"].map(len),
        )
        .groupby(["dataset", "role"])
        .agg(
            n=("id", "size"),
            answer_failure_rate=("answer_failure", "mean"),
            answer_matches_prediction=("answer_matches_prediction", "mean"),
            empty_explanation_rate=("empty_explanation", "mean"),
            mean_cited_words=("n_cited", "mean"),
            hit_token_limit=("hit_limit", "mean"),
        )
    )


def alignment_summary(
    scored: pd.DataFrame,
    by: Sequence[str] = ("dataset", "system"),
    seed: int = 0,
    *,
    sort: bool = False,
) -> pd.DataFrame:
    """Mean token F1 per group with a bootstrap 95% CI, n and the undefined count.

    Args:
        scored: :func:`xalign_utils.plausibility.human_alignment` output.
        by: grouping columns.
        sort: groups in sorted order (default: order of first appearance).

    Returns:
        The ``by`` columns, ``value``, ``ci_low``, ``ci_high``, ``n``, ``n_undefined``.
    """
    by = list(by)
    return pd.DataFrame(
        [
            {
                **dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)),
                **bootstrap_ci(g["f1"], seed=seed),
            }
            for key, g in scored.groupby(by, sort=sort)
        ],
        columns=[*by, "value", "ci_low", "ci_high", "n", "n_undefined"],
    )


def per_label_alignment(
    scored: pd.DataFrame,
    systems: Sequence[str] = ("Top-Var", "random Top-Var"),
    seed: int = 0,
) -> pd.DataFrame:
    """:func:`alignment_summary` per dataset × gold label × system, for ``systems``
    (e-SNLI's highlight subsets are label-filtered, so its per-label view is the one to cite)."""
    chosen = scored[scored["system"].isin(list(systems))]
    return alignment_summary(chosen, ("dataset", "label", "system"), seed, sort=True)


def contradicting_answers(free_text: pd.DataFrame) -> pd.DataFrame:
    """Free-text outputs whose parsed answer names a label other than the scored prediction."""
    return free_text[(~free_text["answer_failure"]) & (free_text["answer"] != free_text["pred"])]


def lists_outside_input(rationales: pd.DataFrame) -> pd.DataFrame:
    """Word lists that name at least one word absent from the input."""
    return rationales[rationales["n_out_of_input"] > 0]


def _values(table: pd.DataFrame, **where: str) -> pd.Series:
    """The ``value`` column of the rows where every ``column == value`` of ``where`` holds."""
    mask = pd.Series(True, index=table.index)
    for col, val in where.items():
        mask &= table[col] == val
    return table.loc[mask, "value"]


def headline(
    performance: pd.DataFrame,
    alignment: pd.DataFrame,
    rationales: pd.DataFrame,
    datasets: Sequence[str],
) -> pd.DataFrame:
    """One row per dataset: accuracy, zero-rate accuracy, Top-Var and random Top-Var F1
    (NaN without human rationales) and the Unbound parse-failure rate."""
    rows = {}
    for d in datasets:
        unbound = rationales[
            (rationales["dataset"] == d) & (rationales["role"] == "rationale_unbound")
        ]
        rows[d] = {
            "accuracy": _values(performance, dataset=d, metric="accuracy", system="model").item(),
            "zero_rate": _values(
                performance, dataset=d, metric="accuracy", system="zero-rate"
            ).item(),
            "top_var_f1": _values(alignment, dataset=d, system="Top-Var").max(),
            "random_top_var_f1": _values(alignment, dataset=d, system="random Top-Var").max(),
            "unbound_parse_failure": unbound["parse_failure"].mean(),
        }
    return pd.DataFrame(rows).T
