"""Greedy generation that computes every shared prompt prefix once.

The prompts of notebooks 02 and 06 share a lot: every prompt starts with the same
chat-template system turn, and the prompts about one example (word lists for the gold and
the predicted label, Unbound and Top-Var, both free-text orders) share the task
instruction and the example's text, differing only in the last question (≈ 30 of ≈ 115
tokens). Prefill dominates the cost of decoding a small model on a CPU (it is ~80% of the
tokens pushed through the model), so the prompts are decoded in three cached levels:

1. the prefix shared by *all* prompts, once, at batch 1;
2. per group (the caller's ``groups``, e.g. the example id), the prefix its prompts share,
   once per group, on top of level 1;
3. each prompt's own suffix, on top of its group's keys/values.

Rows are laid out ``[shared | pad | group prefix | pad | suffix | generated]`` with an
attention mask over the pads and explicit position ids, so each prompt sees exactly its
own tokens at their own positions, as in an unpadded run. Logits are computed only at the
last position. The decoding cache is one buffer per layer sized for the whole budget
(written in place, not concatenated each step), and rows that end are dropped from it in
one copy once a quarter of the batch has ended, so a batch costs about what its live rows
cost. Outputs equal ``model.generate``'s token for token (``make bench`` checks it).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from transformers.cache_utils import DynamicLayer

from ..models import expand_prefix, left_pad, shared_prefix_length

COMPACT_BELOW = 0.75
"""Compact a decoding batch's cache when fewer than this share of its rows are alive."""


