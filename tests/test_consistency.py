"""Consistency metrics against hand-computed cases and degenerate inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from xalign_utils import consistency as C
from xalign_utils import plausibility as P
from xalign_utils import stats

nan = float("nan")


def test_rank_auc_hand_computed_and_chance():
    assert C.rank_auc([0.9, 0.1, 0.5], [0]) == 1.0
    assert C.rank_auc([0.1, 0.9, 0.5], [0]) == 0.0
    assert C.rank_auc([0.5, 0.5, 0.5], [1]) == 0.5  # constant scores: ties count ½
    rng = np.random.default_rng(0)
    aucs = [C.rank_auc(rng.random(20), rng.choice(20, 5, replace=False)) for _ in range(2000)]
    assert np.mean(aucs) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("explained", [[], [0, 1, 2]], ids=["empty", "all-words"])
def test_rank_auc_undefined_for_empty_or_all_words(explained):
    assert math.isnan(C.rank_auc([0.3, 0.2, 0.1], explained))


def test_f1_at_k_and_mass_lift():
    mags = [0.6, 0.3, 0.1, 0.0]
    assert C.f1_at_k(mags, [0, 1]) == 1.0
    assert C.f1_at_k(mags, [2, 3]) == 0.0
    assert C.f1_at_k(mags, [0, 2]) == pytest.approx(0.5)
    assert math.isnan(C.f1_at_k(mags, []))
    # explanation {0}: 60% of the mass on 25% of the words → lift 2.4
    assert C.mass_lift(mags, [0]) == pytest.approx(2.4)
    assert C.mass_lift(mags, [0, 1, 2, 3]) == pytest.approx(1.0)  # all words: exactly chance
    assert math.isnan(C.mass_lift([0, 0, 0], [1]))  # zero mass
    assert math.isnan(C.mass_lift(mags, []))


def test_explanation_equal_to_top_k_scores_the_maximum():
    rng = np.random.default_rng(1)
    for _ in range(50):
        mags = rng.random(15)
        k = int(rng.integers(1, 14))
        explained = stats.top_k(mags, k)
        assert C.rank_auc(mags, explained) == 1.0
        assert C.f1_at_k(mags, explained) == 1.0
        assert C.mass_lift(mags, explained) >= 1.0


def test_graded_spearman_and_list_grades():
    grades = C.list_grades([2, 0, 2, 9], 4)  # repeats and out-of-range positions ignored
    np.testing.assert_array_equal(grades, [1, 0, 2, 0])
    assert math.isnan(C.graded_spearman([0.5, 0.1, 0.9, 0.0], grades))  # < 3 graded words
    grades = C.list_grades([2, 1, 0, 3], 5)  # grades (2, 3, 4, 1) on words 0-3, word 4 unnamed
    # over the named words: score ranks (3, 2, 4, 1) vs grade ranks (2, 3, 4, 1), Σd² = 2
    scores = [0.5, 0.1, 0.9, 0.0, 0.7]
    assert C.graded_spearman(scores, grades) == pytest.approx(1 - 6 * 2 / (4 * 15))
    assert math.isnan(C.graded_spearman([1, 1, 1, 1, 0], grades))  # constant scores


def test_oracle_in_score_order_gets_graded_spearman_one():
    # the oracle explanation is the attribution's own top-k, named best first
    rng = np.random.default_rng(2)
    for _ in range(20):
        mags = rng.random(12)
        oracle = stats.top_k(mags, 12)  # the whole ranking, named best first
        assert C.consistency_row(mags, oracle)["graded_spearman"] == pytest.approx(1.0)
        sparse = np.where(mags > np.sort(mags)[-5], mags, 0.0)  # 4 nonzero words (occlusion-like)
        assert C.consistency_row(sparse, stats.top_k(sparse, 4))[
            "graded_spearman"
        ] == pytest.approx(1.0)
    # the same words in input order (the old sorted positions) grade the list wrongly
    mags = np.array([0.1, 0.9, 0.5, 0.7])
    assert C.consistency_row(mags, sorted(stats.top_k(mags, 4)))["graded_spearman"] < 0.5


def test_score_order_maximises_graded_spearman_for_a_top_k_set():
    rng = np.random.default_rng(3)
    for _ in range(50):
        mags = rng.random(15)
        k = int(rng.integers(3, 14))
        ordered = stats.top_k(mags, k)
        best = C.consistency_row(mags, ordered)["graded_spearman"]
        shuffled = rng.permutation(ordered).tolist()
        assert best >= C.consistency_row(mags, shuffled)["graded_spearman"] - 1e-12
        assert best >= C.consistency_row(mags, sorted(ordered))["graded_spearman"] - 1e-12


def test_set_metrics_ignore_the_order_of_positions():
    rng = np.random.default_rng(4)
    for _ in range(50):
        mags = rng.random(10)
        explained = rng.choice(10, int(rng.integers(1, 10)), replace=False).tolist()
        a = C.consistency_row(mags, explained)
        b = C.consistency_row(mags, explained[::-1])
        c = C.consistency_row(mags, sorted(explained))
        for name in ("rank_auc", "f1_at_k", "mass_lift"):
            assert a[name] == b[name] == c[name]


def test_free_text_gets_no_graded_spearman():
    mags = [0.9, 0.1, 0.5, 0.3]
    row = C.consistency_row(mags, [0, 2, 3], graded=False)
    assert math.isnan(row["graded_spearman"])
    assert row["rank_auc"] == C.consistency_row(mags, [0, 2, 3])["rank_auc"] == 1.0
    attributions = pd.DataFrame(
        {
            "id": ["x"],
            "dataset": ["d"],
            "method": ["m"],
            "status": ["ok"],
            "magnitude": [mags],
        }
    )
    explanations = pd.DataFrame(
        {
            "id": ["x", "x"],
            "role": ["rationale_topk", "explain_then_predict"],
            "explanation": ["list", "free text"],
            "positions": [[0, 2, 3], [0, 2, 3]],
        }
    )
    table = C.consistency_table(attributions, explanations).set_index("explanation")
    assert table.loc["list", "graded_spearman"] > 0
    assert math.isnan(table.loc["free text", "graded_spearman"])
    assert table.loc["list", "rank_auc"] == table.loc["free text", "rank_auc"]
    # an explicit ``graded`` column wins over the role
    flagged = explanations.assign(graded=[False, True])
    table = C.consistency_table(attributions, flagged).set_index("explanation")
    assert math.isnan(table.loc["list", "graded_spearman"])
    assert not math.isnan(table.loc["free text", "graded_spearman"])
    # no role, no flag (oracle, random draws, planted trigger): graded
    bare = explanations.drop(columns="role")
    assert not C.consistency_table(attributions, bare)["graded_spearman"].isna().any()


def test_profile_distance():
    assert C.profile_distance([1, 0, 0], [2, 0, 0]) == pytest.approx(0.0)
    assert C.profile_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    assert C.profile_distance([1, -1], [-1, 1]) == pytest.approx(2.0)
    assert math.isnan(C.profile_distance([0, 0], [1, 0]))


def test_consistency_row_counts_undefined_as_nan():
    row = C.consistency_row([0.2, 0.1], [])
    assert all(math.isnan(v) for v in row.values())


def test_nan_scores_make_every_metric_undefined():
    scores = [0.3, nan, 0.1, 0.2]
    rat = [1, 0, 0, 1]
    for value in (
        P.topvar_f1(scores, rat),
        P.instance_iou_f1(scores, rat),
        P.auprc(scores, rat),
        C.rank_auc(scores, [0]),
        C.f1_at_k(scores, [0]),
        C.mass_lift(scores, [0]),
        C.graded_spearman(scores, [1, 0, 0, 0]),
        C.profile_distance(scores, [1, 0, 0, 0]),
    ):
        assert math.isnan(value)
