"""Sharded attribution: two accelerate processes give the same table as one."""

from __future__ import annotations

import numpy as np
import pytest

from xalign_utils import data, runner

pytestmark = pytest.mark.slow

METHODS = ["saliency", "input_x_gradient", "attention_rollout", "random"]


def test_two_processes_match_one(tmp_path, model_and_tokenizer):
    examples = data.make_synthetic(5, seed=3, length=6)  # odd: shards of 3 and 2
    path = tmp_path / "examples.jsonl"
    data.save_examples(examples, path)
    one = runner.run_attribution(examples, METHODS, tmp_path / "one.parquet", device="cpu")
    two = runner.launch(path, METHODS, tmp_path / "two.parquet", num_processes=2)
    assert sorted(set(two["process"])) == [0, 1]
    assert list(two["id"]) == list(one["id"]) == [ex.id for ex in examples for _ in METHODS]
    assert list(two["method"]) == list(one["method"])
    for a, b in zip(one["signed"], two["signed"], strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)  # float32, other padding
    assert list(one["target_label"]) == list(two["target_label"])
    assert not list(tmp_path.glob("*.shard-*"))  # shards are gathered and removed
