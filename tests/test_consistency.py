"""Consistency metrics against hand-computed cases and degenerate inputs."""

from __future__ import annotations

import math

import numpy as np
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
    # ranks (3, 2, 4, 1) against tied grade ranks (3, 1.5, 4, 1.5): ρ = 4.5 / √22.5
    assert C.graded_spearman([0.5, 0.1, 0.9, 0.0], grades) == pytest.approx(4.5 / math.sqrt(22.5))
    assert math.isnan(C.graded_spearman([1, 1, 1, 1], grades))  # constant scores


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
