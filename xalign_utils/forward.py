"""Batches of prompts whose input-word embeddings can be replaced (DESIGN.md §2).

Shared by attribution, soft erasure, regularised training and guided decoding: a
:class:`Batch` renders and left-pads prompts of one dataset, records which positions hold
input-word tokens, scores the target label and caches the shared chat-template prefix;
:func:`make_forward` gives the target as a function of the input-word embeddings alone,
so instruction, chat template and special tokens are never attributed, perturbed or
noised.

The target is the label as predictions define it (DESIGN.md §6): the teacher-forced
log-probability of the whole label string, summed over its surface forms
(``log Σ_f p(form_f | prompt)``), computed by :func:`label_logprobs_at` from one pass over
the prompt and one short pass over every form's continuation served from the prompt's KV
cache. ``target_mode="first_token"`` keeps the first token of the label's most probable
form as the target, as tools like Inseq attribute by default, for comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from .data.registry import LABELS
from .models import context_length, expand_prefix, left_pad, shared_prefix_length
from .prompts import RenderedPrompt, render
from .schema import Example
from .scoring import forms_to_labels, label_form_scores, label_forms, target_tokens, verbaliser_ids

#: Attribution targets: the whole label string (default) or its first token only.
TARGET_MODES = ("label", "first_token")


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
    ``[B, P]`` (P = most input tokens in the batch); ``target``/``contrast`` ``[B]``: label
    indices into the dataset's label set; ``forms`` ``[B, F, L]``: token ids of every
    surface form of every label (``-1`` pads a shorter form); ``form_label`` ``[B, F]``:
    the label index each form belongs to (``-1``: no form). Under
    ``target_mode="first_token"`` each label has one form, its most probable form's first
    token. A ``next_token`` batch (:mod:`xalign_utils.next_token`: plain prompts, no chat
    template) has one "label" per example, its greedy next token (``forms [B, 1, 1]``), so
    the target is that token's probability over the whole vocabulary.
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
    forms: torch.Tensor
    form_label: torch.Tensor
    n_labels: int
    target_mode: str = "label"
    prefix_len: int = 0
    prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    kind: str = "classification"

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
            self.forms[sl],
            self.form_label[sl],
            self.n_labels,
            self.target_mode,
            self.prefix_len,
            self.prefix_kv,
            self.kind,
        )


#: Most sequences in one forward/backward of the gradient methods (IG steps, SHAP
#: samples). Each sequence of a ~100-token prompt holds ~100 MB of activations for the
#: backward pass of the offline model, so 32 keeps a batch within a few GB.
MAX_ROWS = 32


def position_ids(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of a left-padded batch: 0 at each row's first real token (pads: 0)."""
    return (mask.cumsum(-1) - 1).clamp(min=0)


