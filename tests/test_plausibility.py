"""Plausibility metrics against hand-computed cases and degenerate inputs."""

from __future__ import annotations

import math

import pytest

from xalign_utils import plausibility as P
from xalign_utils import stats

nan = float("nan")


def test_top_k_breaks_ties_by_position():
    assert stats.top_k([0.5, 0.9, 0.5, 0.1], 2) == [0, 1]
    assert stats.top_k([1, 1, 1], 2) == [0, 1]
    assert stats.top_k([3, 2, 1], 0) == []
    assert stats.top_k([3, 2, 1], 5) == [0, 1, 2]
    assert stats.top_k([9, 2, 1], 1, among=[1, 2]) == [1]


def test_topvar_f1_hand_computed():
    # rationale words 1 and 2 (k = 2); the top-2 by score are 0 and 1 → tp = 1, F1 = 0.5
    assert P.topvar_f1([0.9, 0.8, 0.1, 0.0], [0, 1, 1, 0]) == pytest.approx(0.5)
    assert P.topvar_f1([0.1, 0.8, 0.9, 0.0], [0, 1, 1, 0]) == 1.0
    # the unannotated word 0 is never chosen, however high its score
    assert P.topvar_f1([9.0, 0.8, 0.1, 0.0], [None, 1, 0, 0]) == 1.0


@pytest.mark.parametrize(
    "rationale", [[None, None], [0, 0, 0], []], ids=["unannotated", "no-rationale", "empty"]
)
def test_undefined_plausibility_is_nan(rationale):
    scores = [0.1] * len(rationale)
    assert math.isnan(P.topvar_f1(scores, rationale))
    assert math.isnan(P.auprc(scores, rationale))
    assert math.isnan(P.instance_iou_f1(scores, rationale))


def test_spans_and_iou():
    assert P.spans([0, 1, 1, 0, 1]) == [(1, 3), (4, 5)]
    assert P.spans([]) == [] and P.spans([1, 1]) == [(0, 2)]
    assert P.span_iou((0, 4), (1, 4)) == pytest.approx(0.75)
    assert P.span_iou((0, 2), (2, 4)) == 0.0


def test_iou_f1_follows_eraser_partial_match():
    # instance 1: gold (0,4); predictions (1,4) IOU .75 ✓ and (6,8) ✗
    # instance 2: gold (0,2),(5,9); prediction (5,7) IOU 2/4 = .5 ✓ (threshold inclusive)
    # instance 3: gold (3,4); no prediction
    truth = [[(0, 4)], [(0, 2), (5, 9)], [(3, 4)]]
    pred = [[(1, 4), (6, 8)], [(5, 7)], []]
    s = P.iou_f1(truth, pred, threshold=0.5)
    assert s["micro_p"] == pytest.approx(2 / 3)
    assert s["micro_r"] == pytest.approx(2 / 4)
    # macro recall over the 3 gold instances (1, .5, 0); precision over the 2 predicted (.5, 1)
    assert s["macro_r"] == pytest.approx(0.5)
    assert s["macro_p"] == pytest.approx(0.75)
    assert s["macro_f1"] == pytest.approx(2 * 0.5 * 0.75 / 1.25)
    assert P.iou_f1([[(0, 4)]], [[(2, 8)]])["micro_f1"] == 0.0  # IOU 2/8 < .5


def test_auprc_matches_sklearn_definition_on_a_hand_case():
    # perfect ranking → 1; reversed ranking of one positive among two: sklearn's PR points
    # (recall, precision) = (1, ½), (0, 0), (0, 1); the trapezoid under (0, 0)–(1, ½) is ¼
    assert P.auprc([0.9, 0.1, 0.2], [1, 0, 0]) == pytest.approx(1.0)
    assert P.auprc([0.1, 0.9], [1, 0]) == pytest.approx(0.25)
    # ties and NaN-free constant scores are defined (one threshold)
    assert P.auprc([0.5, 0.5, 0.5, 0.5], [1, 0, 0, 1]) == pytest.approx(0.75)


def test_all_words_rationale():
    scores = [0.3, 0.2, 0.1]
    assert P.topvar_f1(scores, [1, 1, 1]) == 1.0  # k = n: trivially every word
    assert P.instance_iou_f1(scores, [1, 1, 1]) == 1.0
    assert math.isnan(P.auprc(scores, [1, 1, 1]))  # a single class has no PR curve
