"""Plausibility: agreement of word scores with human rationales (DESIGN.md §8).

Unannotated words (rationale value ``None``) are excluded everywhere; an example with no
annotated word, NaN scores, or whose metric is undefined (e.g. a single-class rationale
for AUPRC) gives NaN, which callers count rather than drop (:func:`xalign_utils.stats.bootstrap_ci`).

The per-example functions feed per-example tables; the dataset-level numbers ERASER
reports (F1 of macro-averaged precision and recall, single-class documents scored) come
from :func:`eraser_scores`, since a mean of per-example values is not the same number.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from .schema import Example
from .stats import MetricSpec, has_nan, random_topk, set_f1, token_f1, top_k


def _annotated(rationale: Sequence[int | None]) -> tuple[np.ndarray, np.ndarray]:
    pos = np.array([i for i, r in enumerate(rationale) if r is not None], dtype=int)
    truth = np.array([int(rationale[i]) for i in pos], dtype=int)
    return pos, truth


def topvar_positions(scores: Sequence[float], rationale: Sequence[int | None]) -> list[int]:
    """The Top-Var prediction: the k highest-scoring annotated words, k = number of
    human-rationale words (Fayyaz et al.), highest first; ``[]`` when k = 0."""
    pos, truth = _annotated(rationale)
    return top_k(scores, int(truth.sum()), among=pos)


def topvar_f1(scores: Sequence[float], rationale: Sequence[int | None]) -> float:
    """Token F1 of the Top-k words, k = number of human-rationale words (Fayyaz et al.).

    Ranking is over annotated words only. NaN when there are no annotated words or no
    rationale words (k = 0).
    """
    pos, truth = _annotated(rationale)
    if len(pos) == 0 or truth.sum() == 0 or has_nan(scores):
        return float("nan")
    return set_f1(topvar_positions(scores, rationale), pos[truth == 1].tolist())


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
    predicted spans) averaged, then combined into F1 (not a mean of per-instance F1).
    An instance's spans are a set, as in ERASER: a repeated span counts once, so
    recall stays ≤ 1 for disjoint spans (ERASER matches without a one-to-one assignment,
    so two distinct overlapping predicted spans can still both match one gold span).
    """
    tps, n_truth, n_pred = [], [], []
    for t, p in zip(truth, pred, strict=True):
        t, p = sorted(set(map(tuple, t))), sorted(set(map(tuple, p)))
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
    if len(pos) == 0 or truth.sum() == 0 or has_nan(scores):
        return float("nan")
    truth_spans, pred_spans = _span_pair(topvar_positions(scores, rationale), rationale)
    return iou_f1([truth_spans], [pred_spans], threshold)["macro_f1"]


