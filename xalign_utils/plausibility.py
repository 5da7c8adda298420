"""Plausibility: agreement of word scores with human rationales (DESIGN.md §8).

Unannotated words (rationale value ``None``) are excluded everywhere; an example with no
annotated word, NaN scores, or whose metric is undefined (e.g. a single-class rationale
for AUPRC) gives NaN, which callers count rather than drop (:func:`xalign_utils.stats.bootstrap_ci`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import auc, precision_recall_curve

from .schema import Example
from .stats import MetricSpec, has_nan, random_topk, set_f1, token_f1, top_k


def _annotated(rationale: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
    pos = np.array([i for i, r in enumerate(rationale) if r is not None], dtype=int)
    truth = np.array([int(rationale[i]) for i in pos], dtype=int)
    return pos, truth


def topvar_f1(scores: Sequence[float], rationale: Sequence[int | None]) -> float:
    """Token F1 of the Top-k words, k = number of human-rationale words (Fayyaz et al.).

    Ranking is over annotated words only. NaN when there are no annotated words or no
    rationale words (k = 0).
    """
    pos, truth = _annotated(rationale)
    k = int(truth.sum())
    if len(pos) == 0 or k == 0 or has_nan(scores):
        return float("nan")
    return set_f1(top_k(scores, k, among=pos), pos[truth == 1].tolist())


def spans(mask: Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous runs of 1s as ``(start, end)`` with ``end`` exclusive."""
    out, start = [], None
    for i, v in enumerate(list(mask) + [0]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i))
            start = None
    return out


def span_iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    """Intersection over union of two token spans."""
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union else 0.0


def _f1(p: float, r: float) -> float:
    return 0.0 if p == 0 or r == 0 else 2 * p * r / (p + r)


def iou_f1(
    truth: Sequence[Sequence[tuple[int, int]]],
    pred: Sequence[Sequence[tuple[int, int]]],
    threshold: float = 0.5,
) -> dict[str, float]:
    """ERASER's partial-match (IOU) F1 over instances, as in its ``partial_match_score``.

    A predicted span is a true positive when its best IOU with a gold span of the same
    instance is at least ``threshold``. Micro: pooled counts. Macro: per-instance
    recall (over instances with gold spans) and precision (over instances with
    predicted spans) averaged, then combined into F1.
    """
    tps, n_truth, n_pred = [], [], []
    for t, p in zip(truth, pred, strict=True):
        best = [max((span_iou(s, g) for g in t), default=0.0) for s in p]
        tps.append(sum(b >= threshold for b in best))
        n_truth.append(len(t))
        n_pred.append(len(p))
    tp, nt, npred = sum(tps), sum(n_truth), sum(n_pred)
    micro_r = tp / nt if nt else 0.0
    micro_p = tp / npred if npred else 0.0
    rs = [a / n for a, n in zip(tps, n_truth, strict=True) if n]
    ps = [a / n for a, n in zip(tps, n_pred, strict=True) if n]
    macro_r = float(np.mean(rs)) if rs else 0.0
    macro_p = float(np.mean(ps)) if ps else 0.0
    return {
        "micro_p": micro_p,
        "micro_r": micro_r,
        "micro_f1": _f1(micro_p, micro_r),
        "macro_p": macro_p,
        "macro_r": macro_r,
        "macro_f1": _f1(macro_p, macro_r),
    }


def instance_iou_f1(
    scores: Sequence[float], rationale: Sequence[int | None], threshold: float = 0.5
) -> float:
    """IOU-F1 of one example: the Top-k words (k as in :func:`topvar_f1`) as spans
    against the human spans. Unannotated words count as non-rationale for the spans.
    NaN when undefined (no annotated or no rationale words)."""
    pos, truth = _annotated(rationale)
    k = int(truth.sum())
    if len(pos) == 0 or k == 0 or has_nan(scores):
        return float("nan")
    pred_mask = np.zeros(len(rationale), dtype=int)
    pred_mask[top_k(scores, k, among=pos)] = 1
    gold_mask = [1 if r == 1 else 0 for r in rationale]
    return iou_f1([spans(gold_mask)], [spans(pred_mask)], threshold)["macro_f1"]


