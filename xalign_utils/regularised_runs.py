"""Notebook 05's intervention: explanation-regularised fine-tuning against λ = 0
(DESIGN.md §9).

Every run continues from the plain fine-tuned adapter (a competent model) on training
examples that have a rationale, taken in turn from each dataset, for the same steps, data
order and seed whatever λ, so a λ > 0 run differs from its λ = 0 twin by the regulariser
only. Runs are scored with *another* attribution method than the one the regulariser
shapes (occlusion; the regularisers act on input gradients), so no metric is the
training target. One primary metric per question (DESIGN.md §8):

* plausibility: occlusion Top-Var F1 with the human rationale;
* faithfulness: comprehensiveness AOPC of occlusion's ranking;
* consistency: rank AUC of the model's own Top-Var word list (about its predicted label)
  against occlusion;

each a paired Wilcoxon test of every λ > 0 against λ = 0 over evaluation examples (seeds
averaged per example), per dataset, Holm over λ × dataset within the question. Effect
sizes only: accuracy, the comprehensiveness of erasing the human rationale and the
model's own list, and how much the list changed from the λ = 0 twin's (Jaccard, where the
two predict the same label). :func:`seed_effects` puts the effects beside the noise
floor of training seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .attribution import attribute
from .config import RunConfig
from .consistency import rank_auc
from .explanations import cited_positions, elicit, parse_outputs, rationale_k
from .faithfulness import erasure_table, explanation_comprehensiveness
from .plausibility import topvar_f1
from .schema import Example
from .scoring import predict
from .stats import paired_tests
from .store import cached
from .training_runs import (
    STAGE,
    adapter_name,
    fine_tune,
    load_run_model,
    publish_adapter,
    run_folder,
)

#: Rationale sources of the regularised runs.
SOURCES = ("human", "explanations", "own")
#: The evaluation method (not the trained gradient).
EVAL_METHOD = "occlusion"
#: One primary metric per question (DESIGN.md §8), each tested against λ = 0.
PRIMARY = {"plausibility": "topvar_f1", "faithfulness": "comp_aopc", "consistency": "rank_auc"}
#: Effect sizes only: accuracy, the comprehensiveness of erasing the human rationale and
#: the model's own list, and the list's overlap with the λ = 0 twin's.
EXPLORATORY = ("correct", "comp_human", "comp_list", "list_jaccard")
#: Per-example metrics of :func:`evaluate_all`.
METRICS = (*PRIMARY.values(), *EXPLORATORY)


def run_name(cfg: RunConfig, lam: float, seed: int) -> str:
    """``<regulariser>-<source>-l<λ>-s<seed>``, e.g. ``rrr-human-l0.1-s13``."""
    return f"{cfg.regulariser}-{cfg.reg_source}-l{lam:g}-s{seed}"


def own_lists(cfg: RunConfig, examples: Sequence[Example], plain: str) -> dict[str, list[int]]:
    """The plain fine-tuned model's own Unbound word lists about the gold label for
    ``examples`` (flat positions, in the order named; empty when unparseable), generated
    once and stored as ``own_lists_<plain>``."""

    def compute() -> pd.DataFrame:
        model, tok = load_run_model(cfg, plain, for_gradients=False)
        raw = elicit(
            model,
            tok,
            examples,
            "rationale_unbound",
            max_new_tokens=cfg.max_new_tokens,
            batch_size=cfg.gen_batch_size,
        )
        return parse_outputs(raw, {ex.id: ex for ex in examples})[["id", "positions", "status"]]

    table = cached(cfg, STAGE, f"own_lists_{plain}", compute, training=True, code=__name__)
    return {r.id: [int(p) for p in r.positions] for r in table.itertuples()}


def rationales(
    cfg: RunConfig,
    examples: Sequence[Example],
    source: str | None = None,
    plain: str | None = None,
) -> list[list[int]]:
    """Per example, the flat word positions the regulariser treats as the rationale.

    ``human``: the human highlights; ``explanations``: the words the human free-text
    explanations cite (e-SNLI); ``own``: the plain fine-tuned model's (run ``plain``) own
    gold-label Unbound word list (self-consistency: attributions trained toward what the
    model says), see :func:`own_lists`.

    Raises:
        ValueError: an unknown source, or ``own`` without ``plain``.
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
        if plain is None:
            raise ValueError("the 'own' rationale source needs the plain run's name (plain=)")
        lists = own_lists(cfg, examples, plain)
        return [lists.get(ex.id, []) for ex in examples]
    raise ValueError(f"unknown rationale source {source!r}; valid: {list(SOURCES)}")


