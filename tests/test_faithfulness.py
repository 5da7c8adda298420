"""Erasure-based faithfulness: hand-checked pieces and the planted-evidence model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from xalign_utils import attribution as A
from xalign_utils import comparisons as C
from xalign_utils import data
from xalign_utils import faithfulness as F


def test_bin_sizes_follow_the_stated_rounding():
    assert [F.bin_size(b, 20) for b in F.BINS] == [1, 1, 2, 4, 10]
    assert F.bin_size(50, 3) == 2 and F.bin_size(1, 0) == 0


def test_erase_deletes_or_masks_across_segments():
    ex = data.Example(
        id="x",
        dataset="esnli",
        split="test",
        label="neutral",
        segments={"premise": "a b", "hypothesis": "c d"},
        words={"premise": ["a", "b"], "hypothesis": ["c", "d"]},
    )
    assert F.erase(ex, {1, 2}).words == {"premise": ["a"], "hypothesis": ["d"]}
    masked = F.erase(ex, {0}, "mask", "_")
    assert masked.words["premise"] == ["_", "b"] and masked.segments["premise"] == "_ b"
    with pytest.raises(ValueError, match="strategy"):
        F.erase(ex, {0}, "blur")


def test_log_ratio_to_random():
    table = pd.DataFrame(
        {
            "dataset": ["d"] * 4,
            "id": ["a", "b", "a", "b"],
            "method": ["random", "random", "ig", "ig"],
            "comp_aopc": [0.1, 0.1, 0.2, 0.2],
        }
    )
    out = C.log_ratio_to_random(table, "comp_aopc").set_index("method")
    assert out.loc["ig", "log_ratio"] == pytest.approx(np.log(2))
    assert out.loc["random", "log_ratio"] == pytest.approx(0.0)
    assert out.loc["ig", "ci_low"] == pytest.approx(np.log(2))  # constant ratio: no spread
    assert out.loc["ig", "n"] == 2 and out.loc["ig", "n_boot_undefined"] == 0
    # Random erasure that helps the prediction on average: no scale, NaN and no CI.
    flipped = table.assign(comp_aopc=[-0.1, -0.1, 0.2, 0.2])
    out = C.log_ratio_to_random(flipped, "comp_aopc").set_index("method")
    assert np.isnan(out.loc["ig", "log_ratio"]) and np.isnan(out.loc["ig", "ci_low"])
    # Spread across examples gives a CI around the point estimate.
    noisy = pd.DataFrame(
        {
            "dataset": "d",
            "id": [f"e{i}" for i in range(20)] * 2,
            "method": ["random"] * 20 + ["ig"] * 20,
            "comp_aopc": list(np.linspace(0.05, 0.15, 20)) + list(np.linspace(0.1, 0.5, 20)),
        }
    )
    row = C.log_ratio_to_random(noisy, "comp_aopc").set_index("method").loc["ig"]
    assert row["ci_low"] < row["log_ratio"] < row["ci_high"]


@pytest.mark.slow
def test_erasing_the_planted_word_is_comprehensive(planted_model, tokenizer):
    model = planted_model
    examples = data.make_synthetic(8, seed=0, length=8)
    attr = A.attribute(model, tokenizer, examples, ["occlusion", "random"], seed=1)
    table = F.erasure_table(
        model,
        tokenizer,
        attr,
        {ex.id: ex for ex in examples},
        k_by_id={ex.id: 1 for ex in examples},
    )
    by = table.groupby("method")[["comp_aopc", "suff_aopc", "flip_topk", "answerable"]].mean()
    # removing the trigger (occlusion's top word) drops p(ŷ) from ~1 to ~½ at every bin
    assert by.loc["occlusion", "comp_aopc"] > 0.4 > by.loc["random", "comp_aopc"]
    assert by.loc["occlusion", "suff_aopc"] < by.loc["random", "suff_aopc"]
    assert by.loc["occlusion", "answerable"] == 1.0
    assert table["flip_mask_human"].notna().all()


def test_erasure_metrics_and_aopc_hand_computed(monkeypatch):
    """A stand-in model: p(positive) = 0.9 with the word "good" in the input, 0.4 without
    (0.2 when nothing is left). Ten words, "good" at position 3."""
    words = ["w0", "w1", "w2", "good", "w4", "w5", "w6", "w7", "w8", "w9"]
    ex = data.Example(
        id="e",
        dataset="synthetic",
        split="test",
        label="positive",
        segments={"text": " ".join(words)},
        words={"text": words},
        rationale={"text": [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]},
    )

    def fake(model, tokenizer, variants, batch_size=16):
        out = []
        for v in variants:
            ws = v.flat_words()
            p = 0.9 if "good" in ws else (0.4 if ws else 0.2)
            out.append([1 - p, p])  # (negative, positive)
        return np.array(out)

    monkeypatch.setattr(F, "label_probabilities", fake)
    attr = pd.DataFrame(
        [
            {
                "id": "e",
                "dataset": "synthetic",
                "method": "right",
                "status": "ok",
                "magnitude": np.array([0, 0, 0, 9, 1, 1, 1, 1, 1, 1.0]),
            },
            {
                "id": "e",
                "dataset": "synthetic",
                "method": "wrong",
                "status": "ok",
                "magnitude": np.array([9, 8, 7, 0, 6, 5, 4, 3, 2, 1.0]),
            },
        ]
    )
    t = F.erasure_table(None, None, attr, {"e": ex}, k_by_id={"e": 1}).set_index("method")
    # bins of 10 words: 1, 1, 1, 2, 5 words. "right" erases "good" first at every bin:
    # comprehensiveness 0.9 − 0.4 = 0.5 everywhere; sufficiency keeps "good": 0 everywhere
    assert t.loc["right", "comp_aopc"] == pytest.approx(0.5)
    assert t.loc["right", "suff_aopc"] == pytest.approx(0.0)
    # "wrong" never erases "good" within 50% (it ranks last): comp 0; kept sets never
    # contain it: suff 0.5 at every bin
    assert t.loc["wrong", "comp_aopc"] == pytest.approx(0.0)
    assert t.loc["wrong", "suff_aopc"] == pytest.approx(0.5)
    assert t.loc["right", "flip_topk"] == 1.0 and t.loc["wrong", "flip_topk"] == 0.0
    assert t.loc["right", "answerable"] == 1.0 and t.loc["wrong", "answerable"] == 0.0
    assert t.loc["right", "flip_mask_all"] == 1.0 and t.loc["right", "flip_mask_human"] == 1.0
