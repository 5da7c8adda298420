"""Notebook 02's tables from hand-made predictions, word lists and free text."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from xalign_utils import baselines as B
from xalign_utils.config import load_config
from xalign_utils.schema import Example


def _example(ex_id: str, label: str) -> Example:
    words = ["the", "cat", "sat"]
    return Example(ex_id, "sst2", "dev", label, {"text": " ".join(words)}, {"text": words})


PREDICTIONS = pd.DataFrame(
    {
        "id": ["a", "b", "c", "d"],
        "dataset": ["sst2", "sst2", "esnli", "esnli"],
        "label": ["positive", "negative", "neutral", "entailment"],
        "pred": ["positive", "positive", "neutral", "neutral"],
        "greedy_label": ["positive", None, "entailment", "neutral"],
        "label_mass": [0.5, 0.3, 0.2, 0.4],
    }
)


def _rationales() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "a", "b"],
            "dataset": ["sst2"] * 4,
            "role": ["rationale_unbound"] * 2 + ["rationale_topk"] * 2,
            "label_source": ["gold"] * 4,
            "parse_failure": [False, True, False, False],
            "n_out_of_input": [1, 0, 0, 2],
            "n_items": [3, 0, 2, 2],
            "hit_limit": [False, False, True, False],
            "status": ["ok", "empty", "ok", "ok"],
        }
    )


def test_rationale_sources_and_raw_table_name():
    assert B.rationale_sources("gold, pred") == ["gold", "pred"]
    cfg = load_config("smoke", rationale_labels="gold,pred")
    assert B.raw_rationales_name(cfg) == "rationales_raw_gold_pred"
    assert B.raw_rationales_name(load_config("smoke", rationale_labels="gold")) == (
        "rationales_raw_gold"
    )


def test_elicit_rationales_asks_each_distinct_prompt_once_in_one_call(monkeypatch):
    calls = []

    def fake_elicit_many(model, tokenizer, requests, *, fixed_k, max_new_tokens, batch_size):
        calls.append(([(ex.id, role, lab) for ex, role, lab in requests], fixed_k,
                      max_new_tokens, batch_size))  # fmt: skip
        return pd.DataFrame(
            {"id": [ex.id for ex, _, _ in requests], "role": [r for _, r, _ in requests],
             "asked_label": [lab for _, _, lab in requests]}
        )  # fmt: skip

    monkeypatch.setattr(B, "elicit_many", fake_elicit_many)
    examples = [_example("a", "positive"), _example("b", "negative")]
    cfg = load_config("smoke", rationale_labels="gold,pred")
    out = B.elicit_rationales(None, None, examples, PREDICTIONS, cfg)
    assert len(calls) == 1  # every prompt in one call: the prompts of an example share a prefix
    requests, *settings = calls[0]
    # the model predicts "positive" for both: a's predicted-label prompt equals its gold one
    # and is generated once; b's is generated for both labels
    assert sorted(requests) == sorted(
        [("a", role, "positive") for role in B.WORD_LIST_ROLES]
        + [("b", role, lab) for role in B.WORD_LIST_ROLES for lab in ("negative", "positive")]
    )
    assert settings == [cfg.topk_fixed, cfg.max_new_tokens, cfg.gen_batch_size]
    assert list(out["label_source"]) == ["gold"] * 4 + ["pred"] * 4
    assert (
        list(out["role"])
        == ["rationale_unbound"] * 2
        + ["rationale_topk"] * 2
        + ["rationale_unbound"] * 2
        + ["rationale_topk"] * 2
    )
    assert list(out["asked_label"][4:]) == ["positive", "positive"] * 2
    assert list(out.index) == list(range(8))


def test_elicit_free_text_doubles_the_token_budget(monkeypatch):
    calls = []

    def fake_elicit_many(model, tokenizer, requests, *, max_new_tokens, batch_size):
        calls.append((requests, max_new_tokens))
        return pd.DataFrame({"id": [ex.id for ex, _, _ in requests],
                             "role": [r for _, r, _ in requests]})  # fmt: skip

    monkeypatch.setattr(B, "elicit_many", fake_elicit_many)
    cfg = load_config("smoke")
    out = B.elicit_free_text(None, None, [_example("a", "positive")], cfg)
    assert [c[1] for c in calls] == [2 * cfg.max_new_tokens]
    assert list(out["role"]) == list(B.FREE_TEXT_ROLES)


def test_n_explain_keeps_the_first_examples_of_each_dataset(monkeypatch):
    requested = []

    def fake_elicit_many(model, tokenizer, requests, **kwargs):
        requested.append(sorted({ex.id for ex, _, _ in requests}))
        return pd.DataFrame({"id": [ex.id for ex, _, _ in requests],
                             "role": [r for _, r, _ in requests],
                             "asked_label": [lab for _, _, lab in requests]})  # fmt: skip

    monkeypatch.setattr(B, "elicit_many", fake_elicit_many)
    esnli = [replace(_example(f"e{i}", "positive"), dataset="esnli") for i in range(3)]
    examples = [_example("a", "positive"), *esnli, _example("b", "negative")]
    assert B.explained(examples, load_config("smoke")) == examples  # 0: all of them
    with pytest.raises(ValueError, match="N_ATTR"):
        B.explained(examples, load_config("smoke", n_explain=1, n_attr=2))
    cfg = load_config("smoke", n_explain=2, n_attr=2)
    assert [ex.id for ex in B.explained(examples, cfg)] == ["a", "e0", "e1", "b"]
    preds = pd.DataFrame({"id": [ex.id for ex in examples], "pred": "positive"})
    B.elicit_rationales(None, None, examples, preds, cfg)
    B.elicit_free_text(None, None, examples, cfg)
    assert requested == [["a", "b", "e0", "e1"]] * 2
    # a subset is a run of its own; at 0 the hash is what it was before the field existed
    assert cfg.hash() != load_config("smoke").hash()
    assert load_config("default").hash() == "d57f75e5dd2e"


def test_parse_free_text_adds_the_scored_prediction():
    raw = pd.DataFrame(
        {
            "id": ["a", "b"],
            "dataset": ["sst2", "sst2"],
            "role": ["explain_then_predict", "predict_then_explain"],
            "raw": ["The cat sat. Answer: negative", "Answer: positive. Explanation: cat"],
        }
    )
    examples = {i: _example(i, "positive") for i in ("a", "b")}
    out = B.parse_free_text(raw, examples, PREDICTIONS)
    assert list(out["pred"]) == ["positive", "positive"]
    assert list(out["answer"]) == ["negative", "positive"]
    assert list(B.contradicting_answers(out)["id"]) == ["a"]


def test_greedy_summary():
    g = B.greedy_summary(PREDICTIONS)
    assert g.loc["sst2", "greedy_parse_rate"] == 0.5
    assert g.loc["sst2", "greedy_agreement"] == 0.5
    assert g.loc["esnli", "greedy_agreement"] == 0.5
    assert g.loc["esnli", "mean_label_mass"] == pytest.approx(0.3)


def test_parse_statistics_pool_out_of_input_words():
    stats = B.parse_statistics(_rationales()).loc[("sst2", "rationale_topk", "gold")]
    assert stats["n"] == 2 and stats["parse_failure_rate"] == 0.0
    assert stats["out_of_input_rate"] == pytest.approx(2 / 4)  # pooled: 2 of 4 listed words
    assert stats["mean_items"] == 2 and stats["hit_token_limit"] == 0.5
    unbound = B.parse_statistics(_rationales()).loc[("sst2", "rationale_unbound", "gold")]
    assert unbound["out_of_input_rate"] == pytest.approx(1 / 3)
    status = B.parse_status(_rationales())
    assert status.loc[("sst2", "rationale_unbound"), "empty"] == 1
    assert status.loc[("sst2", "rationale_topk"), "ok"] == 2
    assert list(B.lists_outside_input(_rationales()).index) == [0, 3]


def test_free_text_statistics():
    free = pd.DataFrame(
        {
            "id": ["a", "b"],
            "dataset": ["sst2", "sst2"],
            "role": ["explain_then_predict"] * 2,
            "answer": ["positive", None],
            "pred": ["positive", "negative"],
            "answer_failure": [False, True],
            "empty_explanation": [False, True],
            "positions": [[0, 2], []],
            "hit_limit": [True, False],
        }
    )
    row = B.free_text_statistics(free).loc[("sst2", "explain_then_predict")]
    assert row["n"] == 2 and row["answer_failure_rate"] == 0.5
    assert row["answer_matches_prediction"] == 0.5 and row["empty_explanation_rate"] == 0.5
    assert row["mean_cited_words"] == 1.0 and row["hit_token_limit"] == 0.5


def test_alignment_summary_counts_undefined_and_keeps_group_order():
    scored = pd.DataFrame(
        {
            "dataset": ["hate", "hate", "esnli", "esnli", "esnli"],
            "label": ["x", "y", "x", "x", "y"],
            "system": ["Top-Var", "Top-Var", "Top-Var", "random Top-Var", "Top-Var"],
            "f1": [0.5, np.nan, 0.2, 0.4, 0.2],
        }
    )
    long = B.alignment_summary(scored, seed=1)
    assert list(zip(long["dataset"], long["system"], strict=True)) == [
        ("hate", "Top-Var"),
        ("esnli", "Top-Var"),
        ("esnli", "random Top-Var"),
    ]
    hate = long.iloc[0]
    assert hate["value"] == 0.5 and hate["n"] == 1 and hate["n_undefined"] == 1
    assert long.iloc[1]["ci_low"] == pytest.approx(0.2) == long.iloc[1]["ci_high"]
    per_label = B.per_label_alignment(scored, seed=1)
    assert list(per_label["dataset"]) == ["esnli", "esnli", "esnli", "hate", "hate"]  # sorted
    assert set(per_label.columns) >= {"dataset", "label", "system", "value", "n", "n_undefined"}
    wide = B.ci_pivot(long, "system", "dataset")
    assert wide.loc["Top-Var", "hate"] == "50.0 [50.0, 50.0]"
    assert wide.loc["random Top-Var", "esnli"] == "40.0 [40.0, 40.0]"


def _performance() -> pd.DataFrame:
    rows = []
    for d, (acc, zero) in {"sst2": (0.5, 0.6), "esnli": (0.4, 0.3)}.items():
        for metric in ("accuracy", "macro_f1"):
            for system, v in (("model", acc), ("zero-rate", zero)):
                rows.append(
                    {
                        "dataset": d,
                        "metric": metric,
                        "system": system,
                        "value": v,
                        "ci_low": v - 0.1,
                        "ci_high": v + 0.1,
                        "n": 2,
                        "n_undefined": 0,
                    }
                )
    return pd.DataFrame(rows)


def test_performance_table_and_headline():
    table = B.performance_table(_performance(), PREDICTIONS)
    assert table.loc["sst2", ("accuracy", "model")] == "50.0 [40.0, 60.0]"
    assert table.loc["esnli", ("n", "")] == 2
    alignment = pd.DataFrame(
        {
            "dataset": ["esnli", "esnli"],
            "system": ["Top-Var", "random Top-Var"],
            "value": [0.3, 0.1],
        }
    )
    rationales = _rationales()
    head = B.headline(_performance(), alignment, rationales, ["sst2", "esnli"])
    assert list(head.index) == ["sst2", "esnli"]
    assert head.loc["sst2", "accuracy"] == 0.5 and head.loc["sst2", "zero_rate"] == 0.6
    assert math.isnan(head.loc["sst2", "top_var_f1"])  # no human rationales
    assert head.loc["esnli", "top_var_f1"] == 0.3 and head.loc["esnli", "random_top_var_f1"] == 0.1
    assert head.loc["sst2", "unbound_parse_failure"] == 0.5
