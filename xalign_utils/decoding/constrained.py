"""Lexically constrained beam search: dynamic beam allocation (Post & Vilar, 2018) on a KV cache.

Transformers 5 dropped ``constraints=`` / ``force_words_ids=`` from ``generate``
(huggingface/transformers#40518) and points to the Hub repository
``transformers-community/constrained-beam-search``, which runs only as remote code
(``trust_remote_code=True``, fetched from the Hub: not offline, and unpinned code); the
maintained constrained-generation libraries (Outlines, transformers-CFG, guidance) mask each
step's logits to what a grammar or regular expression allows, with no beam over where the
required words go (and a regular expression that requires k words in any order spells out
k! orders). So this module puts words *into* an output (e.g. make an
explanation mention given input words) with the grid-free DBA algorithm, batched over
prompts with one forward pass per step.

Search (per prompt, ``k = num_beams``):

* Progress of a hypothesis = tokens of its met constraints (each counted as the length of its
  longest alternative) + the longest prefix of an unmet alternative that ends the output
  (a constraint in progress). Leaving a constraint half-way drops that partial progress.
* Candidates = each running beam's top-``k`` non-EOS tokens + the next token of every unmet
  alternative (its first token, and the continuation of every partial match) + EOS.
* The ``k`` running slots are split over the ``T + 1`` progress banks (``T`` = total
  constraint tokens): ``k // (T + 1)`` each, the remainder to the top bank; a bank with too
  few candidates passes its spare slots down to the next bank (and from bank 0 back to the
  top), and each bank keeps its best candidates by summed log-probability.
* EOS is only a candidate for hypotheses that meet every constraint; such a hypothesis ends
  when its EOS ranks among the ``k`` best candidates of the top bank.
* A prompt is done when ``k`` hypotheses have ended, or at ``max_new_tokens``, when the
  running beams end too (``hit_limit``). The answer is the ended hypothesis that meets the
  most constraints, then has the best score ``sum(log p) / length ** length_penalty``
  (``length`` counts generated tokens, EOS included when emitted; HF's convention).

Without constraints there is a single bank and this is Hugging Face's beam search with
``early_stopping=True`` (stop once ``num_beams`` hypotheses ended): the running beams are
the ``k`` best non-EOS continuations, and an EOS ends a hypothesis when it ranks among the
``k`` best continuations. ``tests/test_constrained.py`` checks this token for token.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import DynamicCache

from xalign_utils.models import left_pad, length_batches

Alternative = tuple[int, ...]
Constraint = tuple[Alternative, ...]


@dataclass(frozen=True)
class BeamOutput:
    """The best hypothesis for one prompt."""

    tokens: list[int]  # generated ids, without the prompt, without EOS
    met: list[bool]  # per constraint: does the output contain one of its alternatives
    score: float  # sum of log-probs / (generated length incl. EOS) ** length_penalty
    hit_limit: bool  # stopped at max_new_tokens without EOS


@dataclass(frozen=True)
class _Hyp:
    tokens: Alternative
    logp: float  # summed log-probability of ``tokens``
    met: tuple[bool, ...]
    next_ids: frozenset[int]  # constraint tokens that start or continue an unmet alternative


def _advance(
    tokens: Alternative, met: tuple[bool, ...], constraints: Sequence[Constraint]
) -> tuple[tuple[bool, ...], int, frozenset[int]]:
    """``(met, progress, next constraint ids)`` of ``tokens`` whose prefix had ``met``.

    A constraint becomes met when one of its alternatives ends ``tokens`` (every position is
    checked as it is appended, so ``met`` is exact)."""
    new_met, next_ids, partial = list(met), set(), 0
    for c, alts in enumerate(constraints):
        if new_met[c]:
            continue
        if any(len(a) <= len(tokens) and tokens[len(tokens) - len(a) :] == a for a in alts):
            new_met[c] = True
            continue
        for a in alts:
            next_ids.add(a[0])
            for m in range(1, min(len(a), len(tokens) + 1)):
                if tokens[-m:] == a[:m]:
                    next_ids.add(a[m])
                    partial = max(partial, m)
    done = sum(
        max(len(a) for a in alts) for ok, alts in zip(new_met, constraints, strict=True) if ok
    )
    return tuple(new_met), done + partial, frozenset(next_ids)


def allocate(counts: Sequence[int], k: int) -> list[int]:
    """Slots per bank (DBA): ``k // len(counts)`` each, the remainder to the top bank; spare
    slots of a bank with fewer candidates flow to the bank below, then from bank 0 back to
    the top. Sums to ``min(k, sum(counts))``."""
    n = len(counts)
    alloc = [k // n] * n
    alloc[-1] += k % n
    carry = 0
    for _ in range(2):
        for b in reversed(range(n)):
            want = alloc[b] + carry
            alloc[b] = min(want, counts[b])
            carry = want - alloc[b]
    return alloc


def _validate(prompts, constraints, num_beams, max_new_tokens, batch_size, eos, vocab):
    """Normalised constraints (tuples), or ValueError naming the problem."""
    for name, value in [("num_beams", num_beams), ("max_new_tokens", max_new_tokens)]:
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if len(constraints) != len(prompts):
        raise ValueError(
            f"constraints must hold one list per prompt: {len(constraints)} lists for "
            f"{len(prompts)} prompts"
        )
    out = []
    for i, (prompt, cons) in enumerate(zip(prompts, constraints, strict=True)):
        if len(prompt) == 0:
            raise ValueError(f"prompt {i} is empty")
        norm = []
        for c, alts in enumerate(cons):
            where = f"prompt {i}, constraint {c}"
            if len(alts) == 0:
                raise ValueError(f"{where} has no alternatives")
            for a, alt in enumerate(alts):
                alt = tuple(int(t) for t in alt)
                if not alt:
                    raise ValueError(f"{where}, alternative {a} is empty (no token ids)")
                if bad := [t for t in alt if t in eos or not 0 <= t < vocab]:
                    raise ValueError(
                        f"{where}, alternative {a}: ids {bad} are EOS or outside the "
                        f"vocabulary [0, {vocab})"
                    )
            norm.append(tuple(tuple(int(t) for t in alt) for alt in alts))
        out.append(norm)
    return out


def constrained_beam_search(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    constraints: Sequence[Sequence[Sequence[Sequence[int]]]],
    *,
    num_beams: int = 4,
    max_new_tokens: int = 48,
    batch_size: int = 8,
    length_penalty: float = 1.0,
) -> list[BeamOutput]:
    """Beam search whose outputs contain given token sequences (DBA; see the module doc).

    Args:
        prompts: rendered prompts (token ids).
        constraints: per prompt, a list of constraints; a constraint is a list of alternative
            token sequences (e.g. the ``" cat"`` and ``"cat"`` tokenisations) and is met when
            any of them appears contiguously in the output. ``[]`` = plain beam search.
        num_beams: running hypotheses per prompt.
        max_new_tokens: generated tokens at most (EOS included).
        batch_size: prompts decoded together (grouped by length); rows = prompts x beams.
        length_penalty: exponent of the length that divides the summed log-probability.

    Returns:
        One :class:`BeamOutput` per prompt, in order. A constraint that could not be met in
        ``max_new_tokens`` shows as ``False`` in ``met``.

    Raises:
        ValueError: non-positive sizes, a constraint list per prompt missing, an empty
            prompt, constraint or alternative, or an alternative holding EOS/unknown ids.
    """
    eos = {tokenizer.eos_token_id} | set(
        np.atleast_1d(model.generation_config.eos_token_id or []).tolist()
    )
    eos.discard(None)
    vocab = model.get_output_embeddings().weight.shape[0]
    cons = _validate(prompts, constraints, num_beams, max_new_tokens, batch_size, eos, vocab)
    results: list[BeamOutput | None] = [None] * len(prompts)
    with torch.inference_mode():
        for batch in length_batches(prompts, batch_size):
            outs = _search(
                model,
                tokenizer.pad_token_id,
                [prompts[i] for i in batch],
                [cons[i] for i in batch],
                sorted(eos),
                num_beams,
                max_new_tokens,
                length_penalty,
            )
            for i, out in zip(batch, outs, strict=True):
                results[i] = out
    return results


def _prune(per, hyps, cons, total, eos, k, norm, last, ended) -> list[tuple[_Hyp, int]]:
    """One prompt's step: ``(hypothesis, parent row)`` of the next running beams, chosen
    from the candidates ``per`` (``{(row, token): summed log-prob}``) by bank; appends to
    ``ended`` the hypotheses that end (EOS, or all at the last step)."""
    banks: list[list[tuple[float, _Hyp, int]]] = [[] for _ in range(total + 1)]
    top: list[tuple[float, bool, _Hyp]] = []  # top-bank candidates: EOS competes here
    for (r, t), v in per.items():
        h = hyps[r]
        if t in eos:
            top.append((v, True, h))
            continue
        tokens = h.tokens + (t,)
        met, progress, nxt = _advance(tokens, h.met, cons)
        new = _Hyp(tokens, v, met, nxt)
        banks[progress].append((v, new, r))
        if progress == total:
            top.append((v, False, new))
    for v, is_eos, h in sorted(top, key=lambda x: -x[0])[:k]:
        if is_eos:
            ended.append((sum(h.met), v / norm, h, False))
    chosen = []
    for bank, n in zip(banks, allocate([len(b) for b in banks], k), strict=True):
        chosen += sorted(bank, key=lambda x: -x[0])[:n]
    if last:
        ended += [(sum(h.met), v / norm, h, True) for v, h, _ in chosen]
        return []
    return [] if len(ended) >= k else [(h, r) for _, h, r in sorted(chosen, key=lambda x: -x[0])]


def _step(model, ids, mask, pos, kw, device) -> torch.Tensor:
    """Last-position logits of one forward pass that extends the cache in ``kw``."""
    out = model(
        input_ids=ids.to(device),
        attention_mask=mask.to(device),
        position_ids=pos.to(device),
        **kw,
    )
    return out.logits[:, -1]


def _search(model, pad_id, prompts, cons, eos, k, max_new, length_penalty) -> list[BeamOutput]:
    """DBA beam search over one batch of prompts: one forward of all live rows per step."""
    device = next(model.parameters()).device
    params = inspect.signature(model.forward).parameters
    cache_key = "cache" if "cache" in params else "past_key_values"
    ids, mask = left_pad(prompts, pad_id)
    width, pads = ids.shape[1], (ids.shape[1] - mask.sum(-1)).tolist()
    cache = DynamicCache(config=model.config)
    pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)  # as HF's generate
    kw = {cache_key: cache, "use_cache": True}
    if "logits_to_keep" in params:
        kw["logits_to_keep"] = 1
    logits = _step(model, ids, mask, pos, kw, device)
    total = [sum(max(len(a) for a in alts) for alts in c) for c in cons]  # top bank per prompt
    hyps = [_Hyp((), 0.0, (False,) * len(c), _advance((), (False,) * len(c), c)[2]) for c in cons]
    rows = list(range(len(prompts)))  # prompt of each cache row
    ended: list[list[tuple]] = [[] for _ in prompts]  # (n met, score, hyp, hit_limit)
    eos_t = torch.tensor(eos, device=device)
    for step in range(max_new):
        logp = torch.log_softmax(logits.float(), dim=-1)
        top_v, top_i = logp.index_fill(1, eos_t, -torch.inf).topk(min(k, logp.shape[1]), dim=-1)
        top_v, top_i = top_v.tolist(), top_i.tolist()
        extra = [(r, t) for r, h in enumerate(hyps) for t in h.next_ids]
        extra += [(r, e) for r, h in enumerate(hyps) if all(h.met) for e in eos]
        er, et = torch.tensor(extra, dtype=torch.long, device=device).reshape(-1, 2).T
        extra_v = logp[er, et].tolist()
        cands: dict[int, dict[tuple[int, int], float]] = {}
        for r, h in enumerate(hyps):
            per = cands.setdefault(rows[r], {})
            for t, v in zip(top_i[r], top_v[r], strict=True):
                per[(r, t)] = h.logp + v
        for (r, t), v in zip(extra, extra_v, strict=True):
            cands[rows[r]][(r, t)] = hyps[r].logp + v
        length, last = step + 1, step == max_new - 1
        next_hyps, parents, next_rows = [], [], []
        for p, per in cands.items():
            args = (hyps, cons[p], total[p], eos, k, length**length_penalty, last)
            for new, r in _prune(per, *args, ended[p]):
                next_hyps.append(new)
                parents.append(r)
                next_rows.append(p)
        if not next_hyps:
            break
        hyps, rows = next_hyps, next_rows
        # index_select on every layer: also expands step 0's one row per prompt to its beams
        cache.reorder_cache(torch.tensor(parents, device=device))
        span = torch.arange(width + length)
        att = (span[None, :] >= torch.tensor([pads[p] for p in rows])[:, None]).long()
        new_ids = torch.tensor([[h.tokens[-1]] for h in hyps])
        pos = torch.tensor([[width - pads[p] + step] for p in rows])  # n_prompt + step
        logits = _step(model, new_ids, att, pos, kw, device)
    outputs = []
    for done in ended:
        _, score, h, hit = max(done, key=lambda x: (x[0], x[1]))
        outputs.append(BeamOutput(list(h.tokens), list(h.met), float(score), hit))
    return outputs
