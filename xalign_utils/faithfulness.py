"""Faithfulness by erasure: does removing the top-scored words change the answer? (DESIGN.md §8)

All examples are scored, not only the correctly classified ones. Words are removed at
the text level and the prompt is re-rendered, so the model sees a well-formed prompt:

- ``delete`` (default): the words are dropped;
- ``mask``: each word is replaced by ``mask_text`` (the input length is kept).

Probabilities are the model's label probabilities renormalised over the dataset's label
set (each label summed over its verbaliser forms, as in notebook 02), and ŷ is the label
the model predicts on the full input. Ranking uses word magnitudes; the number of words
in a bin of p% is ``max(1, round(p/100 · n))``.

Metrics per example × method:

- ERASER comprehensiveness p(ŷ|x) − p(ŷ|x∖r_b) and sufficiency p(ŷ|x) − p(ŷ|r_b) per bin
  b ∈ {1, 5, 10, 20, 50}%, and their AOPC (mean over the bins);
- flip rate: does masking the top-k words (k = Top-Var k) change the predicted label;
  references per example: masking all words and masking the human rationale;
- answerability (Noiser): does a judge LM (by default the model itself) predict ŷ from
  the top-50% words alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from scipy.special import softmax

from .attribution.status import usable
from .data.registry import LABELS
from .forward import forward_args, input_embeddings, make_forward
from .models import context_length
from .next_token import answer_distribution, greedy_tokens, is_next_token, prepare_batch
from .prompts import ContextLengthError, render
from .schema import Example
from .scoring import first_token, label_logprobs
from .stats import MetricSpec, top_k

BINS = (1, 5, 10, 20, 50)

#: The faithfulness family: columns of :func:`erasure_table` and :func:`soft_erasure`,
#: per example × method. Direction matters: sufficiency is a drop, so lower is better.
METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("comp_aopc", description="comprehensiveness AOPC: p drop when top words go"),
        MetricSpec(
            "suff_aopc",
            higher_is_better=False,
            description="sufficiency AOPC: p drop keeping only top words",
        ),
        MetricSpec(
            "soft_norm_comp", description="soft-normalised comprehensiveness (Zhao & Aletras)"
        ),
        MetricSpec("soft_norm_suff", description="soft-normalised sufficiency (Zhao & Aletras)"),
        MetricSpec("flip_topk", description="prediction flips when the top-k words are erased"),
        MetricSpec("answerable", description="a judge recovers the answer from the top-50% words"),
    )
}


def bin_size(percent: float, n: int) -> int:
    """Words in a bin of ``percent``% of ``n`` words (at least one)."""
    return max(1, int(round(percent / 100 * n))) if n else 0


def erase(ex: Example, remove: set[int], strategy: str = "delete", mask_text: str = "_") -> Example:
    """A copy of ``ex`` with the words at flat positions ``remove`` deleted or masked."""
    if strategy not in {"delete", "mask"}:
        raise ValueError(f"strategy must be 'delete' or 'mask', not {strategy!r}")
    words, flat = {}, 0
    for seg, ws in ex.words.items():
        kept = []
        for w in ws:
            if flat not in remove:
                kept.append(w)
            elif strategy == "mask":
                kept.append(mask_text)
            flat += 1
        words[seg] = kept
    return replace(
        ex,
        words=words,
        segments={s: " ".join(w) for s, w in words.items()},
        rationale=None,
        annotators=[],
    )


def label_probabilities(
    model, tokenizer, examples: Sequence[Example], batch_size: int = 16
) -> np.ndarray:
    """``[n, n_labels]`` label probabilities renormalised over the label set (one dataset).

    A prompt longer than the model's context (a mask text longer than the words it
    replaces can grow one) gets a row of NaN instead of crashing the model: the metrics
    built on it are then NaN, counted like any undefined value.
    """
    datasets = {ex.dataset for ex in examples}
    if len(datasets) != 1:
        raise ValueError(f"one dataset at a time, got {sorted(datasets)}")
    dataset = datasets.pop()
    limit = context_length(model)
    prompts, fits = [], []
    for ex in examples:
        try:
            prompts.append(render(tokenizer, ex, "classify", max_length=limit).input_ids)
            fits.append(True)
        except ContextLengthError:
            fits.append(False)
    out = np.full((len(examples), len(LABELS[dataset])), np.nan)
    if prompts:
        logp = label_logprobs(model, tokenizer, prompts, dataset, batch_size=batch_size)
        out[np.array(fits)] = softmax(logp, axis=1)
    return out


def _answer_probabilities(
    model, tokenizer, judge, variants: list[Example], originals: list[Example], batch_size: int
) -> tuple[np.ndarray, np.ndarray, dict[str, Sequence[str]]]:
    """The erased prompts' answer distributions under the model and the judge, and each
    example's answer names.

    Classification: label probabilities renormalised over the label set. Next-token
    prompts: ``[p(ŷ), max p(other token)]`` over the whole vocabulary, ŷ the greedy token
    of the unerased prompt (:func:`~xalign_utils.next_token.answer_distribution`); a
    judge with another tokenizer is asked for the first token of ŷ's text in its own.
    """
    dataset = originals[0].dataset
    if not is_next_token(dataset):
        probs = label_probabilities(model, tokenizer, variants, batch_size)
        judged = probs if judge is None else label_probabilities(*judge, variants, batch_size)
        return probs, judged, {ex.id: LABELS[dataset] for ex in originals}
    greedy = dict(
        zip([ex.id for ex in originals], greedy_tokens(model, tokenizer, originals), strict=True)
    )
    names = {i: (tokenizer.decode([t]), "<other token>") for i, t in greedy.items()}
    targets = [greedy[v.id] for v in variants]
    probs = answer_distribution(model, tokenizer, variants, targets, batch_size)
    if judge is None:
        return probs, probs, names
    judge_ids = {i: first_token(judge[1], names[i][0]) for i in greedy}
    judged = answer_distribution(*judge, variants, [judge_ids[v.id] for v in variants], batch_size)
    return probs, judged, names


def flipped(erased: np.ndarray, pred: int) -> float:
    """1.0 when the erased input's label distribution predicts another label than
    ``pred``, NaN when it is undefined (an over-long prompt)."""
    return np.nan if np.isnan(erased).any() else float(erased.argmax() != pred)


def erasure_table(
    model,
    tokenizer,
    attributions: pd.DataFrame,
    examples_by_id: dict[str, Example],
    *,
    k_by_id: dict[str, int],
    strategy: str = "delete",
    mask_text: str = "_",
    bins: Sequence[float] = BINS,
    judge=None,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Comprehensiveness, sufficiency, AOPC, flip rate and answerability per example × method.

    Args:
        attributions: rows of :func:`xalign_utils.attribution.attribute` (``ok`` rows used).
        k_by_id: Top-Var k per example (number of human-rationale words, or the fixed k).
        judge: ``(model, tokenizer)`` for answerability; ``None`` uses the model itself.

    Returns:
        One row per example × method with ``comp_<b>``, ``suff_<b>``, ``comp_aopc``,
        ``suff_aopc``, ``flip_topk``, ``answerable``, plus the per-example references
        ``p_full``, ``pred``, ``flip_mask_all``, ``flip_mask_human`` (NaN without a human
        rationale).
    """
    ok = usable(attributions)
    rows = []
    for dataset, part in ok.groupby("dataset", sort=False):
        ids = list(dict.fromkeys(part["id"]))
        variants: list[Example] = []
        index: dict[tuple, int] = {}

        def want(ex: Example, remove: frozenset, _variants=variants, _index=index) -> tuple:
            key = (ex.id, remove)
            if key not in _index:
                _index[key] = len(_variants)
                _variants.append(erase(ex, set(remove), strategy, mask_text))
            return key

        plan = []
        for ex_id in ids:
            ex = examples_by_id[ex_id]
            n = len(ex.flat_words())
            human = set(ex.rationale_positions())
            refs = {
                "full": want(ex, frozenset()),
                "all": want(ex, frozenset(range(n))),
                "human": want(ex, frozenset(human)) if human else None,
            }
            for rec in part[part["id"] == ex_id].itertuples():
                mags = np.asarray(rec.magnitude, dtype=float)
                keys = {}
                for b in bins:
                    top = frozenset(top_k(mags, bin_size(b, n)))
                    keys[("comp", b)] = want(ex, top)
                    keys[("suff", b)] = want(ex, frozenset(range(n)) - top)
                keys["flip"] = want(ex, frozenset(top_k(mags, k_by_id.get(ex_id, 1))))
                keys["answer"] = (
                    keys[("suff", 50)]
                    if 50 in bins
                    else want(ex, frozenset(range(n)) - frozenset(top_k(mags, bin_size(50, n))))
                )
                plan.append((ex_id, rec.method, refs, keys))
        probs, judged, labels = _answer_probabilities(
            model, tokenizer, judge, variants, [examples_by_id[i] for i in ids], batch_size
        )
        for ex_id, method, refs, keys in plan:
            full = probs[index[refs["full"]]]
            # next-token: column 0 is the greedy token by construction (a near-tie between
            # differently padded batches must not turn "the greedy token" into "any other")
            pred = 0 if is_next_token(dataset) else int(full.argmax())
            dist = {name: probs[index[key]] for name, key in keys.items()}
            row = {"id": ex_id, "dataset": dataset, "method": method, "pred": labels[ex_id][pred]}
            row["p_full"] = float(full[pred])
            for b in bins:
                row[f"comp_{b:g}"] = row["p_full"] - float(dist[("comp", b)][pred])
                row[f"suff_{b:g}"] = row["p_full"] - float(dist[("suff", b)][pred])
            row["comp_aopc"] = float(np.mean([row[f"comp_{b:g}"] for b in bins]))
            row["suff_aopc"] = float(np.mean([row[f"suff_{b:g}"] for b in bins]))
            row["flip_topk"] = flipped(dist["flip"], pred)
            row["flip_mask_all"] = flipped(probs[index[refs["all"]]], pred)
            row["flip_mask_human"] = (
                np.nan if refs["human"] is None else flipped(probs[index[refs["human"]]], pred)
            )
            row["answerable"] = 1.0 - flipped(judged[index[keys["answer"]]], pred)
            rows.append(row)
    return pd.DataFrame(rows)


