"""Plausibility metrics against hand-computed cases and degenerate inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from helpers import text_example
from sklearn.metrics import average_precision_score, roc_auc_score

from xalign_utils import plausibility as P
from xalign_utils import stats

nan = float("nan")


def test_top_k_breaks_ties_by_position():
    assert stats.top_k([0.5, 0.9, 0.5, 0.1], 2) == [1, 0]
    assert stats.top_k([1, 1, 1], 2) == [0, 1]
    assert stats.top_k([3, 2, 1], 0) == []
    assert stats.top_k([3, 2, 1], 5) == [0, 1, 2]
    assert stats.top_k([9, 2, 1], 1, among=[1, 2]) == [1]


def test_top_k_returns_the_ranking_not_sorted_positions():
    # an oracle explanation built from scores keeps its order (graded metrics read it)
    assert stats.top_k([0.1, 0.9, 0.5, 0.7], 3) == [1, 3, 2]
    assert stats.top_k([0.2, 0.8, 0.8, 0.9], 4) == [3, 1, 2, 0]  # tie 0.8: position 1 first
    assert stats.top_k([5.0, 1.0, 3.0, 4.0], 2, among=[1, 2, 3]) == [3, 2]
    assert P.topvar_positions([0.1, 0.9, 0.5, 0.7], [1, None, 0, 1]) == [3, 2]


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


def test_iou_f1_counts_a_repeated_span_once():
    # ERASER keeps an instance's spans in a set: a duplicate prediction is one span
    s = P.iou_f1([[(0, 4)]], [[(0, 4), (0, 4)]])
    assert s["micro_r"] == s["macro_r"] == 1.0 and s["micro_p"] == s["macro_p"] == 1.0
    s = P.iou_f1([[(0, 4), (0, 4)], [(2, 3)]], [[(1, 4), (1, 4), (6, 8)], [(2, 3)]])
    # instance 1: gold {(0,4)}, predicted {(1,4) ✓, (6,8) ✗}; instance 2: exact match
    assert s["micro_r"] == pytest.approx(2 / 2) and s["micro_p"] == pytest.approx(2 / 3)
    assert s["macro_r"] == pytest.approx(1.0) and s["macro_p"] == pytest.approx((1 / 2 + 1) / 2)


# Two documents for the dataset-level ERASER aggregates, derived by hand:
# A: rationale 1 1 0 0 1 1 0 0 → gold spans (0,2) (4,6), gold words {0,1,4,5}
#    predicted words {0,1,2,5,7} → spans (0,3) (5,6) (7,8)
#    IOU: (0,3)~(0,2) = 2/3 ✓; (5,6)~(4,6) = 1/2 ✓ (threshold inclusive); (7,8) ✗
#    → IOU tp 2 of 3 predicted, 2 gold: P = 2/3, R = 1
#    tokens: |{0,1,5}| = 3 → P = 3/5, R = 3/4, F1 = 2·(9/20)/(27/20) = 2/3
# B: rationale 0 1 1 1 0 0 → gold span (1,4), gold words {1,2,3}
#    predicted words {1,2,3,4,5} → span (1,6): IOU 3/5 ✓ → P = 1, R = 1
#    tokens: 3 shared → P = 3/5, R = 1, F1 = 2·(3/5)/(8/5) = 3/4
ERASER_GOLD = [[1, 1, 0, 0, 1, 1, 0, 0], [0, 1, 1, 1, 0, 0]]
ERASER_PRED = [[0, 1, 2, 5, 7], [5, 4, 3, 2, 1]]


def test_eraser_scores_hand_computed():
    s = P.eraser_scores(ERASER_PRED, ERASER_GOLD)
    # IOU macro: P = (2/3 + 1)/2 = 5/6, R = (1 + 1)/2 = 1, F1 of those = 2·(5/6)/(11/6) = 10/11
    assert s["iou_macro_p"] == pytest.approx(5 / 6) and s["iou_macro_r"] == pytest.approx(1.0)
    assert s["iou_macro_f1"] == pytest.approx(10 / 11)
    # ... which is not the mean of the per-document IOU-F1 (0.8 and 1 → 0.9)
    per_doc = [
        P.iou_f1([P.spans(g)], [P.spans(np.isin(range(len(g)), p))])
        for g, p in zip(ERASER_GOLD, ERASER_PRED, strict=True)
    ]
    assert np.mean([d["macro_f1"] for d in per_doc]) == pytest.approx(0.9)
    # IOU micro: tp 3, predicted 4, gold 3 → P = 3/4, R = 1, F1 = 6/7
    assert (s["iou_micro_p"], s["iou_micro_r"]) == pytest.approx((3 / 4, 1.0))
    assert s["iou_micro_f1"] == pytest.approx(6 / 7)
    # tokens, macro: P = (3/5 + 3/5)/2, R = (3/4 + 1)/2 = 7/8, F1 = mean(2/3, 3/4) = 17/24
    assert (s["token_macro_p"], s["token_macro_r"]) == pytest.approx((3 / 5, 7 / 8))
    assert s["token_macro_f1"] == pytest.approx(17 / 24)
    # tokens, micro: tp 6, predicted 10, gold 7 → P = 3/5, R = 6/7, F1 = 2·(18/35)/(51/35)
    assert (s["token_micro_p"], s["token_micro_r"]) == pytest.approx((3 / 5, 6 / 7))
    assert s["token_micro_f1"] == pytest.approx(12 / 17)
    assert s["n_documents"] == 2 and s["n_unannotated"] == 0 and s["n_token_documents"] == 2
    assert math.isnan(s["auprc"]) and s["n_soft_documents"] == 0  # no scores given


def test_eraser_scores_counts_repeated_predictions_once():
    doubled = [[*p, *p] for p in ERASER_PRED]
    assert P.eraser_scores(doubled, ERASER_GOLD) == P.eraser_scores(ERASER_PRED, ERASER_GOLD)


def test_eraser_scores_score_single_class_documents():
    gold = [[1, 1, 1], [0, 0, 0], [1, 0, 0, 0]]
    predicted = [[0, 1, 2], [0], [1]]
    scores = [[0.3, 0.2, 0.1], [0.9, 0.1, 0.2], [0.1, 0.9, 0.3, 0.2]]
    s = P.eraser_scores(predicted, gold, scores)
    # tokens: every word gold and predicted → F1 1; no gold word, one predicted → P = R = 0,
    # F1 0 (ERASER scores it, it is not dropped); doc 3: {1} vs {0} → 0. Macro F1 = 1/3.
    assert s["token_macro_f1"] == pytest.approx(1 / 3) and s["n_token_documents"] == 3
    # AUPRC averages every document, single-class ones included, as ERASER's _auprc does
    single = [P.auprc(sc, g, eraser=True) for sc, g in zip(scores[:2], gold[:2], strict=True)]
    assert single[0] == pytest.approx(1.0) and not math.isnan(single[1])
    two_class = P.auprc(scores[2], gold[2])
    assert s["auprc"] == pytest.approx((single[0] + single[1] + two_class) / 3)
    # average precision and ROC AUC discard single-class documents (ERASER's aggregator)
    assert s["average_precision"] == pytest.approx(average_precision_score([1, 0, 0, 0], scores[2]))
    assert s["roc_auc"] == pytest.approx(roc_auc_score([1, 0, 0, 0], scores[2]))
    assert s["n_soft_documents"] == 3 and s["n_single_class"] == 2
    # the per-example function keeps the project's convention: single class is undefined
    assert math.isnan(P.auprc(scores[0], gold[0])) and math.isnan(P.auprc(scores[1], gold[1]))


def test_eraser_scores_leave_out_unannotated_words_and_count_skips():
    gold = [[None, 1, 0, None], None, [None, None], [1, 0]]
    predicted = [[0, 1], [0], [0], [1]]
    scores = [[9.0, 0.5, 0.1, 9.0], [1.0], [0.1, 0.2], [nan, 0.1]]
    s = P.eraser_scores(predicted, gold, scores)
    # doc 1: word 0 is unannotated, so the prediction is {1} = gold → P = R = 1
    # doc 4: {1} vs {0} → 0; docs 2 and 3 have no annotated word: skipped and counted
    assert s["n_unannotated"] == 2 and s["n_token_documents"] == 2
    assert s["token_macro_f1"] == pytest.approx(0.5)
    assert s["iou_macro_r"] == pytest.approx(0.5) and s["iou_macro_p"] == pytest.approx(0.5)
    # soft metrics: unannotated words' scores ignored (doc 1 ranks its gold word first);
    # doc 4 has a NaN score: counted, not scored
    assert s["auprc"] == pytest.approx(1.0) and s["n_nan_scores"] == 1


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
