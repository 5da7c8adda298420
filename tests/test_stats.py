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


def test_top_k_is_in_score_order():
    assert stats.top_k([0.1, 0.9, 0.5, 0.7], 3) == [1, 3, 2]  # not sorted by position


# --------------------------------------------------------------------------- cluster bootstrap


def _clustered(rng, n_clusters=20, per=30, spread=1.0, noise=0.01):
    """Rows of ``n_clusters`` examples, ``per`` near-identical rows each (true mean 0)."""
    centre = rng.normal(0, spread, n_clusters)
    ids = np.repeat([f"e{i}" for i in range(n_clusters)], per)
    return np.repeat(centre, per) + rng.normal(0, noise, n_clusters * per), ids


def test_cluster_bootstrap_is_wider_than_rows_and_counts_clusters():
    values, ids = _clustered(np.random.default_rng(0))
    naive = stats.bootstrap_ci(values, n_boot=500, seed=1)
    clustered = stats.bootstrap_ci(values, n_boot=500, seed=1, clusters=ids)
    assert naive["n"] == 600 and clustered["n"] == 20 and clustered["n_rows"] == 600
    assert clustered["value"] == pytest.approx(naive["value"])
    naive_width = naive["ci_high"] - naive["ci_low"]
    # 600 rows carry the information of 20 examples: about √30 ≈ 5.5 times the width
    assert clustered["ci_high"] - clustered["ci_low"] > 3 * naive_width
    # the vectorised mean and the general path draw the same clusters
    general = stats.bootstrap_ci(values, n_boot=500, seed=1, clusters=ids, statistic=np.nanmean)
    assert [general[k] for k in ("ci_low", "ci_high")] == pytest.approx(
        [clustered[k] for k in ("ci_low", "ci_high")]
    )


def test_cluster_bootstrap_coverage_is_sensible_and_the_row_bootstrap_is_not():
    rng = np.random.default_rng(2)
    covered = {"rows": 0, "clusters": 0}
    runs = 150
    for i in range(runs):
        values, ids = _clustered(rng, per=10)
        for kind, clusters in (("rows", None), ("clusters", ids)):
            ci = stats.bootstrap_ci(values, n_boot=300, seed=i, clusters=clusters)
            covered[kind] += ci["ci_low"] <= 0.0 <= ci["ci_high"]
    # nominal 95%; the percentile bootstrap with 20 clusters runs a little below
    assert 0.85 <= covered["clusters"] / runs <= 0.99
    assert covered["rows"] / runs < 0.6


def test_cluster_bootstrap_counts_undefined_rows_and_orders_keys():
    values = [1.0, np.nan, 2.0, np.nan, 4.0, 5.0]
    ids = ["a", "a", "b", "c", "d", "d"]  # every row of "c" is NaN: c drops out
    ci = stats.bootstrap_ci(values, n_boot=200, clusters=ids)
    assert ci["n"] == 3 and ci["n_rows"] == 4 and ci["n_undefined"] == 2
    assert list(ci) == ["value", "ci_low", "ci_high", "n", "n_undefined", "n_rows"]
    assert ci["value"] == pytest.approx(3.0) and ci["ci_low"] <= 3.0 <= ci["ci_high"]
    assert stats.bootstrap_ci([np.nan], clusters=["a"])["n"] == 0
    with pytest.raises(ValueError, match="cluster label"):
        stats.bootstrap_ci([1.0, 2.0], clusters=["a", None])


