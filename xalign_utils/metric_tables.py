"""Notebook 04's metric half: the per-example plausibility, faithfulness, consistency and
CC-SHAP tables, the inputs they read and where they are stored (DESIGN.md §8, §10).

Each table is one row per example × condition. The ``*_table`` functions compute on
what they are given (testable on hand-made frames or a stand-in model); the ``run_*``
functions (:func:`run_plausibility`, :func:`run_faithfulness` ...) run them for a
:class:`~xalign_utils.config.RunConfig` and store the result under
``runs/<profile>/04_metrics_validation/`` (:data:`STAGE`), keyed by the config hash with
the attribution settings; the costly ones are reused when that hash is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from . import comparisons, consistency, faithfulness, plausibility, validation
from .attribution import continuation_attribution
from .attribution.status import usable
from .config import RunConfig
from .data import load_processed
from .explanations import rationale_k
from .runner import attributions_name
from .schema import Example
from .stats import top_k
from .store import cached, read_table, write_table

#: Stage name: the folder under ``runs/<profile>/``, the notebook's name.
STAGE = "04_metrics_validation"
#: Faithfulness metrics also reported as ``log(method / random)`` (the Noiser paper's
#: scale): the continuous probability drops, not the binary flip and answerability.
LOG_RATIO_METRICS = ("comp_aopc", "soft_norm_comp", "soft_norm_suff")
#: The attribution the CC-SHAP comparison uses for the prediction and the explanation,
#: and the explanation it compares (the free text written before the answer).
CCSHAP_METHOD, CCSHAP_ROLE = "input_x_gradient", "explain_then_predict"


@dataclass(frozen=True)
class StageInputs:
    """What notebook 04 reads from notebooks 01–03.

    Attributes:
        evaluation: evaluation examples per dataset, in the run's dataset order.
        attributions: notebook 03's rows with status ``ok``.
        explanations: :func:`xalign_utils.validation.model_explanations` of the
            attributed examples.
        raw_explanations: notebook 02's generated free text (``explanations_raw``).
        n_faith: examples per dataset scored by erasure (the first ones).
    """

    evaluation: dict[str, list[Example]]
    attributions: pd.DataFrame
    explanations: pd.DataFrame
    raw_explanations: pd.DataFrame
    n_faith: int

    @cached_property
    def by_id(self) -> dict[str, Example]:
        """Every evaluation example by id."""
        return {ex.id: ex for exs in self.evaluation.values() for ex in exs}

    @property
    def methods(self) -> list[str]:
        """Attribution methods that ran, in the table's order."""
        return list(dict.fromkeys(self.attributions["method"]))

    @cached_property
    def faith_ids(self) -> set[str]:
        """Ids of the first ``n_faith`` examples of each dataset (scored by erasure)."""
        return {ex.id for exs in self.evaluation.values() for ex in exs[: self.n_faith]}


def load_inputs(cfg: RunConfig) -> StageInputs:
    """Read the evaluation sets (01), the model's explanations (02) and notebook 03's
    attributions (:func:`xalign_utils.runner.attributions_name`) for ``cfg``.

    Raises:
        FileNotFoundError: an earlier stage has not run for this profile.
    """
    evaluation = {name: load_processed(cfg.processed_dir, name, "eval") for name in cfg.datasets}
    attr = read_table(cfg, "03_attribution", attributions_name(cfg))
    attr = usable(attr)
    explained = validation.model_explanations(
        read_table(cfg, "02_baselines", "rationales"),
        read_table(cfg, "02_baselines", "explanations"),
        set(attr["id"]),
    )
    raw = read_table(cfg, "02_baselines", "explanations_raw")
    return StageInputs(evaluation, attr, explained, raw, cfg.n_faith)


def persist(cfg: RunConfig, name: str, table: pd.DataFrame) -> pd.DataFrame:
    """Write a per-example table of the stage (config hash with attribution settings,
    seed) and return it unchanged."""
    write_table(table, cfg, STAGE, name, attribution=True)
    return table


