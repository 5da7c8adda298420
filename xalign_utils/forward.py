"""Batches of prompts whose input-word embeddings can be replaced (DESIGN.md §2).

Shared by attribution, soft erasure, regularised training and guided decoding: a
:class:`Batch` renders and left-pads prompts of one dataset, records which positions hold
input-word tokens, scores the target label and caches the shared chat-template prefix;
:func:`make_forward` gives the target as a function of the input-word embeddings alone,
so instruction, chat template and special tokens are never attributed, perturbed or
noised.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .data.registry import LABELS
from .models import context_length, expand_prefix, left_pad, shared_prefix_length
from .prompts import RenderedPrompt, render
from .schema import Example
from .scoring import first_token, forms_to_labels, label_form_scores, target_tokens


@dataclass
class Batch:
    """Padded prompts and where their input-word tokens sit.

    Layout: the tokens every prompt of the batch shares before its first input word
    (system prompt, instruction: ``prefix_len`` of them) come first, then padding, then
    each prompt's remaining tokens. The prefix never changes under any attribution
    method, so its keys and values (``prefix_kv``, batch size 1) are computed once and
    the forward passes of the gradient and perturbation methods run only over the rest.
    Position ids skip the padding, so scores equal those of the unpadded prompt.

    Shapes: ``ids``/``mask``/``positions`` ``[B, T]``; ``in_pos``/``in_valid``/``tok_word``
    ``[B, P]`` (P = most input tokens in the batch); ``target``/``contrast`` ``[B]``;
    ``candidates``: first tokens of every verbaliser form of the dataset's labels.
    """

    examples: list[Example]
    rendered: list[RenderedPrompt]
    ids: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor
    in_pos: torch.Tensor
    in_valid: torch.Tensor
    tok_word: torch.Tensor
    target: torch.Tensor
    contrast: torch.Tensor | None
    target_labels: list[str]
    prefix_len: int = 0
    prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    candidates: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.examples)

    def slice(self, start: int, stop: int) -> Batch:
        """Examples ``start:stop`` of the batch (padding kept)."""
        sl = slice(start, stop)
        return Batch(
            self.examples[sl],
            self.rendered[sl],
            self.ids[sl],
            self.mask[sl],
            self.positions[sl],
            self.in_pos[sl],
            self.in_valid[sl],
            self.tok_word[sl],
            self.target[sl],
            None if self.contrast is None else self.contrast[sl],
            self.target_labels[sl],
            self.prefix_len,
            self.prefix_kv,
            self.candidates,
        )


#: Most sequences in one forward/backward of the gradient methods (IG steps, SHAP
#: samples). Each sequence of a ~100-token prompt holds ~100 MB of activations for the
#: backward pass of the offline model, so 32 keeps a batch within a few GB.
MAX_ROWS = 32


def prepare(
    model,
    tokenizer,
    examples: Sequence[Example],
    target: str = "pred",
    contrast_label: str | None = None,
    labels: Sequence[str] | None = None,
) -> Batch:
    """Render, pad and index a batch of examples of one dataset.

    Args:
        target: ``pred`` (the model's prediction), ``gold``, or ``contrast`` (the
            predicted label against ``contrast_label``, or against the runner-up label).
        labels: explicit target labels (overrides ``target``).
    """
    datasets = {ex.dataset for ex in examples}
    if len(datasets) != 1:
        raise ValueError(f"a batch must hold one dataset, got {sorted(datasets)}")
    dataset = datasets.pop()
    rendered = [
        render(tokenizer, ex, "classify", max_length=context_length(model)) for ex in examples
    ]
    raw, forms = label_form_scores(model, tokenizer, [r.input_ids for r in rendered], dataset)
    logp = forms_to_labels(raw, forms, len(LABELS[dataset]))
    order = np.argsort(-logp, axis=1)
    if labels is None:
        if target == "gold":
            labels = [ex.label for ex in examples]
        elif target in {"pred", "contrast"}:
            labels = [LABELS[dataset][o[0]] for o in order]
        else:
            raise ValueError(f"target must be 'pred', 'gold' or 'contrast', not {target!r}")
    contrast_labels = None
    if target == "contrast":  # the given label, else the best-scored label other than the target
        contrast_labels = [
            contrast_label or next(LABELS[dataset][i] for i in o if LABELS[dataset][i] != lab)
            for o, lab in zip(order, labels, strict=True)
        ]
    seqs = [r.input_ids for r in rendered]
    first_input = min(
        (min(min(span) for span in r.word_tokens if span) for r in rendered if r.input_positions),
        default=0,
    )
    plen = min(shared_prefix_length(seqs), first_input)
    rest_ids, rest_mask = left_pad([s[plen:] for s in seqs], tokenizer.pad_token_id)
    prefix = torch.tensor(seqs[0][:plen], dtype=torch.long).expand(len(seqs), -1)
    ids = torch.cat([prefix, rest_ids], 1)
    mask = torch.cat([torch.ones_like(prefix), rest_mask], 1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    width = ids.shape[1]
    n_in = max(max((len(r.input_positions) for r in rendered), default=1), 1)
    in_pos = torch.zeros((len(rendered), n_in), dtype=torch.long)
    in_valid = torch.zeros((len(rendered), n_in), dtype=torch.bool)
    tok_word = torch.full((len(rendered), n_in), -1, dtype=torch.long)
    for b, rp in enumerate(rendered):
        offset = width - len(rp.input_ids)  # the padding sits between prefix and rest
        j = 0
        for w, span in enumerate(rp.word_tokens):
            for p in span:
                in_pos[b, j], in_valid[b, j], tok_word[b, j] = p + offset, True, w
                j += 1
    tgt = torch.tensor(target_tokens(tokenizer, raw, forms, dataset, labels))
    con = (
        torch.tensor(target_tokens(tokenizer, raw, forms, dataset, contrast_labels))
        if contrast_labels
        else None
    )
    device = next(model.parameters()).device
    prefix_kv = None
    if plen:
        with torch.no_grad():  # not inference_mode: these tensors enter autograd graphs
            cache = model(input_ids=prefix[:1].to(device), use_cache=True).past_key_values
        prefix_kv = [(layer.keys, layer.values) for layer in cache.layers]
    return Batch(
        list(examples),
        rendered,
        ids.to(device),
        mask.to(device),
        positions.to(device),
        in_pos.to(device),
        in_valid.to(device),
        tok_word.to(device),
        tgt.to(device),
        None if con is None else con.to(device),
        list(labels),
        plen,
        prefix_kv,
        torch.tensor(sorted({first_token(tokenizer, f) for _, f in forms}), device=device),
    )


def input_embeddings(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(full [B, T, D], input-token [B, P, D])`` embeddings of a batch."""
    full = model.get_input_embeddings()(batch.ids)
    idx = batch.in_pos.unsqueeze(-1).expand(-1, -1, full.shape[-1])
    return full, full.gather(1, idx) * batch.in_valid.unsqueeze(-1)


