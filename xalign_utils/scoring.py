"""Label scoring: log-probabilities of whole label strings, predictions, attribution targets.

A label's score is the teacher-forced log-probability of its full verbaliser continuation
after the assistant turn starts, summed over its surface forms (``normal``/``Normal``);
the prediction is the argmax, so there is always a valid prediction (DESIGN.md §6).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.special import logsumexp, softmax

from .data.registry import LABELS
from .models import (
    context_length,
    expand_prefix,
    generate,
    left_pad,
    length_batches,
    shared_prefix_length,
)
from .prompts import VERBALISERS, render, verbaliser_forms


def verbaliser_ids(tokenizer, verbalisers: Sequence[str]) -> list[list[int]]:
    """Token ids of each verbaliser as the assistant's first words."""
    out = [tokenizer(v, add_special_tokens=False)["input_ids"] for v in verbalisers]
    if any(len(ids) == 0 for ids in out):
        raise ValueError(f"a verbaliser tokenises to nothing: {verbalisers}")
    return out


def score_labels(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    verbalisers: Sequence[str],
    batch_size: int = 16,
) -> np.ndarray:
    """Log-probability of each label's full verbaliser continuation after each prompt.

    One forward pass over the (left-padded) prompts fills the KV cache; the cache is
    repeated once per label and one more pass scores the remaining verbaliser tokens of
    every label at once.

    Args:
        prompts: token ids of rendered prompts (ending where the answer starts).
        verbalisers: one string per label.

    Returns:
        ``[n_prompts, n_labels]`` array of summed token log-probabilities.
    """
    label_ids = verbaliser_ids(tokenizer, verbalisers)
    n_labels = len(label_ids)
    first = torch.tensor([ids[0] for ids in label_ids])
    rest_len = max(len(ids) for ids in label_ids) - 1
    device = next(model.parameters()).device
    out = np.zeros((len(prompts), n_labels), dtype=np.float64)
    plen = shared_prefix_length(prompts)
    with torch.inference_mode():
        prefix_kv = None
        if plen:  # system prompt and instruction: computed once, served from a KV cache
            cache = model(
                input_ids=torch.tensor([list(prompts[0][:plen])], device=device), use_cache=True
            ).past_key_values
            prefix_kv = [(layer.keys, layer.values) for layer in cache.layers]
        for batch in length_batches(prompts, batch_size):
            chunk = [prompts[i][plen:] for i in batch]
            ids, rest_mask = left_pad(chunk, tokenizer.pad_token_id)
            ids, rest_mask = ids.to(device), rest_mask.to(device)
            mask = torch.cat(
                [torch.ones((len(chunk), plen), dtype=torch.long, device=device), rest_mask], 1
            )
            positions = (mask.cumsum(-1) - 1).clamp(min=0)  # forward.position_ids (a layer up)
            res = model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions[:, plen:],
                past_key_values=expand_prefix(model, prefix_kv, len(chunk)),
                use_cache=rest_len > 0,
                logits_to_keep=1,
            )
            logp_first = torch.log_softmax(res.logits[:, -1].float(), -1)[:, first.to(device)]
            scores = logp_first.double()
            if rest_len > 0:
                b = len(chunk)
                cache = res.past_key_values
                cache.batch_repeat_interleave(n_labels)
                cont = torch.full(
                    (b * n_labels, rest_len), tokenizer.pad_token_id, dtype=torch.long
                )
                targets = torch.full((b * n_labels, rest_len), -1, dtype=torch.long)
                for j, lab in enumerate(label_ids):
                    if len(lab) > 1:
                        cont[j::n_labels, : len(lab) - 1] = torch.tensor(lab[:-1])
                        targets[j::n_labels, : len(lab) - 1] = torch.tensor(lab[1:])
                cont, targets = cont.to(device), targets.to(device)
                cont_mask = (targets >= 0).long()
                full_mask = torch.cat(
                    [mask.repeat_interleave(n_labels, 0), torch.ones_like(cont_mask)], 1
                )
                cont_pos = (
                    positions[:, -1:].repeat_interleave(n_labels, 0)
                    + 1
                    + torch.arange(rest_len, device=device)
                )
                res2 = model(
                    input_ids=cont,
                    attention_mask=full_mask,
                    position_ids=cont_pos,
                    past_key_values=cache,
                )
                logp = torch.log_softmax(res2.logits.float(), -1)
                tok = logp.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * cont_mask
                scores = scores + tok.sum(-1).double().view(b, n_labels)
            out[batch] = scores.cpu().numpy()
    return out


def label_forms(dataset: str) -> list[tuple[int, str]]:
    """``(label index, surface form)`` of every verbaliser form of every label of a dataset,
    in label order: the strings a label's probability is summed over."""
    return [(j, f) for j, lab in enumerate(LABELS[dataset]) for f in verbaliser_forms(dataset, lab)]