class StepProcessor(Protocol):
    """Changes the next-token scores of the live rows of a decoding step.

    ``rows`` are the prompts' indices in the call (rows leave the batch when they end, so
    position in ``scores`` is not the prompt's index), ``generated`` their tokens so far.
    """

    def __call__(
        self, rows: Sequence[int], generated: Sequence[Sequence[int]], scores: torch.Tensor
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class Generated:
    """One prompt's greedy continuation: ``tokens`` (without the end token), ``text``
    (decoded, special tokens removed, stripped) and ``hit_limit`` (no end token within the
    budget)."""

    tokens: list[int]
    text: str
    hit_limit: bool


def eos_ids(model, tokenizer) -> set[int]:
    """Token ids that end a generation (the tokenizer's and the generation config's)."""
    return {tokenizer.eos_token_id} | set(
        np.atleast_1d(model.generation_config.eos_token_id or []).tolist()
    )


def plan_batches(
    prompts: Sequence[Sequence[int]],
    groups: Sequence[Hashable],
    shared: int,
    batch_size: int,
) -> list[list[tuple[int, list[int]]]]:
    """Batches of ``(group prefix length, member prompt indices)`` units.

    A group's prefix is what its members share after the first ``shared`` tokens (each
    keeps at least one token of its own); groups larger than ``batch_size`` are split.
    Units are ordered by prefix length, so a batch pads little.
    """
    members: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    units = []
    for idx in members.values():
        glen = shared_prefix_length([prompts[i][shared:] for i in idx])
        if len(idx) == 1:
            glen = len(prompts[idx[0]]) - shared - 1
        for start in range(0, len(idx), batch_size):
            units.append((glen, idx[start : start + batch_size]))
    units.sort(key=lambda u: (u[0], min(len(prompts[i]) for i in u[1])))
    batches: list[list[tuple[int, list[int]]]] = []
    rows = 0
    for unit in units:
        if not batches or rows + len(unit[1]) > batch_size:
            batches.append([])
            rows = 0
        batches[-1].append(unit)
        rows += len(unit[1])
    return batches


def greedy_generate(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int | Sequence[int] = 48,
    batch_size: int = 64,
    groups: Sequence[Hashable] | None = None,
    processor: StepProcessor | None = None,
) -> list[Generated]:
    """Greedy continuations of rendered prompts, with shared prefixes computed once.

    Args:
        max_new_tokens: the budget, one for all or one per prompt (the end token counts).
        batch_size: rows decoded together (a CPU decodes a small model memory-bound, so
            large batches cost little more per step than small ones).
        groups: one key per prompt; prompts with the same key share their common prefix's
            keys/values (default: each prompt alone, sharing only what all share).
        processor: changes the scores before the argmax (steering, constraints).

    Returns:
        One :class:`Generated` per prompt, in the order given.
    """
    n = len(prompts)
    if n == 0:
        return []
    if any(len(p) == 0 for p in prompts):
        raise ValueError("every prompt needs at least one token")
    budgets = [max_new_tokens] * n if isinstance(max_new_tokens, int) else list(max_new_tokens)
    if len(budgets) != n or min(budgets) < 1:
        raise ValueError("max_new_tokens: one budget ≥ 1 per prompt")
    groups = list(range(n)) if groups is None else list(groups)
    if len(groups) != n:
        raise ValueError(f"groups: {len(groups)} keys for {n} prompts")
    device = next(model.parameters()).device
    ends = eos_ids(model, tokenizer)
    with torch.inference_mode():
        shared, shared_kv = _shared_cache(model, prompts, device)
        out: list[Generated | None] = [None] * n
        for batch in plan_batches(prompts, groups, shared, batch_size):
            for i, tokens, hit in _decode_batch(
                model, tokenizer, prompts, batch, shared, shared_kv, budgets, ends, processor
            ):
                text = tokenizer.decode(tokens, skip_special_tokens=True).strip()
                out[i] = Generated(tokens, text, hit)
    return out  # type: ignore[return-value]


def greedy_texts(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int = 48,
    batch_size: int = 64,
) -> list[dict]:
    """:func:`greedy_generate` in :func:`xalign_utils.models.generate`'s output format
    (``text``, ``hit_limit`` per prompt), for :func:`xalign_utils.scoring.predict`."""
    outs = greedy_generate(model, tokenizer, prompts, max_new_tokens, batch_size)
    return [{"text": out.text, "hit_limit": out.hit_limit} for out in outs]


def _shared_cache(model, prompts, device) -> tuple[int, list | None]:
    """Length of the prefix all prompts share and its keys/values (computed at batch 1)."""
    shared = shared_prefix_length(prompts)
    if not shared:
        return 0, None
    ids = torch.tensor([list(prompts[0][:shared])], device=device)
    cache = model(input_ids=ids, use_cache=True, logits_to_keep=1).past_key_values
    return shared, [(layer.keys, layer.values) for layer in cache.layers]


def continuation_logprobs(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[int]],
    batch_size: int = 32,
    groups: Sequence[Hashable] | None = None,
) -> list[np.ndarray]:
    """Log-probability of each continuation token given its prompt (teacher forcing).

    Used for fluency: the perplexity of a steered explanation under the unsteered model
    is ``exp(-mean)`` of these. Prompts are planned as in :func:`greedy_generate` (give
    the same ``groups`` key to the continuations of one prompt, and the prompt is computed
    once for all of them).

    Returns:
        One array per continuation, of its length (empty for an empty continuation).
    """
    n = len(prompts)
    if len(continuations) != n:
        raise ValueError(f"{len(continuations)} continuations for {n} prompts")
    groups = list(range(n)) if groups is None else list(groups)
    device = next(model.parameters()).device
    out: list[np.ndarray] = [np.zeros(0)] * n
    with torch.inference_mode():
        shared, shared_kv = _shared_cache(model, prompts, device)
        for batch in plan_batches(prompts, groups, shared, batch_size):
            rows = [i for _, idx in batch for i in idx]
            keep = max(len(continuations[i]) for i in rows) + 1
            _, res, _, _ = _prefill(
                model, tokenizer, prompts, batch, shared, shared_kv, continuations, keep
            )
            logp = torch.log_softmax(res.logits.float(), -1)
            for j, i in enumerate(rows):
                cont = list(continuations[i])
                if not cont:
                    continue
                steps = logp[j, keep - len(cont) - 1 : keep - 1]
                picked = steps.gather(1, torch.tensor(cont, device=steps.device)[:, None])
                out[i] = picked[:, 0].cpu().numpy()
    return out


