"""Notebook 07: the results chapter, from the stored tables of notebooks 02-06 only.

* :func:`main_results`: model (base, fine-tuned, each regularised λ) × dataset × measure,
  each with its CI, n and the table it comes from;
* the papers' tables beside ours: :mod:`xalign_utils.paper_tables`;
* :func:`failure_cases`: a gallery chosen by rule (confident predictions whose list
  disagrees most with a validated attribution), drawn by :func:`failure_figures`;
* :func:`numbers_tex`: one LaTeX macro per headline number (value, CI low/high, n), so a
  thesis's text follows the run; :func:`figures_readme`: every figure and table with a
  caption computed from it and the notebook that writes it.

Every table is read with :func:`xalign_utils.summary.read_table`, which names the
notebook to run when one is missing. Nothing here loads a model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import store
from .captions import figure_caption, table_caption
from .config import RunConfig
from .plots import attribution_heatmap
from .summary import read_table
from .validation import TOPVAR

#: The attribution method of Fayyaz et al.'s comparisons and of notebook 05's metrics.
METHOD = "input_x_gradient"
#: Measures of the main table, in order, with their LaTeX macro stems.
MEASURES = {
    "accuracy": "Acc",
    "macro_f1": "MacroFOne",
    "prompted_topvar_f1": "PromptedFOne",
    "ixg_topvar_f1": "IxgFOne",
    "ixg_iou_f1": "IxgIouFOne",
    "ixg_auprc": "IxgAuprc",
    "ixg_comp_aopc": "IxgComp",
    "ixg_flip_rate": "IxgFlip",
    "ixg_rank_auc_vs_null": "IxgRankAucVsNull",
    "occ_topvar_f1": "OccFOne",
    "occ_comp_aopc": "OccComp",
    "occ_rank_auc": "OccRankAuc",
}
_CI = re.compile(r"^\s*(-?[\d.]+)\s*\[(-?[\d.]+),\s*(-?[\d.]+)\]\s*$")


def parse_ci(cell: str, scale: float = 100.0) -> tuple[float, float, float]:
    """``(value, low, high)`` of a formatted ``"28.0 [21.5, 34.0]"`` cell, divided by
    ``scale`` (notebook 02's tables print percentages)."""
    match = _CI.match(str(cell))
    if not match:
        raise ValueError(f"not a 'value [low, high]' cell: {cell!r}")
    return tuple(float(g) / scale for g in match.groups())  # type: ignore[return-value]


def _row(model, dataset, measure, value, low, high, n, table) -> dict:
    return {"model": model, "dataset": dataset, "measure": measure, "value": value,
            "ci_low": low, "ci_high": high, "n": n, "table": table}  # fmt: skip


def _base_rows(tables_dir: Path) -> list[dict]:
    rows = []
    perf = read_table(tables_dir, "02_task_performance", header=[0, 1])
    for _, r in perf.iterrows():
        dataset, n = r.iloc[0], r.iloc[-1]
        for measure in ("accuracy", "macro_f1"):
            v, lo, hi = parse_ci(r[(measure, "model")])
            rows.append(_row("base", dataset, measure, v, lo, hi, n, "02_task_performance"))
    align = read_table(tables_dir, "02_human_alignment").set_index("system")
    for dataset in align.columns:
        v, lo, hi = parse_ci(align.loc["Top-Var", dataset])
        rows.append(_row("base", dataset, "prompted_topvar_f1", v, lo, hi, np.nan,
                         "02_human_alignment"))  # fmt: skip
    for name, measures in (
        ("04_plausibility", {"topvar_f1": "ixg_topvar_f1", "iou_f1": "ixg_iou_f1",
                             "auprc": "ixg_auprc"}),
        ("04_faithfulness", {"comp_aopc": "ixg_comp_aopc"}),
    ):  # fmt: skip
        table = read_table(tables_dir, name)
        table = table[(table["method"] == METHOD) & table["metric"].isin(measures)]
        rows += [
            _row("base", r.dataset, measures[r.metric], r.value, r.ci_low, r.ci_high, r.n, name)
            for r in table.itertuples()
        ]
    flips = read_table(tables_dir, "04_table4_flip_rates")
    rows += [
        _row("base", r.dataset, "ixg_flip_rate", r.value, r.ci_low, r.ci_high, r.n,
             "04_table4_flip_rates")
        for r in flips[flips["selection"] == METHOD].itertuples()
    ]  # fmt: skip
    null = read_table(tables_dir, "04_consistency_vs_best_null")
    null = null[(null["method"] == METHOD) & (null["explanation"] == "Top-Var list")]
    rows += [
        _row("base", "all", "ixg_rank_auc_vs_null", r.value, r.ci_low, r.ci_high, r.n,
             "04_consistency_vs_best_null")
        for r in null[null["metric"] == "rank_auc"].itertuples()
    ]  # fmt: skip
    return rows


def _trained_rows(tables_dir: Path) -> list[dict]:
    # accuracy on the whole evaluation split (05_targets), as the base model's (02); the
    # other measures at the final checkpoint, on the checkpoints' examples
    targets = read_table(tables_dir, "05_targets")
    rows = [
        _row("fine-tuned", r.dataset, measure, value, low, high, r.n, "05_targets")
        for r in targets.itertuples()
        for measure, value, low, high in (("accuracy", r.accuracy, r.lo, r.hi),
                                          ("macro_f1", r.macro_f1, r.macro_f1_lo,
                                           r.macro_f1_hi))
    ]  # fmt: skip
    ckpt = read_table(tables_dir, "05_checkpoints")
    last = ckpt[ckpt["step"] == ckpt.groupby("run")["step"].transform("max")]
    for r in last.to_dict("records"):
        for col, measure in (("align_ixg", "ixg_topvar_f1"),
                             ("align_prompted", "prompted_topvar_f1"),
                             ("flipped", "ixg_flip_rate")):  # fmt: skip
            if pd.notna(r[col]):
                rows.append(_row("fine-tuned", r["dataset"], measure, r[col], r[f"{col}_lo"],
                                 r[f"{col}_hi"], r[f"{col}_n"], "05_checkpoints"))  # fmt: skip
    reg = read_table(tables_dir, "05_regularised")
    # notebook 05 scores its regularised runs with occlusion, not Input×Grad
    names = {"correct": "accuracy", "topvar_f1": "occ_topvar_f1", "comp_aopc": "occ_comp_aopc",
             "rank_auc": "occ_rank_auc"}  # fmt: skip
    rows += [
        _row(f"regularised λ={r.lam:g}", r.dataset, names[r.metric], r.value, r.ci_low,
             r.ci_high, r.n, "05_regularised")
        for r in reg[reg["metric"].isin(names)].itertuples()
    ]  # fmt: skip
    return rows


def main_results(tables_dir: Path) -> pd.DataFrame:
    """Model × dataset × measure (:data:`MEASURES`), value with its CI, n and source table.

    Attribution measures are Input×Grad's (:data:`METHOD`), as in Fayyaz et al. and
    notebook 05's checkpoints; the regularised models are scored with occlusion in 05
    (not the gradient they were trained on), so theirs are the ``occ_*`` measures.
    """
    rows = _base_rows(Path(tables_dir)) + _trained_rows(Path(tables_dir))
    out = pd.DataFrame(rows)
    out["measure"] = pd.Categorical(out["measure"], list(MEASURES), ordered=True)
    return out.sort_values(["measure", "dataset", "model"], kind="stable").reset_index(drop=True)


#: Why a main-table cell is empty, by rule: ``(model kind, measures, datasets or None for
#: all, reason)``, the first matching rule wins. Model kinds: ``base``, ``fine-tuned``,
#: ``regularised``.
NOT_MEASURED = (
    (None, ("prompted_topvar_f1", "ixg_topvar_f1", "ixg_iou_f1", "ixg_auprc", "occ_topvar_f1"),
     ("sst2",), "SST-2 has no human rationales"),
    ("regularised", None, ("sst2",),
     "the regularised runs train on and are scored for the datasets with human rationales"),
    ("regularised", ("macro_f1", "prompted_topvar_f1", "ixg_topvar_f1", "ixg_iou_f1",
                     "ixg_auprc", "ixg_comp_aopc", "ixg_flip_rate", "ixg_rank_auc_vs_null"), None,
     "notebook 05 judges regularised runs with occlusion (occ_*), not the input gradient "
     "they were trained on, and by accuracy alone among the task measures"),
    ("fine-tuned", ("ixg_iou_f1", "ixg_auprc", "ixg_comp_aopc", "ixg_rank_auc_vs_null"), None,
     "notebook 05 scores checkpoints with Fayyaz et al.'s measures (accuracy, Top-Var F1, "
     "flip rate); `make all ADAPTER=<profile>-plain-s<seed>` runs 02-04 on the adapter"),
    (None, ("occ_topvar_f1", "occ_comp_aopc", "occ_rank_auc"), None,
     "occ_* score the regularised runs; occlusion on this model is in 04's tables"),
)  # fmt: skip


def _listed(values: pd.Series) -> str:
    """The distinct values, in order, comma-separated."""
    return ", ".join(dict.fromkeys(values))


def coverage(main: pd.DataFrame) -> pd.DataFrame:
    """The model × measure × dataset cells :func:`main_results` leaves empty (a pooled
    row, dataset ``all``, covers its measure), one row per reason (:data:`NOT_MEASURED`:
    the models, measures and datasets it empties) (``unexplained`` when no rule matches, which a test
    forbids), so the table's gaps are stated rather than silent."""
    datasets = sorted(set(main["dataset"]) - {"all"})
    measured = main[main["value"].notna()]  # a row without a value (n = 0) is a gap too
    have = set(
        zip(measured["model"], measured["measure"].astype(str), measured["dataset"], strict=True)
    )
    rows = []
    for model in dict.fromkeys(main["model"]):
        kind = "regularised" if str(model).startswith("regularised") else model
        for measure in MEASURES:
            for dataset in datasets:
                if (model, measure, dataset) in have or (model, measure, "all") in have:
                    continue
                reason = next(
                    (why for who, measures, where, why in NOT_MEASURED
                     if who in (None, kind) and (measures is None or measure in measures)
                     and (where is None or dataset in where)),
                    "unexplained",
                )  # fmt: skip
                rows.append({"model": model, "measure": measure, "dataset": dataset,
                             "reason": reason})  # fmt: skip
    out = pd.DataFrame(rows, columns=["model", "measure", "dataset", "reason"])
    return (
        out.groupby("reason", sort=False)
        .agg(
            models=("model", _listed), measures=("measure", _listed), datasets=("dataset", _listed)
        )
        .reset_index()[["models", "measures", "datasets", "reason"]]
    )


_DIGITS = "Zero One Two Three Four Five Six Seven Eight Nine".split()


def macro_stem(text: str) -> str:
    """Letters-only CamelCase of ``text`` (digits spelled out, ``.`` as ``Point``), as
    LaTeX macro names allow: ``regularised λ=0.1`` → ``RegularisedLamZeroPointOne``."""
    text = text.replace("λ", " lam ").replace(".", " point ").replace("-", " ")
    words = re.findall(r"[A-Za-z]+|\d", text)
    return "".join(_DIGITS[int(w)] if w.isdigit() else w[:1].upper() + w[1:] for w in words)


def numbers(main: pd.DataFrame) -> pd.DataFrame:
    """One row per macro: ``macro`` (``\\xaAccEsnliBase`` …), ``value``, ``ci_low``,
    ``ci_high``, ``n`` and the source ``table``."""
    out = main.assign(
        macro=[
            "xa" + MEASURES[m] + macro_stem(d) + macro_stem(model)
            for m, d, model in zip(main["measure"], main["dataset"], main["model"], strict=True)
        ]
    )
    if out["macro"].duplicated().any():
        raise ValueError(
            f"duplicate macro names: {sorted(out.loc[out['macro'].duplicated(), 'macro'])}"
        )
    return out[["macro", "value", "ci_low", "ci_high", "n", "table"]]


def numbers_tex(numbers_table: pd.DataFrame, digits: int = 3) -> str:
    """``\\newcommand`` lines: ``\\<macro>`` (value), ``…Lo``, ``…Hi``, ``…N``; a missing
    number prints as ``--``."""

    def fmt(v: float, n_digits: int) -> str:
        return "--" if pd.isna(v) else f"{v:.{n_digits}f}"

    lines = ["% Generated by notebook 07 (`make figures`) from figures/tables/; do not edit."]
    for r in numbers_table.itertuples():
        lines.append(f"% {r.table}")
        for suffix, v, d in (("", r.value, digits), ("Lo", r.ci_low, digits),
                             ("Hi", r.ci_high, digits), ("N", r.n, 0)):  # fmt: skip
            lines.append(f"\\newcommand{{\\{r.macro}{suffix}}}{{{fmt(v, d)}}}")
    return "\n".join(lines) + "\n"


def figures_readme(figures_dir: Path, tables_dir: Path) -> str:
    """Markdown listing every figure and table with a one-sentence caption computed from
    its data (:mod:`xalign_utils.captions`) and the notebook that writes it."""
    lines = ["# Figures and tables", "",
             "Generated by notebook 07 (`make figures`); each caption is computed from the "
             "table named in it, and each entry names the notebook that writes it "
             "(`make NN` re-runs it).", "", "## Figures", ""]  # fmt: skip
    for stem in sorted({p.stem for p in Path(figures_dir).glob("[0-9][0-9]_*.pdf")}):
        formats = ", ".join(sorted(p.suffix[1:] for p in Path(figures_dir).glob(f"{stem}.*")))
        caption = figure_caption(stem, tables_dir)
        lines.append(f"- `{stem}` ({formats}): {caption} Notebook {stem[:2]} (`make {stem[:2]}`).")
    lines += ["", "## Tables", ""]
    for path in sorted(Path(tables_dir).glob("[0-9][0-9]_*.csv")):
        kinds = "csv, tex" if path.with_suffix(".tex").exists() else "csv"
        lines.append(f"- `{path.stem}` ({kinds}): {table_caption(path)}; notebook "
                     f"{path.stem[:2]} (`make {path.stem[:2]}`).")  # fmt: skip
    return "\n".join(lines) + "\n"


def failure_cases(cfg: RunConfig, method: str, per_dataset: int = 2) -> pd.DataFrame:
    """Failure cases chosen by rule, not by hand: per dataset, among the confident
    predictions (predicted-label probability at or above the dataset's median), the
    Top-Var lists about the predicted label with the lowest rank AUC against ``method``
    (``kind`` ``lowest rank AUC``), and the lists that name no input word at all
    (``kind`` ``names no input word``: unparsed, refusals, prose; the plainest failures).

    Returns:
        ``dataset``, ``id``, ``kind``, ``label``, ``pred``, ``p_pred``, ``rank_auc``,
        ``raw`` (the list as the model wrote it) and ``positions`` (the words it names).
    """
    preds = store.read_table(cfg, "02_baselines", "predictions")
    preds = preds[preds["p_pred"] >= preds.groupby("dataset")["p_pred"].transform("median")]
    cons = store.read_table(cfg, "04_metrics_validation", "consistency")
    cons = cons[(cons["method"] == method) & (cons["explanation"] == TOPVAR)]
    lists = store.read_table(cfg, "02_baselines", "rationales")
    lists = lists[(lists["role"] == "rationale_topk") & (lists["label_source"] == "pred")]
    joined = (
        preds[["dataset", "id", "label", "pred", "p_pred"]]
        .merge(lists[["id", "raw", "positions"]], on="id")
        .merge(cons[["id", "rank_auc"]], on="id")  # attributed examples only
    )
    named = joined["positions"].map(len) > 0
    low = joined[named & joined["rank_auc"].notna()].assign(kind="lowest rank AUC")
    none = joined[~named].assign(kind="names no input word")
    parts = [
        part.sort_values(["dataset", "rank_auc", "p_pred"], ascending=[True, True, False])
        .groupby("dataset", sort=False)
        .head(per_dataset)
        for part in (low, none)
    ]
    cols = ["dataset", "id", "kind", "label", "pred", "p_pred", "rank_auc", "raw", "positions"]
    return pd.concat(parts, ignore_index=True)[cols]


def failure_figures(
    cases: pd.DataFrame, attributions: pd.DataFrame, examples_by_id, methods: Sequence[str]
) -> dict[str, plt.Figure]:
    """A heat map per case (``methods``' word scores; the list's words bold, the human
    rationale underlined), titled with the prediction and the list as written."""
    figures = {}
    for case in cases.itertuples():
        k = sum(name.startswith(f"07_failure_{case.dataset}_") for name in figures)
        rows = attributions[(attributions["id"] == case.id) & attributions["method"].isin(methods)]
        ex = examples_by_id[case.id]
        human = {i for i, v in enumerate(ex.flat_rationale() or []) if v == 1}
        raw = case.raw if len(case.raw) <= 90 else case.raw[:87] + "..."
        auc = "no words named" if pd.isna(case.rank_auc) else f"rank AUC {case.rank_auc:.2f}"
        title = (
            f"{case.dataset} {case.id} | gold {case.label}, predicted {case.pred} "
            f"(p = {case.p_pred:.2f}) | {auc}\nlist: {raw!r}"
        )
        figures[f"07_failure_{case.dataset}_{k}"] = attribution_heatmap(
            rows, list(rows["words"].iloc[0]), highlight=set(map(int, case.positions)),
            human=human, title=title,
        )  # fmt: skip
    return figures
