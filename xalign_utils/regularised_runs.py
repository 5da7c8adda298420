"""Notebook 05's intervention: explanation-regularised fine-tuning against λ = 0
(DESIGN.md §9).

Every run continues from the plain fine-tuned adapter (a competent model) on training
examples that have a rationale, for the same steps, data order and seed whatever λ, so a
λ > 0 run differs from its λ = 0 twin by the regulariser only. Runs are scored with
*another* attribution method than the one the regulariser shapes (occlusion; the
regularisers act on input gradients), so no metric is the training target:

* accuracy;
* plausibility: occlusion Top-Var F1 with the human rationale;
* faithfulness (the primary metric): comprehensiveness AOPC of occlusion's ranking;
* consistency: rank AUC of the model's own Top-Var word list (asked about its predicted
  label) against occlusion, and whether the list changed from the λ = 0 twin's (Jaccard).

The primary test is the paired Wilcoxon test of comprehensiveness AOPC per λ > 0 against
λ = 0 over evaluation examples (seeds averaged per example), Holm over the λ values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .attribution import attribute
from .config import RunConfig
from .consistency import rank_auc
from .explanations import cited_positions, elicit, parse_outputs, rationale_k
from .faithfulness import erasure_table
from .plausibility import topvar_f1
from .schema import Example
from .scoring import predict
from .stats import paired_tests
from .store import cached, read_table
from .training_runs import STAGE, fine_tune, load_run_model, run_folder

#: Rationale sources of the regularised runs.
SOURCES = ("human", "explanations", "own")
#: The evaluation method (not the trained gradient) and the primary metric.
EVAL_METHOD = "occlusion"
PRIMARY = "comp_aopc"
#: Per-example metrics of :func:`run_table`.
METRICS = ("correct", "topvar_f1", "comp_aopc", "rank_auc", "list_jaccard")


def run_name(cfg: RunConfig, lam: float, seed: int) -> str:
    """``<regulariser>-<source>-l<λ>-s<seed>``, e.g. ``rrr-human-l0.1-s13``."""
    return f"{cfg.regulariser}-{cfg.reg_source}-l{lam:g}-s{seed}"


def rationales(
    cfg: RunConfig, examples: Sequence[Example], source: str | None = None
) -> list[list[int]]:
    """Per example, the flat word positions the regulariser treats as the rationale.

    ``human``: the human highlights; ``explanations``: the words the human free-text
    explanations cite (e-SNLI); ``own``: the model's own gold-label Unbound word list
    from notebook 02 (self-consistency), empty where 02 has none.

    Raises:
        ValueError: an unknown source.
    """
    source = source or cfg.reg_source
    if source == "human":
        return [ex.rationale_positions() for ex in examples]
    if source == "explanations":
        return [
            sorted(
                {p for text in ex.explanations for p in cited_positions(text, ex.flat_words())[0]}
            )
            for ex in examples
        ]
    if source == "own":
        stored = read_table(cfg, "02_baselines", "rationales")
        own = stored[(stored["role"] == "rationale_unbound") & (stored["label_source"] == "gold")]
        by_id = dict(zip(own["id"], own["positions"], strict=True))
        return [sorted(int(p) for p in by_id.get(ex.id, [])) for ex in examples]
    raise ValueError(f"unknown rationale source {source!r}; valid: {list(SOURCES)}")


def training_set(cfg: RunConfig, train: Sequence[Example]) -> tuple[list[Example], list[list[int]]]:
    """The first ``n_reg_train`` training examples with a non-empty rationale of
    ``cfg.reg_source``, and those rationales."""
    chosen, rats = [], []
    for ex, rat in zip(train, rationales(cfg, train), strict=True):
        if rat and len(chosen) < cfg.n_reg_train:
            chosen.append(ex)
            rats.append(rat)
    if not chosen:
        raise ValueError(f"no training example has a {cfg.reg_source!r} rationale")
    return chosen, rats


def run_all(
    cfg: RunConfig, train: Sequence[Example], plain: str, progress: bool = True
) -> pd.DataFrame:
    """Train every λ × seed run from the plain adapter (resumable; finished runs are read
    back) and return their loss curves (column ``run``)."""
    examples, rats = training_set(cfg, train)
    steps = cfg.reg_steps * cfg.train_batch_size
    curves = []
    for seed in cfg.reg_seeds:
        for lam in cfg.reg_lambdas:
            name = run_name(cfg, lam, seed)
            curve = fine_tune(
                cfg,
                name,
                examples,
                rats,
                start_from=run_folder(cfg, plain) / "adapter",
                progress=progress,
                regulariser=cfg.regulariser,
                lam=float(lam),
                seed=int(seed),
                max_examples=min(steps, len(examples)),
                epochs=max(1, -(-steps // len(examples))),
                warmup_steps=0,
            )
            curves.append(curve.assign(run=name, lam=float(lam), seed=int(seed)))
    return pd.concat(curves, ignore_index=True)


def run_table(model, tokenizer, examples: Sequence[Example], cfg: RunConfig) -> pd.DataFrame:
    """Per example, on one model: correctness, occlusion Top-Var F1 with the human
    rationale, occlusion's comprehensiveness AOPC, and the model's Top-Var list about its
    predicted label (positions, rank AUC against occlusion)."""
    by_id = {ex.id: ex for ex in examples}
    preds = predict(model, tokenizer, examples, cfg.batch_size, greedy=False)
    occ = attribute(
        model, tokenizer, examples, [EVAL_METHOD], batch_size=cfg.batch_size, target="pred"
    )
    k_by_id = {ex.id: rationale_k(ex, cfg.topk_fixed) for ex in examples}
    faith = erasure_table(
        model,
        tokenizer,
        occ,
        by_id,
        k_by_id=k_by_id,
        strategy=cfg.strategy,
        mask_text=cfg.mask_text,
        batch_size=cfg.batch_size,
    )
    raw = elicit(
        model,
        tokenizer,
        examples,
        "rationale_topk",
        labels=list(preds["pred"]),
        fixed_k=cfg.topk_fixed,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.gen_batch_size,
    )
    lists = parse_outputs(raw, by_id).set_index("id")
    occ = occ.set_index("id")
    rows = []
    for ex in examples:
        mags = np.asarray(occ.at[ex.id, "magnitude"], dtype=float)
        listed = [int(p) for p in lists.at[ex.id, "positions"]]
        rows.append(
            {
                "id": ex.id,
                "topvar_f1": topvar_f1(mags, ex.flat_rationale()),
                "rank_auc": rank_auc(mags, listed) if listed else np.nan,
                "list_positions": listed,
                "list_status": lists.at[ex.id, "status"],
            }
        )
    out = preds[["id", "dataset", "label", "pred"]].merge(pd.DataFrame(rows), on="id")
    out["correct"] = (out["label"] == out["pred"]).astype(float)
    return out.merge(faith[["id", PRIMARY]], on="id", how="left")


def evaluate_all(cfg: RunConfig, evaluation: Mapping[str, Sequence[Example]]) -> pd.DataFrame:
    """:func:`run_table` of every λ × seed run's final adapter, stored as
    ``regularised_<regulariser>_<source>`` and reused; adds ``list_jaccard``, the
    overlap of each run's word list with its λ = 0 twin's."""
    examples = [ex for exs in evaluation.values() for ex in exs]

    def compute() -> pd.DataFrame:
        frames = []
        for seed in cfg.reg_seeds:
            for lam in cfg.reg_lambdas:
                name = run_name(cfg, lam, seed)
                model, tok = load_run_model(cfg, name)
                frames.append(
                    run_table(model, tok, examples, cfg).assign(run=name, lam=lam, seed=seed)
                )
        table = pd.concat(frames, ignore_index=True)
        return table.assign(list_jaccard=_jaccard_to_zero(table))

    return cached(
        cfg, STAGE, f"regularised_{cfg.regulariser}_{cfg.reg_source}", compute, training=True
    )


def _jaccard_to_zero(table: pd.DataFrame) -> pd.Series:
    zero = table[table["lam"] == 0].set_index(["seed", "id"])["list_positions"]
    out = []
    for rec in table.itertuples():
        a, b = set(rec.list_positions), set(zero.get((rec.seed, rec.id), []))
        out.append(len(a & b) / len(a | b) if a | b else np.nan)
    return pd.Series(out, index=table.index)


def tests_against_zero(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Paired tests of every λ > 0 against λ = 0 (per example, seeds averaged), per
    metric; :data:`PRIMARY` confirmatory with Holm over λ, the rest exploratory."""
    metrics = [m for m in METRICS if m != "list_jaccard"]
    return paired_tests(
        table.assign(condition=table["lam"].map(lambda v: f"λ={v:g}"), pooled="all datasets"),
        by=["pooled"],
        metric=metrics,
        condition="condition",
        reference="λ=0",
        unit=["id", "seed"],
        cluster="id",
        primary=PRIMARY,
        seed=seed,
    )