def _prefill(model, tokenizer, prompts, batch, shared, shared_kv, tails=None, keep=1):
    """Run one planned batch's prompts (and optional ``tails`` appended to them) through
    the model on top of the shared keys/values; returns ``(rows, output, mask, positions)``
    with logits for the last ``keep`` positions."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id
    # Level 2: one row per unit, its group prefix on top of the shared keys/values.
    g_ids, g_mask = left_pad([prompts[u[1][0]][shared : shared + u[0]] for u in batch], pad)
    base = torch.ones((len(batch), shared), dtype=torch.long)
    g_pos = shared + (g_mask.cumsum(1) - 1).clamp(min=0)
    cache = expand_prefix(model, shared_kv, len(batch))
    if g_ids.shape[1]:
        cache = model(
            input_ids=g_ids.to(device),
            attention_mask=torch.cat([base, g_mask], 1).to(device),
            position_ids=g_pos.to(device),
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).past_key_values
    # Level 3: each member's suffix (and tail) on top of its unit's row.
    unit_of = torch.tensor([u for u, (_, idx) in enumerate(batch) for _ in idx])
    rows = [i for _, idx in batch for i in idx]
    glens = torch.tensor([batch[u][0] for u in unit_of.tolist()])
    if cache is not None:
        cache = _select(cache, unit_of.to(device))
    suffixes = [list(prompts[i][shared + g :]) for i, g in zip(rows, glens.tolist(), strict=True)]
    if tails is not None:
        suffixes = [s + list(tails[i]) for s, i in zip(suffixes, rows, strict=True)]
    s_ids, s_mask = left_pad(suffixes, pad)
    mask = torch.cat([base[unit_of], g_mask[unit_of], s_mask], 1)
    pos = shared + glens[:, None] + (s_mask.cumsum(1) - 1).clamp(min=0)
    out = model(
        input_ids=s_ids.to(device),
        attention_mask=mask.to(device),
        position_ids=pos.to(device),
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=keep,
    )
    return rows, out, mask, pos


class _PreallocatedLayer(DynamicLayer):
    """A decoding cache layer that writes each step's keys/values into a buffer sized for
    the whole generation, instead of concatenating (``DynamicLayer`` copies the whole
    cache every step: a quarter of a decoding step at batch 64 on a CPU). ``keys`` and
    ``values`` are views of the filled part, so attention sees exactly the same tensors."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int):
        super().__init__()
        b, h, length, d = keys.shape
        self._k = keys.new_empty((b, h, capacity, d))
        self._v = values.new_empty((b, h, capacity, d))
        self._k[:, :, :length] = keys
        self._v[:, :, :length] = values
        self._length = length
        self._view()
        self.device, self.is_initialized = keys.device, True

    def _view(self) -> None:
        self.keys, self.values = self._k[:, :, : self._length], self._v[:, :, : self._length]

    def update(self, key_states, value_states, *args, **kwargs):
        end = self._length + key_states.shape[-2]
        if end > self._k.shape[-2]:
            raise RuntimeError(f"decoding cache full: {end} > {self._k.shape[-2]} positions")
        self._k[:, :, self._length : end] = key_states
        self._v[:, :, self._length : end] = value_states
        self._length = end
        self._view()
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k, self._v = self._k[indices], self._v[indices]
        self._view()


def _preallocate(cache, extra: int):
    """``cache`` with every layer moved into a buffer ``extra`` positions longer."""
    cache.layers = [
        _PreallocatedLayer(layer.keys, layer.values, layer.keys.shape[-2] + extra)
        for layer in cache.layers
    ]
    return cache


def _decode_batch(model, tokenizer, prompts, batch, shared, shared_kv, budgets, ends, processor):
    """Yield ``(prompt index, tokens, hit_limit)`` for one planned batch.

    Rows that end stay in the cache (fed their last token again, their scores ignored;
    attention is per row, so they change no other row) until fewer than
    ``COMPACT_BELOW`` of the cache's rows are alive; then the cache is compacted in one
    copy. Removing each row the step it ends copies the whole cache at almost every
    step of a large batch; keeping every dead row wastes the compute of the long tail.
    """
    device = next(model.parameters()).device
    rows, logits, mask, pos = _prefill(model, tokenizer, prompts, batch, shared, shared_kv)
    cache = _preallocate(logits.past_key_values, max(budgets[i] for i in rows))
    scores = logits.logits[:, -1].float()
    last = pos[:, -1]
    generated: list[list[int]] = [[] for _ in rows]
    member = list(range(len(rows)))  # cache row -> index in rows
    alive = list(range(len(rows)))  # the cache rows still decoding
    feed = torch.full((len(rows),), tokenizer.pad_token_id, dtype=torch.long)
    while alive:
        live = scores if len(alive) == len(member) else scores[torch.tensor(alive)]
        if processor is not None:
            which = [member[c] for c in alive]
            live = processor([rows[a] for a in which], [generated[a] for a in which], live)
        still = []
        for c, tok in zip(alive, live.argmax(-1).tolist(), strict=True):
            a = member[c]
            if tok in ends:
                yield rows[a], generated[a], False
                continue
            generated[a].append(tok)
            if len(generated[a]) >= budgets[rows[a]]:
                yield rows[a], generated[a], True
                continue
            feed[c] = tok
            still.append(c)
        alive = still
        if not alive:
            return
        if len(alive) < COMPACT_BELOW * len(member):
            sel = torch.tensor(alive)
            cache = _select(cache, sel.to(device))
            mask, last, feed = mask[sel], last[sel], feed[sel]
            member = [member[c] for c in alive]
            alive = list(range(len(alive)))
        mask = torch.cat([mask, torch.ones((len(member), 1), dtype=torch.long)], 1)
        last = last + 1
        step = model(
            input_ids=feed[:, None].to(device),
            attention_mask=mask.to(device),
            position_ids=last[:, None].to(device),
            past_key_values=cache,
            use_cache=True,
        )
        cache, scores = step.past_key_values, step.logits[:, -1].float()


def _select(cache, index: torch.Tensor):
    """The cache's rows ``index`` (repeats allowed), as a new tensor per layer."""
    cache.batch_select_indices(index)
    return cache
