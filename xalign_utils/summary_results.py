"""README block sections of notebooks 06 and 07 (guided decoding; the main results table,
the Fayyaz et al. directions, the Noiser paper side by side, the XNLI track), rendered
from their saved tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .summary_format import (
    DATASET_NAMES,
    _markdown,
    _pivot_cells,
    _test_cell,
    fmt_ci,
    n_tested,
    read_table,
)


def main_results(tables_dir: Path) -> str:
    """Notebook 07's main table: headline measures per model and dataset."""
    table = read_table(tables_dir, "07_main_results")
    shown = ["accuracy", "prompted_topvar_f1", "ixg_topvar_f1", "ixg_comp_aopc", "ixg_flip_rate",
             "occ_comp_aopc"]  # fmt: skip
    table = table[table["measure"].isin(shown)]
    cells = table.assign(
        cell=table.apply(
            lambda r: (
                "—"
                if pd.isna(r["value"])
                else fmt_ci(r["value"], r["ci_low"], r["ci_high"])
                + ("" if pd.isna(r["n"]) else f" n={int(r['n'])}")
            ),
            axis=1,
        ),
        row=table["dataset"].map(DATASET_NAMES).fillna(table["dataset"]) + ": " + table["measure"],
    )
    grid = cells.pivot(index="row", columns="model", values="cell")
    grid = grid.reindex(list(dict.fromkeys(cells["row"])))
    models = [m for m in ("base", "fine-tuned") if m in grid] + sorted(
        m for m in grid if m not in ("base", "fine-tuned")
    )
    return (
        "Main results (notebook 07, `07_main_results`; every number also a LaTeX macro in "
        "`figures/numbers.tex`): accuracy, the prompted and Input×Grad Top-Var F1 with human "
        "rationales, Input×Grad's comprehensiveness AOPC and flip rate, per model; the "
        "regularised models are scored with occlusion in 05 (`occ_comp_aopc`); a dash is "
        "not measured, each for the reason `07_main_results_coverage` gives:\n\n"
        + _markdown(
            grid[models].reset_index().rename(columns={"row": "dataset: measure"}).fillna("—")
        )
    )


def fayyaz_directions(tables_dir: Path) -> str:
    """Notebook 07: does each of Fayyaz et al.'s findings point the same way here?"""
    table = read_table(tables_dir, "07_fayyaz_directions")
    return (
        "Fayyaz et al. (2024) findings on e-SNLI, in their three open models and here "
        "(yes/no only when our two 95% CIs are apart; fine-tuning findings against notebook "
        "05's untrained checkpoint; numbers and CIs in `07_fayyaz_tables2_4`; "
        "`07_fayyaz_directions`):"
        "\n\n" + _markdown(table[["finding", "paper", "here", "reproduces"]])
    )


#: Notebook 06's secondary measures in the README, with their names there.
GUIDED_EFFECTS = {"rank_auc_eval": "rank AUC (evaluation method)", "log_ppl": "log-perplexity",
                  "answer_correct": "stated answer correct", "parsed": "parse rate"}  # fmt: skip


def guided_decoding(tables_dir: Path) -> str:
    """Notebook 06: each steering condition against greedy decoding, on the primary
    metric per dataset × explanation type, and the pooled effects on what it may cost."""
    reproduced = read_table(tables_dir, "06_reproduces_02")
    n, same = int(reproduced["n"].sum()), int(reproduced["identical"].sum())
    tests = read_table(tables_dir, "06_guided_tests")
    tests = tests[tests["role"] == "primary"]
    grid = tests.assign(
        method=tests["type"] + ", " + tests["condition"] + " − " + tests["reference"]
    )
    grids = [
        _pivot_cells(part.assign(dataset=part["dataset"].map(DATASET_NAMES)), "dataset", _test_cell)
        for _, part in grid.groupby("metric", sort=False)
    ]
    can = int(tests["can_reject"].astype(str).eq("True").sum())
    tested = n_tested(tests)
    # a comparison with no defined value at all is no row: count it against the full grid
    cells = tests[["dataset", "type", "condition"]].drop_duplicates()
    absent = len(cells) * tests["metric"].nunique() - len(tests)
    effects = read_table(tables_dir, "06_guided_effects")
    effects = effects[effects["metric"].isin(GUIDED_EFFECTS)]
    effects = effects.assign(
        method=effects["dataset"].map(DATASET_NAMES) + ": " + effects["metric"].map(GUIDED_EFFECTS),
        cell=effects.apply(
            lambda r: fmt_ci(r["mean_diff"], r["diff_ci_low"], r["diff_ci_high"], signed=True),
            axis=1,
        ),
    )
    wide = effects.pivot(index="method", columns="condition", values="cell")
    wide = wide.reindex(list(dict.fromkeys(effects.sort_values(["dataset", "metric"])["method"])))
    wide = wide.reset_index().fillna("—")
    names = list(dict.fromkeys(tests["metric"]))
    return (
        f"Guided decoding (notebook 06): greedy decoding reproduced notebook 02 for {same} of "
        f"{n} outputs (`06_reproduces_02`). Primary metrics, condition − its reference "
        "(greedy; beam search for the constrained one): `comp_gain` (comprehensiveness of "
        "the named words minus that of as many random words) and `rank_auc_eval` (rank AUC "
        "with an attribution method the steering did not use); mean paired difference, "
        f"bootstrap CI; **✓** = Holm-rejected at 5% over {tested} tests ({len(tests) - tested} "
        f"comparisons had no pairs, and {absent} are not in the table because the metric was "
        "undefined for every example: free-text rank AUC is defined only where the answer "
        "the text states is the prediction whose attribution it is compared with); "
        f"{can} can reject at their n; `06_guided_tests`:"
        + "".join(
            f"\n\n`{name}`:\n\n" + _markdown(g.rename(columns={"method": "explanation, contrast"}))
            for name, g in zip(names, grids, strict=True)
        )
        + "\n\nWhat steering did to consistency with the *evaluation* method (rank AUC), "
        "fluency (log-perplexity under the unsteered model), the stated answer's accuracy "
        "and the parse rate, condition − its reference (greedy; beam search for the "
        "constrained one), explanation types pooled (pairs clustered "
        "by example; effect sizes, not tests; `06_guided_effects`):\n\n"
        + _markdown(wide.rename(columns={"method": "dataset: measure"}))
    )