def last_logits(
    model, emb: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, batch: Batch
) -> torch.Tensor:
    """Next-token logits ``[n, V]`` at the last position for full-layout embeddings.

    ``emb``/``mask``/``positions`` cover the whole layout (``n`` rows of the batch's
    width, e.g. IG steps × examples); the shared prefix is served from
    ``batch.prefix_kv`` and only the tokens after it go through the model.
    """
    plen = batch.prefix_len
    if not plen:
        out = model(
            inputs_embeds=emb, attention_mask=mask, position_ids=positions, logits_to_keep=1
        )
        return out.logits[:, -1]
    cache = expand_prefix(model, batch.prefix_kv, emb.shape[0])
    out = model(
        inputs_embeds=emb[:, plen:],
        attention_mask=mask,
        position_ids=positions[:, plen:],
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    return out.logits[:, -1]


def make_forward(model, batch: Batch) -> Callable[..., torch.Tensor]:
    """The scalar target as a function of the input-token embeddings (Captum's forward).

    Extra arguments (Captum repeats them per IG step / perturbation): full embeddings,
    mask, positions, input positions, validity, target and contrast token ids. ``batch``
    supplies the shared prefix cache (see :class:`Batch`).
    """

    def forward(inp, full, mask, positions, in_pos, in_valid, target, contrast=None):
        idx = in_pos.unsqueeze(-1).expand(-1, -1, full.shape[-1])
        current = full.gather(1, idx)
        src = torch.where(in_valid.unsqueeze(-1), inp.to(full.dtype), current)
        logits = last_logits(model, full.scatter(1, idx, src), mask, positions, batch)
        logp = torch.log_softmax(logits.float(), -1)
        value = logp.gather(1, target.unsqueeze(1)).squeeze(1)
        if contrast is not None:
            value = value - logp.gather(1, contrast.unsqueeze(1)).squeeze(1)
        return value

    return forward


def forward_args(batch: Batch, full: torch.Tensor) -> tuple:
    """The extra arguments of :func:`make_forward`'s function for a batch (Captum's
    ``additional_forward_args``): full embeddings, mask, positions, input positions,
    validity, target and contrast token ids."""
    return (
        full,
        batch.mask,
        batch.positions,
        batch.in_pos,
        batch.in_valid,
        batch.target,
        batch.contrast,
    )
