"""Notebook 04's validation runners with stand-in attributions, and the planted model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xalign_utils import config, consistency, metric_tables, validation, validation_runs
from xalign_utils.data import make_synthetic
from xalign_utils.schema import Example
from xalign_utils.store import table_path

N_WORDS = 6


def _example(i: str, dataset: str = "esnli") -> Example:
    words = [f"w{j}" for j in range(N_WORDS)]
    return Example(
        id=i,
        dataset=dataset,
        split="test",
        label="pos",
        segments={"text": " ".join(words)},
        words={"text": words},
    )


def _rows(examples, method: str, scores, **extra) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "id": ex.id,
                "dataset": ex.dataset,
                "method": method,
                "status": "ok",
                "target_label": "pos",
                "signed": np.asarray(scores(ex), dtype=float),
                "magnitude": np.abs(np.asarray(scores(ex), dtype=float)),
                **extra,
            }
            for ex in examples
        ]
    )


TRAINED = np.array([6.0, 5, 4, 3, 2, 1])


def test_registry_driven_choices():
    assert validation_runs.SEED_METHODS == ("lime", "kernel_shap", "noiser")
    assert validation_runs.PLANTED_METRICS == [*consistency.METRICS, "topvar_f1", "comp_aopc"]
    assert validation_runs.CASCADE_METRICS[-1] == "rho_to_trained"
    assert validation_runs.cascade_levels(30) == [0, 1, 7, 15, 30, 31]
    assert validation_runs.cascade_levels(2) == [0, 1, 2, 3]


def test_cascade_table_tracks_the_randomised_attributions(monkeypatch):
    examples = [_example(f"e{i}") for i in range(3)]
    attr = _rows(examples, "input_x_gradient", lambda ex: TRAINED)
    explained = pd.DataFrame(
        {"id": [ex.id for ex in examples], "explanation": "list", "positions": [[0, 1]] * 3}
    )
    seen = []

    def randomise(model, level, seed=0):
        return ("randomised", level)

    def fake_attribute(model, tokenizer, exs, method, batch_size=8, labels=None):
        seen.append((model, method, labels))
        flip = model != "trained"  # a randomised model reverses the ranking
        return _rows(exs, method, lambda ex: TRAINED[::-1] if flip else TRAINED)

    monkeypatch.setattr(validation_runs, "randomise_top_layers", randomise)
    monkeypatch.setattr(validation_runs, "attribute", fake_attribute)
    out = validation_runs.cascade_table(
        "trained", None, examples, attr, explained, levels=[0, 2], seed=5
    )
    assert seen[0] == ("trained", "input_x_gradient", ["pos"] * 3)
    assert seen[1][0] == ("randomised", 2)
    assert list(out["layers_randomised"]) == [0] * 3 + [2] * 3
    by_level = out.groupby("layers_randomised")
    assert by_level["rho_to_trained"].mean().to_dict() == {0: 1.0, 2: -1.0}
    assert by_level["rank_auc"].mean().to_dict() == {0: 1.0, 2: 0.0}
    assert set(validation_runs.CASCADE_METRICS) <= set(out.columns)


def test_explanation_comprehensiveness_table_pairs_each_explanation_with_random(monkeypatch):
    evaluation = {
        "esnli": [_example(f"n{i}") for i in range(3)],
        "sst2": [_example(f"s{i}", "sst2") for i in range(3)],
    }
    explained = pd.DataFrame(
        {
            "id": ["n0", "n1", "s0", "n0", "s2"],
            "explanation": ["A", "A", "A", "B", "B"],
            "positions": [[0, 1], [], [2], [3], [4]],
        }
    )
    calls = []

    def fake(model, tokenizer, keep, positions, **kw):
        calls.append(([ex.id for ex in keep], kw))
        return np.array([np.nan if not p else float(len(p)) for p in positions])

    monkeypatch.setattr(validation_runs.faithfulness, "explanation_comprehensiveness", fake)
    n_words = dict.fromkeys(explained["id"], N_WORDS)
    out = validation_runs.explanation_comprehensiveness_table(
        None, None, evaluation, explained, n_words, n_faith=2, seed=1, batch_size=4
    )
    assert list(out.columns) == ["id", "dataset", "explanation", "kind", "explanation_comp"]
    assert set(out["id"]) == {"n0", "n1", "s0"}  # s2 is beyond n_faith
    assert calls[0] == (["n0", "n1"], {"strategy": "delete", "mask_text": "_", "batch_size": 4})
    own = out[out["kind"] == "explanation"].set_index(["id", "explanation"])["explanation_comp"]
    rnd = out[out["kind"] == "random"].set_index(["id", "explanation"])["explanation_comp"]
    assert own.loc[("n0", "A")] == 2 and np.isnan(own.loc[("n1", "A")])
    assert rnd.loc[("n0", "A")] == 2  # same size, other words
    ci, tests = validation_runs.explanation_comprehensiveness_summary(out)
    assert set(ci["kind"]) == {"explanation", "random"} and "p_holm" in tests


def test_tracking_correlates_consistency_with_comprehensiveness():
    rng = np.random.default_rng(0)
    auc = rng.random(20)
    cons = pd.DataFrame(
        {
            "id": [f"e{i}" for i in range(20)],
            "explanation": "list",
            "method": "saliency",
            **{m: auc for m in consistency.METRICS},
        }
    )
    comp = pd.DataFrame(
        {
            "id": list(cons["id"]) * 2,
            "explanation": "list",
            "kind": ["explanation"] * 20 + ["random"] * 20,
            "explanation_comp": np.r_[auc * 2, -auc],
        }
    )
    joined = validation_runs.tracking_table(cons, comp)
    assert len(joined) == 20 and (joined["explanation_comp"] == auc * 2).all()
    track = validation_runs.tracking_summary(joined, seed=3)
    assert list(track["metric"]) == list(consistency.METRICS)
    assert (track["rho"] == 1.0).all() and (track["value"] == track["rho"]).all()
    assert list(track.columns)[:3] == ["method", "metric", "value"]


def test_seed_attributions_rerun_each_seed_and_pick_a_varied_noiser_row(monkeypatch):
    examples = [_example(f"e{i}") for i in range(3)]
    by_id = {ex.id: ex for ex in examples}
    attr = pd.concat(
        [
            _rows(examples, "lime", lambda ex: TRAINED),
            _rows(examples, "noiser", lambda ex: TRAINED * (ex.id != "e0")),  # e0 all zero
        ]
    )
    calls = []

    def fake_attribute(model, tokenizer, exs, method, batch_size=8, seed=0, **options):
        calls.append((method, [ex.id for ex in exs], seed, options))
        rng = np.random.default_rng(seed)
        return _rows(exs, method, lambda ex: TRAINED + rng.normal(0, 0.1, N_WORDS))

    monkeypatch.setattr(validation_runs, "attribute", fake_attribute)
    extra = validation_runs.seed_attributions(
        None, None, attr, by_id, ["lime", "noiser"], options={"seed": 13, "n": 1}, seeds=[14, 15]
    )
    assert [(m, ids, s) for m, ids, s, _ in calls] == [
        ("lime", ["e0", "e1", "e2"], 14),
        ("noiser", ["e1"], 14),
        ("lime", ["e0", "e1", "e2"], 15),
        ("noiser", ["e1"], 15),
    ]
    assert calls[0][3] == {"n": 1}
    tables = validation_runs.seed_tables(attr, extra, 13, ["lime", "noiser"])
    assert list(tables) == [13, 14, 15] and len(tables[14]) == 4
    agreement = validation.seed_agreement(tables)
    assert agreement["rho"].gt(0.9).all()
    explained = pd.DataFrame(
        {"id": ["e0", "e1"], "explanation": validation.TOPVAR, "positions": [[0], [1]]}
    )
    per_seed = validation_runs.seed_consistency(tables, explained)
    assert set(per_seed["attribution_seed"]) == {13, 14, 15}
    spread = validation_runs.rank_auc_spread(per_seed)
    assert spread.name == "sd_rank_auc_across_seeds" and spread["lime"] < 0.1
    assert validation_runs.seed_attributions(
        None, None, attr, by_id, [], options={}, seeds=[1]
    ).empty


def test_k_sensitivity_table_scores_every_k():
    examples = [_example("e0"), _example("e1")]
    attr = _rows(examples, "saliency", lambda ex: TRAINED)
    explained = pd.DataFrame(
        {
            "id": ["e0", "e1", "e0"],
            "explanation": [validation.TOPVAR, validation.TOPVAR, "other"],
            "positions": [[0, 1], [5], [2]],
        }
    )
    out = validation_runs.k_sensitivity_table(attr, explained, [1, 2])
    assert list(out.columns) == ["id", "method", "k", "f1"] and len(out) == 4
    f1 = out.set_index(["id", "k"])["f1"]
    assert f1[("e0", 1)] == pytest.approx(2 / 3) and f1[("e0", 2)] == 1.0 and f1[("e1", 1)] == 0.0


def test_runs_store_their_tables_under_the_stage(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path)
    cfg = config.load_config("smoke", k_values="1,3")
    examples = [_example("e0"), _example("e1")]
    attr = _rows(examples, "saliency", lambda ex: TRAINED)
    explained = pd.DataFrame(
        {"id": ["e0", "e1"], "explanation": validation.TOPVAR, "positions": [[0], [1, 2]]}
    )
    inputs = metric_tables.StageInputs({"esnli": examples}, attr, explained, pd.DataFrame(), 1)
    k = validation_runs.run_k_sensitivity(cfg, inputs)
    assert sorted(set(k["k"])) == [1, 3]
    draws, oracle = validation_runs.run_random_oracle(cfg, inputs)
    assert len(draws) == 10 and len(oracle) == 2
    verdict = validation_runs.run_verdict(
        cfg,
        validation.random_oracle_checks(draws, oracle),
        pd.DataFrame(columns=["metric"]),
        pd.DataFrame(columns=["metric", "method"]),
        pd.DataFrame(columns=["metric", "method", "ci_low", "ci_high"]),
    )
    assert list(verdict["metric"]) == list(validation.CHANCE)
    for name in ("k_sensitivity", "random_explanations", "oracle_explanations", "verdict"):
        stored = pd.read_parquet(table_path(cfg, "04_metrics_validation", name))
        assert (stored["config_hash"] == cfg.hash(attribution=True)).all()


@pytest.mark.slow
def test_planted_model_ranks_the_trigger_first(planted_model, tokenizer):
    examples = make_synthetic(8, seed=0, length=8)
    out = validation_runs.planted_table(
        planted_model,
        tokenizer,
        examples,
        ["random", "occlusion"],
        options={"seed": 0},
    )
    assert len(out) == 16 and set(validation_runs.PLANTED_METRICS) <= set(out.columns)
    means = out.groupby("method")[["rank_auc", "topvar_f1", "comp_aopc"]].mean()
    assert means.loc["occlusion", "rank_auc"] > 0.9 > means.loc["random", "rank_auc"]
    assert means.loc["occlusion", "topvar_f1"] > means.loc["random", "topvar_f1"]
    assert means.loc["occlusion", "comp_aopc"] > means.loc["random", "comp_aopc"]
