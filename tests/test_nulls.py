"""Null attributions: orderings on hand-built batches, rarity counts, registry entries."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import text_example

from xalign_utils import attribution as A
from xalign_utils.attribution import nulls
from xalign_utils.prompts import RenderedPrompt
from xalign_utils.stats import top_k

NEW_NULLS = ("position_from_start", "position_from_end", "tokens_per_word", "word_rarity")


def fake_batch(*items: tuple[list[str], list[list[int]]], dataset: str = "sst2"):
    """A Batch-like object: ``examples`` and ``rendered`` (words and their token spans)."""
    examples, rendered = [], []
    for i, (words, spans) in enumerate(items):
        examples.append(text_example(f"e{i}", words, dataset=dataset, label="positive"))
        rendered.append(RenderedPrompt("", [], spans, list(words)))
    return SimpleNamespace(examples=examples, rendered=rendered, size=len(examples))


WORDS = ["the", "Film", "was", "extraordinarily", "the"]
SPANS = [[3], [4], [5], [6, 7, 8], [9]]


def scores(name: str, batch, **options) -> list[np.ndarray]:
    out, extras = A.METHODS[name].function(None, batch, shared={}, **options)
    assert extras == {}
    for signed, mag in out:
        np.testing.assert_array_equal(signed, mag)  # nulls are unsigned
    return [signed for signed, _ in out]


def test_position_from_start_rises_with_index():
    (s,) = scores("position_from_start", fake_batch((WORDS, SPANS)))
    np.testing.assert_allclose(s, [0, 0.2, 0.4, 0.6, 0.8])
    assert top_k(s, 1) == [4]  # the last word ranks first


def test_position_from_end_falls_with_index():
    (s,) = scores("position_from_end", fake_batch((WORDS, SPANS)))
    np.testing.assert_allclose(s, [1, 0.8, 0.6, 0.4, 0.2])
    assert top_k(s, 1) == [0]


def test_tokens_per_word_counts_subwords_and_ties_break_by_position():
    (s,) = scores("tokens_per_word", fake_batch((WORDS, SPANS)))
    np.testing.assert_array_equal(s, [1, 1, 1, 3, 1])
    assert set(top_k(s, 3)) == {3, 0, 1}  # the long word, then the earliest tied ones


def test_words_without_tokens_score_zero():
    spans = [[3], [], [4, 5]]
    batch = fake_batch((["a", "b", "cc"], spans))
    for name in NEW_NULLS:
        (s,) = scores(name, batch, word_counts={"a": 5, "cc": 1})
        assert s[1] == 0, name
    (s,) = scores("position_from_start", batch)
    np.testing.assert_allclose(s, [0, 0, 2 / 3])


def test_word_counts_per_dataset_normalised():
    exs = [
        text_example("a", ["The", "film", "ＦＩＬＭ"], dataset="sst2"),
        text_example("b", ["the"], dataset="movies"),
    ]
    counts = nulls.word_counts(exs)
    assert counts["sst2"] == {"the": 1, "film": 2}  # NFKC folds full-width, case folded
    assert counts["movies"] == {"the": 1}


def test_word_rarity_add_one_smoothing_and_order():
    counts = {"the": 8, "film": 1}  # N = 9, V = 2: denominator 12
    (s,) = scores(
        "word_rarity", fake_batch((["The", "film", "zebra"], [[1], [2], [3]])), word_counts=counts
    )
    np.testing.assert_allclose(s, [math.log(12 / 9), math.log(12 / 2), math.log(12 / 1)])
    assert list(np.argsort(-s)) == [2, 1, 0]  # unseen, rare, common


def test_word_rarity_picks_the_batch_dataset_from_per_dataset_counts():
    batch = fake_batch((["good", "bad"], [[1], [2]]), dataset="sst2")
    per_dataset = {"sst2": {"good": 1, "bad": 9}, "movies": {"good": 9, "bad": 1}}
    (s,) = scores("word_rarity", batch, word_counts=per_dataset)
    (flat,) = scores("word_rarity", batch, word_counts=per_dataset["sst2"])
    np.testing.assert_array_equal(s, flat)
    assert s[0] > s[1]


def test_word_rarity_without_counts_uses_the_batch():
    batch = fake_batch((["good", "good", "film"], [[1], [2], [3]]), (["film", "film"], [[1], [2]]))
    a, b = scores("word_rarity", batch)  # batch counts: good 2, film 3 → N 5, V 2
    np.testing.assert_allclose(a, [math.log(8 / 3), math.log(8 / 3), math.log(8 / 4)])
    np.testing.assert_allclose(b, [math.log(8 / 4)] * 2)


@pytest.mark.parametrize("name", NEW_NULLS)
def test_nulls_are_deterministic(name):
    batch = fake_batch((WORDS, SPANS), (["x"], [[2]]))
    first, again = scores(name, batch), scores(name, batch)
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, y)
    assert [len(s) for s in first] == [5, 1]


def test_every_null_is_registered_as_a_null():
    family = A.methods_where(family="null")
    assert family == ["random", *NEW_NULLS]
    for name in family:
        spec = A.method(name)
        assert spec.cost == "one_pass" and not spec.expected_faithful and not spec.gradient_based
        assert spec.stochastic == (name == "random")
    assert A.method("word_rarity").options == ("word_counts",)


@pytest.mark.slow
def test_nulls_through_attribute(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    exs = [
        text_example("a", ["a", "wonderful", "film"], dataset="sst2", label="positive"),
        text_example("b", ["dull"], dataset="sst2", label="negative"),
    ]
    counts = nulls.word_counts(exs)
    out = A.attribute(
        model, tokenizer, exs, ["position_from_start", "word_rarity"], word_counts=counts
    )
    assert list(out["method"]) == ["position_from_start", "word_rarity"] * 2
    pos = out[out["method"] == "position_from_start"]["signed"].iloc[0]
    np.testing.assert_allclose(pos, [0, 1 / 3, 2 / 3])
    assert (out["status"] == "ok").all()
