"""The word-list parser and the explanation-to-word mapping on adversarial outputs."""

from __future__ import annotations

import pandas as pd
import pytest

from xalign_utils import data
from xalign_utils.explanations import (
    cited_positions,
    parse_outputs,
    parse_word_list,
    split_explanation,
)

WORDS = "The dogs are playing fetch in the park , the dog is happy".split()


@pytest.mark.parametrize(
    ("output", "status", "positions", "out_of_input"),
    [
        ("", "empty", [], []),
        ("   \n ", "empty", [], []),
        ("I'm sorry, but I cannot help with that request.", "refusal", [], []),
        ("As an AI, I don't have opinions.", "refusal", [], []),
        ("dogs, playing, park", "ok", [1, 3, 7], []),
        ("dogs | playing | park", "ok", [1, 3, 7], []),
        ("dogs; playing; park", "ok", [1, 3, 7], []),
        ("1. dogs\n2) playing\n- Park", "ok", [1, 3, 7], []),
        ('"Dogs", "FETCH", \'happy\'', "ok", [1, 4, 12], []),
        (
            'The most important words for this answer are "fetch," "park," and "happy."',
            "ok",
            [4, 7, 12],
            [],
        ),
        ("Here are the important words: play; fetched", "ok", [3, 4], []),
        ("banana, apple", "no_match", [], ["banana", "apple"]),
        ("dog, banana", "ok", [10], ["banana"]),
        (
            "The dogs are happy because they are playing fetch in the park",
            "sentence",
            [1, 3, 4, 7, 12],
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


def test_repeated_words_are_counted_once():
    parsed = parse_word_list("park, park, Park., dogs", WORDS)
    assert parsed.items == ["park", "dogs"] and parsed.repeats == 2
    assert parsed.positions == [1, 7]


def test_a_word_maps_to_every_occurrence():
    assert parse_word_list("the", WORDS).positions == [0, 6, 9]


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
