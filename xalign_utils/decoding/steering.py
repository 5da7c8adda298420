"""Step processors that steer an explanation toward input words (notebook 06).

* :class:`WordBias` adds ``alpha × weight`` to the logits of the tokens that begin each
  weighted input word, and of the token that continues it once its first tokens have been
  written (word level, so a word split into several tokens is steered as a whole);
* :class:`ExtractiveList` lets a word list name only input words, separated by commas, and
  end only after a whole word, within its token budget: every list it allows parses.

Both work on :func:`xalign_utils.decoding.generation.greedy_generate`'s live rows, and
through :func:`as_logits_processor` inside ``model.generate``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from transformers import LogitsProcessor

_WORDLIKE = re.compile(r"\w")


def word_alternatives(tokenizer, word: str) -> list[tuple[int, ...]]:
    """The tokenisations of ``word`` as it is written first (``cat``) and after a space
    (`` cat``), without duplicates."""
    out = []
    for text in (word, " " + word):
        ids = tuple(tokenizer.encode(text, add_special_tokens=False))
        if ids and ids not in out:
            out.append(ids)
    return out


class WordBias:
    """Soft steering: ``alpha × weight`` added to the logits of each weighted word's tokens,
    until the output has written the word once (a bias that stayed on would make the model
    repeat its most attributed word instead of explaining).

    Args:
        weights: per prompt, ``{word: weight}`` (normalised word attributions, e.g. in
            [0, 1]); words that are not word-like (punctuation) are ignored.
        alpha: bias in logit units for a word of weight 1 (0 leaves the scores untouched);
            one for all prompts or one per prompt (several strengths decode in one batch).
    """

    def __init__(
        self,
        tokenizer,
        weights: Sequence[Mapping[str, float]],
        alpha: float | Sequence[float],
    ):
        n = len(weights)
        alphas = [alpha] * n if isinstance(alpha, int | float) else list(alpha)
        if len(alphas) != n:
            raise ValueError(f"alpha: {len(alphas)} strengths for {n} prompts")
        self.alphas = [float(a) for a in alphas]
        #: per prompt: word → (weight, its tokenisations)
        self.words: list[dict[str, tuple[float, list[tuple[int, ...]]]]] = []
        for per_prompt in weights:
            self.words.append(
                {
                    word: (w, word_alternatives(tokenizer, word))
                    for word, w in per_prompt.items()
                    if w > 0 and _WORDLIKE.search(word)
                }
            )
        self.longest = max(
            (len(a) for ws in self.words for _, alts in ws.values() for a in alts), default=0
        )
        self._written: dict[int, tuple[tuple[int, ...], set[str]]] = {}  # row → (tokens, words)

    def written(self, row: int, generated: Sequence[int]) -> set[str]:
        """The weighted words of prompt ``row`` that ``generated`` already contains,
        updated from the last call's tokens when ``generated`` extends them (greedy
        decoding), recomputed otherwise (a new generation, a reordered beam)."""
        prev, words = self._written.get(row, ((), set()))
        if tuple(generated[: len(prev)]) != prev:
            prev, words = (), set()
        words = set(words)
        for end in range(len(prev) + 1, len(generated) + 1):
            for word, (_, alts) in self.words[row].items():
                if word not in words and any(
                    end >= len(a) and tuple(generated[end - len(a) : end]) == a for a in alts
                ):
                    words.add(word)
        self._written[row] = (tuple(generated), words)
        return words

    def token_bias(self, row: int, generated: Sequence[int]) -> dict[int, float]:
        """Weight per token for the next step of prompt ``row`` (before ``alpha``): the
        first token of every word not yet written, and the next token of a word being
        written."""
        done = self.written(row, generated)
        bias: dict[int, float] = {}
        for word, (w, alts) in self.words[row].items():
            if word in done:
                continue
            for alt in alts:
                bias[alt[0]] = max(bias.get(alt[0], 0.0), w)
                for cut in range(1, min(len(alt), len(generated) + 1)):
                    if tuple(generated[-cut:]) == alt[:cut]:
                        bias[alt[cut]] = max(bias.get(alt[cut], 0.0), w)
        return bias

    def __call__(
        self, rows: Sequence[int], generated: Sequence[Sequence[int]], scores: torch.Tensor
    ) -> torch.Tensor:
        r_idx, t_idx, vals = [], [], []
        for j, (row, gen) in enumerate(zip(rows, generated, strict=True)):
            if self.alphas[row] == 0:
                continue
            for tok, w in self.token_bias(row, gen).items():
                r_idx.append(j)
                t_idx.append(tok)
                vals.append(self.alphas[row] * w)
        if not vals:
            return scores
        out = scores.clone()
        out.index_put_(
            (torch.tensor(r_idx), torch.tensor(t_idx)),
            torch.tensor(vals, dtype=scores.dtype),
            accumulate=True,
        )
        return out


class ExtractiveList:
    """Hard constraint for word lists: ``w1, w2, …`` with every ``w`` an input word.

    Allowed at each step: at the start or after a comma, the first token of any input word
    that still fits the budget; inside a word, its next tokens; after a whole word, a comma
    (if another word still fits) or the end token. So the output always ends with a whole
    word and parses as a list of input words.

    Args:
        words: per prompt, the input words a list may name (non-word-like ones are dropped).
        budgets: per prompt, the generation budget (the end token counts).
        end_id: the token that ends the generation.
    """

    def __init__(
        self, tokenizer, words: Sequence[Sequence[str]], budgets: Sequence[int], end_id: int
    ):
        self.end_id = end_id
        self.comma = tokenizer.encode(",", add_special_tokens=False)[0]
        self.budgets = list(budgets)
        self.alts: list[list[tuple[int, ...]]] = []
        for per_prompt in words:
            alts = {
                a
                for w in per_prompt
                if _WORDLIKE.search(w)
                for a in word_alternatives(tokenizer, w)
                if self.comma not in a
            }
            self.alts.append(sorted(alts))

    def allowed(self, row: int, generated: Sequence[int]) -> list[int]:
        """Token ids allowed next for prompt ``row`` after ``generated``."""
        start = max((i + 1 for i, t in enumerate(generated) if t == self.comma), default=0)
        partial = tuple(generated[start:])
        left = self.budgets[row] - len(generated)  # tokens still allowed, end token included
        alts = self.alts[row]
        n = len(partial)
        nxt = {a[n] for a in alts if len(a) > n and a[:n] == partial and len(a) - n <= left - 1}
        if partial in alts:  # a whole word: end here, or a comma and one more word
            nxt.add(self.end_id)
            if left >= 3 and any(len(a) <= left - 2 for a in alts):
                nxt.add(self.comma)
        if not nxt:  # nothing fits (only on a zero budget): end
            nxt.add(self.end_id)
        return sorted(nxt)

    def __call__(
        self, rows: Sequence[int], generated: Sequence[Sequence[int]], scores: torch.Tensor
    ) -> torch.Tensor:
        out = torch.full_like(scores, float("-inf"))
        for j, (row, gen) in enumerate(zip(rows, generated, strict=True)):
            idx = torch.tensor(self.allowed(row, gen))
            out[j, idx] = scores[j, idx]
        return out


class _AsLogitsProcessor(LogitsProcessor):
    def __init__(self, processor, prompt_length: int):
        self.processor, self.prompt_length = processor, prompt_length

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        generated = input_ids[:, self.prompt_length :].tolist()
        return self.processor(list(range(len(generated))), generated, scores)


def as_logits_processor(processor, prompt_length: int) -> LogitsProcessor:
    """A ``transformers`` ``LogitsProcessor`` running ``processor`` inside ``model.generate``
    on a (left-padded) batch whose prompts occupy the first ``prompt_length`` columns; row
    ``i`` of the batch is prompt ``i`` of the processor, so greedy or sampling decoding
    only (with beams, rows are prompts × beams; use
    :func:`xalign_utils.decoding.constrained.constrained_beam_search` there)."""
    return _AsLogitsProcessor(processor, prompt_length)
