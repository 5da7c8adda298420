"""Execute every numbered notebook, in order, under the smoke profile (as `make all` does)."""

from __future__ import annotations

import pytest

from xalign_utils.config import NOTEBOOKS_DIR, RUNS_DIR

NOTEBOOKS = sorted(NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.notebook
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_runs_under_smoke(notebook):
    import papermill as pm

    out = RUNS_DIR / "smoke" / notebook.name
    out.parent.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        str(notebook),
        str(out),
        parameters={"PROFILE": "smoke"},
        kernel_name="python3",
        progress_bar=False,
        cwd=str(NOTEBOOKS_DIR),
    )
