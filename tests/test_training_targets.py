"""The final adapter against the accuracy targets, on the whole evaluation split."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import text_example

from xalign_utils import config, training_runs, training_targets


def predictions(labels, preds, dataset="sst2", run="r", step=9) -> pd.DataFrame:
    ids = [f"{dataset}{i}" for i in range(len(labels))]
    return pd.DataFrame(
        {"id": ids, "dataset": dataset, "label": labels, "pred": preds, "run": run, "step": step}
    )


def test_targets_pair_the_untrained_predictions_and_flag_each_part():
    labels = ["positive", "negative"] * 50
    final = predictions(labels, labels[:90] + ["positive"] * 10)  # 95 of 100 right
    untrained = final.assign(pred="positive")  # the zero-rate answer: 50 of 100
    out = training_targets.targets_table(final, untrained)
    assert list(out.columns) == list(training_targets.COLUMNS) and len(out) == 1
    row = out.iloc[0]
    assert row["n"] == 100 and row["step"] == 9
    assert row["accuracy"] == pytest.approx(0.95) and row["lo"] < 0.95 < row["hi"]
    assert row["untrained"] == pytest.approx(0.5) and row["gain"] == pytest.approx(0.45)
    assert 0 < row["gain_lo"] < 0.45 < row["gain_hi"] and row["n_paired"] == 100
    assert row["zero_rate"] == pytest.approx(0.5) and row["top_label_share"] == pytest.approx(0.55)
    assert row["meets_target"] and row["ci_above_zero_rate"] and row["label_share_ok"]
    assert row["macro_f1_lo"] < row["macro_f1"] < row["macro_f1_hi"]


def test_a_missed_target_a_biased_model_and_unpaired_examples():
    labels = ["entailment", "neutral", "contradiction"] * 20
    final = predictions(labels, ["entailment"] * 60, dataset="esnli")  # one label for all
    untrained = final.iloc[:30].assign(pred="neutral")  # 02 predicted only half of them
    row = training_targets.targets_table(final, untrained).iloc[0]
    assert row["accuracy"] == pytest.approx(1 / 3)
    assert not row["meets_target"] and not row["label_share_ok"]
    assert not row["ci_above_zero_rate"]  # 1/3 is the zero rate itself
    assert row["n_paired"] == 30 and row["untrained"] == pytest.approx(1 / 3)


def test_a_dataset_without_a_target_is_undefined_not_failed():
    final = predictions(["positive", "negative"], ["positive", "negative"], dataset="movies")
    row = training_targets.targets_table(final, final).iloc[0]
    assert np.isnan(row["target"]) and not row["meets_target"]


def test_final_predictions_score_every_evaluation_example_once(tmp_path, monkeypatch):
    """A one-step run scored on the whole (stubbed) evaluation split, then reused."""
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path / "runs")
    cfg = config.load_config("smoke", train_batch_size=2, train_checkpoints=1, train_warmup_steps=0)
    examples = [
        text_example(f"s{i}", text.split(), label=lab, dataset="sst2")
        for i, (text, lab) in enumerate([("great fun", "positive"), ("dull and slow", "negative")])
    ]
    training_runs.fine_tune(cfg, "tiny", examples, progress=False)
    evaluation = examples + [
        text_example("s9", ["a", "fine", "film"], label="positive", dataset="sst2")
    ]
    asked = []

    def load(folder, name, split):
        asked.append((name, split))
        return [ex for ex in evaluation if ex.dataset == name]

    monkeypatch.setattr(training_targets, "load_processed", load)
    final = training_targets.run_final_predictions(cfg, "tiny")
    assert sorted(final["id"]) == ["s0", "s1", "s9"]
    assert set(final["run"]) == {"tiny"} and set(final["step"]) == {1}
    assert {split for _, split in asked} == {"eval"}
    assert {name for name, _ in asked} == set(cfg.train_datasets)
    monkeypatch.setattr(training_targets, "predict", lambda *a, **k: pytest.fail("recomputed"))
    pd.testing.assert_frame_equal(training_targets.run_final_predictions(cfg, "tiny"), final)