def label_form_scores(
    model, tokenizer, prompts: Sequence[Sequence[int]], dataset: str, batch_size: int = 16
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Log-probability of every verbaliser form of every label, in one batched pass.

    Returns:
        ``([n_prompts, n_forms] log-probabilities, [(label index, form), ...])``.
    """
    forms = label_forms(dataset)
    raw = score_labels(model, tokenizer, prompts, [f for _, f in forms], batch_size=batch_size)
    return raw, forms


def forms_to_labels(raw: np.ndarray, forms: list[tuple[int, str]], n_labels: int) -> np.ndarray:
    """Sum the probabilities of each label's forms: ``[n, n_forms]`` → ``[n, n_labels]``."""
    owner = np.array([j for j, _ in forms])
    return np.stack([logsumexp(raw[:, owner == j], axis=1) for j in range(n_labels)], axis=1)


def label_logprobs(
    model, tokenizer, prompts: Sequence[Sequence[int]], dataset: str, batch_size: int = 16
) -> np.ndarray:
    """Per-label log-probabilities for a dataset's label set (``LABELS[dataset]`` order).

    A label's probability is the sum over its verbaliser forms (lower-case and
    capitalised), each scored as a full multi-token continuation.

    Returns:
        ``[n_prompts, n_labels]`` log-probabilities (not renormalised over labels).
    """
    raw, forms = label_form_scores(model, tokenizer, prompts, dataset, batch_size)
    return forms_to_labels(raw, forms, len(LABELS[dataset]))


def predict(
    model,
    tokenizer,
    examples,
    batch_size: int = 16,
    answer_tokens: int = 8,
    gen_batch_size: int | None = None,
    greedy: bool = True,
    generator: Callable[..., list[dict]] = generate,
):
    """Scored predictions and greedy answers for the classification prompt.

    Every example gets a prediction (argmax of label log-probabilities) and the label
    distribution renormalised over the label set; the greedy answer is kept with the
    label it names (``None`` when it names none, counted by the caller). ``greedy=False``
    skips the greedy answers (scored predictions only, e.g. at every training checkpoint).
    ``generator`` decodes them, with :func:`xalign_utils.models.generate`'s signature and
    output (notebook 02 passes the prefix-cached
    :func:`xalign_utils.decoding.generation.greedy_texts`, which decodes the same tokens).

    Returns:
        A DataFrame, one row per example.
    """
    rows = []
    by_dataset: dict[str, list] = {}
    for ex in examples:
        by_dataset.setdefault(ex.dataset, []).append(ex)
    for dataset, exs in by_dataset.items():
        labels = LABELS[dataset]
        ids = [
            render(tokenizer, ex, "classify", max_length=context_length(model)).input_ids
            for ex in exs
        ]
        logp = label_logprobs(model, tokenizer, ids, dataset, batch_size)
        probs = softmax(logp, axis=1)
        if greedy:
            answers = generator(model, tokenizer, ids, answer_tokens, gen_batch_size or batch_size)
        else:
            answers = [{"text": None}] * len(ids)
        for ex, lp, pr, ans, tokens in zip(exs, logp, probs, answers, ids, strict=True):
            named = None if ans["text"] is None else parse_label(ans["text"], dataset)
            rows.append(
                {
                    "id": ex.id,
                    "dataset": dataset,
                    "label": ex.label,
                    "pred": labels[int(np.argmax(lp))],
                    "p_pred": float(pr.max()),
                    "label_mass": float(np.exp(lp).sum()),
                    **{f"logp_{lab}": float(v) for lab, v in zip(labels, lp, strict=True)},
                    "greedy_text": ans["text"],
                    "greedy_label": named,
                    "prompt_tokens": len(tokens),
                }
            )
    return pd.DataFrame(rows)


def parse_label(text: str, dataset: str) -> str | None:
    """The label a generated answer names, or ``None`` when it names none or is ambiguous.

    After an ``Answer:`` marker the first label mentioned counts. Without a marker the
    text must mention exactly one label (an output listing every option names none).
    """
    text = text or ""
    m = re.search(r"answer\s*[:：]\s*(.*)", text, re.I | re.S)
    scope = (m.group(1) if m else text).lower()
    hits: list[tuple[int, str]] = []
    for label in LABELS[dataset]:
        for form in {VERBALISERS[dataset][label].lower(), label.lower()}:
            hit = re.search(rf"\b{re.escape(form)}\b", scope)
            if hit:
                hits.append((hit.start(), label))
    if not hits:
        return None
    if m:
        return min(hits)[1]
    return hits[0][1] if len({lab for _, lab in hits}) == 1 else None


def first_token(tokenizer, text: str) -> int:
    """The first token id of ``text`` (the first-token target of tools like Inseq)."""
    return tokenizer(text, add_special_tokens=False)["input_ids"][0]


def target_tokens(
    tokenizer, raw: np.ndarray, forms: list[tuple[int, str]], dataset: str, labels: Sequence[str]
) -> list[int]:
    """First token of each label's most probable verbaliser form (``normal``/``Normal``)."""
    out = []
    for row, lab in zip(raw, labels, strict=True):
        j = LABELS[dataset].index(lab)
        candidates = [(row[i], f) for i, (owner, f) in enumerate(forms) if owner == j]
        out.append(first_token(tokenizer, max(candidates)[1]))
    return out