def input_index(
    rendered: Sequence[RenderedPrompt], width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(in_pos, in_valid, tok_word)`` ``[B, P]`` of left-padded prompts of ``width``
    tokens: each input-word token's position, whether the slot is used, and its word."""
    n_in = max(max((len(r.input_positions) for r in rendered), default=1), 1)
    in_pos = torch.zeros((len(rendered), n_in), dtype=torch.long)
    in_valid = torch.zeros((len(rendered), n_in), dtype=torch.bool)
    tok_word = torch.full((len(rendered), n_in), -1, dtype=torch.long)
    for b, rp in enumerate(rendered):
        offset = width - len(rp.input_ids)  # the padding sits before the prompt's own tokens
        j = 0
        for w, span in enumerate(rp.word_tokens):
            for p in span:
                in_pos[b, j], in_valid[b, j], tok_word[b, j] = p + offset, True, w
                j += 1
    return in_pos, in_valid, tok_word


def prepare(
    model,
    tokenizer,
    examples: Sequence[Example],
    target: str = "pred",
    contrast_label: str | None = None,
    labels: Sequence[str] | None = None,
    target_mode: str = "label",
) -> Batch:
    """Render, pad and index a batch of examples of one dataset.

    Args:
        target: ``pred`` (the model's prediction), ``gold``, or ``contrast`` (the
            predicted label against ``contrast_label``, or against the runner-up label).
        labels: explicit target labels (overrides ``target``).
        target_mode: ``label`` (log-probability of the whole label string, summed over
            its surface forms) or ``first_token`` (of the label's most probable form).
    """
    if target_mode not in TARGET_MODES:
        raise ValueError(f"target_mode must be one of {TARGET_MODES}, not {target_mode!r}")
    datasets = {ex.dataset for ex in examples}
    if len(datasets) != 1:
        raise ValueError(f"a batch must hold one dataset, got {sorted(datasets)}")
    dataset = datasets.pop()
    rendered = [
        render(tokenizer, ex, "classify", max_length=context_length(model)) for ex in examples
    ]
    if target not in {"pred", "gold", "contrast"}:
        raise ValueError(f"target must be 'pred', 'gold' or 'contrast', not {target!r}")
    forms = label_forms(dataset)
    raw, order = None, None  # the label scores: skipped when nothing needs them (training)
    if (
        target_mode == "first_token"
        or target == "contrast"
        or (labels is None and target != "gold")
    ):
        raw, forms = label_form_scores(model, tokenizer, [r.input_ids for r in rendered], dataset)
        order = np.argsort(-forms_to_labels(raw, forms, len(LABELS[dataset])), axis=1)
    if labels is None:
        if target == "gold":
            labels = [ex.label for ex in examples]
        else:
            labels = [LABELS[dataset][o[0]] for o in order]
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
    positions = position_ids(mask)
    in_pos, in_valid, tok_word = input_index(rendered, ids.shape[1])
    names = LABELS[dataset]
    tgt = torch.tensor([names.index(lab) for lab in labels])
    con = torch.tensor([names.index(lab) for lab in contrast_labels]) if contrast_labels else None
    if target_mode == "label":
        ids_per_form = verbaliser_ids(tokenizer, [f for _, f in forms])
        width_l = max(len(t) for t in ids_per_form)
        one = torch.full((len(forms), width_l), -1, dtype=torch.long)
        for i, t in enumerate(ids_per_form):
            one[i, : len(t)] = torch.tensor(t)
        form_ids = one.expand(len(rendered), -1, -1)
        form_label = torch.tensor([j for j, _ in forms]).expand(len(rendered), -1)
    else:  # each label's most probable form's first token
        firsts = [target_tokens(tokenizer, raw, forms, dataset, [lab] * len(raw)) for lab in names]
        form_ids = torch.tensor(firsts).T.unsqueeze(-1)
        form_label = torch.arange(len(names)).expand(len(rendered), -1)
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
        form_ids.contiguous().to(device),
        form_label.contiguous().to(device),
        len(names),
        target_mode,
        plen,
        prefix_kv,
    )


