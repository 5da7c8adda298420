"""The word-list parser and the explanation-to-word mapping on adversarial outputs."""

from __future__ import annotations

import pandas as pd
import pytest

from xalign_utils import data
from xalign_utils import explanations as E
from xalign_utils.decoding.generation import Generated
from xalign_utils.explanations import (
    cited_positions,
    k_source,
    parse_outputs,
    parse_word_list,
    parsed_row,
    rationale_k,
    split_explanation,
)
from xalign_utils.schema import Example

WORDS = "The dogs are playing fetch in the park , the dog is happy".split()


@pytest.mark.parametrize(
    ("output", "status", "positions", "out_of_input"),
    [
        ("", "empty", [], []),
        ("   \n ", "empty", [], []),
        ("I'm sorry, but I cannot help with that request.", "refusal", [], []),
        ("As an AI, I don't have opinions.", "refusal", [], []),
        ("dogs, playing, park", "ok", [1, 3, 7], []),
        ("park, dogs, playing", "ok", [7, 1, 3], []),  # the order named, not input order
        ("dogs | playing | park", "ok", [1, 3, 7], []),
        ("dogs; playing; park", "ok", [1, 3, 7], []),
        ("1. dogs\n2) playing\n- Park", "ok", [1, 3, 7], []),
        ('"Dogs", "FETCH", \'happy\'', "ok", [1, 4, 12], []),
        ("I'm sorry, but the words are fetch, dogs", "ok", [4, 1], []),
        (
            'The most important words for this answer are "fetch," "park," and "happy."',
            "ok",
            [4, 7, 12],
            [],
        ),
        ("Here are the important words: play; fetched", "ok", [3, 4], []),
        ("Words: none", "non_answer", [], []),
        ("N/A", "non_answer", [], []),
        ("No words.", "non_answer", [], []),
        ("nothing", "non_answer", [], []),
        ("The important words are: []", "non_answer", [], []),
        ("banana, apple", "no_match", [], ["banana", "apple"]),
        ("dog, banana", "ok", [10], ["banana"]),
        (
            "The dogs are happy because they are playing fetch in the park",
            "sentence",
            [1, 12, 3, 4, 7],
            [],
        ),
        (
            "To decide, we look at the words.\nThe dogs are playing in the park.",
            "sentence",
            [1, 3, 7],
            ["decide", "look", "words"],
        ),
    ],
)
def test_parser_on_adversarial_outputs(output, status, positions, out_of_input):
    parsed = parse_word_list(output, WORDS)
    assert parsed.status == status
    assert parsed.positions == positions
    assert parsed.out_of_input == out_of_input
    assert parsed.failed == (status in {"empty", "refusal", "no_match"})
    assert parsed.non_answer == (status == "non_answer")


def test_repeated_words_are_counted_once():
    parsed = parse_word_list("park, park, Park., dogs", WORDS)
    assert parsed.items == ["park", "dogs"] and parsed.repeats == 2
    assert parsed.positions == [7, 1]  # in the order named


def test_a_word_maps_to_every_occurrence():
    assert parse_word_list("the", WORDS).positions == [0, 6, 9]


def test_positions_keep_the_order_named_first_mention_wins():
    # "the" names 0, 6, 9 (input order); "park" then "The" again: a repeat, not re-ranked
    parsed = parse_word_list("happy, the, park, The, dogs", WORDS)
    assert parsed.positions == [12, 0, 6, 9, 7, 1]
    assert parsed.repeats == 1


def test_lone_letters_do_not_stand_for_input_words():
    words = "a cat sat".split()
    spelled = parse_word_list("c a t", words)  # a spelled-out word, not the article
    assert spelled.positions == [1] and spelled.items == ["cat"]
    assert 0 not in parse_word_list("c a, t", words).positions
    assert 0 not in parse_word_list("cat sat a b", words).positions
    na = parse_word_list("N/A", words)
    assert na.status == "non_answer" and na.positions == []
    assert parse_word_list("cat, N/A", words).positions == [1]
    assert parse_word_list("a", words).positions == [0]  # named on its own: the word "a"


def test_a_refusal_followed_by_a_list_keeps_the_list():
    words = "the cat and the dog".split()
    parsed = parse_word_list("I'm sorry, but the words are cat, dog", words)
    assert parsed.status == "ok" and parsed.positions == [1, 4]
    assert parse_word_list("I'm sorry, I can't do that.", words).status == "refusal"


def test_non_answers_are_counted_apart_from_failures():
    row = parsed_row(parse_word_list("Words: none", WORDS))
    assert row["status"] == "non_answer" and row["non_answer"]
    assert not row["parse_failure"]
    assert row["n_out_of_input"] == 0 and row["n_items"] == 0
    # "none" that is itself an input word is a word
    assert parse_word_list("none", "none of them came".split()).positions == [0]


