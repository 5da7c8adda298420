"""The XNLI track: one dataset per language, its own run folder, and notebook 07's
per-language table from stored tables (accuracy against chance, consistency vs nulls)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xalign_utils import config, multilingual, store
from xalign_utils.data import registry


def test_each_language_is_a_dataset_of_its_own(raw_dir):
    exs = registry.load("xnli-de", "dev", raw_dir)
    assert len(exs) == 2490 and {ex.dataset for ex in exs} == {"xnli-de"}
    assert exs[0].id == "xnli-de-0" and registry.LABELS["xnli-de"] == registry.LABELS["esnli"]


def test_a_track_keeps_its_own_folders():
    base = config.load_config("default")
    track = multilingual.track_config(base)
    assert track.run_name == "default+xnli-en+xnli-de+xnli-fr"
    assert track.run_dir.name == track.run_name and base.run_dir.name == "default"
    assert track.figures_dir == config.FIGURES_DIR / "tracks" / track.run_name
    assert config.load_config("default", datasets="esnli,sst2,hatexplain").run_name == "default"
    assert config.load_config("default", adapter="ft").figures_dir.name == "ft"


@pytest.fixture()
def track_tables(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path)
    cfg = config.load_config("smoke")
    track = multilingual.track_config(cfg, ("xnli-en", "xnli-de"))
    rng = np.random.default_rng(0)
    preds, cons = [], []
    for lang, acc in (("xnli-en", 0.9), ("xnli-de", 1 / 3)):
        for i in range(30):
            label = ("entailment", "neutral", "contradiction")[i % 3]
            right = i < round(acc * 30)
            preds.append({"id": f"{lang}-{i}", "dataset": lang, "label": label,
                          "pred": label if right else "neutral" if label != "neutral" else "entailment"})  # fmt: skip
            for method, auc in (("input_x_gradient", 0.8), ("random", 0.5), ("word_rarity", 0.6)):
                cons.append({"id": f"{lang}-{i}", "dataset": lang, "method": method,
                             "explanation": multilingual.EXPLANATION,
                             "rank_auc": auc + rng.normal(0, 0.05)})  # fmt: skip
    store.write_table(pd.DataFrame(preds), track, "02_baselines", "predictions")
    store.write_table(pd.DataFrame(cons), track, "04_metrics_validation", "consistency")
    return cfg


def test_per_language_measures_the_caveat(track_tables):
    cfg = track_tables
    assert multilingual.available(cfg, ("xnli-en", "xnli-de"))
    table = multilingual.per_language(cfg, ("xnli-en", "xnli-de")).set_index("language")
    assert table.loc["en", "accuracy"] == pytest.approx(0.9) and table.loc["en", "n"] == 30
    assert table.loc["en", "p_above_chance"] < 1e-6 < table.loc["de", "p_above_chance"]
    assert table.loc["de", "chance"] == pytest.approx(1 / 3)
    assert table.loc["en", "rank_auc"] == pytest.approx(0.8, abs=0.03)
    assert table.loc["en", "best_null"] == "word_rarity"  # random is a null, rarity the strongest
    assert table.loc["en", "diff_vs_null_ci_low"] > 0  # paired over the same examples
    assert table.loc["en", "p_above_chance_holm"] >= table.loc["en", "p_above_chance"]
    assert table.loc["en", "rank_auc_undefined"] == 0
    multilingual.figure(table.reset_index())


def test_a_missing_track_names_the_command(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path)
    cfg = config.load_config("default")
    assert not multilingual.available(cfg)
    with pytest.raises(FileNotFoundError, match="make xnli PROFILE=default"):
        multilingual.per_language(cfg)
