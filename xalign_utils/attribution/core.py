"""The one entry point, :func:`attribute`: word-level attributions for a list of
examples and one or several registered methods (DESIGN.md §7).

Examples are batched (left-padded prompts of one dataset): the one-pass methods over
many examples at once, the many-pass ones one example at a time by default, since their
passes already hold many rows each. The forward function the methods see takes the
embeddings of the *input-word tokens only* and scatters them into the full prompt's
embeddings (:mod:`xalign_utils.forward`).

Target: the teacher-forced log-probability of the whole target label string after the
prompt, summed over its surface forms, as predictions are scored (predicted label by
default; the gold label; or a contrast ``log p(a) − log p(b)``); ``target_mode=
"first_token"`` attributes the first token of the label's most probable form instead
(what Inseq attributes by default), for comparison.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from ..forward import forward_args, input_embeddings, make_forward
from ..models import context_length
from ..next_token import prepare_batch, render_prompt
from ..prompts import ContextLengthError, RenderedPrompt, render
from ..schema import Example, lookup
from .registry import METHODS


def _row(ex: Example, rp: RenderedPrompt | None, method: str, **fields) -> dict:
    return {
        "id": ex.id,
        "dataset": ex.dataset,
        "method": method,
        "words": ex.flat_words() if rp is None else rp.words,
        "words_without_tokens": 0 if rp is None else sum(1 for t in rp.word_tokens if not t),
        "truncated_words": int(ex.meta.get("truncated_words", 0)),
        **fields,
    }


def attribute(
    model,
    tokenizer,
    examples: Sequence[Example],
    method: str | Sequence[str],
    *,
    target: str = "pred",
    labels: Sequence[str] | None = None,
    target_mode: str = "label",
    batch_size: int = 8,
    many_pass_batch_size: int = 1,
    progress: bool = False,
    **options,
) -> pd.DataFrame:
    """Word-level attributions for a list of examples (any mix of datasets).

    Several methods can be asked for at once: each batch is then rendered and its
    target scored once, saliency and input×gradient share one forward/backward, and the
    attention methods share one forward.

    Args:
        method: a name from :func:`available_methods`, or a list of them.
        target: ``pred``, ``gold`` or ``contrast`` (see :func:`prepare`).
        labels: explicit target labels, one per example.
        target_mode: ``label`` (whole label string) or ``first_token`` (see module doc).
        batch_size: examples per batch of the one-pass methods.
        many_pass_batch_size: examples per batch of the many-pass and costliest methods.
            Each of their passes already holds many rows of one example (IG steps,
            ablated words, samples), so batching examples adds only padding, and for
            occlusion every example pays the longest one's word count: one example at a
            time took 24% less time over six examples of each dataset (39% on HateXplain's
            uneven lengths, none on SST-2's even ones; ``bench/many_pass_batch.csv``).
        progress: show a tqdm bar over batches.
        **options: method options (``ig_steps``; ``n_samples`` for LIME/KernelSHAP;
            ``gradient_shap_samples``; ``noise_samples``, ``bisection_steps``, ``norm``
            for Noiser; ``seed``...).

    Returns:
        One row per example × method: ``id``, ``dataset``, ``method``, ``status``
        (``ok``, or ``context_overflow`` when the prompt exceeds the model's context:
        reported, with empty scores), ``target_label``, ``words``, ``signed``,
        ``magnitude``, ``nonfinite`` (NaN/inf scores detected and set to 0),
        ``words_without_tokens`` (words with no token of their own: score 0),
        ``truncated_words`` (cut by :func:`xalign_utils.data.truncate` before
        prompting), ``seconds`` (the method's wall time for the batch ÷ batch size; a
        pass shared with an earlier method of the same call is paid by that method), and
        method extras (``ig_delta``, ``noiser_sigma``).

    Raises:
        KeyError: unknown method; the message lists the valid ones.
    """
    methods = [method] if isinstance(method, str) else list(method)
    specs = {m: lookup(METHODS, m, "attribution method") for m in methods}
    limit = context_length(model)
    rows = []
    chunks = []
    by_dataset: dict[str, list[int]] = {}
    for i, ex in enumerate(examples):
        try:
            render_prompt(tokenizer, ex, max_length=limit)
        except ContextLengthError:
            rows += [
                _row(ex, None, m, status="context_overflow", _order=(i, k))
                for k, m in enumerate(methods)
            ]
            continue
        by_dataset.setdefault(ex.dataset, []).append(i)
    one_pass = [m for m in methods if specs[m].cost == "one_pass"]
    tiers = (
        (one_pass, batch_size),
        ([m for m in methods if m not in one_pass], many_pass_batch_size),
    )
    for group, size in tiers:
        for idx in by_dataset.values():
            chunks += [(group, idx[s : s + size]) for s in range(0, len(idx), size) if group]
    for group, chunk in tqdm(chunks, disable=not progress, desc="attribution", leave=False):
        batch = prepare_batch(
            model,
            tokenizer,
            [examples[i] for i in chunk],
            target=target,
            labels=None if labels is None else [labels[i] for i in chunk],
            target_mode=target_mode,
        )
        shared: dict = {}
        for m in group:
            k = methods.index(m)
            start = time.perf_counter()
            scores, extra = specs[m].function(model, batch, shared=shared, **options)
            seconds = (time.perf_counter() - start) / batch.size
            for b, (ex, rp, (signed, mag)) in enumerate(
                zip(batch.examples, batch.rendered, scores, strict=True)
            ):
                bad = ~np.isfinite(signed) | ~np.isfinite(mag)
                row = _row(
                    ex,
                    rp,
                    m,
                    status="ok",
                    target_label=batch.target_labels[b],
                    signed=np.where(bad, 0.0, signed),
                    magnitude=np.where(bad, 0.0, mag),
                    nonfinite=int(bad.sum()),
                    seconds=seconds,
                    _order=(chunk[b], k),
                )
                row.update({key: float(values[b]) for key, values in extra.items()})
                rows.append(row)
    rows.sort(key=lambda r: r.pop("_order"))  # examples in input order, then methods
    return pd.DataFrame(rows)


def continuation_attribution(
    model,
    tokenizer,
    example: Example,
    role: str,
    text: str,
    **fields: object,
) -> np.ndarray:
    """Signed input×gradient word scores of ``log p(text | prompt)`` (all text tokens).

    The attribution profile of a *generated explanation* over the input words, for the
    CC-SHAP-style comparison with the prediction's profile
    (:func:`xalign_utils.consistency.profile_distance`). ``fields`` fill the role's
    template (``label``, ``k``). Returns zeros when ``text`` has no tokens.
    """
    prompt = render(tokenizer, example, role, max_length=context_length(model), **fields)
    full = render(tokenizer, example, role, assistant_prefix=text, **fields)
    n_prompt = len(prompt.input_ids)
    if len(full.input_ids) <= n_prompt:
        return np.zeros(len(full.word_tokens))
    device = next(model.parameters()).device
    ids = torch.tensor([full.input_ids], device=device)
    emb = model.get_input_embeddings()(ids).detach().requires_grad_(True)
    logits = model(inputs_embeds=emb).logits[0, n_prompt - 1 : -1].float()
    target = ids[0, n_prompt:]
    value = torch.log_softmax(logits, -1).gather(1, target.unsqueeze(1)).sum()
    (grad,) = torch.autograd.grad(value, emb)
    token = (grad * emb).sum(-1)[0].detach().double().cpu().numpy()
    return np.array([token[span].sum() if span else 0.0 for span in full.word_tokens])


def path_values(
    model,
    tokenizer,
    examples: Sequence[Example],
    alphas: Sequence[float] = tuple(np.linspace(0.0, 1.0, 21)),
    *,
    target: str = "pred",
    batch_size: int = 8,
) -> pd.DataFrame:
    """The attribution target f(α·x) along integrated gradients' straight path from the
    all-zero input-word baseline (α = 0) to the input (α = 1), per example.

    IG's completeness error is the error of a Riemann sum of the gradient along this
    path: a curve that is flat and then jumps needs many more steps than a smooth one.
    ``f(1) − f(0)`` is the total IG must reproduce.

    Returns:
        One row per example × α: ``id``, ``dataset``, ``alpha``, ``value``.
    """
    rows = []
    by_dataset: dict[str, list[Example]] = {}
    for ex in examples:
        by_dataset.setdefault(ex.dataset, []).append(ex)
    for exs in by_dataset.values():
        for start in range(0, len(exs), batch_size):
            batch = prepare_batch(model, tokenizer, exs[start : start + batch_size], target=target)
            full, inp = input_embeddings(model, batch)
            forward, args = make_forward(model, batch), forward_args(batch, full.detach())
            with torch.no_grad():
                for alpha in alphas:
                    values = forward(float(alpha) * inp.detach(), *args)
                    rows += [
                        {"id": ex.id, "dataset": ex.dataset, "alpha": float(alpha), "value": v}
                        for ex, v in zip(batch.examples, values.tolist(), strict=True)
                    ]
    return pd.DataFrame(rows, columns=["id", "dataset", "alpha", "value"])


def completeness_errors(attributions: pd.DataFrame, path: pd.DataFrame) -> pd.DataFrame:
    """IG's relative completeness error per example: ``|ig_delta| / |f(x) − f(0)|`` with
    ``f(x) − f(0)`` read from :func:`path_values` (NaN where the total is 0); empty for a
    run without integrated gradients (e.g. the XNLI track's one-pass methods)."""
    columns = ["id", "dataset", "ig_delta", "total", "relative_error"]
    if path.empty or "ig_delta" not in attributions:
        return pd.DataFrame(columns=columns).astype({c: float for c in columns[2:]})
    ig = attributions[attributions["method"].eq("integrated_gradients")][
        ["id", "dataset", "ig_delta"]
    ]
    ends = path.pivot_table(index="id", columns="alpha", values="value")
    total = (ends[ends.columns.max()] - ends[ends.columns.min()]).rename("total")
    out = ig.merge(total, left_on="id", right_index=True)
    denom = out["total"].abs().where(out["total"] != 0)
    return out.assign(relative_error=out["ig_delta"].abs() / denom)
