"""Tables and sentences of notebooks 01–03, from hand-made examples and result tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import text_example

from xalign_utils import reports as R


def _example(ex_id, label, rationale=None, dataset="esnli", meta=None, truncated=0):
    meta = dict(meta or {}, **({"truncated_words": truncated} if truncated else {}))
    return text_example(
        ex_id, ["a", "b", "c", "d"], dataset=dataset, label=label, rationale=rationale, meta=meta
    )


# --------------------------------------------------------------------------- notebook 01


def test_source_validation_flags_counts_that_differ():
    raw = {("x", "test"): [_example("1", "neutral")] * 2, ("y", "dev"): [_example("2", "neutral")]}
    table = R.source_validation(raw, {("x", "test"): 2, ("y", "dev"): 5})
    assert list(table["loader"]) == ["x", "y"] and list(table["rows"]) == [2, 1]
    assert list(table["matches"]) == [True, False]
    assert "labels" not in table and {"mean_words", "rows_with_rationale"} <= set(table)
    sentences = R.data_interpretation(table, _splits_table(), _lengths(), context=100)
    assert sentences[0].startswith("1 of 2 raw files do not match") and "y/dev" in sentences[0]


def _splits_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset": ["esnli", "movies"],
            "role": ["eval", "eval"],
            "n": [6, 4],
            "truncated_rows": [0, 3],
            "truncated_rationale_words": [0, 7],
        }
    )


def _lengths() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dataset": ["esnli", "sst2"],
            "tokens": [40, 90],
            "words without tokens": [0, 0],
            "over context": [False, False],
        }
    )


def test_data_interpretation_reads_the_tables():
    ok = pd.DataFrame({"loader": ["x"], "split": ["t"], "matches": [True]})
    sentences = R.data_interpretation(ok, _splits_table(), _lengths(), context=100)
    assert sentences[0] == "All 1 raw files parse and match their published row counts."
    assert sentences[1] == "Truncation cut 3 of 4 movies eval inputs (7 rationale words lost)."
    assert sentences[2].startswith("The longest evaluation prompt has 90 tokens (sst2) of")
    none_cut = _splits_table().assign(truncated_rows=0)
    assert R.data_interpretation(ok, none_cut, _lengths().iloc[:0], 100) == [
        sentences[0],
        "No sampled input was truncated.",
    ]


def test_label_by_meta_and_split_summary():
    exs = [
        _example("1", "neutral", meta={"scope": "both"}),
        _example("2", "neutral", meta={"scope": "hyp"}),
        _example("3", "entailment", meta={"scope": "both"}),
    ]
    table = R.label_by_meta(exs, "scope")
    assert table.loc["neutral", "hyp"] == 1 and table.loc["All", "All"] == 3
    summary = R.split_summary({("esnli", "eval"): exs, ("esnli", "train"): exs[:1]})
    assert list(summary["role"]) == ["eval", "train"] and list(summary["n"]) == [3, 1]
    assert summary["labels"].iloc[0] == {"neutral": 2, "entailment": 1}


def test_rationale_lengths_skip_unannotated_examples():
    exs = [
        _example("1", "neutral", [1, 0, None, 1]),  # 2 of 3 annotated words
        _example("2", "neutral", [None, None, None, None]),  # nothing annotated: left out
        _example("3", "neutral"),  # no rationale at all: left out
    ]
    table = R.rationale_lengths({"esnli_highlights": exs})
    assert list(table["id"]) == ["1"]
    assert table["rationale words"].item() == 2
    assert table["share of annotated words"].item() == pytest.approx(2 / 3)
    assert list(R.rationale_lengths({}).columns) == list(table.columns)


@pytest.mark.slow
def test_prompt_lengths_cover_eval_splits_of_classification_datasets(tokenizer):
    exs = [_example("1", "positive", dataset="sst2"), _example("2", "negative", dataset="sst2")]
    splits = {("sst2", "eval"): exs, ("sst2", "train"): exs, ("knowns", "eval"): exs}
    table = R.prompt_lengths(tokenizer, splits, context=10_000)
    assert list(table["id"]) == ["1", "2"] and set(table["dataset"]) == {"sst2"}
    assert (table["input tokens"] >= 4).all() and (table["tokens"] > table["input tokens"]).all()
    assert table["words without tokens"].sum() == 0 and not table["over context"].any()
    assert R.prompt_lengths(tokenizer, splits, context=5)["over context"].all()


# --------------------------------------------------------------------------- notebook 02


def _ci(value, low, high, **key):
    return {**key, "value": value, "ci_low": low, "ci_high": high}


def test_ci_relation_needs_disjoint_intervals():
    a = _ci(0.5, 0.4, 0.6)
    assert R.ci_relation(a, _ci(0.2, 0.1, 0.3)) == "above"
    assert R.ci_relation(_ci(0.2, 0.1, 0.3), a) == "below"
    assert R.ci_relation(a, _ci(0.35, 0.2, 0.4)) == "not distinguishable from"


def test_baseline_interpretation():
    performance = pd.DataFrame(
        [
            _ci(0.8, 0.7, 0.9, dataset="esnli", metric="accuracy", system="model"),
            _ci(0.4, 0.3, 0.5, dataset="esnli", metric="accuracy", system="zero-rate"),
            _ci(0.5, 0.4, 0.6, dataset="sst2", metric="accuracy", system="model"),
            _ci(0.5, 0.4, 0.6, dataset="sst2", metric="accuracy", system="zero-rate"),
            _ci(0.1, 0.0, 0.2, dataset="sst2", metric="macro_f1", system="model"),
        ]
    )
    predictions = pd.DataFrame(
        {
            "dataset": ["esnli"] * 4 + ["sst2"] * 2,
            "pred": ["neutral"] * 3 + ["entailment"] + ["negative"] * 2,
        }
    )
    alignment = pd.DataFrame(
        [
            _ci(0.1, 0.05, 0.15, dataset="esnli", system="Top-Var"),
            _ci(0.3, 0.2, 0.4, dataset="esnli", system="random Top-Var"),
            _ci(np.nan, np.nan, np.nan, dataset="sst2", system="Top-Var"),
        ]
    )
    rationales = pd.DataFrame(
        {"dataset": ["esnli", "esnli", "sst2"], "parse_failure": [True, False, False]}
    )
    esnli, sst2 = R.baseline_interpretation(
        performance, predictions, alignment, rationales, ["esnli", "sst2"]
    )
    assert esnli == (
        "**esnli**: accuracy 80.0% is above the zero-rate baseline (40.0%); 75% of predictions "
        "are `neutral`. Prompted Top-Var rationales reach token F1 0.10 with the human "
        "rationale, below random Top-Var (0.30). 50% of its word lists name no input word."
    )
    assert sst2 == (
        "**sst2**: accuracy 50.0% is not distinguishable from the zero-rate baseline (50.0%); "
        "100% of predictions are `negative`. 0% of its word lists name no input word."
    )


# --------------------------------------------------------------------------- notebook 03


def test_plan_table():
    plan = [(["saliency", "random"], [1, 2, 3]), (["lime"], [1])]
    table = R.plan_table(plan)
    assert table.to_dict("records") == [
        {"methods": "saliency, random", "examples": 3},
        {"methods": "lime", "examples": 1},
    ]


def test_runtime_weights_datasets_by_rows_that_ran():
    health = pd.DataFrame(
        {
            "dataset": ["a", "b", "a", "b"],
            "method": ["ig", "ig", "saliency", "saliency"],
            "seconds_per_example": [1.0, 4.0, 0.2, 0.2],
            "ok": [3, 0, 2, 2],  # b ran nothing for ig: weight 1, not 0
        }
    )
    table = R.runtime(health)
    assert list(table["method"]) == ["saliency", "ig"]  # fastest first
    assert table.set_index("method").loc["ig", "seconds_per_example"] == pytest.approx(7 / 4)


def test_model_rationale_positions_picks_gold_top_var_lists():
    rationales = pd.DataFrame(
        {
            "id": ["x", "x", "y"],
            "role": ["rationale_topk", "rationale_unbound", "rationale_topk"],
            "label_source": ["gold", "gold", "pred"],
            "positions": [np.array([3, 1]), np.array([0]), np.array([2])],
        }
    )
    assert R.model_rationale_positions(rationales) == {"x": {1, 3}}
    assert R.model_rationale_positions(rationales, label_source="pred") == {"y": {2}}
    only_pred = rationales[rationales["label_source"] == "pred"]  # the XNLI track's lists
    assert R.model_rationale_positions(only_pred) == {"y": {2}}


def test_heatmap_examples_prefer_examples_every_method_ran_on():
    table = pd.DataFrame(
        {
            "dataset": ["d"] * 6 + ["e"],
            "id": ["1", "1", "2", "3", "3", "3", "9"],
            "method": ["m1", "m2", "m1", "m1", "m2", "m3", "m1"],
            "status": ["ok"] * 5 + ["context_overflow", "ok"],
        }
    )
    assert R.heatmap_examples(table, ["d", "e"], 2) == {"d": ["1", "3"], "e": ["9"]}
    assert R.heatmap_examples(table, ["d"], 1) == {"d": ["1"]}


def test_attribution_interpretation_leaves_null_pairs_out():
    health = pd.DataFrame(
        {
            "dataset": ["esnli", "sst2"],
            "method": ["integrated_gradients", "integrated_gradients"],
            "seconds_per_example": [2.0, 3.0],
            "ig_delta_abs": [0.01, 0.03],
            "ig_relative_error": [0.004, 0.064],
            "context_overflow": [0, 0],
            "nonfinite_rows": [0, 0],
            "words_without_tokens": [0, 0],
        }
    )
    agreement = pd.DataFrame(
        [
            ("position_from_start", "position_from_end", -1.0, 9),  # opposites by design
            ("saliency", "input_x_gradient", 0.8, 9),
            ("saliency", "attention", 0.1, 9),
            ("random", "saliency", 0.0, 9),
        ],
        columns=["a", "b", "value", "n"],
    )
    text = " ".join(R.interpretation(health, agreement))
    assert "per dataset is 0.4–6.4% of |f(x) − f(0)|" in text
    assert "closest pair is saliency–input_x_gradient" in text
    assert "most distant is saliency–attention (ρ = 0.10)" in text
