"""Same numbers before and after a refactor: notebook 03's attribution plan and notebook 04's
erasure metrics on a small default-profile subset, computed by whichever ``xalign_utils`` is
first on ``sys.path``, then compared exactly.

Issue 10 (the package restructure) was checked this way, the pre-restructure commit
d3bb631 against b86eceb, both run with the same environment::

    git worktree add /tmp/before d3bb631 && git worktree add /tmp/after b86eceb
    PYTHONPATH=/tmp/before .venv/bin/python bench/same_numbers.py run /tmp/same_before
    PYTHONPATH=/tmp/after .venv/bin/python bench/same_numbers.py run /tmp/same_after
    .venv/bin/python bench/same_numbers.py compare /tmp/same_before /tmp/same_after

(≈ 3 min per run on 2 cores; reads notebook 01's default output in this checkout,
``data/processed/default/``). Both
commits must expose ``runner.attribute_profile`` and ``faithfulness.erasure_table`` with
these signatures; commits after issue 11 changed the attribution target on purpose, so
they are compared with each other, not with these.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

#: A cut-down default profile: every method, few examples and steps.
SMALL = {
    "n_attr": 4,
    "n_attr_costly": 2,
    "n_attr_noiser": 1,
    "ig_steps": 16,
    "n_samples": 16,
    "noise_samples": 2,
    "bisection_steps": 2,
}
ERASED_METHODS = ["saliency", "input_x_gradient", "random", "occlusion"]
KEYS = ["dataset", "id", "method"]
#: Notebook 01's default output in this checkout (a bare worktree of the old commit has none).
PROCESSED = Path(__file__).resolve().parents[1] / "data" / "processed" / "default"


def run(out: Path) -> None:
    """Write ``attr.parquet`` (every method) and ``faith.parquet`` (erasure metrics)."""
    from xalign_utils import config, data, faithfulness, models, runner

    cfg = config.load_config("default", **SMALL)
    examples = {n: data.load_processed(PROCESSED, n, "eval") for n in cfg.datasets}
    with tempfile.TemporaryDirectory() as work:
        table = runner.attribute_profile(cfg, examples, Path(work), device="cpu")
    out.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out / "attr.parquet")
    model, tok = models.load_model(None, for_gradients=True, device="cpu")
    by_id = {ex.id: ex for exs in examples.values() for ex in exs}
    first_two = {ex.id for exs in examples.values() for ex in exs[:2]}
    chosen = table[table["method"].isin(ERASED_METHODS) & table["id"].isin(first_two)]
    k = {i: max(1, sum(1 for r in by_id[i].flat_rationale() if r == 1)) for i in chosen["id"]}
    faith = faithfulness.erasure_table(model, tok, chosen, by_id, k_by_id=k, batch_size=16)
    faith.to_parquet(out / "faith.parquet")
    print(f"wrote {len(table)} attribution rows and {len(faith)} erasure rows to {out}")


def _difference(a: pd.Series, b: pd.Series) -> float | str:
    """Largest absolute difference of a numeric or per-word-list column, or whether a
    text column differs."""
    if pd.api.types.is_numeric_dtype(a):
        return float(np.nanmax(np.abs(a.to_numpy(float) - b.to_numpy(float)), initial=0.0))
    first = a.iloc[0] if len(a) else None
    if isinstance(first, list | np.ndarray) and not isinstance(first[0] if len(first) else 0, str):
        diffs = [
            np.max(np.abs(np.asarray(x, float) - np.asarray(y, float)), initial=0.0)
            if len(x) == len(y)
            else np.inf
            for x, y in zip(a, b, strict=True)
        ]
        return float(max(diffs, default=0.0))
    return "same" if (a.astype(str) == b.astype(str)).all() else "differs"


def compare(before: Path, after: Path) -> bool:
    """Print the largest difference per column; True when everything is identical
    (wall-clock columns aside)."""
    identical = True
    for name in ("attr", "faith"):
        a, b = (pd.read_parquet(d / f"{name}.parquet") for d in (before, after))
        if len(a) != len(b) or set(a.columns) != set(b.columns):
            print(f"{name}: shapes differ {a.shape} vs {b.shape}")
            identical = False
            continue
        keys = [c for c in KEYS if c in a.columns]
        a, b = (t.sort_values(keys).reset_index(drop=True) for t in (a, b))
        for column in a.columns:
            if "second" in column or column.endswith("_s"):
                continue
            diff = _difference(a[column], b[column])
            identical &= diff in (0.0, "same")
            print(f"{name:5s} {column:22s} {diff}")
    print("identical" if identical else "DIFFERENT")
    return identical


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run":
        run(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(0 if compare(Path(sys.argv[2]), Path(sys.argv[3])) else 1)
    else:
        sys.exit(f"usage: {sys.argv[0]} run OUT | compare BEFORE AFTER")
