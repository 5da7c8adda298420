"""Notebook 06's tables: explanations steered toward attributed evidence, judged by
measures the steering did not use.

Decoding conditions (every role: Unbound and Top-Var lists, explain-then-predict and
predict-then-explain), each on the first ``n_guide`` attributed examples per dataset:

* ``greedy``: plain greedy decoding (α = 0), the reference; it must reproduce notebook 02;
* ``bias α``: :class:`~xalign_utils.decoding.steering.WordBias` with the steering
  method's word attributions (magnitude ÷ the example's largest), one row per α > 0;
* ``extractive`` (word lists only): :class:`~xalign_utils.decoding.steering.ExtractiveList`;
* ``constrained``: DBA beam search that must write the ``guide_k`` most attributed words,
  and ``beam``: the same search without constraints (its reference).

The steering method is the one-pass method notebook 04 found most faithful by erasure
(comprehensiveness AOPC, on its first ``n_faith`` examples per dataset, which 06 leaves
out); the evaluation's consistency uses the best one-pass method of another family, so no
condition is scored by the quantity it was steered by. The measures and tests are in
:mod:`xalign_utils.guided_measures`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .attribution.registry import METHODS
from .attribution.status import usable
from .baselines import FREE_TEXT_ROLES, WORD_LIST_ROLES, raw_rationales_name
from .config import RunConfig
from .data import load_processed
from .decoding.constrained import constrained_beam_search
from .decoding.steering import ExtractiveList, WordBias, word_alternatives
from .explanations import elicit_many, output_row, rationale_k
from .prompts import render
from .runner import attributions_name
from .schema import Example
from .store import cached, read_table

STAGE = "06_guided_decoding"
ROLES = (*WORD_LIST_ROLES, *FREE_TEXT_ROLES)
GREEDY = "greedy"
#: Methods that may steer or evaluate: attributed on every ``n_attr`` example, not nulls.
CANDIDATES = tuple(n for n, s in METHODS.items() if s.cost == "one_pass" and s.family != "null")


@dataclass(frozen=True)
class GuideInputs:
    """What notebook 06 reads: evaluation examples (01), predicted labels (02), the
    one-pass attributions (03, status ``ok``) and the erasure table that ranks methods (04)."""

    evaluation: dict[str, list[Example]]
    predicted: dict[str, str]
    attributions: pd.DataFrame
    faithfulness: pd.DataFrame


def load_inputs(cfg: RunConfig) -> GuideInputs:
    """Read notebook 06's inputs for ``cfg``.

    Raises:
        FileNotFoundError: an earlier notebook has not run for this profile (the message
            names its stage).
    """
    evaluation = {name: load_processed(cfg.processed_dir, name, "eval") for name in cfg.datasets}
    preds = read_table(cfg, "02_baselines", "predictions")
    attr = read_table(cfg, "03_attribution", attributions_name(cfg))
    faith = read_table(cfg, "04_metrics_validation", f"faithfulness_{cfg.target}_{cfg.strategy}")
    return GuideInputs(
        evaluation,
        dict(zip(preds["id"], preds["pred"], strict=True)),
        usable(attr)[lambda d: d["method"].isin(CANDIDATES)],
        faith,
    )


def choose_methods(faithfulness: pd.DataFrame) -> tuple[str, str]:
    """``(steering, evaluation)``: the candidate with the highest mean comprehensiveness
    AOPC in notebook 04's erasure table, and the best candidate of another family."""
    ranked = (
        faithfulness[faithfulness["method"].isin(CANDIDATES)]
        .groupby("method")["comp_aopc"]
        .mean()
        .sort_values(ascending=False)
    )
    if ranked.empty:
        raise ValueError(f"no one-pass method ({', '.join(CANDIDATES)}) in 04's erasure table")
    steer = str(ranked.index[0])
    other = [m for m in ranked.index if METHODS[m].family != METHODS[steer].family]
    if not other:
        raise ValueError(f"no candidate of a family other than {METHODS[steer].family!r}")
    return steer, str(other[0])


def word_weights(attributions: pd.DataFrame, method: str) -> dict[str, dict[str, float]]:
    """Per example, ``{word: weight}``: the method's magnitude divided by the example's
    largest (a word written twice keeps its larger weight)."""
    out: dict[str, dict[str, float]] = {}
    for rec in attributions[attributions["method"] == method].itertuples():
        mags = np.asarray(rec.magnitude, dtype=float)
        top = np.nanmax(mags) if len(mags) and np.nanmax(mags) > 0 else 1.0
        weights: dict[str, float] = {}
        for word, m in zip(rec.words, mags / top, strict=True):
            weights[word] = max(weights.get(word, 0.0), float(np.nan_to_num(m)))
        out[rec.id] = weights
    return out


def top_words(weights: Mapping[str, float], k: int) -> list[str]:
    """The ``k`` most weighted word-like words."""
    ranked = sorted(((w, word) for word, w in weights.items() if any(c.isalnum() for c in word)))
    return [word for _, word in ranked[::-1][:k]]


def guided_examples(cfg: RunConfig, attributions: pd.DataFrame, evaluation) -> list[Example]:
    """``n_guide`` attributed examples per dataset, after the first ``n_faith``: those
    chose the steering method in notebook 04, so the evaluation does not reuse them."""
    ids = set(attributions["id"])
    return [
        ex
        for exs in evaluation.values()
        for ex in [e for e in exs[cfg.n_faith :] if e.id in ids][: cfg.n_guide]
    ]


def _budget(cfg: RunConfig, role: str) -> int:
    return cfg.max_new_tokens if role in WORD_LIST_ROLES else 2 * cfg.max_new_tokens


