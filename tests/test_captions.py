"""Captions computed from the data behind each figure and table."""

from __future__ import annotations

import pandas as pd

from xalign_utils import captions


def test_extremes_name_the_rows_they_come_from():
    table = pd.DataFrame(
        {
            "dataset": ["esnli", "sst2", "esnli"],
            "method": ["a", "b", "c"],
            "value": [0.2, -0.1, 0.5],
        }
    )
    text = captions.extremes(table)
    assert text == "highest value 0.5 (esnli, c); lowest -0.1 (sst2, b)"
    assert captions.extremes(table.drop(columns="value")) == ""


def test_a_figure_caption_reads_its_source_table(tmp_path):
    pd.DataFrame(
        {"dataset": ["esnli", "esnli"], "method": ["lime", "noiser"], "metric": ["comp_aopc"] * 2,
         "value": [0.05, 0.12]}
    ).to_csv(tmp_path / "04_faithfulness.csv", index=False)  # fmt: skip
    text = captions.figure_caption("04_faithfulness_aopc", tmp_path)
    assert text.startswith("Comprehensiveness AOPC") and "0.12 (esnli, noiser" in text
    assert "not found" in captions.figure_caption("04_consistency_rank_auc", tmp_path)
    assert "No caption rule" in captions.figure_caption("99_unknown", tmp_path)
    assert captions.figure_caption("03_attribution_heatmap_sst2_0", tmp_path).startswith("Word")
    assert captions.table_caption(tmp_path / "04_faithfulness.csv").startswith("2 rows × 4 columns")