def test_paired_and_spearman_bootstraps_take_clusters():
    rng = np.random.default_rng(3)
    x = np.repeat(rng.normal(size=15), 8)
    y = x + np.repeat(rng.normal(size=15), 8)
    ids = np.repeat(np.arange(15), 8)
    naive, clustered = (
        stats.spearman_ci(x, y, n_boot=300),
        stats.spearman_ci(x, y, n_boot=300, clusters=ids),
    )
    assert naive["n"] == 120 and clustered["n"] == 15 and clustered["n_rows"] == 120
    assert clustered["value"] == naive["value"]
    assert clustered["ci_high"] - clustered["ci_low"] > naive["ci_high"] - naive["ci_low"]
    labels = np.repeat(["a", "b"], 60)
    pred = np.where(rng.random(120) < 0.7, labels, "b")
    ci = stats.bootstrap_paired(labels, pred, stats.accuracy, n_boot=200, clusters=ids)
    assert ci["n"] == 15 and ci["n_rows"] == 120
    assert ci["value"] == pytest.approx(stats.accuracy(labels, pred))


def test_cluster_bootstrap_diff_keeps_the_pairing_by_cluster():
    rng = np.random.default_rng(4)
    effect = rng.normal(0, 1, 30)  # examples differ a lot, the conditions by 0.3
    method = effect + 0.3 + rng.normal(0, 0.02, 30)
    ids = [f"e{i}" for i in range(30)]
    draws = np.repeat(effect, 5) + rng.normal(0, 0.02, 150)  # five random draws each
    draw_ids = np.repeat(ids, 5)
    d = stats.cluster_bootstrap_diff(method, draws, ids, draw_ids, n_boot=500, seed=1)
    assert d["value"] == pytest.approx(method.mean() - draws.mean())
    assert d["n"] == 30 and d["n_rows"] == 180 and d["n_unpaired"] == 0
    # paired by example the difference is precise; unpaired CIs would span about ±0.35
    assert d["ci_low"] <= 0.3 <= d["ci_high"] and d["ci_high"] - d["ci_low"] < 0.05
    general = stats.cluster_bootstrap_diff(
        method, draws, ids, draw_ids, statistic=np.nanmean, n_boot=500, seed=1
    )
    assert general["ci_low"] == pytest.approx(d["ci_low"])
    # an example missing on one side, and undefined values, are counted and left out
    gappy = stats.cluster_bootstrap_diff(
        [1.0, 2.0, np.nan], [0.0, 1.0], ["a", "b", "c"], ["a", "z"]
    )
    assert gappy["n"] == 1 and gappy["value"] == pytest.approx(1.0)
    assert gappy["n_unpaired"] == 2 and gappy["n_undefined"] == 1


# --------------------------------------------------------------------------- power


def test_min_attainable_p_of_exact_paired_tests():
    assert stats.min_attainable_p(5) == pytest.approx(2 / 2**5)  # 0.0625: cannot reject
    assert stats.min_attainable_p(5, alternative="greater") == pytest.approx(1 / 2**5)
    assert stats.min_attainable_p(5, alternative="less") == pytest.approx(1 / 2**5)
    assert stats.min_attainable_p(20, "sign") == pytest.approx(2 / 2**20)
    assert stats.min_attainable_p(3, "permutation", "greater") == pytest.approx(1 / 8)
    assert stats.min_attainable_p(1) == 1.0 and stats.min_attainable_p(0, "sign") == 1.0
    # above n = 50 scipy's Wilcoxon uses its normal approximation, whose minimum is larger
    assert stats.min_attainable_p(50) == pytest.approx(2 / 2**50)
    assert 2 / 2**51 < stats.min_attainable_p(51) < 1e-8
    with pytest.raises(ValueError):
        stats.min_attainable_p(5, "t-test")


def _shifted(n, metrics=("m",), seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"e{i}" for i in range(n)]
    base = rng.random(n)
    frames = [pd.DataFrame({"g": "d", "id": ids, "method": "random", "m": base})]
    frames.append(pd.DataFrame({"g": "d", "id": ids, "method": "good", "m": base + 0.3}))
    frames.append(pd.DataFrame({"g": "d", "id": ids, "method": "same", "m": base}))
    return pd.concat(frames).assign(**{m: lambda t: t["m"] for m in metrics if m != "m"})


