"""Notebook 04's validation half: checks that a consistency metric means what it claims,
run on a model and stored (DESIGN.md §8): random and oracle explanations, cascading model
randomisation (Adebayo et al. 2018), the planted-evidence model, the explanations' own
comprehensiveness and whether consistency tracks it, seed stability, sensitivity to k.

As in :mod:`xalign_utils.metric_tables`, ``*_table`` functions compute on what they are
given, ``run_*`` functions run them for a config and store them (costly ones reused).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from . import consistency, faithfulness, plausibility, validation
from .attribution import METHODS, attribute
from .attribution.status import usable
from .config import RunConfig
from .data import make_synthetic
from .metric_tables import StageInputs, persist, plausibility_table, reuse
from .models import decoder_layers, randomise_top_layers
from .planted import build_planted_model
from .runner import method_options
from .schema import Example
from .stats import ci_table, paired_tests, spearman_ci

#: The consistency metrics, in the registry's order (rows and columns of every table).
CONSISTENCY = list(consistency.METRICS)
#: The attribution re-computed on the randomised models (cheap, and it multiplies by
#: the embeddings, so the cascade's last step moves it).
CASCADE_METHOD = "input_x_gradient"
#: Metrics of the cascade table: consistency, and ρ of the attributions to the trained
#: model's.
CASCADE_METRICS = [*CONSISTENCY, "rho_to_trained"]
#: Metrics of the planted check: consistency with the trigger, and the primary
#: plausibility (the trigger is the rationale) and faithfulness metrics.
PLANTED_METRICS = [*CONSISTENCY, next(iter(plausibility.METRICS)), next(iter(faithfulness.METRICS))]
#: Stochastic methods re-run with more seeds: the perturbation and noise families
#: (the random baseline and gradient SHAP are left out, as in the first runs).
SEED_METHODS = tuple(
    name
    for name, spec in METHODS.items()
    if spec.stochastic and spec.family in {"perturbation", "noise"}
)
#: Seeds added to the run's seed for the stability check.
EXTRA_SEEDS = (1, 2)


def run_random_oracle(cfg: RunConfig, inputs: StageInputs) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Random explanations (five draws each, averaged over methods) and oracle top-k
    explanations scored for consistency, stored as ``random_explanations`` and
    ``oracle_explanations``.

    Returns:
        ``(random_draws, oracle)``, for :func:`~xalign_utils.validation.random_oracle_checks`.
    """
    attr, explained = inputs.attributions, inputs.explanations
    draws = validation.random_draw_consistency(
        attr, explained, validation.word_counts(attr), seed=cfg.seed, draws=5
    )
    oracle = validation.oracle_consistency(attr, validation.oracle_explanations(attr, explained))
    return persist(cfg, "random_explanations", draws), persist(cfg, "oracle_explanations", oracle)


