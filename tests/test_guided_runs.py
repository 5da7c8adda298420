"""Notebook 06's table logic without the model: which methods steer and evaluate, the
word weights, the reproduction check's sentence, the tests against greedy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xalign_utils import guided_measures, guided_runs


def _faith(scores: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"id": f"e{i}", "method": m, "comp_aopc": v + i * 0.01}
            for m, v in scores.items()
            for i in range(3)
        ]
    )


def test_steering_is_the_most_faithful_one_pass_method_and_evaluation_another_family():
    faith = _faith({"occlusion": 0.9, "random": 0.8, "saliency": 0.3, "input_x_gradient": 0.2,
                    "attention_rollout": 0.1})  # fmt: skip
    # occlusion (many-pass) and random (null) cannot steer: not attributed on every example
    assert guided_runs.choose_methods(faith) == ("saliency", "attention_rollout")
    with pytest.raises(ValueError, match="family"):
        guided_runs.choose_methods(_faith({"saliency": 0.3, "input_x_gradient": 0.2}))
    with pytest.raises(ValueError, match="one-pass"):
        guided_runs.choose_methods(_faith({"random": 0.3}))


def test_word_weights_are_relative_to_the_largest_and_keep_a_repeated_words_maximum():
    attr = pd.DataFrame(
        [{"id": "a", "method": "saliency", "words": ["the", "cat", "the", "."],
          "magnitude": np.array([0.5, 2.0, 1.0, 4.0])}]
    )  # fmt: skip
    weights = guided_runs.word_weights(attr, "saliency")
    assert weights == {"a": {"the": 0.25, "cat": 0.5, ".": 1.0}}
    assert guided_runs.top_words(weights["a"], 2) == ["cat", "the"]  # punctuation skipped


def test_reproduction_sentence_says_whether_every_output_matched():
    same = pd.DataFrame({"role": ["a", "b"], "n": [3, 2], "identical": [3, 2]})
    assert "reproduces notebook 02: 5 of 5" in guided_runs.reproduction_sentence(same)
    off = same.assign(identical=[3, 1])
    assert "does not reproduce notebook 02: 4 of 5" in guided_runs.reproduction_sentence(off)


def test_conditions_are_tested_against_their_reference_with_two_primaries():
    rng = np.random.default_rng(0)
    rows = []
    for i in range(30):
        for cond, shift in (
            ("greedy", 0.0),
            ("bias α=4", 0.2),
            ("beam", 0.0),
            ("constrained", 0.1),
        ):
            rows.append({"id": f"e{i}", "dataset": "d", "type": "Top-Var list", "role": "rationale_topk",
                         "condition": cond, "comp_gain": rng.normal() * 0.01 + shift,
                         "rank_auc_eval": rng.normal() * 0.01 + 0.5}
                        | {m: rng.normal() for m in guided_measures.SECONDARY})  # fmt: skip
    tests = guided_measures.guided_tests(pd.DataFrame(rows))
    primary = tests[tests["role"] == "primary"].set_index(["metric", "condition"])
    assert set(primary.index) == {(m, c) for m in guided_measures.PRIMARIES
                                  for c in ("bias α=4", "beam", "constrained")}  # fmt: skip
    assert primary.loc[("comp_gain", "constrained"), "reference"] == "beam"
    assert primary.loc[("comp_gain", "bias α=4"), "reference"] == "greedy"
    assert primary.loc[("comp_gain", "bias α=4"), "mean_diff"] == pytest.approx(0.2, abs=0.01)
    assert primary.loc[("comp_gain", "constrained"), "mean_diff"] == pytest.approx(0.1, abs=0.01)
    assert primary.loc[("comp_gain", "bias α=4"), "reject"]
    assert not primary.loc[("rank_auc_eval", "bias α=4"), "reject"]
    assert (primary["alpha_m"] == 0.05 / 6).all()  # Holm family: both metrics, all conditions
    assert (tests.loc[tests["role"] != "primary", "p_holm"].isna()).all()
    pooled = guided_measures.pooled_effects(pd.DataFrame(rows))
    assert set(pooled["role"]) == {"exploratory"} and (pooled["n"] == 30).all()


def test_an_output_naming_nothing_scores_zero_comprehensiveness_not_nan():
    from helpers import text_example

    from xalign_utils.config import load_config

    ex = text_example("a", ["good", "film", "indeed"], dataset="sst2", label="positive")
    table = pd.DataFrame({"id": ["a"], "type": ["Top-Var list"], "positions": [[]]})
    out = guided_measures.comprehensiveness(None, None, load_config("smoke"), table, {"a": ex})
    assert out[["comp", "comp_random", "comp_gain"]].iloc[0].tolist() == [0.0, 0.0, 0.0]


def test_failure_flags_are_logical_on_mixed_roles():
    """A word list's ``parse_failure`` beside free text's ``None`` is an object column; the
    flag must stay a bool (``~`` on objects gave -1/-2 "parse rates" in 06's summary)."""
    table = pd.DataFrame({"parse_failure": pd.Series([False, True, None], dtype=object)})
    flags = guided_measures.failed(table, "parse_failure")
    assert flags.dtype == bool and flags.tolist() == [False, True, True]
    assert (~flags).astype(float).tolist() == [1.0, 0.0, 0.0]
    assert guided_measures.failed(table, "answer_failure").all()  # no column: failed