def test_paired_tests_say_when_a_test_cannot_reject():
    small = stats.paired_tests(_shifted(4), ["g"], "m").set_index("method")
    # 4 pairs all above the reference: p = 2/16 = 0.125 is the best the test can do
    assert small.loc["good", "min_p"] == pytest.approx(0.125)
    assert small.loc["good", "p"] == pytest.approx(0.125) and not small.loc["good", "reject"]
    assert not small["can_reject"].any()
    assert small.loc["good", "alpha_m"] == pytest.approx(0.05 / 1)  # "same" is untested
    big = stats.paired_tests(_shifted(40), ["g"], "m").set_index("method")
    assert big.loc["good", "can_reject"] and big.loc["good", "reject"]
    assert big.loc["good", "mean_diff"] == pytest.approx(0.3)
    assert big.loc["good", "diff_ci_low"] <= 0.3 <= big.loc["good", "diff_ci_high"]


def test_paired_tests_correct_only_the_primary_tests():
    df = _shifted(40, metrics=("m", "m2"))
    everything = stats.paired_tests(df, ["g"], ["m", "m2"])
    assert set(everything["role"]) == {"primary"}  # old behaviour: one Holm family
    out = stats.paired_tests(df, ["g"], ["m", "m2"], primary="m").set_index(["metric", "method"])
    assert out.loc[("m", "good"), "role"] == "primary"
    assert out.loc[("m2", "good"), "role"] == "exploratory"
    # Holm over the one tested primary row ("same" has no non-zero difference)
    assert out.loc[("m", "good"), "p_holm"] == pytest.approx(out.loc[("m", "good"), "p"])
    assert math.isnan(out.loc[("m2", "good"), "p_holm"]) and not out.loc[("m2", "good"), "reject"]
    assert out.loc[("m2", "good"), "alpha_m"] == 0.05  # raw p against α, marked exploratory
    none = stats.paired_tests(df, ["g"], "m", primary=False)
    assert set(none["role"]) == {"exploratory"} and not none["reject"].any()


def test_paired_tests_and_ci_table_by_cluster():
    rng = np.random.default_rng(5)
    ids = [f"e{i}" for i in range(12)]
    base = rng.random(12)
    method = pd.DataFrame({"g": "d", "id": ids, "method": "good", "m": base + 0.2})
    draws = pd.DataFrame(
        {"g": "d", "id": np.repeat(ids, 5), "method": "random", "m": np.repeat(base, 5)}
    )
    draws["m"] += np.tile([-0.2, -0.1, 0.0, 0.1, 0.2], 12)  # mean over draws = base
    df = pd.concat([method, draws])
    old = stats.paired_tests(df, ["g"], "m").iloc[0]
    assert old["median_diff"] == pytest.approx(0.4)  # the first draw only
    new = stats.paired_tests(df, ["g"], "m", cluster="id").iloc[0]
    assert new["n"] == 12 and new["n_rows"] == 12 + 60  # examples; rows of both conditions
    assert new["median_diff"] == pytest.approx(0.2) and new["mean_diff"] == pytest.approx(0.2)
    ci = stats.ci_table(df, ["method"], ["m"], cluster="id").set_index("method")
    assert ci.loc["random", "n"] == 12 and ci.loc["random", "n_rows"] == 60
    assert ci.loc["random", "value"] == pytest.approx(base.mean())
    plain = stats.ci_table(df, ["method"], ["m"]).set_index("method")
    assert plain.loc["random", "n"] == 60 and "n_rows" not in plain


def test_ci_table_of_nothing_keeps_its_columns():
    """A run without the methods a table is about (e.g. no seeded methods) gets an empty
    table that later joins and pivots can still index."""
    out = stats.ci_table(pd.DataFrame(columns=["method", "rho"]), ["method"], ["rho"])
    assert out.empty and list(out.columns)[:3] == ["method", "metric", "value"]