def _span_pair(
    predicted: Sequence[int], rationale: Sequence[int | None]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Gold and predicted spans of one example; unannotated words are non-rationale
    words for the spans (and never predicted)."""
    chosen = set(predicted)
    gold_mask = [1 if r == 1 else 0 for r in rationale]
    pred_mask = [1 if i in chosen and r is not None else 0 for i, r in enumerate(rationale)]
    return spans(gold_mask), spans(pred_mask)


def auprc(
    scores: Sequence[float], rationale: Sequence[int | None], *, eraser: bool = False
) -> float:
    """Area under the precision–recall curve of the scores against the human rationale,
    as ERASER computes it (``sklearn`` ``precision_recall_curve`` then ``auc``).

    NaN when the annotated words are all of one class (the project's convention: the
    example is counted as undefined), unless ``eraser``: ERASER's ``_auprc`` scores those
    too, with whatever the installed scikit-learn's curve gives (1.0 when every word is
    rationale; for no rationale word current scikit-learn sets recall to 1, area 0.5,
    while the release ERASER pinned, 0.20.3, had no such guard). NaN without annotated
    words or with NaN scores either way.
    """
    pos, truth = _annotated(rationale)
    if len(pos) == 0 or has_nan(scores) or (len(set(truth.tolist())) < 2 and not eraser):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "no positive class": ERASER's case
        precision, recall, _ = precision_recall_curve(truth, np.asarray(scores, dtype=float)[pos])
    return float(auc(recall, precision))


def _prf(tp: int, n_pred: int, n_gold: int) -> tuple[float, float, float]:
    p, r = tp / n_pred if n_pred else 0.0, tp / n_gold if n_gold else 0.0
    return p, r, _f1(p, r)


def eraser_scores(
    predicted: Sequence[Sequence[int]],
    gold: Sequence[Sequence[int | None] | None],
    scores: Sequence[Sequence[float]] | None = None,
    threshold: float = 0.5,
) -> dict[str, float]:
    """Dataset-level plausibility aggregates exactly as ERASER's scorer forms them
    (``rationale_benchmark/metrics.py``), from hard predictions and, optionally, scores.

    * token P/R/F1 (``score_hard_rationale_predictions`` on tokens): macro P and R are
      means over documents with a gold or a predicted word, macro F1 the mean of their
      per-document F1 (so a document with predictions but no rationale word scores 0);
      micro from pooled counts.
    * IOU P/R/F1 (``partial_match_score``, :func:`iou_f1`): macro F1 is the F1 of the
      macro P and R; micro from pooled counts.
    * ``auprc`` (``_auprc``): mean over every document, single-class ones included
      (:func:`auprc` with ``eraser=True``); ``average_precision`` and ``roc_auc``: means
      over two-class documents only, as ERASER discards single-class ones there.

    Where the project differs from ERASER: unannotated words (``None``) are left out of
    predictions, truth and scores; a document without annotated words (or ``gold`` None)
    is skipped and counted in ``n_unannotated``; one with NaN scores is left out of the
    soft metrics and counted in ``n_nan_scores`` (ERASER would fail). An aggregate with
    no document to average is NaN; a P or R with an empty denominator is 0 (as ERASER's
    partial-match scorer does; its token scorer would divide by zero).

    Args:
        predicted: per document, the predicted word positions (e.g.
            :func:`topvar_positions` or a model's word list).
        gold: per document, the human rationale (1, 0 or ``None`` per word).
        scores: per document, continuous word scores for the soft metrics.
        threshold: IOU at which a predicted span matches a gold span.
    """
    counts, truth_spans, pred_spans, soft = [], [], [], []
    skipped = nan_scores = 0
    for i, (chosen, rationale) in enumerate(zip(predicted, gold, strict=True)):
        pos, truth = _annotated(rationale or [])
        if len(pos) == 0:
            skipped += 1
            continue
        g, p = set(pos[truth == 1].tolist()), {int(j) for j in chosen} & set(pos.tolist())
        counts.append((len(g & p), len(p), len(g)))
        gold_spans, chosen_spans = _span_pair(sorted(p), rationale)
        truth_spans.append(gold_spans)
        pred_spans.append(chosen_spans)
        if scores is not None and has_nan(scores[i]):
            nan_scores += 1
        elif scores is not None:
            s = np.asarray(scores[i], dtype=float)
            soft.append((truth, s[pos], auprc(s, rationale, eraser=True)))
    per_doc = [_prf(*c) for c in counts if c[1] or c[2]]
    macro = np.mean(per_doc, axis=0) if per_doc else np.full(3, np.nan)
    micro = _prf(*np.sum(counts, axis=0)) if counts else (np.nan,) * 3
    out = {"n_documents": len(gold), "n_unannotated": skipped, "n_token_documents": len(per_doc)}
    for name, values in (("token_macro", macro), ("token_micro", micro)):
        out |= dict(zip((f"{name}_p", f"{name}_r", f"{name}_f1"), map(float, values), strict=True))
    iou = iou_f1(truth_spans, pred_spans, threshold) if counts else {}
    for key in ("macro_p", "macro_r", "macro_f1", "micro_p", "micro_r", "micro_f1"):
        out[f"iou_{key}"] = float(iou.get(key, np.nan))
    two_class = [(t, s) for t, s, _ in soft if len(set(t.tolist())) == 2]
    out["auprc"] = float(np.mean([a for _, _, a in soft])) if soft else np.nan
    for name, fn in (("average_precision", average_precision_score), ("roc_auc", roc_auc_score)):
        out[name] = float(np.mean([fn(t, s) for t, s in two_class])) if two_class else np.nan
    out |= {"n_soft_documents": len(soft), "n_single_class": len(soft) - len(two_class)}
    return out | {"n_nan_scores": nan_scores}


#: The plausibility family: word scores against human rationales (unannotated words
#: excluded). Chance depends on the rationale's size, so none is given.
METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("topvar_f1", topvar_f1, description="token F1 of the top-k words, k = |human|"),
        MetricSpec(
            "iou_f1",
            instance_iou_f1,
            description="IOU-F1 of top-k spans per example (ERASER's F1: eraser_scores)",
        ),
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
