"""Captions computed from the data behind each figure and table (notebook 07's
``figures/README.md``), so a caption never states a number its table does not hold.

A figure's caption is what it shows (:data:`FIGURES`, matched by name) plus the extremes of
its source table's value column, each with the row it belongs to; a table's caption is its
size and, for a table with a value column, the same extremes. A figure whose source table is
missing says so instead of guessing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

#: Value columns a summary may use, in order of preference.
VALUE_COLUMNS = ("value", "log_ratio", "mean_diff", "rho", "correct", "top_share", "rows")


@dataclass(frozen=True)
class FigureSpec:
    """What a figure shows and the table (and rows) its numbers come from (``table``
    empty: an illustration of single examples or steps, captioned by ``shows`` alone)."""

    shows: str
    table: str
    where: dict = field(default_factory=dict)  # column → value, or a list of values
    value: str | None = None
    labels: tuple[str, ...] = ()  # the columns that name a row (default: its first texts)


#: Figure name pattern → its spec. The first match wins; names are the saved stems.
FIGURES: dict[str, FigureSpec] = {
    r"01_dataset_sizes": FigureSpec("Rows per raw source and split.", "01_datasets"),
    r"01_label_distribution": FigureSpec(
        "Gold labels of each evaluation split.",
        "01_label_distribution",
        value="share",
        labels=("dataset", "label"),
    ),
    r"01_rationale_lengths": FigureSpec(
        "Human-rationale length per source (test splits; movies: all reviews).",
        "01_datasets",
        {"split": ["test", "all"]},
        value="mean_rationale_words",
        labels=("loader", "split"),
    ),
    r"02_confusion": FigureSpec(
        "Gold vs predicted label per dataset (the collapse onto one label).",
        "02_scoring_label_shares",
        {"prompt": "classify", "rule": "sequence"},
        labels=("dataset", "top_label"),
    ),
    r"02_human_alignment": FigureSpec("Prompted lists vs human rationales.", "02_human_alignment"),
    r"02_label_distribution": FigureSpec(
        "Predicted-label shares per dataset (the project's prompt and scoring rule).",
        "02_scoring_label_shares",
        {"prompt": "classify", "rule": "sequence"},
        labels=("dataset", "top_label"),
    ),
    r"03_attribution_agreement": FigureSpec(
        "Mean Spearman ρ between methods' word scores.", "03_attribution_agreement"
    ),
    r"03_attribution_heatmap_": FigureSpec(
        "Word scores of every method on one example (rows scaled to their maximum).", ""
    ),
    r"03_attribution_runtime": FigureSpec(
        "Seconds per example per method, averaged over datasets; per dataset, the extremes.",
        "03_attribution_health",
        value="seconds_per_example",
        labels=("dataset", "method"),
    ),
    r"03_ig_path": FigureSpec(
        "Integrated gradients' target along its path; median relative completeness error.",
        "03_ig_completeness",
        value="50%",
        labels=("dataset",),
    ),
    r"04_consistency_rank_auc": FigureSpec(
        "Rank AUC of each explanation against each attribution.",
        "04_consistency",
        {"metric": "rank_auc"},
    ),
    r"04_faithfulness_aopc": FigureSpec(
        "Comprehensiveness AOPC per method and dataset.", "04_faithfulness", {"metric": "comp_aopc"}
    ),
    r"04_next_token_log_ratio": FigureSpec(
        "Next-token faithfulness (mean of the soft sufficiency and comprehensiveness log"
        " ratios to random), all prompts.",
        "04_next_token_log_ratio",
        {"metric": "soft_ns_nc", "prompts": "all"},
        "log_ratio",
    ),
    r"04_validation_k_sensitivity": FigureSpec(
        "Top-k F1 against k.", "04_validation_k_sensitivity", {"metric": "f1"}
    ),
    r"04_validation_randomisation": FigureSpec(
        "Consistency as the model's layers are randomised.",
        "04_validation_randomisation",
        {"metric": "rank_auc"},
        labels=("explanation", "layers_randomised"),
    ),
    r"05_loss_plain": FigureSpec(
        "Training loss per step of the plain LoRA run; its mean over the last logged steps.",
        "05_loss_plain_summary",
        value="label_loss_last",
        labels=("run",),
    ),
    r"05_loss_regularised": FigureSpec(
        "Label loss and regulariser per step of each regularised run; the regulariser's mean"
        " over the last logged steps.",
        "05_loss_regularised_summary",
        value="reg_last",
        labels=("run",),
    ),
    r"0[57]_checkpoints": FigureSpec(
        "Accuracy over fine-tuning checkpoints.", "05_checkpoints", value="correct"
    ),
    r"05_competence_curves": FigureSpec(
        "Accuracy against training examples: the checkpoints beside the bench probes.",
        "05_competence_probes",
        value="accuracy",
    ),
    r"0[57]_(tradeoff|regularisation_tradeoff)": FigureSpec(
        "Regularised fine-tuning: each λ's accuracy and faithfulness.",
        "05_regularised",
        {"metric": "comp_aopc"},
    ),
    r"0[67]_(guided_)?tradeoff": FigureSpec(
        "Guided decoding: each condition's paired difference from its reference (greedy;"
        " beam search for the constrained one).",
        "06_guided_effects",
        {"metric": "comp_gain"},
        "mean_diff",
        labels=("dataset", "condition", "reference"),
    ),
    # one figure per case: the dataset and the case's rank within it come from the name
    r"07_failure_(?P<dataset>[^_]+)_(?P<row>\d+)$": FigureSpec(
        "A failure case chosen by rule (lowest rank AUC, or a list naming no input word).",
        "07_failure_cases",
        value="rank_auc",
        labels=("dataset", "id", "kind"),
    ),
    r"07_multilingual": FigureSpec(
        "XNLI accuracy per language against chance.",
        "07_multilingual",
        value="accuracy",
        labels=("language",),
    ),
}


def _value_column(table: pd.DataFrame, preferred: str | None) -> str | None:
    for col in (preferred, *VALUE_COLUMNS):
        if col and col in table and pd.api.types.is_numeric_dtype(table[col]):
            if table[col].notna().any():
                return col
    return None


def extremes(table: pd.DataFrame, value: str | None = None, labels: Sequence[str] = ()) -> str:
    """``"highest <col> 0.612 (esnli, input_x_gradient); lowest -0.031 (…)"`` from the
    rows' value column, each row named by ``labels`` (default: its first three text
    columns); one row is given as ``"<col> 0.246 (…)"``; ``""`` without a value column."""
    col = _value_column(table, value)
    if col is None:
        return ""
    labels = (
        list(labels)
        or [
            c
            for c in table.columns
            if table[c].dtype == object or pd.api.types.is_string_dtype(table[c])
        ][:3]
    )
    rows = table.dropna(subset=[col])

    def name(i: int) -> str:
        return _name(rows.loc[[i]], labels)

    hi, lo = rows[col].idxmax(), rows[col].idxmin()
    if len(table) == 1:
        return f"{col} {rows.loc[hi, col]:.3g}{name(hi)}"
    return (
        f"highest {col} {rows.loc[hi, col]:.3g}{name(hi)}; lowest {rows.loc[lo, col]:.3g}{name(lo)}"
    )


def _name(row: pd.DataFrame, labels: Sequence[str]) -> str:
    """`` (esnli, layers_randomised 3)``: a one-row frame's ``labels``, numbers named."""
    parts = [
        str(v) if isinstance(v, str) else f"{c} {v}"
        for c in labels
        if c in row and pd.notna(v := row[c].iloc[0])
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _read(tables_dir: Path, stem: str) -> pd.DataFrame | None:
    path = Path(tables_dir) / f"{stem}.csv"
    if not path.is_file():
        return None
    header = [0, 1] if stem == "02_task_performance" else 0
    table = pd.read_csv(path, header=header)
    if isinstance(table.columns, pd.MultiIndex):
        table.columns = [
            "_".join(c for c in col if not c.startswith("Unnamed")) for col in table.columns
        ]
    return table


def figure_caption(stem: str, tables_dir: Path) -> str:
    """One sentence for figure ``stem``: what it shows and its source table's extremes."""
    match, spec = next(
        ((m, s) for p, s in FIGURES.items() if (m := re.match(p, stem))), (None, None)
    )
    if spec is None:
        return "No caption rule for this figure (add one to captions.FIGURES)."
    if not spec.table:  # an illustration of single examples or steps: nothing to summarise
        return spec.shows
    table = _read(tables_dir, spec.table)
    if table is None:
        return f"{spec.shows} Source table `{spec.table}` not found."
    keys = match.groupdict()  # a per-case figure's dataset and row, from its name
    row = keys.pop("row", None)
    where = {**spec.where, **keys}
    missing = [col for col in where if col not in table]
    if missing:
        return f"{spec.shows} Source table `{spec.table}` has no column {missing}."
    for col, wanted in where.items():
        table = table[table[col].isin(wanted if isinstance(wanted, list) else [wanted])]
    if row is not None:
        if int(row) >= len(table):
            return f"{spec.shows} Source table `{spec.table}` has no row for it."
        table = table.iloc[[int(row)]]
        if table[spec.value].isna().all():
            return f"{spec.shows} From `{spec.table}`: no {spec.value}{_name(table, spec.labels)}."
    summary = extremes(table.reset_index(drop=True), spec.value, spec.labels)
    return f"{spec.shows} From `{spec.table}`" + (f": {summary}." if summary else ".")


def table_caption(path: Path) -> str:
    """One sentence for a table: its size and, with a value column, its extremes."""
    table = _read(path.parent, path.stem)
    size = f"{len(table)} rows × {table.shape[1]} columns"
    summary = extremes(table)
    return size + (f"; {summary}" if summary else f" ({', '.join(map(str, table.columns[:5]))})")
