"""Helpers of the README's generated block: reading a table (with an error that names
the notebook to run), formatting values with CIs, pipe tables and test grids."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

DATASET_NAMES = {"esnli": "e-SNLI", "sst2": "SST-2", "hatexplain": "HateXplain"}


class MissingTableError(FileNotFoundError):
    """A table the summary needs is missing: names the notebook that writes it."""


def read_table(tables_dir: Path, name: str, header: int | list[int] = 0) -> pd.DataFrame:
    """``tables_dir/name.csv``, or an error naming the notebook (its number prefix) to run."""
    path = Path(tables_dir) / f"{name}.csv"
    if not path.exists():
        raise MissingTableError(
            f"{path} is missing: run notebook {name[:2]} (`make {name[:2]}`) to write it"
        )
    return pd.read_csv(path, header=header)


def fmt_ci(value: float, low: float, high: float, digits: int = 2, signed: bool = False) -> str:
    """``0.12 [0.05, 0.20]`` (``—`` for an undefined value)."""
    if pd.isna(value):
        return "—"
    sign = "+" if signed else ""
    return f"{value:{sign}.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def _markdown(df: pd.DataFrame) -> str:
    """A pipe table (no tabulate dependency); cells as strings."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def _pivot_cells(table: pd.DataFrame, column: str | None, cell: Callable) -> pd.DataFrame:
    """method × ``column`` (or one column) grid of formatted cells."""
    table = table.assign(cell=table.apply(cell, axis=1))
    if column is None:
        return table[["method", "cell"]].rename(columns={"cell": "difference"})
    grid = table.pivot(index="method", columns=column, values="cell")
    grid = grid[list(dict.fromkeys(table[column]))].reindex(list(dict.fromkeys(table["method"])))
    return grid.reset_index().fillna("—")


def _test_cell(r: pd.Series) -> str:
    """A paired test's row: mean difference [CI], n, and ✓ when Holm rejects."""
    mark = " **✓**" if str(r["reject"]) == "True" else ""
    ci = fmt_ci(r["mean_diff"], r["diff_ci_low"], r["diff_ci_high"], signed=True)
    return f"{ci} n={int(r['n'])}{mark}"


def n_tested(tests: pd.DataFrame) -> int:
    """Holm's m for a table of primary tests: the rows with a p value (a comparison with no
    pairs has none; tables written without a ``p`` column count every row)."""
    return int(tests["p"].notna().sum()) if "p" in tests else len(tests)
