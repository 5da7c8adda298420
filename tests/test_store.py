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
    # the code hash sits in the file's metadata, not in a column
    meta = {"code_hash": store.code_hash(), "code_modules": "all"}
    assert table.attrs == meta == store.table_metadata(cfg, "02_baselines", "accuracy")
    assert store.table_metadata(cfg, "02_baselines", "missing") == {}


def test_a_seed_column_of_other_seeds_is_refused_not_overwritten(cfg):
    runs = pd.DataFrame({"x": [1, 2], "seed": [cfg.seed, cfg.seed + 1]})  # e.g. training seeds
    with pytest.raises(ValueError, match="rename it"):
        store.write_table(runs, cfg, "05_training", "regularised")
    assert not store.table_path(cfg, "05_training", "regularised").exists()
    same = pd.DataFrame({"x": [1], "seed": [cfg.seed]})  # a table read back and rewritten
    assert store.write_table(same, cfg, "05_training", "again").is_file()


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


def test_tables_of_a_run_on_an_adapter_record_it(cfg):
    tuned = config.load_config("smoke", adapter="smoke-plain-s13")
    table = store.cached(tuned, "02_baselines", "rationales", Compute())
    assert set(table["adapter"]) == {"smoke-plain-s13"}
    assert set(table["config_hash"]) == {tuned.hash()} != {cfg.hash()}
    assert tuned.run_dir == cfg.run_dir.with_name("smoke+smoke-plain-s13")
    assert "adapter" not in store.cached(cfg, "02_baselines", "rationales", Compute())


def test_training_tables_are_keyed_by_the_training_settings(cfg):
    trained = Compute()
    store.cached(cfg, "05_training", "checkpoints", trained, training=True)
    store.cached(
        config.load_config("smoke", train_lr=1e-3),
        "05_training",
        "checkpoints",
        trained,
        training=True,
    )
    assert trained.calls == 2
    assert config.load_config("smoke", train_lr=1e-3).hash(attribution=True) == cfg.hash(
        attribution=True
    )


def test_reading_a_missing_stage_says_which_notebook_to_run(cfg):
    with pytest.raises(FileNotFoundError) as err:
        store.read_table(cfg, "03_attribution", "scores")
    message = str(err.value)
    assert "03_attribution" in message and "scores.parquet" in message
    assert "make all PROFILE=smoke" in message


# --------------------------------------------------------------------------- code hash


@pytest.fixture()
def package(tmp_path, monkeypatch):
    """A small package standing in for ``xalign_utils``: ``a`` imports ``b``; ``c`` is apart."""
    root = tmp_path / "pkg"
    (root / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "",
        "a.py": '"""Module a."""\n\nfrom .b import f\n\n\ndef g():\n    return f()\n',
        "b.py": 'def f():\n    """Docs."""\n    return 1\n',
        "c.py": "X = 1\n",
        "sub/__init__.py": "",
        "sub/d.py": "from ..c import X\nfrom xalign_utils.b import f\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    monkeypatch.setattr(store, "PACKAGE_DIR", root)
    return root


def test_code_hash_follows_imports_and_ignores_comments_and_docstrings(package):
    assert store.code_modules("a") == ["a", "b"]
    assert store.code_modules("xalign_utils.sub.d") == ["b", "c", "sub", "sub.d"]
    assert store.code_modules(None) == ["", "a", "b", "c", "sub", "sub.d"]
    assert store.code_modules(False) == [] and store.code_hash(False) == ""
    with pytest.raises(ValueError, match="not modules"):
        store.code_modules("nowhere")
    a, whole = store.code_hash("a"), store.code_hash()
    (package / "b.py").write_text('# a comment\ndef f():\n    """New docs."""\n\n    return 1\n')
    assert store.code_hash("a") == a and store.code_hash() == whole  # same code
    (package / "c.py").write_text("X = 2\n")
    assert store.code_hash("a") == a  # a does not import c
    assert store.code_hash() != whole
    (package / "b.py").write_text("def f():\n    return 2\n")
    assert store.code_hash("a") != a


def test_cached_recomputes_when_the_code_hash_changes(cfg, package):
    compute = Compute()
    first = store.cached(cfg, "stage", "t", compute, code="a")
    assert first.attrs == {"code_hash": store.code_hash("a"), "code_modules": "a, b"}
    store.cached(cfg, "stage", "t", compute, code="a")
    assert compute.calls == 1  # unchanged code: reused
    (package / "b.py").write_text('def f():\n    """Only the docs changed."""\n    return 1\n')
    (package / "c.py").write_text("X = 3\n")  # not imported by a
    store.cached(cfg, "stage", "t", compute, code="a")
    assert compute.calls == 1
    (package / "b.py").write_text("def f():\n    return 2\n")
    again = store.cached(cfg, "stage", "t", compute, code="a")
    assert compute.calls == 2 and again.attrs["code_hash"] == store.code_hash("a")
    store.cached(cfg, "stage", "t", compute, code="a")
    assert compute.calls == 2
    # the default keys by the whole package: any code change recomputes
    store.cached(cfg, "stage", "whole", compute)
    (package / "c.py").write_text("X = 4\n")
    store.cached(cfg, "stage", "whole", compute)
    store.cached(cfg, "stage", "whole", compute)
    assert compute.calls == 4
    # code=False: the config hash alone, as before code hashing
    (package / "a.py").write_text("Y = 0\n")
    store.cached(cfg, "stage", "whole", compute, code=False)
    assert compute.calls == 4


def test_a_table_without_a_code_hash_is_stale(cfg):
    path = store.table_path(cfg, "stage", "t")
    path.parent.mkdir(parents=True)
    old = pd.DataFrame({"id": ["a"], "score": [0], "config_hash": cfg.hash(), "seed": cfg.seed})
    old.to_parquet(path, index=False)  # as written before code hashing
    compute = Compute()
    assert list(store.cached(cfg, "stage", "t", compute)["score"]) == [1, 2]
    assert compute.calls == 1 and store.table_metadata(cfg, "stage", "t")["code_hash"]
    old.to_parquet(path, index=False)
    assert list(store.cached(cfg, "stage", "t", compute, code=False)["score"]) == [0]


def test_a_table_from_write_table_is_reused_by_cached(cfg):
    store.write_table(pd.DataFrame({"id": ["x"], "score": [7]}), cfg, "s", "t", attribution=True)
    compute = Compute()
    reused = store.cached(cfg, "s", "t", compute, attribution=True)
    assert compute.calls == 0 and list(reused["score"]) == [7]
    # the code hash of what a table was read from does not leak into a derived table
    store.write_table(reused.assign(score=8), cfg, "s", "u", code="stats")
    assert store.table_metadata(cfg, "s", "u")["code_modules"] == "stats"
