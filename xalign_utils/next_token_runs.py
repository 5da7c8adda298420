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
from .config import PROFILES, RunConfig
from .data import load_processed
from .next_token import is_next_token
from .schema import Example
from .stats import percentile_bootstrap
from .store import cached, read_table

ATTRIBUTION_STAGE = "03_attribution"
METRICS_STAGE = metric_tables.STAGE
#: The log-ratio metrics, each on its own: soft-normalised sufficiency and comprehensiveness
#: (the paper's Table 1 reports both; :func:`log_ratios` adds their mean log ratio,
#: ``soft_ns_nc``) and ERASER's comprehensiveness AOPC.
LOG_RATIO_METRICS = ("soft_norm_suff", "soft_norm_comp", "comp_aopc")


#: Fewest shared prompts for a yes/no verdict: a percentile bootstrap over fewer prompts
#: gives intervals too narrow to trust (one prompt: a point).
MIN_PROMPTS = 10


def applies(cfg: RunConfig) -> bool:
    """Whether notebooks 03/04 run the next-token experiment for ``cfg``: on the profile's
    own datasets (an adapter too), not on a dataset track such as XNLI, which would repeat
    it in its own folder."""
    return cfg.datasets == PROFILES[cfg.profile].datasets


def table_name(cfg: RunConfig) -> str:
    """``next_token_knowns50_longra6_ig32``: the stored tables' name (datasets, sizes and
    integrated-gradients steps)."""
    sizes = _sizes(cfg)
    return (
        "next_token_"
        + "_".join(f"{d}{n}" for d, n in sizes.items())
        + f"_ig{cfg.next_token_ig_steps}"
    )


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
    every = replace(
        cfg,
        n_attr=most,
        n_attr_costly=most,
        n_attr_noiser=most,
        ig_steps=cfg.next_token_ig_steps,
    )
    return cached(
        cfg,
        ATTRIBUTION_STAGE,
        table_name(cfg),
        lambda: runner.attribute_profile(
            every, exs, work_dir, methods=cfg.methods, target="pred", progress=progress
        ),
        attribution=True,
        code=__name__,
    )


def faithfulness(cfg: RunConfig, model, tokenizer, attributions: pd.DataFrame) -> pd.DataFrame:
    """Hard and soft erasure per prompt × method (flip and answerability at the top
    ``topk_fixed`` words), stored and reused."""
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
        return table

    name = f"{table_name(cfg)}_faithfulness_{cfg.strategy}"
    return cached(cfg, METRICS_STAGE, name, compute, attribution=True, code=__name__)


def score(cfg: RunConfig, model, tokenizer) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Notebook 04's next-token step: :func:`faithfulness` of notebook 03's stored
    attributions (with ``greedy_is_gold``), then ``(log_ratios, noiser_vs_best)``."""
    attributions = read_table(cfg, ATTRIBUTION_STAGE, table_name(cfg))
    faith = with_gold_flag(faithfulness(cfg, model, tokenizer, attributions), attributions, cfg)
    return log_ratios(faith, cfg.seed), noiser_vs_best(faith, cfg.seed)


def with_gold_flag(faith: pd.DataFrame, attributions: pd.DataFrame, cfg: RunConfig) -> pd.DataFrame:
    """``greedy_is_gold`` per prompt: the attributed greedy token is the gold continuation
    (the Noiser paper keeps only those prompts; here both subsets are reported)."""
    gold = {ex.id: ex.label for exs in prompts(cfg).values() for ex in exs}
    token = attributions.drop_duplicates("id").set_index("id")["target_label"]
    ok = {i: str(token[i]).strip() == str(gold[i]).strip() for i in token.index if i in gold}
    return faith.assign(greedy_is_gold=faith["id"].map(ok))


def _subsets(faith: pd.DataFrame):
    yield "all", faith
    if "greedy_is_gold" in faith:
        yield "greedy = gold", faith[faith["greedy_is_gold"].eq(True)]


def _soft_ratio(wide_ns: pd.DataFrame, wide_nc: pd.DataFrame, a: str, b: str):
    """``index -> ½ (log(mean NS_a / mean NS_b) + log(mean NC_a / mean NC_b))`` on the
    prompts both methods share (NaN where a mean is not positive)."""
    ids = wide_ns[[a, b]].dropna().index.intersection(wide_nc[[a, b]].dropna().index)
    ns, nc = wide_ns.loc[ids, [a, b]].to_numpy(), wide_nc.loc[ids, [a, b]].to_numpy()

    def stat(i: np.ndarray) -> float:
        (na, nb), (ca, cb) = ns[i].mean(0), nc[i].mean(0)
        ok = min(na, nb, ca, cb) > 0
        return 0.5 * (np.log(na / nb) + np.log(ca / cb)) if ok else np.nan

    return stat, len(ids)


def _point(wide_ns: pd.DataFrame, wide_nc: pd.DataFrame, a: str, b: str) -> float:
    stat, n = _soft_ratio(wide_ns, wide_nc, a, b)
    return stat(np.arange(n)) if n else np.nan


def _wide(faith: pd.DataFrame, metric: str) -> pd.DataFrame:
    return faith.pivot_table(index="id", columns="method", values=metric, aggfunc="first")


def log_ratios(faith: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per prompt subset (all; greedy token = gold), dataset and method: each of
    :data:`LOG_RATIO_METRICS` as ``log(mean / mean random)`` with a bootstrap CI over
    prompts, and ``soft_ns_nc``, the mean of the soft sufficiency and comprehensiveness log
    ratios (the two the Noiser paper reports), bootstrapped jointly. A ratio whose mean is
    not positive is undefined (NaN, counted in ``n_boot_undefined``), never dropped. Ranks
    among all methods and null controls (1 = most faithful; random left out)."""
    parts = []
    rng = np.random.default_rng(seed)
    for subset, rows in _subsets(faith):
        for metric in LOG_RATIO_METRICS:
            parts.append(
                comparisons.log_ratio_to_random(rows, metric, seed=seed).assign(prompts=subset)
            )
        for dataset, part in rows.groupby("dataset", sort=False):
            ns, nc = _wide(part, "soft_norm_suff"), _wide(part, "soft_norm_comp")
            for method in [m for m in ns.columns if m != "random" and "random" in ns]:
                stat, n = _soft_ratio(ns, nc, method, "random")
                value = _point(ns, nc, method, "random")
                lo, hi, undefined = (
                    percentile_bootstrap(stat, n, rng)
                    if n and np.isfinite(value)
                    else (np.nan, np.nan, 0)
                )
                parts.append(pd.DataFrame([{
                    "dataset": dataset, "method": method, "metric": "soft_ns_nc", "log_ratio": value,
                    "ci_low": lo, "ci_high": hi, "n": n, "n_boot_undefined": undefined, "prompts": subset,
                }]))  # fmt: skip
    out = pd.concat(parts, ignore_index=True)
    out = out[out["method"] != "random"].copy()
    out["rank"] = out.groupby(["prompts", "dataset", "metric"])["log_ratio"].rank(ascending=False)
    return out.reset_index(drop=True)