def training_set(
    cfg: RunConfig, train: Sequence[Example], plain: str | None = None
) -> tuple[list[Example], list[list[int]]]:
    """Up to ``n_reg_train`` training examples with a non-empty rationale of
    ``cfg.reg_source``, taken in turn from each dataset that has such examples (so one
    dataset does not fill the set), and those rationales."""
    pools: dict[str, list[tuple[Example, list[int]]]] = {}
    for ex, rat in zip(train, rationales(cfg, train, plain=plain), strict=True):
        if rat:
            pools.setdefault(ex.dataset, []).append((ex, rat))
    if not pools:
        raise ValueError(f"no training example has a {cfg.reg_source!r} rationale")
    chosen: list[tuple[Example, list[int]]] = []
    for i in range(max(len(v) for v in pools.values())):
        chosen += [pool[i] for pool in pools.values() if i < len(pool)]
    chosen = chosen[: cfg.n_reg_train]
    return [ex for ex, _ in chosen], [rat for _, rat in chosen]


def run_all(
    cfg: RunConfig, train: Sequence[Example], plain: str, progress: bool = True
) -> pd.DataFrame:
    """Train every λ × seed run from the plain adapter (resumable; finished runs are read
    back) and return their loss curves (column ``run``)."""
    examples, rats = training_set(cfg, train, plain)
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
    erased = {}  # the comprehensiveness of erasing the human rationale and the model's list
    for dataset in dict.fromkeys(ex.dataset for ex in examples):
        exs = [ex for ex in examples if ex.dataset == dataset]
        for column, positions in (
            ("comp_human", [ex.rationale_positions() for ex in exs]),
            ("comp_list", [[int(p) for p in lists.at[ex.id, "positions"]] for ex in exs]),
        ):
            values = explanation_comprehensiveness(
                model,
                tokenizer,
                exs,
                positions,
                strategy=cfg.strategy,
                mask_text=cfg.mask_text,
                batch_size=cfg.batch_size,
            )
            erased.update({(column, ex.id): v for ex, v in zip(exs, values, strict=True)})
    for column in ("comp_human", "comp_list"):
        out[column] = [erased[(column, i)] for i in out["id"]]
    return out.merge(faith[["id", "comp_aopc"]], on="id", how="left")


def trained_on(cfg: RunConfig, train: Sequence[Example], plain: str) -> list[str]:
    """The datasets the regularised runs draw training examples from (those with a
    rationale of ``cfg.reg_source``), in training order."""
    return list(dict.fromkeys(ex.dataset for ex in training_set(cfg, train, plain)[0]))


def evaluate_all(
    cfg: RunConfig,
    evaluation: Mapping[str, Sequence[Example]],
    datasets: Sequence[str] | None = None,
) -> pd.DataFrame:
    """:func:`run_table` of every λ × seed run's final adapter on the first
    ``cfg.n_reg_eval`` evaluation examples of ``datasets`` (default: all), stored as
    ``regularised_<regulariser>_<source>`` and reused; adds ``list_jaccard``, the
    overlap of each run's word list with its λ = 0 twin's. Column ``train_seed`` is the
    run's training seed (``seed``, as in every stored table, is the config's)."""
    names = list(evaluation) if datasets is None else list(datasets)
    examples = [ex for name in names for ex in evaluation[name][: cfg.n_reg_eval]]

    def compute() -> pd.DataFrame:
        frames = []
        for seed in cfg.reg_seeds:
            for lam in cfg.reg_lambdas:
                name = run_name(cfg, lam, seed)
                model, tok = load_run_model(cfg, name)
                frames.append(
                    run_table(model, tok, examples, cfg).assign(run=name, lam=lam, train_seed=seed)
                )
        table = pd.concat(frames, ignore_index=True)
        return table.assign(list_jaccard=_jaccard_to_zero(table))

    return cached(
        cfg,
        STAGE,
        f"regularised_{cfg.regulariser}_{cfg.reg_source}",
        compute,
        training=True,
        code=__name__,  # this module and what it imports: a plot or README edit reruns nothing
    )