def explanation_comprehensiveness(
    model,
    tokenizer,
    examples: Sequence[Example],
    positions: Sequence[Sequence[int]],
    *,
    strategy: str = "delete",
    mask_text: str = "_",
    batch_size: int = 16,
) -> np.ndarray:
    """p(ŷ|x) − p(ŷ|x∖e) for each example's explanation words ``e`` (one dataset).

    NaN for an empty explanation: erasing nothing says nothing about faithfulness.
    """
    variants = list(examples) + [
        erase(ex, set(map(int, pos)), strategy, mask_text)
        for ex, pos in zip(examples, positions, strict=True)
    ]
    probs = label_probabilities(model, tokenizer, variants, batch_size)
    full, erased = probs[: len(examples)], probs[len(examples) :]
    pred = full.argmax(1)
    rows = np.arange(len(examples))
    out = full[rows, pred] - erased[rows, pred]
    empty = np.array([len(p) == 0 for p in positions])
    return np.where(empty, np.nan, out)


def flip_table(
    model,
    tokenizer,
    examples: Sequence[Example],
    selections: Mapping[str, Mapping[str, Sequence[int]]],
    *,
    strategy: str = "mask",
    mask_text: str = "_",
    batch_size: int = 16,
) -> pd.DataFrame:
    """Does erasing each selection's words change the predicted label? (Fayyaz et al. 2024,
    Table 4: the paper masks the words.)

    Args:
        examples: the examples (any mix of datasets).
        selections: selection name (``Prompting``, ``Attention``, ``Human``, ``All`` …) →
            example id → input-word positions to erase. An example a selection has no
            entry for is skipped; an *empty* selection erases nothing and is reported as
            ``flipped`` NaN with ``n_erased`` 0, never as "no flip".

    Returns:
        One row per example × selection: ``id``, ``dataset``, ``selection``,
        ``n_erased``, ``pred`` (on the full input), ``pred_erased`` and ``flipped``.
    """
    rows = []
    by_dataset: dict[str, list[Example]] = {}
    for ex in examples:
        by_dataset.setdefault(ex.dataset, []).append(ex)
    for dataset, exs in by_dataset.items():
        variants, plan = list(exs), []
        for name, chosen in selections.items():
            for i, ex in enumerate(exs):
                if ex.id not in chosen:
                    continue
                pos = sorted({int(p) for p in chosen[ex.id]})
                plan.append((i, name, len(pos), len(variants) if pos else None))
                if pos:
                    variants.append(erase(ex, set(pos), strategy, mask_text))
        probs = label_probabilities(model, tokenizer, variants, batch_size)
        labels = LABELS[dataset]
        for i, name, n_erased, v in plan:
            full = int(probs[i].argmax())
            flip = np.nan if v is None else flipped(probs[v], full)
            rows.append(
                {
                    "id": exs[i].id,
                    "dataset": dataset,
                    "selection": name,
                    "n_erased": n_erased,
                    "pred": labels[full],
                    "pred_erased": None if np.isnan(flip) else labels[int(probs[v].argmax())],
                    "flipped": flip,
                }
            )
    columns = ["id", "dataset", "selection", "n_erased", "pred", "pred_erased", "flipped"]
    return pd.DataFrame(rows, columns=columns)


