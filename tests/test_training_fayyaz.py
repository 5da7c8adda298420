"""Fayyaz et al.'s Tables 2 and 4 on the final adapter: the datasets, every selection of
notebook 04, and Top-Var F1 only where it means something."""

from __future__ import annotations

import numpy as np
import pytest

from xalign_utils import config, data, training_fayyaz
from xalign_utils.metric_tables import TABLE4_ALL, TABLE4_HUMAN


def test_only_the_datasets_the_paper_reports():
    assert training_fayyaz.paper_datasets(["sst2", "esnli", "hatexplain"]) == ["esnli"]
    assert training_fayyaz.paper_datasets(["sst2"]) == []


@pytest.mark.slow
def test_every_selection_is_masked_and_scored(planted_model, tokenizer):
    examples = data.make_synthetic(8, seed=0, length=6)
    cfg = config.load_config("smoke")
    out = training_fayyaz.final_selections_table(planted_model, tokenizer, examples, cfg)
    assert set(training_fayyaz.COLUMNS) <= set(out.columns)
    chosen = set(out["selection"])
    assert {*training_fayyaz.METHODS, TABLE4_HUMAN, TABLE4_ALL} <= chosen
    for selection, part in out.groupby("selection"):
        assert len(part) == len(examples) and part["id"].is_unique, selection
    fixed = out[out["selection"].isin([TABLE4_HUMAN, TABLE4_ALL])]
    assert fixed["f1"].isna().all()  # trivially 1, or the rationale's share: not reported
    ranked = out[out["selection"].isin(training_fayyaz.METHODS)]
    assert ranked["f1"].between(0, 1).all()
    # the planted trigger alone decides the answer: a gradient method finds it, and
    # masking it (the human rationale) flips more predictions than masking random words
    mean = out.groupby("selection")[["f1", "flipped"]].mean()
    assert mean.at["input_x_gradient", "f1"] > mean.at["random", "f1"]
    assert mean.at[TABLE4_HUMAN, "flipped"] > mean.at["random", "flipped"]
    assert np.isfinite(out.loc[out["selection"] == TABLE4_ALL, "flipped"]).all()
    summary = training_fayyaz.summary(out)
    assert set(summary["metric"]) == {"f1", "flipped"}
