"""Is the label collapse the model or the scoring? A sensitivity analysis of predictions.

The offline model predicts one label for most examples of a dataset. This module
re-predicts the same examples under two prompts and four scoring rules, so a notebook
can show whether the collapse moves with the rule or the prompt (scoring artefact) or
stays (the model):

- prompts: ``classify`` (the project prompt) and ``minimal`` (a one-line question with
  the options, :data:`xalign_utils.prompts.MINIMAL_QUESTIONS`);
- rules, each giving ``[n, n_labels]`` label scores whose argmax is the prediction:

  - ``sequence``: summed log-probability of the full verbaliser, summed (in probability)
    over its surface forms — what :func:`xalign_utils.scoring.label_logprobs` returns;
  - ``length_normalised``: each form's mean per-token log-probability, summed over forms
    in probability (a long verbaliser is no longer penalised for its length);
  - ``first_token``: the probability of each form's first token only, summed over the
    label's distinct first tokens (what first-token attribution targets score);
  - ``contextual_calibration`` (Zhao et al. 2021): the ``sequence`` distribution over
    labels divided by the one the model gives on content-free inputs (``N/A``, ``""``,
    ``[MASK]`` in every input field; their distributions averaged), renormalised.

All forms and first tokens of a prompt are scored in one pass of
:func:`xalign_utils.scoring.score_labels`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy.special import log_softmax, softmax

from .data.registry import LABELS
from .models import context_length
from .prompts import render, verbaliser_forms
from .schema import Example
from .scoring import forms_to_labels, label_forms, score_labels, verbaliser_ids
from .stats import accuracy, macro_f1_fn, task_performance

PROMPTS = ("classify", "minimal")
RULES = ("sequence", "length_normalised", "first_token", "contextual_calibration")
#: Zhao et al. (2021)'s content-free inputs.
CONTENT_FREE = ("N/A", "", "[MASK]")


def content_free_example(ex: Example, text: str) -> Example:
    """A copy of ``ex`` with every input field replaced by ``text`` (no rationale)."""
    return replace(
        ex,
        id=f"{ex.id}::content_free::{text}",
        segments={seg: text for seg in ex.words},
        words={seg: text.split() for seg in ex.words},
        rationale=None,
        annotators=[],
        explanations=[],
    )


def first_token_forms(tokenizer, dataset: str) -> list[tuple[int, str]]:
    """``(label index, first-token string)`` for each label's distinct first tokens.

    Raises:
        ValueError: a first token does not re-tokenise to itself, so scoring its string
            would not score that token.
    """
    out = []
    for j, lab in enumerate(LABELS[dataset]):
        forms = verbaliser_forms(dataset, lab)
        firsts = dict.fromkeys(ids[0] for ids in verbaliser_ids(tokenizer, forms))
        for tok in firsts:
            text = tokenizer.decode([tok])
            if tokenizer(text, add_special_tokens=False)["input_ids"] != [tok]:
                raise ValueError(f"first token {tok} ({text!r}) of {lab!r} does not round-trip")
            out.append((j, text))
    return out


def rule_scores(
    model, tokenizer, prompts: Sequence[Sequence[int]], dataset: str, batch_size: int = 16
) -> dict[str, np.ndarray]:
    """``sequence``, ``length_normalised`` and ``first_token`` label scores of prompts.

    Returns:
        rule → ``[n_prompts, n_labels]`` log-scores (not renormalised over labels).
    """
    forms = label_forms(dataset)
    firsts = first_token_forms(tokenizer, dataset)
    strings = [f for _, f in forms] + [f for _, f in firsts]
    raw = score_labels(model, tokenizer, prompts, strings, batch_size=batch_size)
    raw_forms, raw_first = raw[:, : len(forms)], raw[:, len(forms) :]
    lengths = np.array([len(ids) for ids in verbaliser_ids(tokenizer, [f for _, f in forms])])
    n_labels = len(LABELS[dataset])
    return {
        "sequence": forms_to_labels(raw_forms, forms, n_labels),
        "length_normalised": forms_to_labels(raw_forms / lengths, forms, n_labels),
        "first_token": forms_to_labels(raw_first, firsts, n_labels),
    }


def content_free_distribution(logp_cf: np.ndarray) -> np.ndarray:
    """Mean over content-free inputs of the label distribution: ``[m, L]`` → ``[L]``."""
    return softmax(np.atleast_2d(logp_cf), axis=1).mean(axis=0)


def contextual_calibration(logp: np.ndarray, p_cf: np.ndarray) -> np.ndarray:
    """Zhao et al. (2021): ``p(y|x) / p_cf(y)``, renormalised over labels.

    Args:
        logp: ``[n, L]`` label log-scores (any constant per row cancels).
        p_cf: ``[L]`` content-free label distribution.

    Returns:
        ``[n, L]`` calibrated log-probabilities (rows sum to one in probability).
    """
    return log_softmax(log_softmax(logp, axis=1) - np.log(p_cf), axis=1)


def _summary(preds: pd.DataFrame, labels: Sequence[str]) -> dict:
    counts = preds["pred"].value_counts()
    return {
        "n": len(preds),
        "accuracy": accuracy(preds["label"], preds["pred"]),
        "macro_f1": macro_f1_fn(labels)(preds["label"], preds["pred"]),
        "top_label": counts.index[0],
        "top_share": float(counts.iloc[0] / len(preds)),
    }


def scoring_sensitivity(
    model,
    tokenizer,
    examples: Sequence[Example],
    *,
    batch_size: int = 16,
    prompts: Sequence[str] = PROMPTS,
    content_free: Sequence[str] = CONTENT_FREE,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions of every example under each prompt × scoring rule (see module doc).

    Args:
        examples: classification examples, any mix of datasets.
        prompts: roles to render (``classify``, ``minimal``).
        content_free: the content-free texts of contextual calibration.

    Returns:
        ``(summary, predictions)``. ``summary``: one row per dataset × prompt × rule with
        ``n``, ``accuracy``, ``macro_f1``, ``top_label`` (the most-predicted label),
        ``top_share`` (its share of the predictions) and ``p_cf`` (the content-free
        distribution, ``label=probability`` pairs, on ``contextual_calibration`` rows).
        ``predictions``: one row per example × prompt × rule with ``id``, ``dataset``,
        ``prompt``, ``rule``, ``label`` (gold) and ``pred`` — the unit to bootstrap.

    Raises:
        ValueError: an example's dataset has no label set (next-token datasets).
    """
    by_dataset: dict[str, list[Example]] = {}
    for ex in examples:
        if ex.dataset not in LABELS:
            raise ValueError(f"{ex.id}: dataset {ex.dataset!r} has no labels to predict")
        by_dataset.setdefault(ex.dataset, []).append(ex)
    limit = context_length(model)
    summary, rows = [], []
    for dataset, exs in by_dataset.items():
        labels = LABELS[dataset]
        cf_examples = [content_free_example(exs[0], text) for text in content_free]
        for prompt in prompts:
            ids = [render(tokenizer, ex, prompt, max_length=limit).input_ids for ex in exs]
            scores = rule_scores(model, tokenizer, ids, dataset, batch_size)
            cf_ids = [render(tokenizer, ex, prompt).input_ids for ex in cf_examples]
            p_cf = content_free_distribution(
                rule_scores(model, tokenizer, cf_ids, dataset, batch_size)["sequence"]
            )
            scores["contextual_calibration"] = contextual_calibration(scores["sequence"], p_cf)
            for rule in RULES:
                preds = pd.DataFrame(
                    {
                        "id": [ex.id for ex in exs],
                        "dataset": dataset,
                        "prompt": prompt,
                        "rule": rule,
                        "label": [ex.label for ex in exs],
                        "pred": [labels[i] for i in np.argmax(scores[rule], axis=1)],
                    }
                )
                rows.append(preds)
                cf_text = ", ".join(f"{lab}={p:.3f}" for lab, p in zip(labels, p_cf, strict=True))
                summary.append(
                    {
                        "dataset": dataset,
                        "prompt": prompt,
                        "rule": rule,
                        **_summary(preds, labels),
                        "p_cf": cf_text if rule == "contextual_calibration" else "",
                    }
                )
    predictions = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    return pd.DataFrame(summary), predictions


def sensitivity_performance(predictions: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Accuracy and macro-F1 with bootstrap CIs (and the zero-rate baseline) per
    dataset × prompt × rule, from :func:`scoring_sensitivity`'s predictions
    (:func:`xalign_utils.stats.task_performance` on each prompt × rule)."""
    parts = []
    for (prompt, rule), grp in predictions.groupby(["prompt", "rule"], sort=False):
        perf = task_performance(grp, LABELS, seed=seed)
        parts.append(perf.assign(prompt=prompt, rule=rule))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    return out[
        ["dataset", "prompt", "rule", *[c for c in out if c not in {"dataset", "prompt", "rule"}]]
    ]


def top_label_shares(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per dataset × prompt × rule: the most predicted label and its share of predictions
    (the collapse measure), from :func:`scoring_sensitivity`'s predictions."""
    keys = ["dataset", "prompt", "rule"]
    counts = predictions.groupby([*keys, "pred"], sort=False).size().rename("count")
    shares = (counts / counts.groupby(level=keys).transform("sum")).rename("top_share")
    top = shares.reset_index().sort_values("top_share", ascending=False).drop_duplicates(keys)
    return top.rename(columns={"pred": "top_label"})[[*keys, "top_label", "top_share"]]
