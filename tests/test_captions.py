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


def test_a_per_case_figure_is_captioned_by_its_own_row(tmp_path):
    pd.DataFrame(
        {"dataset": ["esnli", "esnli", "sst2"], "id": ["e1", "e2", "s1"],
         "kind": ["lowest rank AUC", "names no input word", "lowest rank AUC"],
         "rank_auc": [0.25, None, 0.42]}
    ).to_csv(tmp_path / "07_failure_cases.csv", index=False)  # fmt: skip
    assert captions.figure_caption("07_failure_sst2_0", tmp_path).endswith(
        "rank_auc 0.42 (sst2, s1, lowest rank AUC)."
    )
    assert "no rank_auc (esnli, e2" in captions.figure_caption("07_failure_esnli_1", tmp_path)
    assert "no row for it" in captions.figure_caption("07_failure_esnli_2", tmp_path)


def test_numeric_keys_name_their_column():
    table = pd.DataFrame(
        {"explanation": ["a", "b"], "layers_randomised": [0, 31], "value": [0.8, 0.5]}
    )
    text = captions.extremes(table, labels=("explanation", "layers_randomised"))
    assert (
        text == "highest value 0.8 (a, layers_randomised 0); lowest 0.5 (b, layers_randomised 31)"
    )


def test_every_caption_rule_reads_a_committed_table_and_its_columns():
    """A rule naming a table the notebooks do not write (or a column it lacks) would
    caption its figure "not found" in every run."""
    from xalign_utils.config import TABLES_DIR

    for pattern, spec in captions.FIGURES.items():
        if not spec.table:
            continue
        table = captions._read(TABLES_DIR, spec.table)
        assert table is not None, f"{pattern}: {spec.table}.csv is not in {TABLES_DIR}"
        wanted = [*spec.where, *spec.labels, *([spec.value] if spec.value else [])]
        missing = [c for c in wanted if c not in table]
        assert not missing, f"{pattern}: {spec.table} lacks {missing}"
