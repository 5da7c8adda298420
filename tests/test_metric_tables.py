"""Notebook 04's metric tables on hand-made frames (no model), and where they are stored."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import text_example

from xalign_utils import config, faithfulness, metric_tables, plausibility, validation
from xalign_utils.data import processed_path, save_examples
from xalign_utils.store import table_metadata, table_path, write_table


def _example(i: str, dataset: str = "esnli", rationale: list | None = None, label: str = "pos"):
    return text_example(
        i, ["w0", "w1", "w2", "w3", "w4"], dataset=dataset, label=label, rationale=rationale
    )


def _attr(ids, methods=("random", "saliency"), target="pos"):
    return pd.DataFrame(
        [
            {
                "id": i,
                "dataset": "esnli",
                "method": m,
                "status": "ok",
                "target_label": target,
                "signed": np.array([0.9, 0.1, 0.8, 0.0, 0.2]) if m != "random" else np.arange(5.0),
                "magnitude": np.array([0.9, 0.1, 0.8, 0.0, 0.2]),
            }
            for i in ids
            for m in methods
        ]
    )


@pytest.fixture()
def tmp_project(tmp_path, monkeypatch):
    """Runs and processed data under a scratch folder."""
    monkeypatch.setattr(config, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(config, "PROCESSED_DIR", tmp_path / "processed")
    return tmp_path


def test_plausibility_table_iterates_the_registry_and_counts_unannotated():
    by_id = {"a": _example("a", rationale=[1, 0, 1, 0, None]), "b": _example("b")}
    out = metric_tables.plausibility_table(_attr(["a", "b"]), by_id)
    assert list(out.columns) == ["id", "dataset", "method", *plausibility.METRICS]
    a = out[(out["id"] == "a") & (out["method"] == "saliency")].iloc[0]
    assert a["topvar_f1"] == 1.0  # the top-2 annotated words are the rationale
    assert a["auprc"] == pytest.approx(1.0)
    assert out[out["id"] == "b"][list(plausibility.METRICS)].isna().all().all()


def test_consistency_with_labels_marks_where_prediction_is_gold():
    by_id = {"a": _example("a", label="pos"), "b": _example("b", label="neg")}
    explained = pd.DataFrame(
        {"id": ["a", "b"], "explanation": ["list", "list"], "positions": [[0, 2], [1]]}
    )
    out = metric_tables.consistency_with_labels(_attr(["a", "b"]), explained, by_id)
    assert len(out) == 4 and out.groupby("id")["pred_is_gold"].first().to_dict() == {
        "a": True,
        "b": False,
    }
    assert out[(out["id"] == "a") & (out["method"] == "saliency")]["rank_auc"].iloc[0] == 1.0
    empty = metric_tables.consistency_with_labels(_attr(["a"]).iloc[0:0], explained, by_id)
    assert empty.empty and "pred_is_gold" in empty


def test_faithfulness_helpers_read_the_erasure_table():
    faith = pd.DataFrame(
        {
            "id": ["a", "a", "b", "b"],
            "dataset": "d",
            "method": ["random", "saliency"] * 2,
            "flip_mask_all": [1.0, 1.0, 0.0, 0.0],
            "flip_mask_human": [np.nan, np.nan, 1.0, 1.0],
            "comp_aopc": [0.1, 0.3, 0.2, 0.4],
            "soft_norm_comp": [0.1, 0.2, 0.1, 0.2],
            "soft_norm_suff": [0.5, 0.5, 0.5, 0.5],
        }
    )
    refs = metric_tables.flip_references(faith)
    assert refs.loc["d", ("flip_mask_all", "mean")] == 0.5
    assert refs.loc["d", ("flip_mask_human", "count")] == 1
    ratios = metric_tables.log_ratios(faith)
    assert list(ratios["metric"].unique()) == list(metric_tables.LOG_RATIO_METRICS)
    assert set(metric_tables.LOG_RATIO_METRICS) <= set(faithfulness.METRICS)
    comp = ratios[(ratios["metric"] == "comp_aopc") & (ratios["method"] == "saliency")]
    assert comp["log_ratio"].iloc[0] == pytest.approx(np.log(0.35 / 0.15))


def test_ccshap_table_compares_profiles(monkeypatch):
    by_id = {"a": _example("a"), "b": _example("b")}
    attr = _attr(["a"], methods=("random", "input_x_gradient"))
    raw = pd.DataFrame(
        {
            "id": ["a", "b", "a"],
            "dataset": "esnli",
            "role": ["explain_then_predict", "explain_then_predict", "predict_then_explain"],
            "raw": ["because w0", "because w1", "w2"],
            "asked_label": "pos",
            "k": 2,
        }
    )
    calls = []

    def profile(model, tokenizer, example, role, text, **fields):
        calls.append((example.id, role, text, fields))
        return np.array([0.9, 0.1, 0.8, 0.0, 0.2])

    monkeypatch.setattr(metric_tables, "continuation_attribution", profile)
    out = metric_tables.ccshap_table(None, None, attr, raw, by_id, {"a", "b"})
    assert calls == [("a", "explain_then_predict", "because w0", {"label": "pos", "k": 2})]
    assert list(out["id"]) == ["a"]  # b has no input×gradient row
    assert out["distance"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    assert out["random_distance"].iloc[0] > 0.3
    assert metric_tables.ccshap_table(None, None, attr, raw, by_id, set()).empty


def test_load_inputs_reads_the_stages_before_and_tables_are_stored(tmp_project):
    cfg = config.load_config("smoke", datasets="esnli", methods="saliency", n_faith=2)
    examples = [_example(f"esnli-{i}", rationale=[1, 0, 0, 0, 0]) for i in range(3)]
    save_examples(examples, processed_path(cfg.processed_dir, "esnli", "eval"))
    attr = _attr([ex.id for ex in examples], methods=("saliency",))
    attr.loc[2, "status"] = "context_overflow"
    # notebook 03 names its table after the method list: 04 reads that name
    write_table(attr, cfg, "03_attribution", "attributions_pred_saliency", attribution=True)
    lists = pd.DataFrame(
        {
            "id": [ex.id for ex in examples],
            "role": "rationale_topk",
            "label_source": "gold",
            "asked_label": "entailment",
            "status": "ok",
            "positions": [[0], [], [1]],
        }
    )
    write_table(lists, cfg, "02_baselines", "rationales")
    free = lists.drop(columns=["label_source", "asked_label", "status"]).assign(
        role="explain_then_predict", answer="entailment"
    )
    write_table(free, cfg, "02_baselines", "explanations")
    write_table(free.assign(raw="x"), cfg, "02_baselines", "explanations_raw")
    inputs = metric_tables.load_inputs(cfg)
    assert list(inputs.attributions["id"]) == ["esnli-0", "esnli-1"]  # ok rows only
    assert set(inputs.explanations["id"]) == {"esnli-0", "esnli-1"}
    assert inputs.methods == ["saliency"] and inputs.faith_ids == {"esnli-0", "esnli-1"}
    assert inputs.by_id["esnli-2"].id == "esnli-2"

    plaus = metric_tables.run_plausibility(cfg, inputs)
    stored = pd.read_parquet(table_path(cfg, metric_tables.STAGE, "plausibility"))
    assert metric_tables.STAGE == "04_metrics_validation"
    assert (stored["config_hash"] == cfg.hash(attribution=True)).all()
    assert (stored["seed"] == cfg.seed).all() and len(stored) == len(plaus) == 2
    metric_tables.run_consistency(cfg, inputs)
    assert table_path(cfg, metric_tables.STAGE, "consistency").is_file()
    computed = []
    code = "metric_tables"
    first = metric_tables.reuse(cfg, "costly", lambda: computed.append(1) or plaus, code)
    again = metric_tables.reuse(cfg, "costly", lambda: computed.append(1) or plaus, code)
    assert computed == [1] and first.equals(again)
    modules = table_metadata(cfg, metric_tables.STAGE, "costly")["code_modules"].split(", ")
    assert "metric_tables" in modules and "reports" not in modules  # a report edit reuses it
    listed = metric_tables.stored_tables(cfg).set_index("table")
    assert list(listed.index) == ["consistency", "costly", "plausibility"]
    assert listed.loc["plausibility", "rows"] == 2
    assert listed.loc["plausibility", "columns"] == len(plaus.columns)


def test_erasure_strategy_names_the_mask_text():
    assert metric_tables.erasure_strategy(config.load_config("smoke")) == "delete"
    masked = config.load_config("smoke", strategy="mask", mask_text="[MASK]")
    assert metric_tables.erasure_strategy(masked) == "mask (mask text '[MASK]')"


def test_pivot_gives_a_compact_view():
    ci = pd.DataFrame({"method": ["a", "b"], "metric": "m", "value": [0.12345, 0.5]})
    assert metric_tables.pivot(ci, "method", "metric").loc["a", "m"] == 0.123
    assert validation.TOPVAR in validation.EXPLANATIONS.values()


def test_eraser_table_reports_the_dataset_level_aggregates():
    by_id = {
        "a": _example("a", rationale=[1, 1, 0, 0, 0]),
        "b": _example("b", rationale=[0, 0, 0, 1, 0]),
    }
    attr = pd.DataFrame(
        {
            "id": ["a", "b"],
            "dataset": "esnli",
            "method": "m",
            "magnitude": [[0.9, 0.8, 0.1, 0.0, 0.0], [0.0, 0.0, 0.1, 0.2, 0.9]],
        }
    )
    row = metric_tables.eraser_table(attr, by_id).iloc[0]
    # a: top-2 = {0, 1} = gold → F1 1; b: top-1 = {4} ≠ {3} → F1 0: macro token F1 0.5
    assert row["token_macro_f1"] == pytest.approx(0.5)
    assert row["token_micro_f1"] == pytest.approx(2 / 3)  # pooled: 2 of 3 predicted, of 3 gold
    assert {"iou_macro_f1", "iou_micro_f1", "auprc"} <= set(row.index)
