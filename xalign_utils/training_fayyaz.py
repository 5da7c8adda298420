"""Fayyaz et al.'s Tables 2 and 4 on the fine-tuned model: the final adapter measured as
notebooks 02-04 measure the base model.

Notebook 05's checkpoints track what the paper tracks over epochs (Tables 3 and 5):
input×gradient's and the prompted list's Top-Var alignment and input×gradient's flip rate.
The paper's Tables 2 and 4 also report, after fine-tuning, attention's, saliency's and
random words' Top-Var alignment with the human rationale and the flip rate of masking each
selection (the prompted list, each method's top words, random words, the human rationale,
every word). One pass of the final adapter over the checkpoints' evaluation examples of
the datasets the paper reports (:func:`paper_datasets`) measures them all, with the same
selections as notebook 04 (:func:`~xalign_utils.metric_tables.topvar_selections`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .attribution import attribute
from .attribution.status import usable
from .config import REFERENCE_DIR, RunConfig
from .explanations import elicit, parse_outputs
from .faithfulness import flip_table
from .metric_tables import TABLE4_PROMPTED, StageInputs, topvar_selections
from .plausibility import topvar_f1
from .schema import Example
from .stats import ci_table, token_f1
from .store import cached
from .training_runs import STAGE, load_run_model

#: The attribution methods of the paper's Tables 2 and 4 (and the random null).
METHODS = ("attention", "saliency", "input_x_gradient", "random")
#: Columns of :func:`final_selections_table`.
COLUMNS = ("id", "dataset", "selection", "n_erased", "pred", "pred_erased", "flipped", "f1")


def paper_datasets(train_datasets: Sequence[str], reference: Path | None = None) -> list[str]:
    """The datasets of ``train_datasets`` that Fayyaz et al.'s Table 2 reports (e-SNLI
    of the defaults), in the run's order."""
    ref = pd.read_csv(reference or REFERENCE_DIR / "fayyaz2024_tables.csv")
    reported = set(ref.loc[ref["table"] == "2_alignment_f1", "dataset"])
    return [d for d in train_datasets if d in reported]


def final_selections_table(
    model, tokenizer, examples: Sequence[Example], cfg: RunConfig
) -> pd.DataFrame:
    """Per example × Table-4 selection of ``model``: ``f1`` (Top-Var F1 with the human
    rationale, as 04 and 02 measure the base model's; NaN for the human rationale and
    every word, trivially 1 and the rationale's share) and ``flipped`` (masking the
    selection's words changes the prediction), with ``n_erased``."""
    by_id = {ex.id: ex for ex in examples}
    attributions = usable(
        attribute(
            model, tokenizer, examples, list(METHODS), batch_size=cfg.batch_size, target="pred"
        )
    )
    raw = elicit(
        model,
        tokenizer,
        examples,
        "rationale_topk",
        fixed_k=cfg.topk_fixed,
        max_new_tokens=cfg.max_new_tokens,
        batch_size=cfg.gen_batch_size,
    )
    evaluation: dict[str, list[Example]] = {}
    for ex in examples:
        evaluation.setdefault(ex.dataset, []).append(ex)
    inputs = StageInputs(evaluation, attributions, parse_outputs(raw, by_id), raw, 0)
    selections = topvar_selections(inputs, cfg.topk_fixed)
    flips = flip_table(
        model,
        tokenizer,
        examples,
        selections,
        strategy="mask",
        mask_text=cfg.mask_text,
        batch_size=cfg.batch_size,
    )
    # as the base model's are measured: a method's Top-Var F1 ranks the annotated words
    # (04's plausibility), the prompted list is taken as written (02, 05's checkpoints)
    f1 = {
        (rec.method, rec.id): topvar_f1(rec.magnitude, by_id[rec.id].flat_rationale())
        for rec in attributions.itertuples()
    }
    f1 |= {
        (TABLE4_PROMPTED, i): token_f1(list(pos), by_id[i].flat_rationale())
        for i, pos in selections.get(TABLE4_PROMPTED, {}).items()
        if by_id[i].rationale_positions()
    }
    keys = zip(flips["selection"], flips["id"], strict=True)
    return flips.assign(f1=[f1.get(key, np.nan) for key in keys])


def run_final_selections(
    cfg: RunConfig, name: str, evaluation: Mapping[str, Sequence[Example]]
) -> pd.DataFrame:
    """:func:`final_selections_table` of run ``name``'s final adapter (merged) on the
    evaluation examples of :func:`paper_datasets`; stored as ``final_selections_<name>``."""

    def compute() -> pd.DataFrame:
        examples = [ex for d in paper_datasets(list(evaluation)) for ex in evaluation[d]]
        if not examples:  # trained on none of the paper's datasets
            return pd.DataFrame(columns=[*COLUMNS, "run"])
        model, tokenizer = load_run_model(cfg, name, for_gradients=True)
        return final_selections_table(model, tokenizer, examples, cfg).assign(run=name)

    return cached(cfg, STAGE, f"final_selections_{name}", compute, training=True, code=__name__)


def summary(per_example: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per dataset × selection: mean Top-Var F1 and flip rate with bootstrap 95% CIs over
    examples, n and the undefined count (a long :func:`~xalign_utils.stats.ci_table`)."""
    return ci_table(per_example, ["dataset", "selection"], ["f1", "flipped"], seed=seed)
