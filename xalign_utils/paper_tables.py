"""Notebook 07's side-by-side tables with the papers the compendium reproduces: Fayyaz
et al. (2024) Tables 2 and 4 (and the direction of their findings here), their Tables 3/5
as notebook 05 computed them, and the Noiser paper's Table 1. Every paper number comes
from ``reference/*.csv``; ours from the saved tables (:func:`xalign_utils.analysis.main_results`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .analysis import METHOD, parse_ci
from .summary import read_table

#: Their method names → ours (``Prompting`` is the model's own list).
PAPER_METHODS = {"Attention": "attention", "Saliency": "saliency", "Input×Grad": METHOD,
                 "Random": "random"}  # fmt: skip
#: Their open models (fine-tuned and attributed; the GPT models were only prompted).
OPEN_MODELS = ("Mistral-7B Instruct-v0.2", "Llama-2-7b chat", "Llama-3-8B Instruct")


def _ours_esnli(tables_dir: Path, main: pd.DataFrame) -> dict[tuple[str, str, str, str], pd.Series]:
    """Our e-SNLI numbers keyed like the paper's rows: ``(table, stage, method, selection)``
    (selection: ``Top-Var``, or ``Unbound`` for the prompted list of free length)."""
    out: dict[tuple[str, str, str, str], pd.Series] = {}
    esnli = (
        main[main["dataset"] == "esnli"].astype({"measure": str}).set_index(["model", "measure"])
    )
    for stage, model in (("pretrained", "base"), ("finetuned", "fine-tuned")):
        for table, method, measure in (
            ("2_alignment_f1", "Prompting", "prompted_topvar_f1"),
            ("2_alignment_f1", "Input×Grad", "ixg_topvar_f1"),
            ("4_flip_rate_pct", "Input×Grad", "ixg_flip_rate"),
        ):
            if (model, measure) in esnli.index:
                out[(table, stage, method, "Top-Var")] = esnli.loc[(model, measure)]
    plaus = read_table(tables_dir, "04_plausibility")
    plaus = plaus[(plaus["dataset"] == "esnli") & (plaus["metric"] == "topvar_f1")]
    flips = read_table(tables_dir, "04_table4_flip_rates")
    flips = flips[flips["dataset"] == "esnli"]
    align = read_table(tables_dir, "02_human_alignment").set_index("system")
    for system, method, selection in (("random Top-Var", "Random", "Top-Var"),  # random words
                                      ("Unbound", "Prompting", "Unbound")):  # fmt: skip
        if system in align.index and "esnli" in align.columns:
            v, lo, hi = parse_ci(align.loc[system, "esnli"])
            out[("2_alignment_f1", "pretrained", method, selection)] = pd.Series(
                {"value": v, "ci_low": lo, "ci_high": hi, "n": np.nan}
            )
    for paper, ours in PAPER_METHODS.items():
        for table, frame, column in (("2_alignment_f1", plaus, "method"),
                                     ("4_flip_rate_pct", flips, "selection")):  # fmt: skip
            hit = frame[frame[column] == ours]
            if len(hit):
                out.setdefault((table, "pretrained", paper, "Top-Var"), hit.iloc[0])
    for paper in ("Prompting", "Human", "All"):
        hit = flips[flips["selection"] == paper]
        if len(hit):
            out.setdefault(("4_flip_rate_pct", "pretrained", paper, "Top-Var"), hit.iloc[0])
    # after fine-tuning: notebook 05's final adapter with 04's selections (the checkpoint
    # rows above, on the same examples, come first)
    final = read_table(tables_dir, "05_fayyaz_final")
    final = final[final["dataset"] == "esnli"]
    names = {**{ours: paper for paper, ours in PAPER_METHODS.items()},
             **{p: p for p in ("Prompting", "Human", "All")}}  # fmt: skip
    for r in final.itertuples():
        table = "2_alignment_f1" if r.metric == "f1" else "4_flip_rate_pct"
        if r.selection in names and pd.notna(r.value):
            key = (table, "finetuned", names[r.selection], "Top-Var")
            out.setdefault(key, pd.Series(r._asdict()))
    return out


def fayyaz_side_by_side(
    tables_dir: Path, main: pd.DataFrame, reference: pd.DataFrame
) -> pd.DataFrame:
    """Their Tables 2 (Top-Var alignment F1) and 4 (flip rate) beside ours, on e-SNLI
    (the one dataset both evaluate), pretrained and fine-tuned.

    Returns ``table``, ``stage``, ``method``, ``selection`` (``Top-Var``; ``Unbound`` for
    the prompted list of free length), ``ours`` (value [CI]; proportions),
    ``ours_value``, ``n``, one column per paper model (proportions, from the reference
    CSV's percentages) and ``paper_min`` / ``paper_max`` over their models. Ours is "—"
    where this compendium does not measure it (e.g. the Unbound list after fine-tuning).
    """
    ours = _ours_esnli(Path(tables_dir), main)
    ref = reference[
        reference["table"].isin(["2_alignment_f1", "4_flip_rate_pct"])
        & (reference["dataset"] == "esnli")
        & reference["selection"].isin(["Top-Var", "Unbound"])
    ]
    rows = []
    keys = ["table", "stage", "method", "selection"]
    for (table, stage, method, selection), grp in ref.groupby(keys, sort=False):
        hit = ours.get((table, stage, method, selection))
        values = (grp.set_index("model")["value"] / 100).to_dict()
        rows.append(
            {
                "table": table,
                "stage": stage,
                "method": method,
                "selection": selection,
                "ours": "—" if hit is None
                else f"{hit['value']:.2f} [{hit['ci_low']:.2f}, {hit['ci_high']:.2f}]",
                "ours_value": np.nan if hit is None else float(hit["value"]),
                "n": np.nan if hit is None else hit["n"],
                **values,
                "paper_min": grp["value"].min() / 100,
                "paper_max": grp["value"].max() / 100,
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


#: Findings of Fayyaz et al. checked here: ``(finding, table, higher, lower)`` with
#: ``higher``/``lower`` = ``(stage, method)`` rows of the side-by-side table; a finding
#: holds when the first is larger.
FINDINGS = (
    ("Input×Grad aligns better than the prompted list (pretrained)", "2_alignment_f1",
     ("pretrained", "Input×Grad"), ("pretrained", "Prompting")),
    ("attribution aligns better than the prompted list after fine-tuning", "2_alignment_f1",
     ("finetuned", "Input×Grad"), ("finetuned", "Prompting")),
    ("fine-tuning raises Input×Grad's alignment", "2_alignment_f1",
     ("finetuned", "Input×Grad"), ("pretrained", "Input×Grad")),
    ("masking Input×Grad's words flips more than masking the prompted list", "4_flip_rate_pct",
     ("pretrained", "Input×Grad"), ("pretrained", "Prompting")),
    ("masking Input×Grad's words flips more than masking random words", "4_flip_rate_pct",
     ("pretrained", "Input×Grad"), ("pretrained", "Random")),
    ("fine-tuning raises Input×Grad's flip rate", "4_flip_rate_pct",
     ("finetuned", "Input×Grad"), ("pretrained", "Input×Grad")),
)  # fmt: skip


def _step0(tables_dir: Path) -> dict[tuple[str, str], pd.Series]:
    """Notebook 05's untrained checkpoint on e-SNLI (the examples its fine-tuned rows use),
    keyed ``(table, method)``: the pretrained side of the "fine-tuning raises" findings."""
    ckpt = read_table(tables_dir, "05_checkpoints")
    first = ckpt[(ckpt["step"] == 0) & (ckpt["dataset"] == "esnli")]
    out = {}
    for table, method, col in (("2_alignment_f1", "Input×Grad", "align_ixg"),
                               ("2_alignment_f1", "Prompting", "align_prompted"),
                               ("4_flip_rate_pct", "Input×Grad", "flipped")):  # fmt: skip
        if len(first) and pd.notna(first[col].iloc[0]):
            r = first.iloc[0]
            out[(table, method)] = pd.Series(
                {"value": r[col], "ci_low": r[f"{col}_lo"], "ci_high": r[f"{col}_hi"]}
            )
    return out


def _compare(a: pd.Series | None, b: pd.Series | None) -> str:
    """``yes`` / ``no`` when the two 95% CIs are apart, ``undetermined`` when they
    overlap, ``not measured`` when a number is missing."""
    if a is None or b is None or pd.isna(a["value"]) or pd.isna(b["value"]):
        return "not measured"
    if a["ci_low"] > b["ci_high"]:
        return "yes"
    if a["ci_high"] < b["ci_low"]:
        return "no"
    return "undetermined (CIs overlap)"


def _reproduces(here: str, paper: Sequence[bool]) -> str:
    """``yes`` when our CIs point the way most of the paper's models do, ``no`` when they
    point the other way, else why neither can be said (overlapping CIs, not measured, or
    the paper's models split evenly)."""
    if here not in ("yes", "no"):
        return here.split(" (")[0]
    if 2 * sum(paper) == len(paper):
        return "undetermined (the paper's models split)"
    return "yes" if (here == "yes") == (2 * sum(paper) > len(paper)) else "no"


def fayyaz_directions(
    tables_dir: Path, main: pd.DataFrame, side: pd.DataFrame, models: Sequence[str] = OPEN_MODELS
) -> pd.DataFrame:
    """Each :data:`FINDINGS` row: in how many of their ``models`` it holds, whether it
    holds here (:func:`_compare` of our two 95% CIs, separate samples, so conservative)
    and whether the direction reproduces (:func:`_reproduces`: ``yes``, ``no``,
    ``undetermined``, ``not measured``).
    Findings about fine-tuning compare notebook 05's last checkpoint with its untrained
    one, on the same examples."""
    ours = _ours_esnli(Path(tables_dir), main)
    step0 = _step0(Path(tables_dir))
    rows = []
    for finding, table, hi, lo in FINDINGS:
        part = side[(side["table"] == table) & (side["selection"] == "Top-Var")]
        part = part.set_index(["stage", "method"])
        if hi not in part.index or lo not in part.index:
            continue
        a, b = part.loc[hi], part.loc[lo]
        paper = [bool(a[m] > b[m]) for m in models if pd.notna(a.get(m)) and pd.notna(b.get(m))]
        if hi[0] != lo[0]:  # fine-tuned against untrained: notebook 05's own step 0
            here = _compare(ours.get((table, *hi, "Top-Var")), step0.get((table, lo[1])))
        else:
            here = _compare(ours.get((table, *hi, "Top-Var")), ours.get((table, *lo, "Top-Var")))
        rows.append(
            {
                "finding": finding,
                "table": table,
                "paper": f"{sum(paper)} of {len(paper)} models",
                "here": here,
                "reproduces": _reproduces(here, paper),
            }
        )
    return pd.DataFrame(rows)


def tables3_5(table: pd.DataFrame) -> pd.DataFrame:
    """Notebook 05's Tables 3/5 side by side with ``agrees``: ``yes``/``no`` on the sign
    of r when our CI excludes 0, ``undetermined`` when it does not."""
    clear = (table["lo"] > 0) | (table["hi"] < 0)
    same = np.sign(table["r"]) == np.sign(table["paper_r"])
    return table.assign(agrees=np.where(clear, np.where(same, "yes", "no"), "undetermined"))


#: The Noiser paper's method names → ours (DeepLIFT and SIG are not implemented here).
NOISER_METHODS = {"Last Attn": "attention", "Rollout": "attention_rollout",
                  "IG": "integrated_gradients", "IxG": "input_x_gradient", "LIME": "lime",
                  "SHAP": "kernel_shap", "Occlusion": "occlusion", "Noiser": "noiser"}  # fmt: skip


def noiser_side_by_side(tables_dir: Path, reference: pd.DataFrame) -> pd.DataFrame:
    """The Noiser paper's Table 1 beside ours, in the same setting, per dataset × method.

    Both sides attribute the greedy next token of plain Knowns / LongRA prompts and report
    faithfulness as the log ratio of a method's score to random's. Paper: the mean over its
    six models (0.5B–9B) of the rows of :data:`NOISER_METHODS`, WikiBio left out (not run
    here). Ours: notebook 04's ``04_next_token_log_ratio``, soft-normalised metrics over
    the whole vocabulary (``soft_ns_nc``: the mean of the soft sufficiency and
    comprehensiveness log ratios, the two the paper reports), every prompt, with the
    bootstrap CI and n; ``ours_comp`` / ``ours_suff`` give the two parts. Differences that
    remain: the paper keeps only prompts whose greedy token is the gold one (ours: all, the
    subset in notebook 04's table), and its soft metrics are ReAGent's evaluator. Ranks (1 = most faithful) are within
    a dataset, over the methods both sides ran.
    """
    ref = reference[(reference["model"] != "Average") & reference["method"].isin(NOISER_METHODS)]
    paper = ref.groupby(["dataset", "method"])["value"].mean()
    ours = read_table(tables_dir, "04_next_token_log_ratio")
    ours = ours[ours["prompts"] == "all"].set_index(["dataset", "metric", "method"])
    rows = []
    for dataset in dict.fromkeys(ours.index.get_level_values("dataset")):
        for name, method in NOISER_METHODS.items():
            key = (dataset, "soft_ns_nc", method)
            if (dataset, name) not in paper.index or key not in ours.index:
                continue
            r = ours.loc[key]
            rows.append(
                {
                    "dataset": dataset,
                    "method": name,
                    "paper_log_ratio": paper[(dataset, name)],
                    "ours_log_ratio": r["log_ratio"],
                    "ours_ci": f"[{r['ci_low']:.2f}, {r['ci_high']:.2f}]",
                    "ours_n": int(r["n"]),
                    "ours_comp": ours.loc[(dataset, "soft_norm_comp", method), "log_ratio"],
                    "ours_suff": ours.loc[(dataset, "soft_norm_suff", method), "log_ratio"],
                }
            )
    out = pd.DataFrame(rows, columns=["dataset", "method", "paper_log_ratio", "ours_log_ratio",
                                      "ours_ci", "ours_n", "ours_comp", "ours_suff"])  # fmt: skip
    by = out.groupby("dataset")
    out["paper_rank"] = by["paper_log_ratio"].rank(ascending=False)
    out["ours_rank"] = by["ours_log_ratio"].rank(ascending=False)
    return out


def noiser_directions(side: pd.DataFrame, comparison: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, the paper's headline finding checked here: is Noiser the most faithful
    method? ``ours`` is notebook 04's paired verdict (``04_next_token_noiser``: Noiser's
    soft log ratio minus the best other method's, CI over shared prompts; ``yes``/``no``
    only when the CI excludes 0), with the difference, its CI and Noiser against the
    strongest null; plus the Spearman correlation of the two sides' method rankings."""
    comp = comparison[comparison["prompts"] == "all"].set_index("dataset")
    rows = []
    for dataset, part in side.groupby("dataset", sort=False):
        part = part.set_index("method")
        c = comp.loc[dataset] if dataset in comp.index else None
        rows.append(
            {
                "dataset": dataset,
                "finding": "Noiser is the most faithful method",
                "paper": "yes" if part["paper_rank"].idxmin() == "Noiser" else "no",
                "ours": "not run" if c is None else c["verdict"],
                "best_other": None if c is None else c.get("best_method"),
                "diff_vs_best": np.nan if c is None else c.get("diff_vs_method", np.nan),
                "diff_ci": ""
                if c is None
                else f"[{c.get('diff_vs_method_ci_low', np.nan):.2f}, "
                f"{c.get('diff_vs_method_ci_high', np.nan):.2f}]",
                "diff_vs_best_null": np.nan if c is None else c.get("diff_vs_null", np.nan),
                "rank_spearman": part["paper_rank"].corr(part["ours_rank"], method="spearman"),
                "n": np.nan if c is None else c["n"],
            }
        )
    return pd.DataFrame(rows)
