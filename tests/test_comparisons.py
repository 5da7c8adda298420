"""Cluster CIs, one confirmatory test per question, and comparisons with the best null."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xalign_utils import comparisons


def _table(n: int = 30, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "id": [f"e{i}" for i in range(n)] * 3,
            "dataset": "d",
            "method": ["random"] * n + ["good"] * n + ["position_from_start"] * n,
            "m1": np.r_[rng.random(n), rng.random(n) + 1, rng.random(n) + 0.5],
            "m2": rng.random(3 * n),
        }
    )


def test_only_the_primary_metric_is_confirmatory():
    ci, tests = comparisons.ci_and_tests(
        _table(), ["m1", "m2"], ["dataset", "method"], ["dataset"], primary="m1"
    )
    assert set(ci["metric"]) == {"m1", "m2"} and (ci["n"] == 30).all()  # n counts examples
    roles = tests.set_index(["metric", "method"])["role"]
    assert (roles.loc["m1"] == "primary").all() and (roles.loc["m2"] == "exploratory").all()
    assert tests.set_index(["metric", "method"]).loc[("m1", "good"), "reject"]
    assert not tests[tests["role"] == "exploratory"]["reject"].any()
    assert {"min_p", "can_reject"} <= set(tests.columns)


def test_examples_repeated_over_draws_count_once():
    table = _table(n=10)
    repeated = pd.concat([table] * 5, ignore_index=True)  # five draws of every example
    ci, _ = comparisons.ci_and_tests(repeated, ["m1"], ["method"], ["dataset"], primary="m1")
    assert (ci["n"] == 10).all()


def test_pooled_primary_test_pools_datasets():
    a, b = _table(n=8, seed=1), _table(n=8, seed=2).assign(dataset="e")
    b["id"] = "x" + b["id"]
    with pytest.raises(KeyError, match="rank_auc"):  # consistency's primary metric is absent
        comparisons.pooled_primary_tests(pd.concat([a, b]), "consistency")
    pooled = comparisons.pooled_primary_tests(
        pd.concat([a, b]).rename(columns={"m1": "rank_auc"}), "consistency"
    )
    assert (pooled["n"] == 16).all() and (pooled["role"] == "primary").all()


def test_against_nulls_uses_the_strongest_null():
    table = _table()
    out = comparisons.against_nulls(table, ["m1"], {"m1": True}).set_index("method")
    # position_from_start (mean ≈ 1.0) beats random (≈ 0.5): it is the reference
    assert out.loc["good", "best_null"] == "position_from_start"
    assert 0.2 < out.loc["good", "value"] < 0.8 and out.loc["good", "n"] == 30
    lower = comparisons.against_nulls(table, ["m1"], {"m1": False}).set_index("method")
    assert lower.loc["good", "best_null"] == "random"


def test_position_correlation_sees_a_positional_method():
    attributions = pd.DataFrame(
        {
            "id": ["a", "b", "a", "b"],
            "dataset": "d",
            "method": ["late", "late", "early", "early"],
            "magnitude": [[0.1, 0.2, 0.9], [0, 1, 2, 3], [3, 2, 1], [0.9, 0.5, 0.4, 0.1]],
        }
    )
    out = comparisons.position_correlation(attributions).set_index("method")["value"]
    assert out["late"] == 1.0 and out["early"] == -1.0


def test_a_run_without_human_rationales_gets_empty_tables_with_their_columns():
    """E.g. the XNLI track: every plausibility value is undefined, and notebook 04's
    tables stay empty instead of failing."""
    import numpy as np

    from xalign_utils.stats import paired_tests

    table = pd.DataFrame(
        {"dataset": "xnli-de", "id": ["a", "a", "b", "b"], "method": ["random", "lime"] * 2,
         "topvar_f1": np.nan}
    )  # fmt: skip
    nulls = comparisons.against_nulls(table, ["topvar_f1"], {"topvar_f1": True})
    assert nulls.empty and {"method", "best_null", "value", "n"} <= set(nulls.columns)
    tests = paired_tests(table, ["dataset"], "topvar_f1", cluster="id")
    assert tests.empty and {"method", "p_holm", "reject", "can_reject"} <= set(tests.columns)
    primary = comparisons.pooled_primary_tests(table, "plausibility")
    assert primary.empty and "_all" not in primary.columns