def test_inflected_and_partial_forms():
    words = "A woman squats down to touch the cracked earth".split()
    assert parse_word_list("squatting, crack", words).positions == [2, 7]
    # short fragments never match inside longer words
    assert parse_word_list("a", ["cat", "a"]).positions == [1]
    assert parse_word_list("at", ["cat"]).status == "no_match"


def test_free_text_mapping_excludes_stop_words():
    pos, matched = cited_positions("The dog is playing, so it must be happy.", WORDS)
    assert pos == [3, 10, 12]
    assert matched == ["dog", "playing", "happy"]
    assert cited_positions("", WORDS) == ([], [])
    assert cited_positions("it is what it is", WORDS) == ([], [])


def test_split_explanation_both_orders():
    assert (
        split_explanation(
            "Answer: entailment\nExplanation: a dog is an animal.", "predict_then_explain"
        )
        == "a dog is an animal."
    )
    assert (
        split_explanation("Answer: entailment. A dog is an animal.", "predict_then_explain")
        == "A dog is an animal."
    )
    assert (
        split_explanation("A dog is an animal.\nAnswer: entailment", "explain_then_predict")
        == "A dog is an animal."
    )


def test_parse_outputs_keeps_failures():
    ex = data.make_synthetic(1)[0]
    raw = pd.DataFrame(
        [
            {
                "id": ex.id,
                "dataset": ex.dataset,
                "role": "rationale_unbound",
                "asked_label": ex.label,
                "k": 1,
                "raw": "",
                "hit_limit": False,
            },
            {
                "id": ex.id,
                "dataset": ex.dataset,
                "role": "explain_then_predict",
                "asked_label": ex.label,
                "k": 1,
                "raw": "No idea.",
                "hit_limit": True,
            },
        ]
    )
    parsed = parse_outputs(raw, {ex.id: ex})
    assert len(parsed) == 2
    assert bool(parsed.loc[0, "parse_failure"]) and parsed.loc[0, "status"] == "empty"
    assert bool(parsed.loc[1, "answer_failure"])


def _hatexplain(rationale: list[int] | None) -> Example:
    words = ["you", "are", "all", "welcome"]
    return Example(
        "h1",
        "hatexplain",
        "test",
        "normal",
        {"text": " ".join(words)},
        {"text": words},
        rationale=None if rationale is None else {"text": rationale},
    )


def test_topvar_k_falls_back_to_fixed_k_for_an_empty_rationale():
    assert rationale_k(_hatexplain([0, 0, 0, 0]), 3) == 3
    assert k_source(_hatexplain([0, 0, 0, 0])) == "fixed"
    assert rationale_k(_hatexplain(None), 3) == 3 and k_source(_hatexplain(None)) == "fixed"
    assert rationale_k(_hatexplain([1, 0, 1, 0]), 3) == 2
    assert k_source(_hatexplain([1, 0, 1, 0])) == "human"
    with pytest.raises(ValueError, match="at least 1"):
        rationale_k(_hatexplain([0, 0, 0, 0]), 0)


def test_elicit_never_asks_for_zero_words_and_records_the_k_source(monkeypatch):
    asked: list[int] = []

    def fake_render(tokenizer, ex, role, *, label, k):
        asked.append(k)
        return type("Rendered", (), {"input_ids": [0]})()

    monkeypatch.setattr(E, "render", fake_render)
    monkeypatch.setattr(
        E,
        "greedy_generate",
        lambda m, t, ids, n, b, **kw: [Generated([1], "you", False) for _ in ids],
    )
    exs = [_hatexplain([0, 0, 0, 0]), _hatexplain([0, 1, 0, 0])]
    out = E.elicit(None, None, exs, "rationale_topk", fixed_k=3)
    assert asked == [3, 1]
    assert list(out["k"]) == [3, 1] and list(out["k_source"]) == ["fixed", "human"]
    asked.clear()
    with pytest.raises(ValueError, match="at least 1"):
        E.elicit(None, None, exs, "rationale_topk", fixed_k=0)
    assert asked == []


def test_parse_outputs_marks_which_positions_are_graded():
    ex = data.make_synthetic(1)[0]
    words = ex.flat_words()
    base = {"id": ex.id, "dataset": ex.dataset, "asked_label": ex.label, "k": 1}
    raw = pd.DataFrame(
        [
            {
                **base,
                "role": "rationale_topk",
                "raw": f"{words[3]}, {words[0]}",
                "hit_limit": False,
            },
            {**base, "role": "explain_then_predict", "raw": f"{words[3]}.", "hit_limit": False},
        ]
    )
    parsed = parse_outputs(raw, {ex.id: ex})
    assert list(parsed["graded"]) == [True, False]
    assert parsed.loc[0, "positions"][0] == 3  # first named first