def _jaccard_to_zero(table: pd.DataFrame) -> pd.Series:
    """Overlap of each run's word list with its λ = 0 twin's (same seed, same example);
    NaN where the two predict different labels (the lists then answer different
    questions) or both lists are empty."""
    zero = table[table["lam"] == 0].set_index(["train_seed", "id"])
    out = []
    for rec in table.itertuples():
        twin = (
            zero.loc[(rec.train_seed, rec.id)] if (rec.train_seed, rec.id) in zero.index else None
        )
        if twin is None or twin["pred"] != rec.pred:
            out.append(np.nan)
            continue
        a, b = set(rec.list_positions), set(twin["list_positions"])
        out.append(len(a & b) / len(a | b) if a | b else np.nan)
    return pd.Series(out, index=table.index)


def tests_against_zero(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Paired tests of every λ > 0 against λ = 0 on the same examples (seeds averaged per
    example), per dataset. One primary metric per question (:data:`PRIMARY`), Holm over
    λ × dataset within its question; the other metrics are exploratory effect sizes."""
    data = table.assign(condition=table["lam"].map(lambda v: f"λ={v:g}"))
    options = {"condition": "condition", "reference": "λ=0", "unit": ["id", "train_seed"]}
    options |= {"cluster": "id", "seed": seed}
    parts = [
        paired_tests(data, ["dataset"], metric, primary=metric, **options).assign(question=q)
        for q, metric in PRIMARY.items()
    ]
    explore = [m for m in EXPLORATORY if m in data]
    parts.append(
        paired_tests(data, ["dataset"], explore, primary=False, **options).assign(
            question="exploratory"
        )
    )
    return pd.concat(parts, ignore_index=True)


def seed_effects(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """How much of a difference training noise alone makes: each λ > 0 against λ = 0 per
    seed, and the λ = 0 runs of the other seeds against the first seed's (the noise
    floor), per dataset and primary metric; exploratory effect sizes."""
    metrics = list(PRIMARY.values())
    per_seed = table.assign(condition=table["lam"].map(lambda v: f"λ={v:g}"))
    by_seed = paired_tests(
        per_seed,
        ["dataset", "train_seed"],
        metrics,
        condition="condition",
        reference="λ=0",
        primary=False,
        seed=seed,
    ).assign(comparison="λ vs λ=0, one seed")
    zero = table[table["lam"] == 0]
    first = f"seed {min(zero['train_seed'])}"
    floor = paired_tests(
        zero.assign(condition=zero["train_seed"].map(lambda v: f"seed {v}")),
        ["dataset"],
        metrics,
        condition="condition",
        reference=first,
        primary=False,
        seed=seed,
    ).assign(comparison=f"λ=0: other seeds vs {first}")
    return pd.concat([by_seed, floor], ignore_index=True)


def list_failures(table: pd.DataFrame) -> pd.DataFrame:
    """Per λ × dataset: word lists that did not parse as a list (counted, not dropped:
    their consistency is undefined) and the share of predictions that changed from the
    λ = 0 twin."""
    zero = table[table["lam"] == 0].set_index(["train_seed", "id"])["pred"]
    changed = [
        zero.get((r.train_seed, r.id)) != r.pred
        for r in table[["train_seed", "id", "pred"]].itertuples()
    ]
    return (
        table.assign(failed=table["list_status"] != "ok", changed=changed)
        .groupby(["lam", "dataset"], sort=False)
        .agg(n=("id", "size"), list_failures=("failed", "sum"), pred_changed=("changed", "mean"))
        .reset_index()
    )


def publish_all(cfg: RunConfig, table: pd.DataFrame) -> list[Path]:
    """Publish every regularised run's adapter (``<profile>-<run name>``) with its
    accuracy per dataset in the manifest."""
    out = []
    for run, part in table.groupby("run", sort=False):
        acc = part.groupby("dataset", sort=False)["correct"].mean().reset_index()
        out.append(publish_adapter(cfg, run, adapter_name(cfg, run), acc.assign(step=0)))
    return out