def generate_guided(
    model,
    tokenizer,
    cfg: RunConfig,
    examples: Sequence[Example],
    predicted: Mapping[str, str],
    weights: Mapping[str, Mapping[str, float]],
) -> pd.DataFrame:
    """Raw outputs of every condition: :func:`xalign_utils.explanations.elicit_many`
    columns plus ``condition``, ``alpha`` and ``constraints_met`` (constrained only).
    Word lists are asked about the predicted label (the label the attributions explain)."""
    base = [(ex, role, predicted[ex.id]) for role in ROLES for ex in examples]
    alphas = sorted(set(cfg.guide_alphas) | {0.0})
    requests = [r for _ in alphas for r in base]
    per_alpha = [a for a in alphas for _ in base]
    frames = []
    greedy_or_bias = elicit_many(
        model,
        tokenizer,
        requests,
        fixed_k=cfg.topk_fixed,
        max_new_tokens=[_budget(cfg, role) for _, role, _ in requests],
        batch_size=cfg.gen_batch_size,
        processor=WordBias(tokenizer, [weights[ex.id] for ex, _, _ in requests], per_alpha),
        keep_tokens=True,
    )
    cond = [GREEDY if a == 0 else f"bias α={a:g}" for a in per_alpha]
    frames.append(greedy_or_bias.assign(condition=cond, alpha=per_alpha))
    lists = [r for r in base if r[1] in WORD_LIST_ROLES]
    budgets = [_budget(cfg, role) for _, role, _ in lists]
    extractive = elicit_many(
        model,
        tokenizer,
        lists,
        fixed_k=cfg.topk_fixed,
        max_new_tokens=budgets,
        batch_size=cfg.gen_batch_size,
        processor=ExtractiveList(
            tokenizer, [ex.flat_words() for ex, _, _ in lists], budgets, tokenizer.eos_token_id
        ),
        keep_tokens=True,
    )
    frames.append(extractive.assign(condition="extractive", alpha=0.0))
    frames.append(_beam(model, tokenizer, cfg, base, weights, constrained=False))
    frames.append(_beam(model, tokenizer, cfg, base, weights, constrained=True))
    return pd.concat(frames, ignore_index=True)


def _beam(model, tokenizer, cfg, requests, weights, constrained: bool) -> pd.DataFrame:
    """Beam search rows (lists and free text with their own budgets): ``constrained``
    must write the top ``guide_k`` attributed words, ``beam`` is the same search without
    constraints (its reference)."""
    rows = []
    for roles in (WORD_LIST_ROLES, FREE_TEXT_ROLES):
        part = [r for r in requests if r[1] in roles]
        ks = [rationale_k(ex, cfg.topk_fixed) for ex, _, _ in part]
        outs = constrained_beam_search(
            model,
            tokenizer,
            [
                render(tokenizer, ex, role, label=lab, k=k).input_ids
                for (ex, role, lab), k in zip(part, ks, strict=True)
            ],
            [
                [word_alternatives(tokenizer, w) for w in top_words(weights[ex.id], cfg.guide_k)]
                if constrained
                else []
                for ex, _, _ in part
            ],
            num_beams=cfg.guide_beams,
            max_new_tokens=_budget(cfg, roles[0]),
            batch_size=max(1, cfg.gen_batch_size // cfg.guide_beams),
        )
        rows += [
            output_row(
                ex,
                role,
                lab,
                k,
                tokenizer.decode(out.tokens, skip_special_tokens=True).strip(),
                out.hit_limit,
            )
            | {
                "tokens": list(out.tokens),
                "condition": "constrained" if constrained else "beam",
                "alpha": 0.0,
                "constraints_met": float(np.mean(out.met)) if out.met else np.nan,
            }  # fmt: skip
            for (ex, role, lab), k, out in zip(part, ks, outs, strict=True)
        ]
    return pd.DataFrame(rows)


def run_generation(cfg: RunConfig, model, tokenizer, examples, predicted, weights) -> pd.DataFrame:
    """:func:`generate_guided`, stored as ``guided_raw`` and reused."""
    return cached(
        cfg,
        STAGE,
        "guided_raw",
        lambda: generate_guided(model, tokenizer, cfg, examples, predicted, weights),
        guide=True,
        code=["guided_runs", "decoding", "explanations"],
    )


def reproduces_02(cfg: RunConfig, guided: pd.DataFrame) -> pd.DataFrame:
    """The greedy rows beside notebook 02's outputs for the same prompts: one row per
    role with ``n`` compared and ``identical``."""
    greedy = guided[guided["condition"] == GREEDY]
    lists = read_table(cfg, "02_baselines", raw_rationales_name(cfg)).drop_duplicates(
        ["id", "role", "asked_label"]
    )
    free = read_table(cfg, "02_baselines", "explanations_raw")
    both = pd.concat(
        [
            greedy.merge(
                lists[["id", "role", "asked_label", "raw"]],
                on=["id", "role", "asked_label"],
                suffixes=("", "_02"),
            ),
            greedy.merge(free[["id", "role", "raw"]], on=["id", "role"], suffixes=("", "_02")),
        ]
    )
    both = both.assign(identical=both["raw"] == both["raw_02"])
    return (
        both.groupby("role", sort=False)["identical"].agg(n="size", identical="sum").reset_index()
    )


def reproduction_sentence(reproduced: pd.DataFrame) -> str:
    """One sentence on whether greedy decoding here equals notebook 02's outputs."""
    n, same = int(reproduced["n"].sum()), int(reproduced["identical"].sum())
    verdict = "reproduces" if n and same == n else "does not reproduce"
    return f"Greedy decoding here {verdict} notebook 02: {same} of {n} outputs identical."
