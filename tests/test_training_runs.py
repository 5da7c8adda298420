"""Notebook 05's runs: checkpoint summaries, correlations beside Fayyaz et al.,
published adapters and the regularised runs' rationales and tests."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import text_example

from xalign_utils import config, models, regularised_runs, training_runs


def per_example(n: int = 20, steps=(0, 10, 20, 30), seed: int = 0) -> pd.DataFrame:
    """Examples whose accuracy rises with the step and whose alignment rises with it."""
    rng = np.random.default_rng(seed)
    rows = []
    for step in steps:
        for i in range(n):
            correct = float(rng.random() < 0.3 + step / 60)
            rows.append(
                {
                    "run": "plain-s0",
                    "step": step,
                    "dataset": "esnli",
                    "id": f"e{i}",
                    "label": "neutral",
                    "pred": "neutral" if correct else "entailment",
                    "correct": correct,
                    "align_ixg": 0.2 + step / 100 + rng.normal(0, 0.01),
                    "align_prompted": np.nan,
                    "flipped": float(rng.random() < 0.5),
                }
            )
    return pd.DataFrame(rows)


def test_checkpoint_summary_means_cis_and_shares():
    table = per_example()
    summary = training_runs.checkpoint_summary(table, seed=1)
    assert list(summary["step"]) == [0, 10, 20, 30]
    first = table[table["step"] == 0]
    row = summary.iloc[0]
    assert row["correct"] == pytest.approx(first["correct"].mean())
    assert row["correct_lo"] <= row["correct"] <= row["correct_hi"]
    assert row["zero_rate"] == 1.0  # every gold label is neutral
    assert np.isnan(row["align_prompted"]) and row["align_prompted_n"] == 0
    assert row["top_label_share"] == pytest.approx(max(first["pred"].value_counts()) / 20)


def test_correlation_over_checkpoints_and_its_example_bootstrap():
    corr = training_runs.correlations(per_example(), n_boot=200, seed=0).set_index("metric")
    assert corr.at["align_ixg", "r"] > 0.8  # both rise with the step
    assert corr.at["align_ixg", "lo"] <= corr.at["align_ixg", "r"] <= corr.at["align_ixg", "hi"]
    # step 0 (the untrained model) is left out, as the paper correlates epochs 1-10
    assert corr.at["align_ixg", "checkpoints"] == 3 and corr.at["align_ixg", "n_examples"] == 20
    assert "align_prompted" not in corr.index  # no values: no row
    two = training_runs.correlations(per_example(steps=(0, 10, 20)), n_boot=10)
    assert two.empty  # r over two points is ±1 by construction: not reported


def test_accuracy_in_a_correlation_counts_every_example():
    """Alignment is undefined for examples without a rationale; accuracy is still taken
    over all of them (on HateXplain the unannotated posts are a whole label)."""
    table = per_example()
    table.loc[table["id"].isin(["e0", "e1", "e2"]), "align_ixg"] = np.nan
    table.loc[table["id"].isin(["e0", "e1", "e2"]), "correct"] = table["step"] / 30
    corr = training_runs.correlations(table, n_boot=50).set_index("metric")
    steps = table[table["step"] > 0]
    acc = steps.groupby("step")["correct"].mean()
    ixg = steps.groupby("step")["align_ixg"].mean()
    assert corr.at["align_ixg", "r"] == pytest.approx(np.corrcoef(acc, ixg)[0, 1])
    assert corr.at["align_ixg", "n_defined"] == 17


def test_side_by_side_has_the_papers_rows_for_shared_datasets(tmp_path):
    corr = training_runs.correlations(per_example(), n_boot=20)
    side = training_runs.paper_side_by_side(corr, config.REFERENCE_DIR / "fayyaz2024_tables.csv")
    ixg = side[side["metric"] == "align_ixg"]
    assert set(ixg["model"]) == {
        "Mistral-7B Instruct-v0.2",
        "Llama-2-7b chat",
        "Llama-3-8B Instruct",
    }
    assert ixg["paper_r"].tolist() == [0.85, 0.98, 0.88]  # Table 3, e-SNLI, Input×Grad
    flips = side[side["metric"] == "flipped"]
    assert flips["paper_r"].tolist() == [0.68, 0.53, 0.58]  # Table 5, e-SNLI
    other = training_runs.paper_side_by_side(corr.assign(dataset="sst2"))
    assert other.empty  # the paper has no SST-2


def test_splits_refuse_an_evaluation_example_in_training(monkeypatch):
    ex = text_example("sst2-1", "a fine film".split(), label="positive", dataset="sst2")
    monkeypatch.setattr(training_runs, "load_processed", lambda folder, name, split: [ex])
    cfg = config.load_config("smoke", train_datasets="sst2", train_per_dataset=1)
    with pytest.raises(ValueError, match="sst2-1"):
        training_runs.splits(cfg)


def test_missing_or_mismatched_adapters_get_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "ADAPTERS_DIR", tmp_path)
    with pytest.raises(FileNotFoundError, match="published adapters: none"):
        models.adapter_manifest("nope")
    (tmp_path / "other").mkdir()
    manifest = {"base_model": "someone/else", "base_fingerprint": "0"}
    (tmp_path / "other" / "manifest.json").write_text(json.dumps(manifest))
    tiny = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="base_model"):
        models.apply_adapter(tiny, "other", config.OFFLINE_MODEL)
    manifest["base_model"] = config.OFFLINE_MODEL
    (tmp_path / "other" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="base_fingerprint"):
        models.apply_adapter(tiny, "other", config.OFFLINE_MODEL)


def test_fingerprint_changes_with_any_weight():
    tiny = torch.nn.Linear(3, 2)
    before = models.model_fingerprint(tiny)
    assert models.model_fingerprint(tiny) == before
    with torch.no_grad():
        tiny.weight[0, 0] += 1e-6
    assert models.model_fingerprint(tiny) != before


def test_regulariser_rationale_sources():
    ex = text_example("e1", "a man plays a guitar".split(), label="neutral", dataset="esnli")
    ex.rationale = {"text": [0, 1, 1, 0, 0]}
    ex.explanations = ["The man is playing music on a guitar."]
    cfg = config.load_config("smoke")
    assert regularised_runs.rationales(cfg, [ex], "human") == [[1, 2]]
    assert regularised_runs.rationales(cfg, [ex], "explanations") == [[1, 2, 4]]
    with pytest.raises(ValueError, match="unknown rationale source"):
        regularised_runs.rationales(cfg, [ex], "guess")
    empty = text_example("e2", "nothing marked here".split(), label="neutral", dataset="esnli")
    empty.rationale = {"text": [0, 0, 0]}
    chosen, rats = regularised_runs.training_set(cfg, [empty, ex])
    assert [c.id for c in chosen] == ["e1"] and rats == [[1, 2]]


def test_own_rationales_are_the_plain_models_parsed_lists_generated_once(tmp_path, monkeypatch):
    """``own``: the plain fine-tuned model's Unbound list about the gold label, parsed to
    flat positions (an unparseable list leaves no rationale), stored and reused."""
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path / "runs")
    cfg = config.load_config("smoke")
    a = text_example("e1", "a man plays a guitar".split(), label="neutral", dataset="esnli")
    b = text_example("e2", "two dogs run".split(), label="neutral", dataset="esnli")
    asked = []

    def elicit(model, tok, examples, role, **kwargs):
        asked.append((model, role, [ex.id for ex in examples]))
        raws = {"e1": "guitar, man", "e2": "I cannot tell."}
        return pd.DataFrame(
            {
                "id": [ex.id for ex in examples],
                "role": role,
                "raw": [raws[ex.id] for ex in examples],
            }
        )

    monkeypatch.setattr(regularised_runs, "load_run_model", lambda c, name, **k: (name, None))
    monkeypatch.setattr(regularised_runs, "elicit", elicit)
    assert regularised_runs.rationales(cfg, [a, b], "own", plain="plain-s1") == [[4, 1], []]
    assert asked == [("plain-s1", "rationale_unbound", ["e1", "e2"])]
    assert regularised_runs.rationales(cfg, [a, b], "own", plain="plain-s1") == [[4, 1], []]
    assert len(asked) == 1  # stored, not generated again
    with pytest.raises(ValueError, match="plain"):
        regularised_runs.rationales(cfg, [a], "own")


def test_lists_are_compared_with_the_lambda_zero_twin_of_the_same_seed():
    table = pd.DataFrame(
        {
            "id": ["a", "a", "a", "a", "b", "b"],
            "train_seed": [1, 1, 2, 2, 1, 1],
            "lam": [0.0, 1.0, 0.0, 1.0, 0.0, 1.0],
            "pred": ["x", "x", "x", "x", "x", "y"],
            "list_positions": [[0, 1], [1, 2], [3], [3], [0], [0]],
        }
    )
    got = regularised_runs._jaccard_to_zero(table).tolist()
    assert got[:4] == [1.0, pytest.approx(1 / 3), 1.0, 1.0]
    assert got[4] == 1.0 and np.isnan(got[5])  # another predicted label: not compared


def test_regularised_training_set_takes_turns_across_datasets():
    cfg = config.load_config("smoke", n_reg_train=3)
    nli = [
        text_example(f"n{i}", "a b".split(), dataset="esnli", rationale=[1, 0]) for i in range(5)
    ]
    hate = [
        text_example(f"h{i}", "c d".split(), dataset="hatexplain", rationale=[0, 1])
        for i in range(2)
    ]
    chosen, rats = regularised_runs.training_set(cfg, nli + hate)
    assert [ex.id for ex in chosen] == ["n0", "h0", "n1"]
    assert rats == [[0], [1], [0]]


def regularised_table(effect: float, n: int = 30, seeds=(1, 2)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        for lam in (0.0, 1.0):
            for i in range(n):
                base = rng.normal(0.5, 0.1)
                rows.append(
                    {"id": f"e{i}", "dataset": "esnli", "train_seed": seed, "lam": lam, "pred": "x",
                     "correct": 1.0, "topvar_f1": base, "comp_aopc": base + effect * lam,
                     "rank_auc": base, "comp_human": base, "comp_list": base,
                     "list_jaccard": 1.0, "list_status": "ok" if i else "parse_failure"}
                )  # fmt: skip
    return pd.DataFrame(rows)


def test_each_question_is_tested_on_its_primary_metric():
    tests = regularised_runs.tests_against_zero(regularised_table(0.2), seed=0)
    primary = tests[tests["role"] == "primary"].set_index("question")
    assert set(primary.index) == {"plausibility", "faithfulness", "consistency"}
    assert primary.at["faithfulness", "metric"] == "comp_aopc"
    assert primary.at["faithfulness", "reject"] and primary.at["faithfulness", "can_reject"]
    assert primary.at["faithfulness", "mean_diff"] == pytest.approx(0.2, abs=0.05)
    assert not tests[tests["question"] == "exploratory"]["reject"].any()
    failures = regularised_runs.list_failures(regularised_table(0.2))
    assert failures["list_failures"].tolist() == [2, 2]  # one per seed and λ, counted
    floor = regularised_runs.seed_effects(regularised_table(0.2), seed=0)
    assert set(floor["comparison"]) == {"λ vs λ=0, one seed", "λ=0: other seeds vs seed 1"}


@pytest.mark.slow
def test_fine_tune_publish_and_load_the_adapter(tmp_path, monkeypatch):
    """A two-step run: finished runs are read back, checkpoints become evaluation points,
    and the published adapter loads merged with the scores of the unmerged one."""
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(config, "ADAPTERS_DIR", tmp_path / "adapters")
    monkeypatch.setattr(training_runs, "ADAPTERS_DIR", tmp_path / "adapters")
    cfg = config.load_config("smoke", train_batch_size=2, train_checkpoints=2, train_warmup_steps=0)
    examples = [
        text_example(f"s{i}", text.split(), label=lab, dataset="sst2")
        for i, (text, lab) in enumerate(
            [("great fun", "positive"), ("dull and slow", "negative")] * 2
        )
    ]
    curve = training_runs.fine_tune(cfg, "tiny", examples, progress=False)
    assert len(curve) == 2
    points = training_runs.evaluation_points(training_runs.run_folder(cfg, "tiny"))
    assert [step for step, _ in points] == [0, 1, 2]
    monkeypatch.setattr(training_runs.training, "train", lambda *a, **k: pytest.fail("retrained"))
    again = training_runs.fine_tune(cfg, "tiny", examples, progress=False)
    pd.testing.assert_frame_equal(again, curve)
    monkeypatch.undo()  # real training again, same folders
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(config, "ADAPTERS_DIR", tmp_path / "adapters")
    monkeypatch.setattr(training_runs, "ADAPTERS_DIR", tmp_path / "adapters")
    other = training_runs.fine_tune(cfg, "tiny", examples[:2], progress=False)
    assert len(other) == 1  # other examples: a new run, the old one kept aside
    old = training_runs.run_folder(cfg, "tiny").with_name("tiny.old-1")
    assert json.loads((old / "manifest.json").read_text())["steps"] == 2
    summary = pd.DataFrame({"step": [2], "dataset": ["sst2"], "correct": [0.5]})
    folder = training_runs.publish_adapter(cfg, "tiny", "smoke-tiny", summary)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["base_model"] == config.OFFLINE_MODEL and manifest["steps"] == 1
    merged, tok = models.load_model(None, adapter="smoke-tiny", device="cpu")
    unmerged, _ = training_runs.load_run_model(cfg, "tiny", for_gradients=False)
    ids = tok("a fine film", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, unmerged(ids).logits, rtol=1e-4, atol=1e-4)
        base, _ = models.load_model(None, device="cpu")
        assert not torch.allclose(base(ids).logits, merged(ids).logits)


def test_asking_for_more_training_examples_than_notebook_01_wrote_is_an_error(monkeypatch):
    ex = text_example("sst2-train-1", "a fine film".split(), label="positive", dataset="sst2")
    monkeypatch.setattr(training_runs, "load_processed", lambda folder, name, split: [ex])
    cfg = config.load_config("smoke", train_datasets="sst2", train_per_dataset=2)
    with pytest.raises(ValueError, match="fewer than the 2 TRAIN_PER_DATASET.*make 01 N_TRAIN"):
        training_runs.splits(cfg)


def test_train_sizes_take_per_dataset_exceptions_and_reject_bad_entries(monkeypatch):
    cfg = config.load_config("smoke", train_per_dataset=3, train_sizes="sst2:5")
    assert training_runs.train_sizes(cfg) == {"esnli": 3, "sst2": 5}
    examples = {
        name: [text_example(f"{name}-train-{i}", ["w"], dataset=name) for i in range(9)]
        for name in ("esnli", "sst2")
    }
    monkeypatch.setattr(
        training_runs, "load_processed", lambda folder, name, split: examples.get(name, [])
    )
    monkeypatch.setattr(training_runs, "assert_no_leakage", lambda train, evaluation: None)
    train, _ = training_runs.splits(cfg)
    assert [ex.id for ex in train] == [*(f"esnli-train-{i}" for i in range(3)),
                                       *(f"sst2-train-{i}" for i in range(5))]  # fmt: skip
    with pytest.raises(ValueError, match="'sst2=5' is not name:count"):
        training_runs.train_sizes(config.load_config("smoke", train_sizes="sst2=5"))
    plain = config.load_config("smoke", train_per_dataset=3)
    assert cfg.hash(training=True) != plain.hash(training=True)  # its runs are stored apart