def noiser_vs_best(faith: pd.DataFrame, seed: int = 0, reference: str = "noiser") -> pd.DataFrame:
    """Is Noiser the most faithful method here? Per prompt subset and dataset, Noiser's
    ``soft_ns_nc`` against the best other attribution method's and the strongest null
    control's (best by point estimate), as the paired difference ``½ (log(NS_noiser /
    NS_best) + log(NC_noiser / NC_best))`` (random cancels) with a bootstrap CI over the
    prompts they share; ``verdict`` ``yes`` when the CI against the best other method lies
    above 0, ``no`` when below, else (or with fewer than :data:`MIN_PROMPTS` prompts)
    ``undetermined``; ``not run`` without Noiser."""
    nulls = set(methods_where(family="null")) | {"random"}
    rng = np.random.default_rng(seed)
    rows = []
    for subset, sub in _subsets(faith):
        for dataset, part in sub.groupby("dataset", sort=False):
            ns, nc = _wide(part, "soft_norm_suff"), _wide(part, "soft_norm_comp")
            row = {"prompts": subset, "dataset": dataset, "n": len(ns)}
            if reference not in ns or "random" not in ns:
                rows.append(row | {"verdict": "not run"})
                continue
            point = {m: _point(ns, nc, m, "random") for m in ns.columns if m != "random"}
            for role, pool in (("method", set(ns.columns) - nulls - {reference}), ("null", set(ns.columns) & nulls - {"random"})):  # fmt: skip
                scored = {m: v for m, v in point.items() if m in pool and np.isfinite(v)}
                best = max(scored, key=scored.get) if scored else None
                stat, n = _soft_ratio(ns, nc, reference, best) if best else (None, 0)
                diff = _point(ns, nc, reference, best) if best else np.nan
                lo, hi, _ = (
                    percentile_bootstrap(stat, n, rng) if n and np.isfinite(diff) else (np.nan,) * 3
                )
                row |= {f"best_{role}": best, f"diff_vs_{role}": diff, f"diff_vs_{role}_ci_low": lo,
                        f"diff_vs_{role}_ci_high": hi, f"n_vs_{role}": n}  # fmt: skip
            lo, hi = row["diff_vs_method_ci_low"], row["diff_vs_method_ci_high"]
            decided = row["n_vs_method"] >= MIN_PROMPTS
            row["verdict"] = (
                "undetermined"
                if not decided
                else "yes"
                if lo > 0
                else "no"
                if hi < 0
                else "undetermined"
            )
            row["noiser_soft_ns_nc"] = point.get(reference, np.nan)
            rows.append(row)
    return pd.DataFrame(rows)