def input_embeddings(model, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(full [B, T, D], input-token [B, P, D])`` embeddings of a batch."""
    full = model.get_input_embeddings()(batch.ids)
    idx = batch.in_pos.unsqueeze(-1).expand(-1, -1, full.shape[-1])
    return full, full.gather(1, idx) * batch.in_valid.unsqueeze(-1)


def _prompt_pass(model, emb, mask, positions, batch: Batch, use_cache: bool):
    """Last-position logits ``[n, V]`` and the KV cache of a full-layout embedding batch."""
    plen = batch.prefix_len
    cache = expand_prefix(model, batch.prefix_kv, emb.shape[0]) if plen else None
    out = model(
        inputs_embeds=emb[:, plen:],
        attention_mask=mask,
        position_ids=positions[:, plen:],
        past_key_values=cache,
        use_cache=use_cache or bool(plen),
        logits_to_keep=1,
    )
    return out.logits[:, -1], out.past_key_values


def prompt_cache(model, emb: torch.Tensor, batch: Batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Keys and values ``[(k, v)]`` (one pair per layer, ``[n, heads, T, d]``) of every
    position of the first ``n`` examples' full-layout embeddings ``emb [n, T, D]``, the
    shared prefix included; :func:`with_prefix` serves a leading part of them to later
    passes."""
    n = emb.shape[0]
    return [
        (layer.keys, layer.values)
        for layer in _prompt_pass(
            model, emb, batch.mask[:n], batch.positions[:n], batch, use_cache=True
        )[1].layers
    ]


def with_prefix(batch: Batch, kv: list[tuple[torch.Tensor, torch.Tensor]], length: int) -> Batch:
    """``batch`` whose shared prefix is its first ``length`` positions, served from ``kv``
    (:func:`prompt_cache` of its clean embeddings: batch 1, or one row per forward row).

    Valid for embeddings equal to the clean ones before ``length``: rows that perturb
    positions ``≥ length`` only (Noiser's, occlusion's) then run only from ``length`` on.
    A ``length`` inside the batch's own prefix returns ``batch`` unchanged.
    """
    if length <= batch.prefix_len:
        return batch
    return replace(
        batch, prefix_len=length, prefix_kv=[(k[:, :, :length], v[:, :, :length]) for k, v in kv]
    )


def last_logits(
    model, emb: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, batch: Batch
) -> torch.Tensor:
    """Next-token logits ``[n, V]`` at the last position for full-layout embeddings.

    ``emb``/``mask``/``positions`` cover the whole layout (``n`` rows of the batch's
    width, e.g. IG steps × examples); the shared prefix is served from
    ``batch.prefix_kv`` and only the tokens after it go through the model.
    """
    return _prompt_pass(model, emb, mask, positions, batch, use_cache=False)[0]


def form_logprobs_at(
    model,
    emb: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    forms: torch.Tensor,
    batch: Batch,
) -> torch.Tensor:
    """Teacher-forced log-probability ``[n, F]`` of each form's token sequence
    (``forms [n, F, L]``, ``-1``-padded) after full-layout embeddings.

    One forward pass: every form's continuation tokens (all but its last) are appended
    after the prompt, each form in a block of its own, with a 4-D attention mask that
    lets a form's tokens see the prompt and the form's own earlier tokens only, and
    position ids that continue the prompt for every form. So the prompt is computed once
    and its keys and values are never copied per form; the logits are kept at the last
    prompt position (every form's first token) and at the continuation tokens only.
    Differentiable in ``emb``.
    """
    n, n_forms, width = forms.shape
    plen, t = batch.prefix_len, emb.shape[1]
    steps = width - 1
    cont = forms[:, :, :-1].clamp(min=0).reshape(n, n_forms * steps)
    x = torch.cat([emb[:, plen:], model.get_input_embeddings()(cont).to(emb.dtype)], 1)
    q_prompt, n_cont = t - plen, n_forms * steps
    # allowed[b, q, k]: prompt rows causal over the unpadded prompt; continuation rows see
    # the unpadded prompt and their own form's earlier (or same) slots
    keys_ok = mask.bool()
    prompt_rows = torch.tril(torch.ones(q_prompt, t, dtype=torch.bool, device=emb.device), plen)
    prompt_rows = prompt_rows.unsqueeze(0) & keys_ok.unsqueeze(1)
    slot_form = torch.arange(n_cont, device=emb.device) // max(steps, 1)
    slot_step = torch.arange(n_cont, device=emb.device) % max(steps, 1)
    own = (slot_form.unsqueeze(1) == slot_form.unsqueeze(0)) & (
        slot_step.unsqueeze(0) <= slot_step.unsqueeze(1)
    )
    allowed = torch.cat(
        [
            torch.cat([prompt_rows, prompt_rows.new_zeros(n, q_prompt, n_cont)], 2),
            torch.cat(
                [keys_ok.unsqueeze(1).expand(n, n_cont, t), own.expand(n, n_cont, n_cont)], 2
            ),
        ],
        1,
    )
    bias = torch.zeros(allowed.shape, dtype=emb.dtype, device=emb.device)
    bias = bias.masked_fill(~allowed, torch.finfo(emb.dtype).min).unsqueeze(1)
    pos = torch.cat([positions[:, plen:], positions[:, -1:] + 1 + slot_step.unsqueeze(0)], 1)
    out = model(
        inputs_embeds=x,
        attention_mask=bias,
        position_ids=pos,
        past_key_values=expand_prefix(model, batch.prefix_kv, n) if plen else None,
        use_cache=bool(plen),
        logits_to_keep=n_cont + 1,
    )
    logp = torch.log_softmax(out.logits.float(), -1)
    score = logp[:, 0].gather(1, forms[:, :, 0].clamp(min=0))
    if steps:
        targets = forms[:, :, 1:].reshape(n, n_cont)
        tok = logp[:, 1:].gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        score = score + (tok * (targets >= 0)).view(n, n_forms, steps).sum(-1)
    return score


def label_logprobs_at(
    model,
    emb: torch.Tensor,
    mask: torch.Tensor,
    positions: torch.Tensor,
    forms: torch.Tensor,
    form_label: torch.Tensor,
    n_labels: int,
    batch: Batch,
) -> torch.Tensor:
    """Per-label log-probabilities ``[n, n_labels]``: each label's forms' probabilities
    summed (``-inf`` for a label none of ``forms`` belongs to)."""
    score = form_logprobs_at(model, emb, mask, positions, forms, batch)
    owner = form_label.unsqueeze(-1) == torch.arange(n_labels, device=form_label.device)
    masked = torch.where(owner, score.unsqueeze(-1), score.new_tensor(float("-inf")))
    return torch.logsumexp(masked, dim=1)


def make_forward(model, batch: Batch, renormalise: bool = False) -> Callable[..., torch.Tensor]:
    """The scalar target as a function of the input-token embeddings (Captum's forward).

    The target is ``log p(target label)`` (minus ``log p(contrast label)`` for a contrast
    target), each label summed over its forms; with ``renormalise`` the probabilities
    are renormalised over the label set first (``forward_args(..., all_labels=True)``
    must then supply every label's forms). Extra arguments (Captum repeats them per IG
    step / perturbation): see :func:`forward_args`. ``batch`` supplies the shared
    prefix cache (see :class:`Batch`).
    """

    def forward(
        inp, full, mask, positions, in_pos, in_valid, forms, form_label, target, contrast=None
    ):
        idx = in_pos.unsqueeze(-1).expand(-1, -1, full.shape[-1])
        current = full.gather(1, idx)
        src = torch.where(in_valid.unsqueeze(-1), inp.to(full.dtype), current)
        emb = full.scatter(1, idx, src)
        logp = label_logprobs_at(
            model, emb, mask, positions, forms, form_label, batch.n_labels, batch
        )
        if renormalise:
            if torch.isinf(logp).any():
                raise ValueError("renormalise needs every label's forms: all_labels=True")
            logp = torch.log_softmax(logp, -1)
        value = logp.gather(1, target.unsqueeze(1)).squeeze(1)
        if contrast is not None:
            value = value - logp.gather(1, contrast.unsqueeze(1)).squeeze(1)
        return value

    return forward


def forward_args(batch: Batch, full: torch.Tensor, all_labels: bool = False) -> tuple:
    """The extra arguments of :func:`make_forward`'s function for a batch (Captum's
    ``additional_forward_args``): full embeddings, mask, positions, input positions,
    validity, the label forms and their labels, target and contrast label indices.

    Only the forms of the target (and contrast) label are passed unless ``all_labels``:
    their continuations are all the target needs, and fewer forms is fewer rows in the
    continuation pass.
    """
    forms, form_label = batch.forms, batch.form_label
    if not all_labels:
        keep = form_label == batch.target.unsqueeze(1)
        if batch.contrast is not None:
            keep |= form_label == batch.contrast.unsqueeze(1)
        form_label = torch.where(keep, form_label, torch.full_like(form_label, -1))
        used = keep.any(0)  # drop forms no example of the batch uses
        forms, form_label = forms[:, used], form_label[:, used]
    return (
        full,
        batch.mask,
        batch.positions,
        batch.in_pos,
        batch.in_valid,
        forms,
        form_label,
        batch.target,
        batch.contrast,
    )
