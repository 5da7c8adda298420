"""Notebook 07's tables from the committed tables: the main table's sources, the paper
side-by-side's traceability, LaTeX macros that are valid and equal their tables, and a
missing table that names its notebook."""

from __future__ import annotations

import itertools
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from xalign_utils import analysis, paper_tables
from xalign_utils.config import FIGURES_DIR, REFERENCE_DIR, TABLES_DIR
from xalign_utils.summary import MissingTableError

MACRO = re.compile(r"^\\newcommand\{\\([A-Za-z]+)\}\{(-?[\d.]+|--)\}$")


@pytest.fixture(scope="module")
def main() -> pd.DataFrame:
    return analysis.main_results(TABLES_DIR)


def test_macro_stems_are_letters_only():
    assert analysis.macro_stem("regularised λ=0.1") == "RegularisedLamZeroPointOne"
    assert analysis.macro_stem("sst2") == "SstTwo"
    assert analysis.macro_stem("fine-tuned") == "FineTuned"


def test_main_table_names_a_source_for_every_number(main):
    assert set(main["model"]) >= {"base", "fine-tuned"}
    assert main["table"].notna().all() and main["value"].notna().mean() > 0.8
    base_acc = main[(main["model"] == "base") & (main["measure"] == "accuracy")]
    perf = pd.read_csv(TABLES_DIR / "02_task_performance.csv", header=[0, 1])
    esnli = perf[perf.iloc[:, 0] == "esnli"].iloc[0]
    assert base_acc.set_index("dataset").loc["esnli", "value"] == pytest.approx(
        analysis.parse_ci(esnli[("accuracy", "model")])[0]
    )


def test_every_empty_main_table_cell_has_a_reason(main):
    gaps = analysis.coverage(main)
    assert len(gaps) and (gaps["reason"] != "unexplained").all(), gaps
    assert gaps["reason"].is_unique
    measured = main[main["value"].notna()]
    have = set(
        zip(measured["model"], measured["measure"].astype(str), measured["dataset"], strict=True)
    )
    cells = set()
    for r in gaps.itertuples():
        cells |= set(
            itertools.product(*(v.split(", ") for v in (r.models, r.measures, r.datasets)))
        )
    assert not cells & have  # a reason never covers a measured cell
    grid = set(
        itertools.product(
            main["model"].unique(), analysis.MEASURES, ["esnli", "sst2", "hatexplain"]
        )
    )
    pooled = {(m, s) for m, s, d in have if d == "all"}
    assert grid - have - cells == {c for c in grid - have if c[:2] in pooled}  # all else explained
    assert ("fine-tuned", "ixg_comp_aopc", "esnli") in cells


def test_numbers_tex_is_valid_latex_and_equals_the_tables(main):
    numbers = analysis.numbers(main)
    tex = analysis.numbers_tex(numbers)
    names = []
    values = {}
    for line in tex.splitlines():
        if line.startswith("%"):
            continue
        match = MACRO.match(line)
        assert match, line
        names.append(match.group(1))
        values[match.group(1)] = match.group(2)
    assert len(names) == len(set(names)) == 4 * len(numbers)
    for r in numbers.itertuples():
        if pd.isna(r.value):
            assert values[r.macro] == "--"
        else:
            assert float(values[r.macro]) == pytest.approx(r.value, abs=5e-4)
        if pd.notna(r.n):
            assert values[r.macro + "N"] == f"{r.n:.0f}"


def test_committed_numbers_tex_matches_the_committed_tables(main):
    path = FIGURES_DIR / "numbers.tex"
    if not path.exists():
        pytest.skip("figures/numbers.tex is written by notebook 07 (make figures)")
    assert path.read_text() == analysis.numbers_tex(analysis.numbers(main))


def test_paper_numbers_are_the_reference_csvs(main):
    reference = pd.read_csv(REFERENCE_DIR / "fayyaz2024_tables.csv")
    side = paper_tables.fayyaz_side_by_side(TABLES_DIR, main, reference)
    for r in side.to_dict("records"):
        for model in paper_tables.OPEN_MODELS:
            ref = reference[
                (reference["table"] == r["table"]) & (reference["stage"] == r["stage"])
                & (reference["method"] == r["method"]) & (reference["model"] == model)
                & (reference["dataset"] == "esnli") & (reference["selection"] == r["selection"])
            ]  # fmt: skip
            assert len(ref) == 1 or pd.isna(r[model])
            if len(ref):
                assert r[model] == pytest.approx(ref["value"].iloc[0] / 100)
    unbound = side[(side["selection"] == "Unbound") & (side["stage"] == "pretrained")]
    assert len(unbound) == 1 and unbound["ours"].iloc[0] != "—"  # 02's Unbound lists
    directions = paper_tables.fayyaz_directions(TABLES_DIR, main, side)
    assert set(directions["here"]) <= {"yes", "no", "not measured", "undetermined (CIs overlap)"}
    majority = directions["paper"].str[0].astype(int).ge(2)
    expected = np.where(
        directions["here"].isin(["yes", "no"]),
        np.where(directions["here"].eq("yes") == majority, "yes", "no"),
        directions["here"].str.split(" (", regex=False).str[0],
    )
    assert (directions["reproduces"] == expected).all()
    assert directions["paper"].str.fullmatch(r"\d of 3 models").all()


def test_a_missing_table_names_the_notebook_that_writes_it(tmp_path):
    tables = tmp_path / "tables"
    shutil.copytree(TABLES_DIR, tables)
    (tables / "04_faithfulness.csv").unlink()
    with pytest.raises(MissingTableError, match="notebook 04"):
        analysis.main_results(tables)


def test_noiser_side_by_side_is_the_same_setting_and_traceable():
    reference = pd.read_csv(REFERENCE_DIR / "noiser2025_table1.csv")
    table = paper_tables.noiser_side_by_side(TABLES_DIR, reference)
    ours = pd.read_csv(TABLES_DIR / "04_next_token_log_ratio.csv")
    ours = ours[(ours["metric"] == "soft_ns_nc") & (ours["prompts"] == "all")]
    ours = ours.set_index(["dataset", "method"])
    assert set(table["dataset"]) == {"knowns", "longra"}
    for r in table.itertuples():
        paper = reference[
            (reference["method"] == r.method)
            & (reference["dataset"] == r.dataset)
            & (reference["model"] != "Average")
        ]
        assert r.paper_log_ratio == pytest.approx(paper["value"].mean())
        method = paper_tables.NOISER_METHODS[r.method]
        assert r.ours_log_ratio == pytest.approx(ours.loc[(r.dataset, method), "log_ratio"])
    for _, part in table.groupby("dataset"):
        assert sorted(part["paper_rank"]) == list(range(1, len(part) + 1))
    comparison = pd.read_csv(TABLES_DIR / "04_next_token_noiser.csv")
    directions = paper_tables.noiser_directions(table, comparison)
    assert set(directions["ours"]) <= {"yes", "no", "undetermined"}
    assert (directions["paper"] == "yes").all()  # the paper's own finding, on both datasets


def test_a_direction_reproduces_only_when_our_cis_point_the_papers_way():
    r = paper_tables._reproduces
    assert r("yes", [True, True, False]) == "yes" and r("no", [True, True, False]) == "no"
    assert r("no", [False, False, True]) == "yes" and r("yes", [False, True, False]) == "no"
    assert r("undetermined (CIs overlap)", [True] * 3) == "undetermined"
    assert r("not measured", [True] * 3) == "not measured"
    assert r("yes", [True, False]).startswith("undetermined")
