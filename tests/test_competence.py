"""Notebook 05's "why not" section: the bench probes beside the checkpoints."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from xalign_utils import competence, training_plots, training_targets
from xalign_utils.config import BENCH_DIR


def test_probe_table_reads_the_committed_probes():
    probes = competence.probe_table()
    assert set(probes["source"]) == set(competence.PROBES.values())
    mixed = probes[probes["source"] == competence.PROBES["probe_mixed_800.csv"]]
    assert set(mixed["examples_per_dataset"]) == {800}  # 300 steps × 8 over 3 datasets
    assert mixed["minutes"].iloc[0] == pytest.approx(300 * 8 / 1.87 / 60, rel=1e-6)
    alone = probes[probes["source"] == competence.PROBES["probe_sst2_800.csv"]]
    assert list(alone["dataset"]) == ["sst2"] and alone["examples_per_dataset"].item() == 800
    assert (probes["ci_low"] <= probes["accuracy"]).all()
    assert (probes["accuracy"] <= probes["ci_high"]).all()
    # a CI of 100 held-out examples at 0.85 is about ±0.07 (Wilson), not a point
    assert 0.05 < alone["ci_high"].item() - alone["accuracy"].item() < 0.1


def test_a_missing_probe_names_the_command_and_a_bad_one_its_column(tmp_path):
    for name in competence.PROBES:
        shutil.copy(BENCH_DIR / name, tmp_path / name)
    (tmp_path / "lr_sweep.csv").unlink()
    with pytest.raises(FileNotFoundError, match="bench/lr_sweep.py"):
        competence.probe_table(tmp_path)
    pd.DataFrame({"lr": [1e-4]}).to_csv(tmp_path / "lr_sweep.csv", index=False)
    with pytest.raises(ValueError, match="lr_sweep.csv: no column"):
        competence.probe_table(tmp_path)


def test_checkpoints_are_placed_by_the_examples_each_dataset_gave():
    summary = pd.DataFrame({"step": [0, 25, 75], "dataset": "esnli"})
    sizes = {"esnli": 200, "sst2": 200, "hatexplain": 200}
    assert list(competence.checkpoint_examples(summary, 8, sizes)) == [0, 67, 200]
    # uneven sizes: SST-2 fills 4/5 of every batch on average, and no more than it has
    summary = pd.DataFrame({"step": [25, 125, 130], "dataset": ["sst2", "sst2", "esnli"]})
    sizes = {"esnli": 100, "sst2": 800, "hatexplain": 100}
    assert list(competence.checkpoint_examples(summary, 8, sizes)) == [160, 800, 100]


def test_the_figure_has_a_panel_per_dataset_with_target_and_every_probe():
    rows = [
        {"run": "plain", "step": s, "dataset": d, "correct": 0.5, "correct_lo": 0.4,
         "correct_hi": 0.6, "zero_rate": 0.4, "examples_per_dataset": s * 8 // 2}
        for s in (0, 10) for d in ("esnli", "sst2")
    ]  # fmt: skip
    fig = training_plots.competence_curves(
        pd.DataFrame(rows), competence.probe_table(), training_targets.TARGETS
    )
    axes = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in axes] == ["esnli", "sst2"]
    labels = {t.get_text() for t in fig.legends[0].get_texts()}
    assert {"notebook 05", "target", "zero rate", *competence.PROBES.values()} <= labels


def test_the_regularisation_tradeoff_has_a_panel_per_dataset_and_metric():
    rows = [
        {"dataset": d, "lam": lam, "metric": m, "value": 0.5, "ci_low": 0.4, "ci_high": 0.6}
        for d in ("esnli", "hatexplain")
        for lam in (0.0, 1.0)
        for m in ("correct", "comp_aopc", "rank_auc")
    ]
    rows = [r for r in rows if not (r["dataset"] == "hatexplain" and r["lam"] == 1.0)]
    fig = training_plots.tradeoff(pd.DataFrame(rows))
    axes = fig.axes
    assert len(axes) == 4
    assert [ax.get_title() for ax in axes[:2]] == ["esnli", "hatexplain"]
    assert [ax.get_ylabel() for ax in axes[::2]] == ["comp_aopc", "rank_auc"]
    assert [len(ax.containers) for ax in axes] == [2, 1, 2, 1]  # one point per λ present
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["λ = 0", "λ = 1"]


def test_loss_summary_averages_the_first_and_last_steps_of_each_run():
    curves = pd.DataFrame(
        {"run": ["a"] * 4 + ["b"] * 2, "label_loss": [4.0, 2.0, 1.0, 0.0, 3.0, 1.0],
         "reg": [1.0, 1.0, 0.0, 0.0, 5.0, 5.0]}
    )  # fmt: skip
    out = training_plots.loss_summary(curves, first=2, last=1).set_index("run")
    assert out.loc["a", ["steps", "label_loss_first", "label_loss_last"]].tolist() == [4, 3.0, 0.0]
    assert out.loc["b", ["reg_first", "reg_last"]].tolist() == [5.0, 5.0]
    assert "reg_first" not in training_plots.loss_summary(curves.drop(columns="reg"))