def auprc(scores: Sequence[float], rationale: Sequence[int | None]) -> float:
    """Area under the precision–recall curve of the scores against the human rationale,
    as ERASER computes it (``sklearn`` ``precision_recall_curve`` then ``auc``).
    NaN when the annotated words are all of one class."""
    pos, truth = _annotated(rationale)
    if len(set(truth.tolist())) < 2 or has_nan(scores):
        return float("nan")
    precision, recall, _ = precision_recall_curve(truth, np.asarray(scores, dtype=float)[pos])
    return float(auc(recall, precision))


#: The plausibility family: word scores against human rationales (unannotated words
#: excluded). Chance depends on the rationale's size, so none is given.
METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("topvar_f1", topvar_f1, description="token F1 of the top-k words, k = |human|"),
        MetricSpec("iou_f1", instance_iou_f1, description="ERASER IOU-F1 of top-k spans"),
        MetricSpec("auprc", auprc, description="area under the PR curve of the scores"),
    )
}


#: Table names of the word-list prompts in :func:`human_alignment`.
WORD_LIST_SYSTEMS = {"rationale_unbound": "Unbound", "rationale_topk": "Top-Var"}
#: Table name of the seeded random Top-Var baseline.
RANDOM_TOPVAR = "random Top-Var"


def human_alignment(
    rationales: pd.DataFrame,
    free_text: pd.DataFrame,
    examples_by_id: Mapping[str, Example],
    seed: int,
    label_source: str = "gold",
) -> pd.DataFrame:
    """Token F1 of the model's word lists and free-text citations with human rationales.

    The words a rationale names (``positions``) are scored with
    :func:`xalign_utils.stats.token_f1` (unannotated words excluded; NaN when the human
    rationale is empty, to be counted, not dropped). Each Top-Var list also gets a random
    Top-Var baseline: ``k`` annotated words drawn with one generator seeded by ``seed``,
    in the order of the rows, so the draw is reproducible. Examples of datasets without
    human rationales are skipped.

    Args:
        rationales: parsed word lists (``id``, ``role``, ``k``, ``positions``,
            ``label_source``); only rows of ``label_source`` are scored.
        free_text: parsed free-text explanations (``id``, ``role``, ``positions``).
        examples_by_id: the evaluation examples by id.
        seed: seed of the random Top-Var draws.

    Returns:
        One row per example × system: ``id``, ``dataset``, ``label`` (gold), ``system``
        (``Unbound``, ``Top-Var``, ``random Top-Var``, ``free text (<role>)``), ``f1``;
        word lists first (in the order of ``rationales``), then free text.
    """
    rng = np.random.default_rng(seed)
    rows = []
    chosen = rationales[rationales["label_source"] == label_source]
    for rec in chosen.to_dict("records"):
        ex = examples_by_id[rec["id"]]
        if ex.rationale is None:
            continue
        r = ex.flat_rationale()
        base = {"id": ex.id, "dataset": ex.dataset, "label": ex.label}
        system = WORD_LIST_SYSTEMS[rec["role"]]
        rows.append({**base, "system": system, "f1": token_f1(rec["positions"], r)})
        if rec["role"] == "rationale_topk":
            picked = random_topk(r, rec["k"], rng)
            rows.append({**base, "system": RANDOM_TOPVAR, "f1": token_f1(picked, r)})
    for rec in free_text.to_dict("records"):
        ex = examples_by_id[rec["id"]]
        if ex.rationale is None:
            continue
        system = f"free text ({rec['role'].replace('_', '-')})"
        f1 = token_f1(rec["positions"], ex.flat_rationale())
        rows.append(
            {"id": ex.id, "dataset": ex.dataset, "label": ex.label, "system": system, "f1": f1}
        )
    return pd.DataFrame(rows, columns=["id", "dataset", "label", "system", "f1"])
