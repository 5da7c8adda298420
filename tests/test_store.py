"""Result tables on disk: atomic writes, reuse keyed by the config hash, helpful errors."""

from __future__ import annotations

import pandas as pd
import pytest

from xalign_utils import config, store


@pytest.fixture()
def cfg(tmp_path, monkeypatch):
    """The smoke profile with its run folder in a scratch directory."""
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path / "runs")
    return config.load_config("smoke")


class Compute:
    """A table computation that counts its calls."""

    def __init__(self, value: int = 1):
        self.calls, self.value = 0, value

    def __call__(self) -> pd.DataFrame:
        self.calls += 1
        return pd.DataFrame({"id": ["a", "b"], "score": [self.value, self.value + 1]})


def test_write_table_adds_hash_and_seed_and_leaves_no_temporary(cfg, tmp_path):
    path = store.write_table(pd.DataFrame({"x": [1, 2]}), cfg, "02_baselines", "accuracy")
    assert path == tmp_path / "runs/smoke/02_baselines/accuracy.parquet"
    table = store.read_table(cfg, "02_baselines", "accuracy")
    assert list(table.columns) == ["x", "config_hash", "seed"]
    assert set(table["config_hash"]) == {cfg.hash()} and set(table["seed"]) == {cfg.seed}
    assert [p.name for p in path.parent.iterdir()] == ["accuracy.parquet"]


def test_an_interrupted_write_leaves_the_old_table(cfg, monkeypatch):
    store.write_table(pd.DataFrame({"x": [1]}), cfg, "stage", "t")
    real = pd.DataFrame.to_parquet

    def crash(self, path, *args, **kwargs):
        real(self.iloc[:0], path, *args, **kwargs)  # a partial file, then the crash
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_parquet", crash)
    with pytest.raises(KeyboardInterrupt):
        store.write_table(pd.DataFrame({"x": [2, 3]}), cfg, "stage", "t")
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)
    assert list(store.read_table(cfg, "stage", "t")["x"]) == [1]


def test_cached_reuses_a_matching_table_and_recomputes_a_stale_one(cfg):
    compute = Compute()
    first = store.cached(cfg, "stage", "t", compute)
    again = store.cached(cfg, "stage", "t", compute)
    assert compute.calls == 1
    pd.testing.assert_frame_equal(first, again)
    other = config.load_config("smoke", seed=cfg.seed + 1)  # same file, another hash
    fresh = store.cached(other, "stage", "t", Compute(value=10))
    assert list(fresh["score"]) == [10, 11] and set(fresh["config_hash"]) == {other.hash()}
    store.cached(cfg, "stage", "t", compute)  # the stored table is now the other config's
    assert compute.calls == 2
    store.cached(cfg, "stage", "t", compute, force=True)
    assert compute.calls == 3


def test_attribution_tables_are_keyed_by_the_attribution_settings(cfg):
    plain, attributed = Compute(), Compute()
    store.cached(cfg, "02_baselines", "rationales", plain)
    table = store.cached(cfg, "03_attribution", "scores", attributed, attribution=True)
    assert set(table["config_hash"]) == {cfg.hash(attribution=True)} != {cfg.hash()}
    tuned = config.load_config("smoke", ig_steps=cfg.ig_steps + 1)
    store.cached(tuned, "02_baselines", "rationales", plain)
    store.cached(tuned, "03_attribution", "scores", attributed, attribution=True)
    assert plain.calls == 1  # an attribution setting does not invalidate stage 02
    assert attributed.calls == 2  # but does invalidate the attribution table


def test_reading_a_missing_stage_says_which_notebook_to_run(cfg):
    with pytest.raises(FileNotFoundError) as err:
        store.read_table(cfg, "03_attribution", "scores")
    message = str(err.value)
    assert "03_attribution" in message and "scores.parquet" in message
    assert "make all PROFILE=smoke" in message