def reuse(
    cfg: RunConfig, name: str, compute: Callable[[], pd.DataFrame], code: str
) -> pd.DataFrame:
    """The stage's stored table ``name`` when its config hash and the code hash of module
    ``code`` (the caller's, with what it imports) match, else ``compute()`` stored: costly
    tables are computed once per configuration, and an edit to a module they do not use
    (a report, a plot) does not recompute them."""
    return cached(cfg, STAGE, name, compute, attribution=True, code=code)


def plausibility_table(
    attributions: pd.DataFrame, examples_by_id: Mapping[str, Example]
) -> pd.DataFrame:
    """Every metric of :data:`xalign_utils.plausibility.METRICS` per example × method.

    Examples without human rationales get an all-unannotated rationale, so their
    metrics are NaN (counted, not dropped).
    """
    rows = []
    for rec in attributions.itertuples():
        rat = examples_by_id[rec.id].flat_rationale() or [None] * len(rec.magnitude)
        row = {"id": rec.id, "dataset": rec.dataset, "method": rec.method}
        metrics = plausibility.METRICS.items()
        row.update({name: spec.function(rec.magnitude, rat) for name, spec in metrics})
        rows.append(row)
    return pd.DataFrame(rows, columns=["id", "dataset", "method", *plausibility.METRICS])


def eraser_table(attributions: pd.DataFrame, examples_by_id: Mapping[str, Example]) -> pd.DataFrame:
    """ERASER's dataset-level aggregates per dataset × method
    (:func:`xalign_utils.plausibility.eraser_scores`: token F1 macro and micro, IOU-F1
    macro and micro, AUPRC), the Top-Var words as the hard prediction and the magnitudes
    as the soft scores; datasets without human rationales are left out."""
    rows = []
    for (dataset, method), grp in attributions.groupby(["dataset", "method"], sort=False):
        gold = [examples_by_id[i].flat_rationale() for i in grp["id"]]
        if not any(gold):
            continue
        mags = [np.asarray(m, dtype=float) for m in grp["magnitude"]]
        predicted = [
            plausibility.topvar_positions(m, g) if g else []
            for m, g in zip(mags, gold, strict=True)
        ]
        scores = plausibility.eraser_scores(predicted, gold, mags)
        rows.append({"dataset": dataset, "method": method, **scores})
    return pd.DataFrame(rows)


def run_plausibility(cfg: RunConfig, inputs: StageInputs) -> pd.DataFrame:
    """:func:`plausibility_table` of the stage's attributions, stored."""
    return persist(cfg, "plausibility", plausibility_table(inputs.attributions, inputs.by_id))


def faithfulness_table(
    model,
    tokenizer,
    attributions: pd.DataFrame,
    examples_by_id: Mapping[str, Example],
    *,
    k_by_id: Mapping[str, int],
    strategy: str = "delete",
    mask_text: str = "_",
    batch_size: int = 16,
    seed: int = 0,
) -> pd.DataFrame:
    """Erasure metrics (:func:`xalign_utils.faithfulness.erasure_table`) joined with the
    soft-normalised ones (:func:`~xalign_utils.faithfulness.soft_erasure`) per example ×
    method: every column of :data:`xalign_utils.faithfulness.METRICS`."""
    hard = faithfulness.erasure_table(
        model,
        tokenizer,
        attributions,
        dict(examples_by_id),
        k_by_id=dict(k_by_id),
        strategy=strategy,
        mask_text=mask_text,
        batch_size=batch_size,
    )
    soft = faithfulness.soft_erasure(
        model, tokenizer, attributions, dict(examples_by_id), seed=seed
    )
    return hard.merge(soft, on=["id", "method"])


def run_faithfulness(cfg: RunConfig, inputs: StageInputs, model, tokenizer) -> pd.DataFrame:
    """:func:`faithfulness_table` of the first ``n_faith`` examples of each dataset, with
    the run's erasure strategy; stored as ``faithfulness_<target>_<strategy>`` and reused."""
    attr = inputs.attributions[inputs.attributions["id"].isin(inputs.faith_ids)]
    k_by_id = {i: rationale_k(inputs.by_id[i], cfg.topk_fixed) for i in inputs.faith_ids}
    return reuse(
        cfg,
        f"faithfulness_{cfg.target}_{cfg.strategy}",
        lambda: faithfulness_table(
            model,
            tokenizer,
            attr,
            inputs.by_id,
            k_by_id=k_by_id,
            strategy=cfg.strategy,
            mask_text=cfg.mask_text,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
        ),
        code=__name__,
    )


