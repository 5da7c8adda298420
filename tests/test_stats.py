"""Metrics against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from xalign_utils import stats


def test_token_f1_hand_computed():
    rationale = [1, 1, 0, 0, 1]
    assert stats.token_f1([0, 1, 4], rationale) == 1.0
    assert stats.token_f1([], rationale) == 0.0
    # P = 1/2, R = 1/3 -> F1 = 0.4
    assert stats.token_f1([0, 2], rationale) == pytest.approx(0.4)


def test_token_f1_excludes_unannotated_words():
    rationale = [None, None, 1, 0]
    # position 0 is unannotated: predicting it is neither right nor wrong
    assert stats.token_f1([0, 2], rationale) == 1.0
    assert math.isnan(stats.token_f1([0], [None, None]))
    assert math.isnan(stats.token_f1([0], [0, 0]))  # empty human rationale


def test_random_topk_draws_annotated_positions_only():
    rng = np.random.default_rng(0)
    rationale = [None, 0, 1, None, 0]
    for _ in range(20):
        pick = stats.random_topk(rationale, 2, rng)
        assert len(pick) == 2 and set(pick) <= {1, 2, 4}
    assert stats.random_topk(rationale, 10, rng) == [1, 2, 4]


def test_bootstrap_counts_undefined_and_covers_the_mean():
    values = [0.0, 1.0, np.nan, 1.0, 0.0, 1.0]
    ci = stats.bootstrap_ci(values, n_boot=500, seed=1)
    assert ci["n"] == 5 and ci["n_undefined"] == 1
    assert ci["value"] == pytest.approx(0.6)
    assert 0 <= ci["ci_low"] <= 0.6 <= ci["ci_high"] <= 1
    assert stats.bootstrap_ci(values, n_boot=500, seed=1) == ci
    empty = stats.bootstrap_ci([np.nan, np.nan])
    assert empty["n"] == 0 and math.isnan(empty["value"])
    const = stats.bootstrap_ci([0.5] * 10)
    assert const["ci_low"] == const["ci_high"] == 0.5


def test_spearman_ci_matches_scipy_and_counts_undefined():
    from scipy.stats import spearmanr

    x = [1.0, 2.0, 3.0, 4.0, 5.0, np.nan, 7.0]
    y = [2.0, 1.0, 4.0, 3.0, 6.0, 5.0, np.nan]
    ci = stats.spearman_ci(x, y, n_boot=300, seed=2)
    want = spearmanr([1, 2, 3, 4, 5], [2, 1, 4, 3, 6]).statistic
    assert ci["value"] == pytest.approx(want)
    assert ci["n"] == 5 and ci["n_undefined"] == 2
    assert -1 <= ci["ci_low"] <= ci["value"] <= ci["ci_high"] <= 1
    assert stats.spearman_ci(x, y, n_boot=300, seed=2) == ci
    assert math.isnan(stats.spearman_ci([1, 2, 3], [5, 5, 5])["value"])  # constant side
    assert math.isnan(stats.spearman_ci([1, 2], [1, 2])["value"])  # too few pairs
    perfect = stats.spearman_ci(range(10), range(10), n_boot=200)
    assert [perfect[k] for k in ("value", "ci_low", "ci_high")] == pytest.approx([1.0] * 3)


def test_macro_f1_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    for _ in range(20):
        t = rng.choice(labels, 30)
        p = rng.choice(labels[:2], 30)  # "c" never predicted
        want = f1_score(t, p, labels=labels, average="macro", zero_division=0)
        assert stats.macro_f1_fn(labels)(t, p) == pytest.approx(want)


def test_task_performance_has_zero_rate_baseline():
    df = pd.DataFrame({"dataset": "d", "label": ["a", "a", "a", "b"], "pred": ["a", "b", "a", "b"]})
    out = stats.task_performance(df, {"d": ["a", "b"]}, seed=0).set_index(["metric", "system"])
    assert out.loc[("accuracy", "model"), "value"] == 0.75
    assert out.loc[("accuracy", "zero-rate"), "value"] == 0.75
    # zero-rate macro-F1: F1(a) = 2*3/(3+4) = 6/7, F1(b) = 0
    assert out.loc[("macro_f1", "zero-rate"), "value"] == pytest.approx(3 / 7)
    assert out.loc[("accuracy", "model"), "n"] == 4


def test_format_ci():
    row = pd.Series({"value": 0.5, "ci_low": 0.25, "ci_high": 0.75})
    assert stats.format_ci(row) == "50.0 [25.0, 75.0]"
    assert (
        stats.format_ci(pd.Series({"value": np.nan, "ci_low": np.nan, "ci_high": np.nan})) == "n/a"
    )
