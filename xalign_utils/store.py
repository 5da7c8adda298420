"""Result tables on disk: parquet under ``runs/<profile>/<stage>/``, keyed by config hash.

Writes are atomic (temporary file, then rename), so an interrupted run never leaves a
half-written table; :func:`cached` reuses a table whose config hash matches, which is
how a re-run resumes from the last finished stage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .config import RunConfig


def table_path(cfg: RunConfig, stage: str, name: str) -> Path:
    """``runs/<profile>/<stage>/<name>.parquet``."""
    return cfg.run_dir / stage / f"{name}.parquet"


def write_table(
    df: pd.DataFrame, cfg: RunConfig, stage: str, name: str, *, attribution: bool = False
) -> Path:
    """Write ``df`` with ``config_hash`` and ``seed`` columns, atomically.

    ``attribution=True`` keys the table by the hash that includes the attribution
    settings (see :meth:`RunConfig.hash`)."""
    path = table_path(cfg, stage, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = df.copy()
    out["config_hash"] = cfg.hash(attribution=attribution)
    out["seed"] = cfg.seed
    tmp = path.with_suffix(".parquet.tmp")
    out.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def read_table(cfg: RunConfig, stage: str, name: str) -> pd.DataFrame:
    """Read a stage's table.

    Raises:
        FileNotFoundError: the stage has not been run for this profile; says which notebook.
    """
    path = table_path(cfg, stage, name)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: run the notebook that writes stage {stage!r} first "
            f"(`make all PROFILE={cfg.profile}` runs them in order)."
        )
    return pd.read_parquet(path)


def cached(
    cfg: RunConfig,
    stage: str,
    name: str,
    compute: Callable[[], pd.DataFrame],
    force: bool = False,
    *,
    attribution: bool = False,
) -> pd.DataFrame:
    """Return the stored table when its config hash matches ``cfg``, else compute and store it."""
    path = table_path(cfg, stage, name)
    if path.is_file() and not force:
        df = pd.read_parquet(path)
        if len(df) and (df["config_hash"] == cfg.hash(attribution=attribution)).all():
            return df
    write_table(compute(), cfg, stage, name, attribution=attribution)
    return pd.read_parquet(path)
