"""Null attributions that carry no information about the model: the reference every
metric is compared against (DESIGN.md §8).

Besides seeded ``random`` scores, four deterministic nulls score words by surface
properties that explanations and attributions are both drawn to, so a metric that
rewards them is not evidence of faithfulness or agreement:

- ``position_from_start``: ``index / n`` — later words score higher (explanations tend
  to name content words late in the input);
- ``position_from_end``: ``1 − index / n`` — earlier words score higher;
- ``tokens_per_word``: the number of sub-word tokens of the word in the rendered prompt
  (sums over sub-words reward long words under every method);
- ``word_rarity``: ``−log p(word)``, the add-one-smoothed unigram probability of the
  normalised word in its dataset — rare words score higher.

Every null returns ``(signed, magnitude)`` with ``signed == magnitude ≥ 0``. They use no
seed and no model. Words with no token of their own score 0, as under every other
method. Ties are left exact (equal floats); rankings break them by position, earlier
first (:func:`xalign_utils.stats.top_k`), so the order is stable across runs.
"""

from __future__ import annotations

import math
import unicodedata
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np

from ..forward import Batch
from ..schema import Example


def random_scores(model, batch: Batch, seed: int = 0, **_) -> tuple[list, dict]:
    """Seeded uniform scores per word, stable across processes (seeded by example id)."""
    out = []
    for ex, rp in zip(batch.examples, batch.rendered, strict=True):
        rng = np.random.default_rng([seed, zlib.crc32(ex.id.encode())])  # stable across processes
        s = rng.random(len(rp.word_tokens))
        out.append((s, s.copy()))
    return out, {}


def _pairs(per_example: Iterable[np.ndarray], batch: Batch) -> list:
    """``(signed, magnitude)`` per example, words without tokens set to 0."""
    out = []
    for s, rp in zip(per_example, batch.rendered, strict=True):
        s = np.where([bool(span) for span in rp.word_tokens], s, 0.0).astype(float)
        out.append((s, s.copy()))
    return out


def position_from_start(model, batch: Batch, **_) -> tuple[list, dict]:
    """``index / n`` per word (first word 0, last ``(n−1)/n``): later words score higher."""
    n_words = [len(rp.word_tokens) for rp in batch.rendered]
    return _pairs((np.arange(n) / max(n, 1) for n in n_words), batch), {}


def position_from_end(model, batch: Batch, **_) -> tuple[list, dict]:
    """``1 − index / n`` per word (first word 1, last ``1/n``): earlier words score higher."""
    n_words = [len(rp.word_tokens) for rp in batch.rendered]
    return _pairs((1 - np.arange(n) / max(n, 1) for n in n_words), batch), {}


def tokens_per_word(model, batch: Batch, **_) -> tuple[list, dict]:
    """Number of sub-word tokens each word covers in the rendered prompt (0 if none)."""
    counts = (
        np.array([len(span) for span in rp.word_tokens], dtype=float) for rp in batch.rendered
    )
    return _pairs(counts, batch), {}


def normalise_word(word: str) -> str:
    """The form unigram counts use: Unicode NFKC, case-folded, outer whitespace stripped."""
    return unicodedata.normalize("NFKC", word).casefold().strip()


def word_counts(examples: Iterable[Example]) -> dict[str, Counter]:
    """Per dataset, the count of every normalised word over all its examples' words.

    Build it once over a whole dataset (all its evaluation examples) and pass it to
    :func:`word_rarity` (``word_counts=...``) so rarity does not depend on the batch.
    """
    out: dict[str, Counter] = {}
    for ex in examples:
        out.setdefault(ex.dataset, Counter()).update(normalise_word(w) for w in ex.flat_words())
    return out


def _counts_for(batch: Batch, counts: Mapping | None) -> Mapping[str, int]:
    """The word → count table for the batch's dataset (see :func:`word_rarity`)."""
    if counts is None:
        return word_counts(batch.examples).get(batch.examples[0].dataset, Counter())
    if counts and all(isinstance(v, Mapping) for v in counts.values()):  # per dataset
        return counts.get(batch.examples[0].dataset, {})
    return counts


def word_rarity(model, batch: Batch, word_counts: Mapping | None = None, **_) -> tuple[list, dict]:
    """``−log p(word)`` with add-one smoothing: rarer words in the dataset score higher.

    ``p(w) = (c(w) + 1) / (N + V + 1)``, with ``N`` the total count and ``V`` the number
    of distinct words of the table (the extra 1 is the mass of unseen words), on the
    :func:`normalise_word` form.

    Args:
        word_counts: word → count over the whole dataset, or dataset → such a table (what
            :func:`xalign_utils.attribution.nulls.word_counts` returns; the batch's dataset
            is picked). ``None``: counts over the batch's own examples only, so a word's
            rarity then depends on which examples share its batch.
    """
    if not batch.examples:
        return [], {}
    counts = _counts_for(batch, word_counts)
    denom = math.log(sum(counts.values()) + len(counts) + 1)
    scores = (
        np.array([denom - math.log(counts.get(normalise_word(w), 0) + 1) for w in rp.words])
        for rp in batch.rendered
    )
    return _pairs(scores, batch), {}