#: Table 4 of Fayyaz et al. (2024): the selections whose Top-Var words are masked, by name.
TABLE4_PROMPTED, TABLE4_HUMAN, TABLE4_ALL = "Prompting", "Human", "All"


def topvar_selections(inputs: StageInputs, fixed_k: int) -> dict[str, dict[str, list[int]]]:
    """Fayyaz et al.'s Table-4 selections per example: the model's prompted Top-Var list,
    each attribution method's top-k words (k = the human rationale's size, else the fixed
    k: :func:`xalign_utils.explanations.rationale_k`), the human rationale and every word."""
    ids = list(dict.fromkeys(inputs.attributions["id"]))
    by_id = inputs.by_id
    topvar = inputs.explanations[inputs.explanations["role"] == "rationale_topk"]
    out: dict[str, dict[str, list[int]]] = {
        TABLE4_PROMPTED: {r.id: list(r.positions) for r in topvar.itertuples() if r.id in by_id}
    }
    for rec in inputs.attributions.itertuples():
        k = rationale_k(by_id[rec.id], fixed_k)
        out.setdefault(rec.method, {})[rec.id] = top_k(rec.magnitude, k)
    human = {i: by_id[i].rationale_positions() for i in ids}
    out[TABLE4_HUMAN] = {i: pos for i, pos in human.items() if pos}
    out[TABLE4_ALL] = {i: list(range(len(by_id[i].flat_words()))) for i in ids}
    return out


def run_topvar_flips(cfg: RunConfig, inputs: StageInputs, model, tokenizer) -> pd.DataFrame:
    """Fayyaz et al. Table 4 on this model: per example × selection, does *masking* (as the
    paper does, with ``cfg.mask_text``) the selection's words flip the prediction; every
    attributed example; stored and reused."""
    ids = list(dict.fromkeys(inputs.attributions["id"]))
    return reuse(
        cfg,
        "topvar_flips",
        lambda: faithfulness.flip_table(
            model,
            tokenizer,
            [inputs.by_id[i] for i in ids],
            topvar_selections(inputs, cfg.topk_fixed),
            strategy="mask",
            mask_text=cfg.mask_text,
            batch_size=cfg.batch_size,
        ),
        code=__name__,
    )


def erasure_strategy(cfg: RunConfig) -> str:
    """The run's erasure strategy in words (``delete``, or ``mask`` with its text)."""
    return f"mask (mask text {cfg.mask_text!r})" if cfg.strategy == "mask" else cfg.strategy


def flip_references(faith: pd.DataFrame) -> pd.DataFrame:
    """Per dataset: flip rate (mean, n) when every word and when the human rationale is
    erased, the references for :data:`~xalign_utils.faithfulness.METRICS`' flip rate."""
    refs = faith.drop_duplicates("id").groupby("dataset")[["flip_mask_all", "flip_mask_human"]]
    return refs.agg(["mean", "count"])


def log_ratios(faith: pd.DataFrame) -> pd.DataFrame:
    """:func:`xalign_utils.comparisons.log_ratio_to_random` of :data:`LOG_RATIO_METRICS`."""
    return pd.concat([comparisons.log_ratio_to_random(faith, m) for m in LOG_RATIO_METRICS])


def consistency_with_labels(
    attributions: pd.DataFrame,
    explained: pd.DataFrame,
    examples_by_id: Mapping[str, Example],
) -> pd.DataFrame:
    """:func:`xalign_utils.consistency.consistency_table` with the attribution's
    ``target_label``, ``same_label`` (the explanation is about the label the attribution
    explains: compare like with like) and ``pred_is_gold``."""
    cons = consistency.consistency_table(attributions, explained)
    extra = ["target_label", "same_label", "pred_is_gold"]
    if cons.empty:
        return pd.DataFrame(columns=[*cons.columns, *extra])
    cons = cons.merge(attributions[["id", "method", "target_label"]], on=["id", "method"])
    if "about_label" in explained:
        about = explained.drop_duplicates(["id", "explanation"]).set_index(["id", "explanation"])[
            "about_label"
        ]
        keys = list(zip(cons["id"], cons["explanation"], strict=True))
        cons["same_label"] = [
            about.get(k) == t for k, t in zip(keys, cons["target_label"], strict=True)
        ]
    else:
        cons["same_label"] = False
    cons["pred_is_gold"] = [
        examples_by_id[i].label == t for i, t in zip(cons["id"], cons["target_label"], strict=True)
    ]
    return cons


