"""Validation helpers and the statistics tables (no model needed except where marked)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xalign_utils import consistency, models, test_sentences, validation
from xalign_utils.stats import ci_table, paired_tests


def test_ci_table_counts_undefined_values():
    df = pd.DataFrame({"g": ["a"] * 4, "x": [1.0, 2.0, np.nan, 3.0]})
    row = ci_table(df, ["g"], ["x"]).iloc[0]
    assert row["value"] == pytest.approx(2.0) and row["n"] == 3 and row["n_undefined"] == 1
    assert row["ci_low"] <= 2.0 <= row["ci_high"]


def test_paired_tests_detect_a_shift_and_apply_holm():
    rng = np.random.default_rng(0)
    ids = [f"e{i}" for i in range(40)]
    base = rng.random(40)
    df = pd.concat(
        [
            pd.DataFrame({"g": "d", "id": ids, "method": "random", "m": base}),
            pd.DataFrame({"g": "d", "id": ids, "method": "good", "m": base + 0.3}),
            pd.DataFrame(
                {"g": "d", "id": ids, "method": "same", "m": base + rng.normal(0, 0.01, 40)}
            ),
        ]
    )
    out = paired_tests(df, ["g"], "m").set_index("method")
    assert out.loc["good", "reject"] and out.loc["good", "n"] == 40
    assert not out.loc["same", "reject"]
    assert (out["p_holm"] >= out["p"]).all()
    # Two metrics in one call: Holm multiplies the smallest p by the number of all tests.
    both = paired_tests(df.assign(m2=df["m"]), ["g"], ["m", "m2"])
    assert set(both["metric"]) == {"m", "m2"} and len(both) == 4
    smallest = both.sort_values("p").iloc[0]
    assert smallest["p_holm"] == pytest.approx(min(1.0, smallest["p"] * 4))


def test_random_explanations_keep_sizes_and_sit_at_chance():
    rng = np.random.default_rng(1)
    n = 12
    explained = pd.DataFrame(
        {
            "id": [f"e{i}" for i in range(300)],
            "explanation": "list",
            "positions": [list(rng.choice(n, 3, replace=False)) for _ in range(300)],
        }
    )
    rnd = validation.random_explanations(explained, {i: n for i in explained["id"]}, seed=0)
    assert rnd["positions"].map(len).eq(3).all()
    again = validation.random_explanations(explained, {i: n for i in explained["id"]}, seed=0)
    assert rnd["positions"].map(tuple).equals(again["positions"].map(tuple))  # seeded
    attr = pd.DataFrame(
        {
            "id": explained["id"],
            "dataset": "d",
            "method": "m",
            "status": "ok",
            "magnitude": [rng.random(n) for _ in range(300)],
        }
    )
    table = consistency.consistency_table(attr, rnd)
    assert table["rank_auc"].mean() == pytest.approx(0.5, abs=0.03)
    assert table["mass_lift"].mean() == pytest.approx(1.0, abs=0.05)
    many = validation.random_explanations(
        explained.head(5), {i: n for i in explained["id"]}, draws=4
    )
    assert len(many) == 20 and many["explanation"].nunique() == 4
    assert many.groupby("id")["positions"].apply(lambda p: len({tuple(x) for x in p})).gt(1).all()
    oracle = validation.oracle_explanations(attr, explained)
    best = consistency.consistency_table(attr, oracle.drop(columns="method"))
    assert (best["rank_auc"] == 1.0).all() and (best["f1_at_k"] == 1.0).all()


def test_oracle_skips_ties_at_the_kth_score():
    """An integer-valued null (tokens per word) ties at the k-th score: no top-k exists, so
    the oracle row is skipped instead of scoring rank AUC < 1; untied rows stay maximal."""
    explained = pd.DataFrame(
        {"id": ["a", "b"], "explanation": ["list"] * 2, "positions": [[0, 1]] * 2}
    )
    attr = pd.DataFrame(
        {
            "id": ["a", "b"],
            "dataset": "d",
            "method": "m",
            "status": "ok",
            "magnitude": [np.array([3.0, 2.0, 2.0, 1.0]), np.array([3.0, 2.0, 1.5, 1.0])],
        }
    )
    oracle = validation.oracle_explanations(attr, explained)
    assert oracle["id"].tolist() == ["b"]
    scored = validation.oracle_consistency(attr, oracle)
    assert (scored["rank_auc"] == 1.0).all()


def test_verdict_reads_the_checks():
    checks = pd.DataFrame(
        [
            {
                "kind": "random explanation",
                "metric": "rank_auc",
                "value": 0.5,
                "ci_low": 0.45,
                "ci_high": 0.55,
            },
            {
                "kind": "oracle top-k",
                "metric": "rank_auc",
                "value": 1.0,
                "ci_low": 1.0,
                "ci_high": 1.0,
            },
            {
                "kind": "random explanation",
                "metric": "mass_lift",
                "value": 1.4,
                "ci_low": 1.3,
                "ci_high": 1.5,
            },
            {
                "kind": "oracle top-k",
                "metric": "mass_lift",
                "value": 3.0,
                "ci_low": 2.5,
                "ci_high": 3.5,
            },
        ]
    )
    cascade = pd.DataFrame(
        [
            {
                "layers_randomised": 0,
                "explanation": "x",
                "metric": "rank_auc",
                "value": 0.7,
                "ci_low": 0.65,
                "ci_high": 0.75,
            },
            {
                "layers_randomised": 30,
                "explanation": "x",
                "metric": "rank_auc",
                "value": 0.5,
                "ci_low": 0.45,
                "ci_high": 0.55,
            },
        ]
    )
    planted = pd.DataFrame(
        [
            {"method": "random", "metric": "rank_auc", "value": 0.5, "ci_low": 0.4, "ci_high": 0.6},
            {
                "method": "occlusion",
                "metric": "rank_auc",
                "value": 1.0,
                "ci_low": 1.0,
                "ci_high": 1.0,
            },
        ]
    )
    tracking = pd.DataFrame(
        [
            {
                "method": "occlusion",
                "metric": "rank_auc",
                "rho": 0.3,
                "ci_low": 0.1,
                "ci_high": 0.5,
            },
            {"method": "lime", "metric": "rank_auc", "rho": 0.1, "ci_low": -0.2, "ci_high": 0.4},
            {"method": "lime", "metric": "mass_lift", "rho": 0.2, "ci_low": -0.1, "ci_high": 0.5},
        ]
    )
    v = validation.verdict(checks, cascade, planted, tracking).set_index("metric")
    assert v.loc["rank_auc", "passed"] == "5/5"
    assert (
        v.loc["mass_lift", "random_at_chance"] is False
        or not v.loc["mass_lift", "random_at_chance"]
    )
    assert v.loc["mass_lift", "tracks_explanation_comprehensiveness"] is False  # CI spans 0
    assert validation.verdict_sentences(v.reset_index())[0].startswith("rank_auc: passes 5/5")


@pytest.mark.slow
def test_randomising_every_layer_changes_the_model(model_and_tokenizer):
    import torch

    model, _ = model_and_tokenizer
    rnd = models.randomise_top_layers(model, 2, seed=0)
    top, low = len(model.model.layers) - 1, 0
    assert not torch.equal(
        rnd.model.layers[top].mlp.up_proj.weight, model.model.layers[top].mlp.up_proj.weight
    )
    assert torch.equal(
        rnd.model.layers[low].mlp.up_proj.weight, model.model.layers[low].mlp.up_proj.weight
    )
    emb = model.model.embed_tokens.weight.clone()
    assert torch.equal(rnd.model.embed_tokens.weight, emb)  # layers only: embeddings kept
    everything = models.randomise_top_layers(model, len(model.model.layers) + 1, seed=0)
    assert not torch.equal(everything.model.embed_tokens.weight, emb)
    assert not torch.equal(
        everything.model.layers[low].mlp.up_proj.weight, model.model.layers[low].mlp.up_proj.weight
    )
    assert torch.equal(model.model.embed_tokens.weight, emb)  # the original is untouched


def _test_rows(*rows):
    cols = ["g", "metric", "method", "n", "median_diff", "mean_diff", "reject", "can_reject"]
    return pd.DataFrame([dict(zip(cols, r, strict=True)) for r in rows]).assign(
        min_p=0.01, alpha_m=0.05
    )


def test_tests_in_words_state_direction_and_nulls():
    tests = _test_rows(
        ("a", "m", "up", 40, 0.3, 0.2, True, True),
        ("a", "m", "tied", 40, 0.0, 0.17, True, True),  # most pairs tied: the mean's side
        ("a", "m", "down", 40, -0.2, -0.1, True, True),
        ("a", "m", "torn", 39, 0.1, -0.1, True, True),  # median and mean disagree
        ("a", "m", "flat", 38, 0.1, 0.1, False, True),
        ("b", "m", "flat", 30, 0.1, 0.1, False, True),
        ("c", "m", "flat", 3, 0.1, 0.1, False, False),  # too small to reject
        ("d", "m", "flat", 0, np.nan, np.nan, False, False),  # nothing compared
    )
    a, b, c, d = test_sentences.tests_in_words(tests, ["g", "metric"])
    assert a == (
        "a, m: above random: up, tied; below random: down; differs from random, side "
        "unclear (median and mean disagree): torn (n = 38–40 pairs)."
    )
    assert b == (
        "Nothing differs from random after Holm correction in 1 of the 4 group(s) "
        "of g × metric (n = 30–30 pairs)."
    )
    assert c.startswith("In 1 of the 4 group(s) of g × metric no test could reject at its n")
    assert d == "1 of the 4 group(s) of g × metric had nothing to compare (n = 0)."
    clustered = test_sentences.tests_in_words(tests[:1].assign(n_rows=80), ["g"])
    assert clustered == ["a: above random: up (n = 40–40 examples)."]
    assert test_sentences.tests_in_words(tests[tests["g"].eq("c")], ["g"])[0].startswith(
        "No test could reject at this n"
    )
    assert test_sentences.tests_in_words(tests.iloc[0:0], ["g"]) == []
    report = test_sentences.tests_report({"Q1": (tests, ["g", "metric"]), "Q2": (None, ["g"])})
    assert report.splitlines() == [
        "Q1",
        *(f"  • {x}" for x in (a, b, c, d)),
        "Q2",
        "  • not run here",
    ]


def _attributions(n_ex: int = 6, n: int = 10, methods=("random", "saliency"), seed: int = 0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        [
            {
                "id": f"e{i}",
                "dataset": "d",
                "method": m,
                "status": "ok",
                "target_label": "pos",
                "magnitude": rng.random(n),
            }
            for i in range(n_ex)
            for m in methods
        ]
    )


def test_model_explanations_keep_gold_lists_and_name_every_type():
    rationales = pd.DataFrame(
        {
            "id": ["a", "a", "a", "b"],
            "role": ["rationale_unbound", "rationale_topk", "rationale_topk", "rationale_topk"],
            "label_source": ["gold", "gold", "pred", "gold"],
            "asked_label": ["x", "x", "y", "x"],
            "status": "ok",
            "positions": [[1, 2], [3], [4], []],
        }
    )
    free = pd.DataFrame(
        {
            "id": ["a", "c"],
            "role": ["explain_then_predict", "predict_then_explain"],
            "positions": [[0], [5]],
            "answer": ["x", None],
            "explanation": ["free text", "other"],  # overwritten by the type's name
        }
    )
    out = validation.model_explanations(rationales, free, {"a", "b"}, label_source="gold")
    assert list(out["explanation"]) == [
        "Unbound list",
        "Top-Var list",
        "Top-Var list",
        "free text (explain first)",
    ]
    assert [list(p) for p in out["positions"]] == [[1, 2], [3], [], [0]]
    assert list(out["about_label"]) == ["x", "x", "x", "x"]
    assert list(out["graded"]) == [True, True, True, False]  # free text has no order
    assert len(validation.model_explanations(rationales, free, label_source="gold")) == 5
    # by default the lists about the predicted label (the attributions' target)
    pred = validation.model_explanations(rationales, free, {"a"})
    assert list(pred["about_label"]) == ["y", "x"] and list(pred["positions"].map(list)) == [
        [4],
        [0],
    ]
    empty = validation.empty_explanations(out)
    assert (
        empty.loc["Top-Var list", "n"] == 2
        and empty.loc["Top-Var list", "names no input word"] == 1
    )
    assert validation.TOPVAR == "Top-Var list"


def test_word_counts_and_chance_levels_follow_the_registry():
    attr = _attributions(n_ex=2, n=7)
    assert validation.word_counts(attr) == {"e0": 7, "e1": 7}
    assert list(validation.CHANCE) == ["rank_auc", "mass_lift", "graded_spearman", "f1_at_k"]
    assert validation.CHANCE["f1_at_k"] is None and validation.CHANCE["rank_auc"] == 0.5


def test_oracle_consistency_is_maximal_and_follows_attribution_order():
    attr = _attributions()
    explained = pd.DataFrame(
        {"id": ["e0", "e1", "e0"], "explanation": ["x", "x", "y"], "positions": [[1, 2], [3], [4]]}
    )
    oracle = validation.oracle_explanations(attr, explained)
    out = validation.oracle_consistency(attr, oracle)
    assert list(out.columns) == ["id", "method", "explanation", *consistency.METRICS]
    # the naive double loop of the first notebook gives the same rows in the same order
    naive = [
        (rec.id, rec.method, o.explanation)
        for rec in attr.itertuples()
        for o in oracle[(oracle["id"] == rec.id) & (oracle["method"] == rec.method)].itertuples()
    ]
    assert list(out[["id", "method", "explanation"]].itertuples(index=False, name=None)) == naive
    assert (out["rank_auc"] == 1.0).all() and (out["f1_at_k"] == 1.0).all()
    assert validation.oracle_consistency(attr.iloc[0:0], oracle).empty


def test_random_draws_average_over_methods_and_sit_at_chance():
    attr = _attributions(n_ex=200, n=12, methods=("random", "saliency", "occlusion"))
    rng = np.random.default_rng(3)
    explained = pd.DataFrame(
        {
            "id": [f"e{i}" for i in range(200)],
            "explanation": "list",
            "positions": [list(rng.choice(12, 3, replace=False)) for _ in range(200)],
        }
    )
    n_words = validation.word_counts(attr)
    draws = validation.random_draw_consistency(attr, explained, n_words, seed=1, draws=3)
    assert len(draws) == 600 and list(draws.columns) == [
        "id",
        "explanation",
        *consistency.METRICS,
    ]
    one = draws[(draws["id"] == "e0") & (draws["explanation"] == "random (list) #0")]
    scored = consistency.consistency_table(
        attr, validation.random_explanations(explained, n_words, seed=1, draws=3)
    )
    by_hand = scored[(scored["id"] == "e0") & (scored["explanation"] == "random (list) #0")]
    assert one["rank_auc"].iloc[0] == pytest.approx(by_hand["rank_auc"].mean())
    assert draws["rank_auc"].mean() == pytest.approx(0.5, abs=0.03)
    checks = validation.random_oracle_checks(
        draws, validation.oracle_consistency(attr, validation.oracle_explanations(attr, explained))
    )
    assert list(checks["kind"].unique()) == [validation.RANDOM_KIND, validation.ORACLE_KIND]
    assert list(checks["metric"][:4]) == list(consistency.METRICS)
    oracle_auc = checks[
        (checks["kind"] == validation.ORACLE_KIND) & (checks["metric"] == "rank_auc")
    ]
    assert oracle_auc["value"].iloc[0] == 1.0
    v = validation.verdict(
        checks,
        pd.DataFrame(columns=["metric"]),
        pd.DataFrame(columns=["metric", "method"]),
        pd.DataFrame(columns=["metric", "method", "ci_low", "ci_high"]),
    )
    assert v.set_index("metric").loc["rank_auc", "random_at_chance"]