def soft_erasure(
    model,
    tokenizer,
    attributions: pd.DataFrame,
    examples_by_id: dict[str, Example],
    *,
    seed: int = 0,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Soft-normalised comprehensiveness and sufficiency (Zhao & Aletras 2023).

    Word magnitudes are min–max normalised per example to importances ``a`` ∈ [0, 1].
    Each embedding dimension of a word's tokens is kept with probability ``a``
    (sufficiency) or ``1 − a`` (comprehensiveness), Bernoulli-sampled (seeded). With p
    (next-token prompts: the greedy token's probability over the whole vocabulary, as
    Zhao & Aletras define it for generation; classification:) the probability of the
    attribution's target label *renormalised over the label set*
    (each label summed over its surface forms, as hard erasure and predictions use it; the
    whole-vocabulary probability of a first token puts < 1% of its mass on labels and
    makes the normaliser tiny):
    ``suff = 1 − max(0, p(x) − p(x_a))``, ``comp = max(0, p(x) − p(x_{1−a}))``,
    normalised by the sufficiency of an all-zero input ``s0``:
    ``norm_suff = (suff − s0) / (1 − s0)`` and ``norm_comp = comp / (1 − s0)``, NaN when
    ``s0 = 1`` (the zero input already predicts as well as x).
    """
    gen = torch.Generator().manual_seed(seed)
    ok = usable(attributions)
    rows = []
    for _dataset, part in ok.groupby("dataset", sort=False):
        ids = list(dict.fromkeys(part["id"]))
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            sub = part[part["id"].isin(chunk)]
            exs = [examples_by_id[i] for i in chunk]
            if is_next_token(_dataset):  # the greedy token over the whole vocabulary
                batch = prepare_batch(model, tokenizer, exs)
            else:  # the target label renormalised over the label set
                labels = [sub[sub["id"] == i]["target_label"].iloc[0] for i in chunk]
                batch = prepare_batch(model, tokenizer, exs, labels=labels)
            full, inp = input_embeddings(model, batch)
            full, inp = full.detach(), inp.detach()
            forward = make_forward(model, batch, renormalise=batch.kind == "classification")
            args = forward_args(batch, full, all_labels=True)
            with torch.no_grad():
                p_full = forward(inp, *args).exp()
                s0 = 1 - (p_full - forward(torch.zeros_like(inp), *args).exp()).clamp(min=0)
                for method, grp in sub.groupby("method", sort=False):
                    imp = torch.zeros(inp.shape[:2], dtype=inp.dtype)
                    for b, ex_id in enumerate(chunk):
                        mags = grp[grp["id"] == ex_id]["magnitude"]
                        if mags.empty:
                            continue
                        m = np.asarray(mags.iloc[0], dtype=float)
                        span = m.max() - m.min()
                        a = (m - m.min()) / span if span > 0 else np.zeros_like(m)
                        tw = batch.tok_word[b].clamp(min=0).cpu().numpy()
                        imp[b] = torch.tensor(a[tw]) * batch.in_valid[b].cpu()
                    keep = imp.unsqueeze(-1).expand_as(inp)
                    suff_mask = torch.bernoulli(keep, generator=gen)
                    comp_mask = torch.bernoulli(1 - keep, generator=gen)
                    p_suff = forward(inp * suff_mask, *args).exp()
                    p_comp = forward(inp * comp_mask, *args).exp()
                    suff = 1 - (p_full - p_suff).clamp(min=0)
                    comp = (p_full - p_comp).clamp(min=0)
                    denom = 1 - s0
                    for b, ex_id in enumerate(chunk):
                        if grp[grp["id"] == ex_id].empty:
                            continue
                        d = float(denom[b])
                        rows.append(
                            {
                                "id": ex_id,
                                "method": method,
                                "soft_norm_suff": (
                                    float(np.clip((suff[b] - s0[b]) / d, 0, 1)) if d > 0 else np.nan
                                ),
                                "soft_norm_comp": float(np.clip(comp[b] / d, 0, 1))
                                if d > 0
                                else np.nan,
                            }
                        )
    return pd.DataFrame(rows, columns=["id", "method", "soft_norm_suff", "soft_norm_comp"])