def run_consistency(cfg: RunConfig, inputs: StageInputs) -> pd.DataFrame:
    """:func:`consistency_with_labels` of the stage's attributions and explanations, stored."""
    table = consistency_with_labels(inputs.attributions, inputs.explanations, inputs.by_id)
    return persist(cfg, "consistency", table)


def ccshap_table(
    model,
    tokenizer,
    attributions: pd.DataFrame,
    raw_explanations: pd.DataFrame,
    examples_by_id: Mapping[str, Example],
    ids: set[str],
) -> pd.DataFrame:
    """CC-SHAP-style distance between the prediction's input×gradient profile and that of
    the explain-first free text (:func:`xalign_utils.consistency.profile_distance`).

    Args:
        raw_explanations: notebook 02's generated text (``role``, ``raw``,
            ``asked_label``, ``k``).
        ids: the examples to compare (the erasure subset), where input×gradient ran.

    Returns:
        One row per example: ``id``, ``dataset``, ``distance`` and ``random_distance``
        (the random attribution, centred, against the same explanation profile).
    """
    etp = raw_explanations[
        (raw_explanations["role"] == CCSHAP_ROLE) & raw_explanations["id"].isin(ids)
    ]
    ixg = attributions[attributions["method"] == CCSHAP_METHOD].set_index("id")["signed"]
    rnd = attributions[attributions["method"] == "random"].set_index("id")["signed"]
    rows = []
    for rec in etp.itertuples():
        if rec.id not in ixg:
            continue
        profile = continuation_attribution(
            model,
            tokenizer,
            examples_by_id[rec.id],
            CCSHAP_ROLE,
            rec.raw,
            label=rec.asked_label,
            k=rec.k,
        )
        rows.append(
            {
                "id": rec.id,
                "dataset": rec.dataset,
                "distance": consistency.profile_distance(ixg[rec.id], profile),
                "random_distance": consistency.profile_distance(rnd[rec.id] - 0.5, profile),
            }
        )
    return pd.DataFrame(rows, columns=["id", "dataset", "distance", "random_distance"])


def run_ccshap(cfg: RunConfig, inputs: StageInputs, model, tokenizer) -> pd.DataFrame:
    """:func:`ccshap_table` on the erasure subset, stored and reused."""
    return reuse(
        cfg,
        "ccshap",
        lambda: ccshap_table(
            model,
            tokenizer,
            inputs.attributions,
            inputs.raw_explanations,
            inputs.by_id,
            inputs.faith_ids,
        ),
        code=__name__,
    )


def pivot(
    table: pd.DataFrame,
    index: str | list[str],
    columns: str | list[str],
    values: str = "value",
    digits: int = 3,
) -> pd.DataFrame:
    """A long CI or test table as a compact ``index`` × ``columns`` view for display."""
    if values not in table or table[values].notna().sum() == 0:  # e.g. no human rationales
        return pd.DataFrame()
    return table.pivot_table(index=index, columns=columns, values=values).round(digits)


def stored_tables(cfg: RunConfig, stage: str = STAGE) -> pd.DataFrame:
    """A stage's stored tables for ``cfg`` (default: this one's): name, rows, columns and
    config hash, so a reader sees what later notebooks can read with
    :func:`xalign_utils.store.read_table`."""
    rows = []
    for path in sorted((cfg.run_dir / stage).glob("*.parquet")):
        table = pd.read_parquet(path)
        rows.append(
            {
                "table": path.stem,
                "rows": len(table),
                "columns": len(table.columns) - 2,  # without config_hash and seed
                "config_hash": table["config_hash"].iloc[0] if len(table) else None,
            }
        )
    return pd.DataFrame(rows, columns=["table", "rows", "columns", "config_hash"])