#: The median relative completeness error IG is held to (issue 11: ≤ 5% by default).
IG_ERROR_LIMIT = 0.05


def _ig_caveat(tables_dir: Path) -> str:
    """IG's median relative completeness error on the next-token prompts (every word moves
    to the zero baseline, the first token included), from ``03_next_token_health``."""
    if not (Path(tables_dir) / "03_next_token_health.csv").is_file():
        return ""
    health = read_table(tables_dir, "03_next_token_health")
    if "ig_relative_error" not in health:  # IG did not run on them
        return ""
    ig = health[health["method"].eq("integrated_gradients")].dropna(subset=["ig_relative_error"])
    if ig.empty:
        return ""
    errors = ", ".join(f"{r.dataset} {r.ig_relative_error:.0%}" for r in ig.itertuples())
    verdict = (
        ", so its next-token scores are far from converged and its row here says little"
        if ig["ig_relative_error"].max() > IG_ERROR_LIMIT
        else f", within the {IG_ERROR_LIMIT:.0%} the classification runs are held to"
    )
    return (
        f"\n\nIntegrated gradients' median relative completeness error on these prompts is "
        f"{errors} (`03_next_token_health`){verdict}."
    )


def noiser_side_by_side(tables_dir: Path) -> str:
    """Notebook 07: the Noiser paper's Table 1 beside ours in the next-token setting."""
    side = read_table(tables_dir, "07_noiser_table1")
    directions = read_table(tables_dir, "07_noiser_directions")
    side = side.assign(
        ours=[
            f"{v:+.2f} {ci}" for v, ci in zip(side["ours_log_ratio"], side["ours_ci"], strict=True)
        ],
        paper=side["paper_log_ratio"].map("{:+.2f}".format),
    )
    grid = side.pivot(index="method", columns="dataset", values=["paper", "ours"])
    grid.columns = [f"{d} {who}" for who, d in grid.columns]
    grid = grid.reindex(list(dict.fromkeys(side["method"])))
    n = ", ".join(f"{r.dataset} n={int(r.n)}" for r in directions.itertuples() if pd.notna(r.n))
    return (
        "The Noiser paper's Table 1 beside ours in its next-token setting (plain Knowns / "
        "LongRA prompts, greedy next token; the mean of the soft sufficiency and "
        "comprehensiveness log ratios to random; paper: mean of its six models, prompts "
        f"whose greedy token is the gold one; ours: every prompt, 95% CI, {n}; "
        "`07_noiser_table1`):\n\n"
        + _markdown(grid.reset_index())
        + _ig_caveat(tables_dir)
        + "\n\nIs Noiser the most faithful method here? Noiser's log ratio minus the best "
        "other method's, paired over prompts (`07_noiser_directions`; yes/no only when the CI "
        "excludes 0):\n\n"
        + _markdown(
            directions[
                [
                    "dataset",
                    "paper",
                    "ours",
                    "best_other",
                    "diff_vs_best",
                    "diff_ci",
                    "rank_spearman",
                ]
            ].round(2)
        )
    )


def multilingual(tables_dir: Path) -> str:
    """Notebook 07: the XNLI track per language (accuracy vs chance, consistency vs nulls);
    a line saying how to run it when it has not been run."""
    if not (Path(tables_dir) / "07_multilingual.csv").is_file():
        return (
            "The XNLI track has not been run for these tables (`make xnli`, then `make figures`)."
        )
    t = read_table(tables_dir, "07_multilingual")
    rows = pd.DataFrame(
        {
            "language": t["language"],
            "accuracy": [fmt_ci(*r) for r in t[["accuracy", "accuracy_ci_low", "accuracy_ci_high"]].to_numpy()],
            "n": t["n"],
            "p(acc > 1/3), Holm": t["p_above_chance_holm"].map("{:.3g}".format),
            "top label (share)": t["top_predicted"] + " (" + t["top_predicted_share"].map("{:.2f}".format) + ")",
            "rank AUC, Input×Grad": [fmt_ci(*r) for r in t[["rank_auc", "rank_auc_ci_low", "rank_auc_ci_high"]].to_numpy()],
            "rank AUC, best null": [fmt_ci(*r) for r in t[["rank_auc_best_null", "rank_auc_best_null_ci_low", "rank_auc_best_null_ci_high"]].to_numpy()],
            "Input×Grad − best null (paired)": [fmt_ci(*r, signed=True) for r in t[["diff_vs_null", "diff_vs_null_ci_low", "diff_vs_null_ci_high"]].to_numpy()],
        }
    )  # fmt: skip
    return (
        "The XNLI track per language (`make xnli`; English instructions, the premise and "
        "hypothesis in the language; accuracy against chance with a one-sided exact binomial "
        "p; the Top-Var list's rank AUC against Input×Grad and against the strongest null "
        "control; `07_multilingual`):\n\n" + _markdown(rows)
    )
