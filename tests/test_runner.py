"""Sharded attribution: two accelerate processes give the same table as one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from xalign_utils import config, data, runner

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


def test_profile_reuses_finished_groups(tmp_path, monkeypatch):
    """A re-run recomputes only the groups whose inputs changed (here: the costliest
    tier's example count), and reads the others from the work folder."""
    cfg = config.load_config("smoke", n_attr=2, n_attr_costly=1, n_attr_noiser=1)
    examples = {"sst2": data.make_synthetic(3, seed=5, length=5)}
    methods = ["random", "occlusion", "noiser"]
    first = runner.attribute_profile(cfg, examples, tmp_path, methods=methods, device="cpu")
    assert len(list(tmp_path.glob("group-*.parquet"))) == 3
    calls = []
    real = runner.run_attribution
    monkeypatch.setattr(
        runner,
        "run_attribution",
        lambda sub, ms, *a, **k: calls.append(ms) or real(sub, ms, *a, **k),
    )
    again = runner.attribute_profile(cfg, examples, tmp_path, methods=methods, device="cpu")
    assert calls == []
    assert again.drop(columns="process").equals(first.drop(columns="process"))
    more = dataclasses.replace(cfg, n_attr_noiser=2)
    runner.attribute_profile(more, examples, tmp_path, methods=methods, device="cpu")
    assert calls == [["noiser"]]
