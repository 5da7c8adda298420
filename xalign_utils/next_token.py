"""Plain next-token prompts (Knowns, LongRA): the Noiser paper's setting (DESIGN.md §7).

The prompt is the example's words joined by spaces, without chat template or special
tokens; the target is the model's greedy next token, scored as its probability over the
*whole vocabulary* (there is no label set to renormalise over); every prompt token belongs
to an input word, so every token is attributed, perturbed and noised, as in the paper's
code. :func:`prepare_batch` hands attribution and soft erasure the right
:class:`~xalign_utils.forward.Batch` for any dataset; :func:`answer_distribution` gives hard
erasure the two numbers it needs per erased prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .data.registry import DATASETS
from .forward import Batch, input_index, position_ids, prepare
from .models import context_length, left_pad
from .prompts import (
    ContextLengthError,
    RenderedPrompt,
    leading_special_tokens,
    render,
    render_plain,
)
from .schema import Example


def is_next_token(dataset: str) -> bool:
    """Whether a dataset's prompts are plain next-token prompts (registry ``kind``)."""
    return DATASETS[dataset].kind == "next_token"


def render_prompt(tokenizer, ex: Example, max_length: int | None = None) -> RenderedPrompt:
    """The prompt attribution explains: plain text for a next-token dataset, else the chat
    rendered classification prompt (raises ``ContextLengthError`` past ``max_length``)."""
    if is_next_token(ex.dataset):
        return render_plain(tokenizer, ex, max_length=max_length)
    return render(tokenizer, ex, "classify", max_length=max_length)


def _last_logits(model, seqs: Sequence[Sequence[int]], pad_id: int) -> torch.Tensor:
    """Next-token logits ``[n, V]`` (float32) of unpadded token sequences, one batch."""
    device = next(model.parameters()).device
    ids, mask = left_pad(seqs, pad_id)
    with torch.inference_mode():
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=position_ids(mask).to(device),
            logits_to_keep=1,
        )
    return out.logits[:, -1].float()


def prepare_next_token(model, tokenizer, examples: Sequence[Example]) -> Batch:
    """A batch of plain prompts whose target is each prompt's greedy next token.

    One "label" per example (``n_labels = 1``, ``forms [B, 1, 1]`` = the greedy token), so
    :func:`~xalign_utils.forward.make_forward` gives ``log p(token | prompt)`` over the
    whole vocabulary; ``target_labels`` are the decoded tokens. No shared prefix: a plain
    prompt has no instruction or template to cache.
    """
    rendered = [render_plain(tokenizer, ex, max_length=context_length(model)) for ex in examples]
    seqs = [r.input_ids for r in rendered]
    ids, mask = left_pad(seqs, tokenizer.pad_token_id)
    greedy = _last_logits(model, seqs, tokenizer.pad_token_id).argmax(-1).cpu()
    in_pos, in_valid, tok_word = input_index(rendered, ids.shape[1])
    device = next(model.parameters()).device
    n = len(examples)
    return Batch(
        list(examples),
        rendered,
        ids.to(device),
        mask.to(device),
        position_ids(mask).to(device),
        in_pos.to(device),
        in_valid.to(device),
        tok_word.to(device),
        torch.zeros(n, dtype=torch.long, device=device),
        None,
        [tokenizer.decode([int(t)]) for t in greedy],
        greedy.view(n, 1, 1).to(device),
        torch.zeros((n, 1), dtype=torch.long, device=device),
        1,
        kind="next_token",
    )


def prepare_batch(model, tokenizer, examples: Sequence[Example], **options) -> Batch:
    """:func:`prepare_next_token` for a next-token dataset (``options`` other than
    ``target="pred"`` do not apply: the target is the greedy token), else
    :func:`~xalign_utils.forward.prepare` with ``options``."""
    if examples and is_next_token(examples[0].dataset):
        if options.get("target", "pred") != "pred" or options.get("labels") is not None:
            raise ValueError(
                f"{examples[0].dataset}: next-token prompts are attributed for the model's "
                "greedy next token only (target='pred', no labels)"
            )
        return prepare_next_token(model, tokenizer, examples)
    return prepare(model, tokenizer, examples, **options)


def _token_ids(tokenizer, ex: Example, limit: int) -> list[int] | None:
    """A plain prompt's ids; an empty prompt (every word erased) is the tokenizer's
    default leading tokens (its BOS), or, for a tokenizer without them (SmolLM2), its
    end-of-text token: the context a document starts from; ``None`` past the context."""
    if not ex.flat_words():
        return leading_special_tokens(tokenizer) or [tokenizer.eos_token_id]
    ids = render_plain(tokenizer, ex).input_ids
    return ids if len(ids) <= limit else None


def answer_distribution(
    model,
    tokenizer,
    examples: Sequence[Example],
    targets: Sequence[int],
    batch_size: int = 16,
) -> np.ndarray:
    """``[n, 2]``: each prompt's probability of its target token and the largest
    probability of any other token, over the whole vocabulary.

    Hard erasure reads these as a two-way "label" distribution: column 0 is ``p(ŷ)``, and
    the argmax is 1 exactly when the erased prompt's greedy token is no longer ``ŷ``.
    Prompts longer than the context get NaN rows (counted by the metrics).
    """
    limit = context_length(model)
    out = np.full((len(examples), 2), np.nan)
    seqs = [_token_ids(tokenizer, ex, limit) for ex in examples]
    fits = [i for i, s in enumerate(seqs) if s is not None]
    for start in range(0, len(fits), batch_size):
        rows = fits[start : start + batch_size]
        probs = torch.softmax(
            _last_logits(model, [seqs[i] for i in rows], tokenizer.pad_token_id), -1
        )
        tgt = torch.tensor([targets[i] for i in rows], device=probs.device)
        p_target = probs.gather(1, tgt.unsqueeze(1)).squeeze(1)
        p_other = probs.scatter(1, tgt.unsqueeze(1), -1.0).max(-1).values
        out[rows] = torch.stack([p_target, p_other], 1).cpu().numpy()
    return out


def greedy_tokens(model, tokenizer, examples: Sequence[Example], batch_size: int = 16) -> list[int]:
    """Each plain prompt's greedy next token (the target its attributions explain)."""
    limit = context_length(model)
    seqs = [_token_ids(tokenizer, ex, limit) for ex in examples]
    too_long = [ex.id for ex, s in zip(examples, seqs, strict=True) if s is None]
    if too_long:
        raise ContextLengthError(f"prompts longer than the context ({limit}): {too_long}")
    out: list[int] = []
    for start in range(0, len(seqs), batch_size):
        out += (
            _last_logits(model, seqs[start : start + batch_size], tokenizer.pad_token_id)
            .argmax(-1)
            .tolist()
        )
    return out