def cascade_levels(n_layers: int) -> list[int]:
    """Layers randomised at each step: none, the top one, a quarter, half, all of them,
    and all plus the input embeddings (``n_layers + 1``)."""
    return sorted({0, 1, max(1, n_layers // 4), max(1, n_layers // 2), n_layers, n_layers + 1})


def cascade_table(
    model,
    tokenizer,
    examples: Sequence[Example],
    attributions: pd.DataFrame,
    explained: pd.DataFrame,
    *,
    levels: Sequence[int],
    seed: int = 0,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Cascading randomisation: :data:`CASCADE_METHOD` on ``model`` with its top
    ``level`` layers re-initialised, against the fixed explanations.

    Args:
        examples: the examples to re-attribute (each must have a row of
            :data:`CASCADE_METHOD` in ``attributions``, whose target label is kept).
        attributions: the trained model's attributions (the ρ reference).
        levels: layers randomised per step (0: the trained model).

    Returns:
        One row per level × example × explanation: the consistency metrics,
        ``rho_to_trained`` and ``layers_randomised``.
    """
    base = attributions[attributions["method"] == CASCADE_METHOD][["id", "method", "magnitude"]]
    target = attributions.drop_duplicates("id").set_index("id")["target_label"]
    labels = [target[ex.id] for ex in examples]
    parts = []
    for level in levels:
        rnd_model = randomise_top_layers(model, level, seed=seed) if level else model
        table = attribute(
            rnd_model, tokenizer, examples, CASCADE_METHOD, batch_size=batch_size, labels=labels
        )
        rho = validation.seed_agreement({0: base, 1: table[["id", "method", "magnitude"]]})
        scored = consistency.consistency_table(table, explained).merge(rho[["id", "rho"]], on="id")
        parts.append(
            scored.rename(columns={"rho": "rho_to_trained"}).assign(layers_randomised=level)
        )
        del rnd_model
    return pd.concat(parts, ignore_index=True)


def run_cascade(cfg: RunConfig, inputs: StageInputs, model, tokenizer) -> pd.DataFrame:
    """:func:`cascade_table` on the erasure subset (ids sorted), stored as ``cascade``."""
    examples = [inputs.by_id[i] for i in sorted(inputs.faith_ids)]
    levels = cascade_levels(len(decoder_layers(model)[0]))
    return reuse(
        cfg,
        "cascade",
        lambda: cascade_table(
            model,
            tokenizer,
            examples,
            inputs.attributions,
            inputs.explanations,
            levels=levels,
            seed=cfg.seed,
            batch_size=cfg.batch_size,
        ),
        code=__name__,
    )


def planted_table(
    planted,
    tokenizer,
    examples: Sequence[Example],
    methods: Sequence[str],
    *,
    options: Mapping[str, object],
    strategy: str = "delete",
    mask_text: str = "_",
) -> pd.DataFrame:
    """Attributions of the planted-evidence model scored against its trigger word
    (``meta["trigger_position"]``: the faithful "explanation" and the human rationale;
    erasure uses k = 1).

    Returns:
        One row per example × method: the consistency metrics with the trigger, then
        ``comp_aopc`` and the plausibility metrics (Top-Var F1 first).
    """
    attr = attribute(planted, tokenizer, list(examples), list(methods), **options)
    by_id = {ex.id: ex for ex in examples}
    trigger = pd.DataFrame(
        {
            "id": list(by_id),
            "explanation": "planted trigger",
            "positions": [[ex.meta["trigger_position"]] for ex in examples],
        }
    )
    scored = consistency.consistency_table(attr, trigger)
    erased = faithfulness.erasure_table(
        planted,
        tokenizer,
        attr,
        by_id,
        k_by_id=dict.fromkeys(by_id, 1),
        strategy=strategy,
        mask_text=mask_text,
    )
    plaus = plausibility_table(attr, by_id).drop(columns="dataset")
    return scored.merge(erased[["id", "method", "comp_aopc"]], on=["id", "method"]).merge(
        plaus, on=["id", "method"]
    )


def run_planted(cfg: RunConfig, inputs: StageInputs, tokenizer) -> pd.DataFrame:
    """Train the planted model (:func:`xalign_utils.planted.build_planted_model`) and run
    :func:`planted_table` with every method of notebook 03 but the costliest; stored
    as ``planted`` and reused (the model is then not trained again)."""
    methods = [m for m in inputs.methods if METHODS[m].cost != "costliest"]

    def compute() -> pd.DataFrame:
        planted = build_planted_model(tokenizer, seed=cfg.seed)
        examples = make_synthetic(16 if cfg.profile == "smoke" else 48, seed=0, length=8)
        return planted_table(
            planted,
            tokenizer,
            examples,
            methods,
            options=method_options(cfg),
            strategy=cfg.strategy,
            mask_text=cfg.mask_text,
        )

    return reuse(cfg, "planted", compute, code=__name__)


def explanation_comprehensiveness_table(
    model,
    tokenizer,
    evaluation: Mapping[str, Sequence[Example]],
    explained: pd.DataFrame,
    n_words: Mapping[str, int],
    *,
    n_faith: int,
    seed: int = 0,
    strategy: str = "delete",
    mask_text: str = "_",
    batch_size: int = 16,
) -> pd.DataFrame:
    """Comprehensiveness of each explanation's own words, p(ŷ|x) − p(ŷ|x∖e), beside a
    random set of words of the same size, on the first ``n_faith`` examples per dataset.

    Returns:
        One row per example × explanation type × kind (``explanation`` or ``random``):
        ``id``, ``dataset``, ``explanation``, ``kind`` and ``explanation_comp`` (NaN for
        an empty explanation).
    """
    base = explained[["id", "explanation", "positions"]].assign(kind="explanation")
    rnd = validation.random_explanations(explained, dict(n_words), seed=seed)
    both = pd.concat(
        [base, rnd.assign(kind="random", explanation=explained["explanation"].to_numpy())]
    )
    rows = []
    for dataset, exs in evaluation.items():
        exs = list(exs[:n_faith])
        part = both[both["id"].isin({ex.id for ex in exs})]
        for (name, kind), grp in part.groupby(["explanation", "kind"]):
            pos = dict(zip(grp["id"], grp["positions"], strict=True))
            keep = [ex for ex in exs if ex.id in pos]
            comp = faithfulness.explanation_comprehensiveness(
                model,
                tokenizer,
                keep,
                [list(pos[ex.id]) for ex in keep],
                strategy=strategy,
                mask_text=mask_text,
                batch_size=batch_size,
            )
            rows += [
                {"id": ex.id, "dataset": dataset, "explanation": name, "kind": kind}
                | {"explanation_comp": c}
                for ex, c in zip(keep, comp, strict=True)
            ]
    return pd.DataFrame(rows, columns=["id", "dataset", "explanation", "kind", "explanation_comp"])


def run_explanation_comprehensiveness(
    cfg: RunConfig, inputs: StageInputs, model, tokenizer
) -> pd.DataFrame:
    """:func:`explanation_comprehensiveness_table` for the run, stored and reused."""
    return reuse(
        cfg,
        "explanation_comprehensiveness",
        lambda: explanation_comprehensiveness_table(
            model,
            tokenizer,
            inputs.evaluation,
            inputs.explanations,
            validation.word_counts(inputs.attributions),
            n_faith=cfg.n_faith,
            seed=cfg.seed,
            strategy=cfg.strategy,
            mask_text=cfg.mask_text,
            batch_size=cfg.batch_size,
        ),
        code=__name__,
    )


def explanation_comprehensiveness_summary(
    table: pd.DataFrame, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """CIs per dataset × explanation × kind, and the paired test of each explanation
    against its same-size random words (Holm over the table); examples are the unit."""
    by, metric = ["dataset", "explanation"], "explanation_comp"
    ci = ci_table(table, [*by, "kind"], [metric], seed=seed, cluster="id")
    tests = paired_tests(table, by, metric, condition="kind", cluster="id")
    return ci, tests


def tracking_table(consistency_rows: pd.DataFrame, comprehensiveness: pd.DataFrame) -> pd.DataFrame:
    """Each explanation's consistency with each method beside its own comprehensiveness
    (the ``explanation`` rows of :func:`explanation_comprehensiveness_table`)."""
    own = comprehensiveness[comprehensiveness["kind"] == "explanation"]
    return consistency_rows.merge(
        own[["id", "explanation", "explanation_comp"]], on=["id", "explanation"]
    )


def tracking_summary(table: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Spearman ρ across examples between each consistency metric and the explanation's
    comprehensiveness, per method, with a cluster-bootstrap 95% CI over examples (an
    example contributes one row per explanation type; ``value`` and ``rho``)."""
    rows = [
        {"method": method, "metric": metric}
        | spearman_ci(part[metric], part["explanation_comp"], seed=seed, clusters=part["id"])
        for method, part in table.groupby("method", sort=False)
        for metric in CONSISTENCY
    ]
    columns = ["method", "metric", "value", "ci_low", "ci_high", "n", "n_undefined"]
    return pd.DataFrame(rows, columns=columns).assign(rho=lambda t: t["value"])


def run_tracking(
    cfg: RunConfig, consistency_rows: pd.DataFrame, comprehensiveness: pd.DataFrame
) -> pd.DataFrame:
    """:func:`tracking_table`, stored as ``tracking``."""
    return persist(cfg, "tracking", tracking_table(consistency_rows, comprehensiveness))


def seed_attributions(
    model,
    tokenizer,
    attributions: pd.DataFrame,
    examples_by_id: Mapping[str, Example],
    methods: Sequence[str],
    *,
    options: Mapping[str, object],
    seeds: Sequence[int],
    batch_size: int = 8,
) -> pd.DataFrame:
    """The stochastic ``methods`` re-run with each of ``seeds`` on the examples they ran
    on; the costliest tier on its first example whose scores vary (an all-zero row has
    no ranking to compare), or its first example.

    Returns:
        The rows of :func:`xalign_utils.attribution.attribute` with ``attribution_seed``.
    """
    parts = []
    for seed in seeds:
        for m in methods:
            rows = attributions[attributions["method"] == m]
            ids = list(dict.fromkeys(rows["id"]))
            if METHODS[m].cost == "costliest":
                varied = rows[rows["magnitude"].map(np.ptp) > 0]["id"]
                ids = list(varied[:1]) or ids[:1]
            table = attribute(
                model,
                tokenizer,
                [examples_by_id[i] for i in ids],
                m,
                batch_size=batch_size,
                **(dict(options) | {"seed": seed}),
            )
            parts.append(table.assign(attribution_seed=seed))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def seed_tables(
    attributions: pd.DataFrame, extra: pd.DataFrame, seed: int, methods: Sequence[str]
) -> dict[int, pd.DataFrame]:
    """Attribution rows by seed: the run's own rows of ``methods`` under ``seed``, then
    each ``attribution_seed`` of :func:`seed_attributions`."""
    tables = {seed: attributions[attributions["method"].isin(methods)]}
    for s in dict.fromkeys(extra.get("attribution_seed", pd.Series(dtype=int))):
        tables[int(s)] = usable(extra[extra["attribution_seed"] == s])
    return tables


def seed_consistency(tables: Mapping[int, pd.DataFrame], explained: pd.DataFrame) -> pd.DataFrame:
    """Consistency with the Top-Var list of each seed's attributions
    (``attribution_seed``), the input of :func:`rank_auc_spread`."""
    topvar = explained[explained["explanation"] == validation.TOPVAR]
    parts = [
        consistency.consistency_table(t, topvar).assign(attribution_seed=s)
        for s, t in tables.items()
    ]
    return pd.concat(parts, ignore_index=True)


def rank_auc_spread(table: pd.DataFrame) -> pd.Series:
    """Per method: the mean over examples of the SD of rank AUC across seeds (none: empty)."""
    table = table if len(table) else pd.DataFrame(columns=["method", "id", "rank_auc"], dtype=float)
    sd = table.groupby(["method", "id"])["rank_auc"].std()
    return sd.groupby("method").mean().rename("sd_rank_auc_across_seeds")


def run_seed_stability(
    cfg: RunConfig, inputs: StageInputs, model, tokenizer
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Re-run :data:`SEED_METHODS` with :data:`EXTRA_SEEDS` (stored as
    ``seed_attributions`` and reused) and compare the seeds.

    Returns:
        ``(agreement, consistency)``: Spearman ρ between seeds per example × method × seed
        pair (:func:`xalign_utils.validation.seed_agreement`, stored as
        ``seed_stability``) and each seed's consistency with the Top-Var list
        (``seed_consistency``).
    """
    methods = [m for m in SEED_METHODS if m in inputs.methods]
    extra = reuse(
        cfg,
        "seed_attributions",
        lambda: seed_attributions(
            model,
            tokenizer,
            inputs.attributions,
            inputs.by_id,
            methods,
            options=method_options(cfg),
            seeds=[cfg.seed + e for e in EXTRA_SEEDS],
            batch_size=cfg.batch_size,
        ),
        code=__name__,
    )
    tables = seed_tables(inputs.attributions, extra, cfg.seed, methods)
    agreement = persist(cfg, "seed_stability", validation.seed_agreement(tables))
    return agreement, persist(
        cfg, "seed_consistency", seed_consistency(tables, inputs.explanations)
    )


def k_sensitivity_table(
    attributions: pd.DataFrame, explained: pd.DataFrame, k_values: Sequence[int]
) -> pd.DataFrame:
    """F1@k of each method's top-k words against the Top-Var list, for each fixed k.

    Returns:
        One row per example × method × k: ``id``, ``method``, ``k``, ``f1``.
    """
    topvar = explained[explained["explanation"] == validation.TOPVAR]
    merged = attributions.merge(topvar[["id", "positions"]], on="id")
    rows = [
        {"id": r.id, "method": r.method, "k": k}
        | {"f1": consistency.f1_at_k(r.magnitude, r.positions, k=k)}
        for r in merged.itertuples()
        for k in k_values
    ]
    return pd.DataFrame(rows, columns=["id", "method", "k", "f1"])


def run_k_sensitivity(cfg: RunConfig, inputs: StageInputs) -> pd.DataFrame:
    """:func:`k_sensitivity_table` with the run's ``k_values``, stored."""
    table = k_sensitivity_table(inputs.attributions, inputs.explanations, cfg.k_values)
    return persist(cfg, "k_sensitivity", table)


def run_verdict(
    cfg: RunConfig,
    checks: pd.DataFrame,
    cascade: pd.DataFrame,
    planted: pd.DataFrame,
    tracking: pd.DataFrame,
) -> pd.DataFrame:
    """:func:`xalign_utils.validation.verdict` of the summaries, stored as ``verdict``."""
    return persist(cfg, "verdict", validation.verdict(checks, cascade, planted, tracking))
