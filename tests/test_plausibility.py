"""Plausibility metrics against hand-computed cases and degenerate inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from helpers import text_example

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


# --------------------------------------------------------------------------- human_alignment


def _example(ex_id, dataset, label, words, rationale):
    return text_example(ex_id, words, dataset=dataset, label=label, rationale=rationale)


ALIGN_EXAMPLES = {
    # rationale words 1 and 2; word 4 is unannotated
    "a": _example("a", "esnli", "neutral", ["w0", "w1", "w2", "w3", "w4"], [0, 1, 1, 0, None]),
    # empty human rationale: F1 undefined (NaN), counted by the caller
    "b": _example("b", "hatexplain", "normal", ["x0", "x1", "x2"], [0, 0, 0]),
    # no rationales at all (SST-2): skipped
    "c": _example("c", "sst2", "positive", ["y0", "y1"], None),
}


def _word_lists() -> pd.DataFrame:
    rows = []
    for source in ("gold", "pred"):
        for role in ("rationale_unbound", "rationale_topk"):
            for ex_id, positions, k in (("a", [1, 4], 2), ("b", [0], 0), ("c", [1], 3)):
                rows.append(
                    {
                        "id": ex_id,
                        "role": role,
                        "label_source": source,
                        "positions": positions,
                        "k": k,
                    }
                )
    return pd.DataFrame(rows)


def _free_text() -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"id": "a", "role": "explain_then_predict", "positions": [1, 2, 3]},
            {"id": "c", "role": "explain_then_predict", "positions": [0]},
            {"id": "a", "role": "predict_then_explain", "positions": []},
        ]
    )


def test_human_alignment_scores_hand_made_lists():
    scored = P.human_alignment(_word_lists(), _free_text(), ALIGN_EXAMPLES, seed=3)
    assert list(scored.columns) == ["id", "dataset", "label", "system", "f1"]
    assert "c" not in set(scored["id"])  # no human rationale: skipped
    a = scored[scored["id"] == "a"].set_index("system")["f1"]
    # listed {1, 4}: 4 is unannotated and dropped, {1} vs {1, 2} → 2·1 / (1 + 2)
    assert a["Unbound"] == pytest.approx(2 / 3) and a["Top-Var"] == pytest.approx(2 / 3)
    # cited {1, 2, 3} vs {1, 2} → 2·2 / (3 + 2); nothing cited → 0
    assert a["free text (explain-then-predict)"] == pytest.approx(0.8)
    assert a["free text (predict-then-explain)"] == 0.0
    b = scored[scored["id"] == "b"]
    assert len(b) == 3 and b["f1"].isna().all()  # Unbound, Top-Var, random: all undefined
    # only gold-label lists are scored, in table order, random right after each Top-Var
    assert list(scored["system"]) == [
        "Unbound",
        "Unbound",
        "Top-Var",
        "random Top-Var",
        "Top-Var",
        "random Top-Var",
        "free text (explain-then-predict)",
        "free text (predict-then-explain)",
    ]


def test_human_alignment_random_baseline_is_seeded_in_row_order():
    lists = _word_lists()
    first = P.human_alignment(lists, _free_text(), ALIGN_EXAMPLES, seed=3)
    again = P.human_alignment(lists, _free_text(), ALIGN_EXAMPLES, seed=3)
    pd.testing.assert_frame_equal(first, again)
    # the same draws as one generator walking the Top-Var rows in order
    rng = np.random.default_rng(3)
    r = ALIGN_EXAMPLES["a"].flat_rationale()
    expected = stats.token_f1(stats.random_topk(r, 2, rng), r)
    got = first.query("id == 'a' and system == 'random Top-Var'")["f1"].item()
    assert got == pytest.approx(expected)
    # the k draws come from annotated words only: F1 is always defined for "a"
    for seed in range(20):
        f1 = P.human_alignment(lists, _free_text(), ALIGN_EXAMPLES, seed=seed)
        assert f1.query("id == 'a' and system == 'random Top-Var'")["f1"].notna().all()


def test_human_alignment_of_the_pred_source_and_empty_tables():
    scored = P.human_alignment(_word_lists(), _free_text().iloc[:0], ALIGN_EXAMPLES, 0, "pred")
    assert set(scored["system"]) == {"Unbound", "Top-Var", "random Top-Var"}
    empty = P.human_alignment(_word_lists().iloc[:0], _free_text().iloc[:0], ALIGN_EXAMPLES, 0)
    assert empty.empty and list(empty.columns) == ["id", "dataset", "label", "system", "f1"]
