"""The Noiser paper's next-token setting in notebooks 03 and 04 (DESIGN.md §7–8).

Knowns and LongRA prompts as plain text (no chat template), the target the model's greedy
next token, every method over every prompt word (:mod:`xalign_utils.next_token`); then
hard erasure (comprehensiveness, sufficiency, AOPC, flip of the greedy token,
answerability with the judge) and soft-normalised comprehensiveness / sufficiency over the
whole vocabulary (Zhao & Aletras 2023), each as a log ratio to the random attribution on
the same prompts, the scale of the Noiser paper's Table 1. The prompts are the first
``n_next_token`` of each dataset's evaluation split (notebook 01); the stored tables are
named by the datasets and sizes (:func:`table_name`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import comparisons, metric_tables, runner
from .attribution.registry import methods_where
from .config import RunConfig
from .data import load_processed
from .next_token import is_next_token
from .schema import Example
from .store import cached, read_table

ATTRIBUTION_STAGE = "03_attribution"
METRICS_STAGE = metric_tables.STAGE
#: The log-ratio metrics: soft-normalised comprehensiveness and sufficiency (the paper's
#: Table 1 is computed from both), their per-prompt mean, and ERASER's comprehensiveness.
LOG_RATIO_METRICS = ("soft_norm_comp", "soft_norm_suff", "soft_norm_mean", "comp_aopc")


def table_name(cfg: RunConfig) -> str:
    """``next_token_knowns50_longra6``: the stored tables' name (datasets and sizes)."""
    sizes = _sizes(cfg)
    return "next_token_" + "_".join(f"{d}{n}" for d, n in sizes.items())


def _sizes(cfg: RunConfig) -> dict[str, int]:
    if len(cfg.next_token_datasets) != len(cfg.n_next_token):
        raise ValueError(
            f"next_token_datasets {cfg.next_token_datasets} and n_next_token "
            f"{cfg.n_next_token} must have the same length (one size per dataset)"
        )
    wrong = [d for d in cfg.next_token_datasets if not is_next_token(d)]
    if wrong:
        raise ValueError(f"{wrong} are not next-token datasets (registry kind 'next_token')")
    return dict(zip(cfg.next_token_datasets, cfg.n_next_token, strict=True))


def prompts(cfg: RunConfig) -> dict[str, list[Example]]:
    """The first ``n`` evaluation prompts of each next-token dataset (notebook 01's split).

    Raises:
        ValueError: a split holds fewer prompts than asked for (raise ``N_EVAL`` in 01).
    """
    out = {}
    for dataset, n in _sizes(cfg).items():
        exs = load_processed(cfg.processed_dir, dataset, "eval")
        if len(exs) < n:
            raise ValueError(
                f"{dataset}: {n} prompts asked for (n_next_token), the evaluation split "
                f"notebook 01 wrote holds {len(exs)}; re-run 01 with a larger N_EVAL"
            )
        out[dataset] = exs[:n]
    return out


def attribute(cfg: RunConfig, work_dir: Path, progress: bool = False) -> pd.DataFrame:
    """Every method (``cfg.methods``; empty: all) on every prompt, stored and reused."""
    exs = prompts(cfg)
    most = max(len(v) for v in exs.values())
    every = replace(cfg, n_attr=most, n_attr_costly=most, n_attr_noiser=most)
    return cached(
        cfg,
        ATTRIBUTION_STAGE,
        table_name(cfg),
        lambda: runner.attribute_profile(
            every, exs, work_dir, methods=cfg.methods, target="pred", progress=progress
        ),
        attribution=True,
    )


def faithfulness(cfg: RunConfig, model, tokenizer, attributions: pd.DataFrame) -> pd.DataFrame:
    """Hard and soft erasure per prompt × method (flip and answerability at the top
    ``topk_fixed`` words), plus ``soft_norm_mean``, stored and reused."""
    by_id = {ex.id: ex for exs in prompts(cfg).values() for ex in exs}

    def compute() -> pd.DataFrame:
        table = metric_tables.faithfulness_table(
            model,
            tokenizer,
            attributions,
            by_id,
            k_by_id=dict.fromkeys(by_id, cfg.topk_fixed),
            strategy=cfg.strategy,
            mask_text=cfg.mask_text,
            batch_size=cfg.batch_size,
            seed=cfg.seed,
        )
        return table.assign(soft_norm_mean=table[["soft_norm_comp", "soft_norm_suff"]].mean(1))

    name = f"{table_name(cfg)}_faithfulness_{cfg.strategy}"
    return cached(cfg, METRICS_STAGE, name, compute, attribution=True)


def score(cfg: RunConfig, model, tokenizer) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Notebook 04's next-token step: :func:`faithfulness` of notebook 03's stored
    attributions, then ``(log_ratios, most_faithful)``."""
    attributions = read_table(cfg, ATTRIBUTION_STAGE, table_name(cfg))
    ratios = log_ratios(faithfulness(cfg, model, tokenizer, attributions), cfg.seed)
    return ratios, most_faithful(ratios)


def log_ratios(faith: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Each method's :data:`LOG_RATIO_METRICS` as ``log(mean / mean random)`` per dataset
    with a bootstrap CI over prompts, and its rank per dataset × metric among all methods
    and null controls (1 = most faithful; random, the reference, is left out)."""
    out = pd.concat(
        [comparisons.log_ratio_to_random(faith, m, seed=seed) for m in LOG_RATIO_METRICS]
    )
    out = out[out["method"] != "random"].copy()
    out["rank"] = out.groupby(["dataset", "metric"])["log_ratio"].rank(ascending=False)
    return out.reset_index(drop=True)


def most_faithful(ratios: pd.DataFrame, metric: str = "soft_norm_mean") -> pd.DataFrame:
    """Per dataset: the attribution method with the largest log ratio on ``metric``, the
    strongest null control (position, word length, rarity) and where Noiser ranks among
    the attribution methods, each with its CI: is Noiser the most faithful here, as the
    paper finds, and does any method beat the nulls?"""
    nulls = set(methods_where(family="null"))

    def cell(row: pd.Series | None, key: str) -> object:
        if row is None:
            return np.nan if key != "ci" else ""
        return f"[{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if key == "ci" else row[key]

    rows = []
    for dataset, part in ratios[ratios["metric"] == metric].groupby("dataset", sort=False):
        part = part.dropna(subset=["log_ratio"]).sort_values("log_ratio", ascending=False)
        methods, null = part[~part["method"].isin(nulls)], part[part["method"].isin(nulls)]
        if methods.empty:
            continue
        best = methods.iloc[0]
        nz = methods[methods["method"] == "noiser"]
        nz_row = nz.iloc[0] if len(nz) else None
        top_null = null.iloc[0] if len(null) else None
        rows.append(
            {
                "dataset": dataset,
                "metric": metric,
                "best_method": best["method"],
                "best_log_ratio": best["log_ratio"],
                "best_ci": cell(best, "ci"),
                "noiser_log_ratio": cell(nz_row, "log_ratio"),
                "noiser_ci": cell(nz_row, "ci"),
                "noiser_rank": np.nan
                if nz_row is None
                else int((methods["log_ratio"] > nz_row["log_ratio"]).sum()) + 1,
                "methods_ranked": len(methods),
                "best_null": cell(top_null, "method"),
                "best_null_log_ratio": cell(top_null, "log_ratio"),
                "best_null_ci": cell(top_null, "ci"),
                "n": int(part["n"].max()),
            }
        )
    return pd.DataFrame(rows)
