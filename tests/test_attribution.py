"""Attribution methods with the real offline model: correctness checks, not timings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from xalign_utils import attribution as A
from xalign_utils import data
from xalign_utils import forward as FW
from xalign_utils.attribution import perturbation
from xalign_utils.attribution.attention import attentions

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def examples():
    return data.make_synthetic(3, seed=7, length=8)


def test_unknown_method_lists_the_valid_ones(model_and_tokenizer, examples):
    model, tok = model_and_tokenizer
    with pytest.raises(KeyError, match="integrated_gradients"):
        A.attribute(model, tok, examples, "shapley_magic")


def test_every_method_runs_and_is_finite(model_and_tokenizer, examples):
    model, tok = model_and_tokenizer
    options = {"ig_steps": 4, "n_samples": 8, "gradient_shap_samples": 4, "noise_samples": 2}
    options["bisection_steps"] = 2
    for method in A.available_methods():
        df = A.attribute(model, tok, examples[:2], method, batch_size=2, **options)
        assert len(df) == 2 and (df["nonfinite"] == 0).all(), method
        for words, signed, mag in zip(df["words"], df["signed"], df["magnitude"], strict=True):
            assert len(words) == len(signed) == len(mag) == 8
            assert np.isfinite(signed).all() and (np.asarray(mag) >= 0).all()


def test_integrated_gradients_completeness(model_and_tokenizer, examples):
    model, tok = model_and_tokenizer
    batch = FW.prepare(model, tok, examples)
    full, inp = FW.input_embeddings(model, batch)
    forward = FW.make_forward(model, batch)
    with torch.no_grad():
        args = FW.forward_args(batch, full)
        gap = (forward(inp, *args) - forward(torch.zeros_like(inp), *args)).numpy()
    df = A.attribute(model, tok, examples, "integrated_gradients", ig_steps=64, batch_size=3)
    total = np.array([s.sum() for s in df["signed"]])
    np.testing.assert_allclose(total, gap, rtol=0.05, atol=0.05)
    assert np.allclose(df["ig_delta"], total - gap, atol=1e-3)


def test_rollout_rows_sum_to_one_and_respect_causality(model_and_tokenizer, examples):
    model, tok = model_and_tokenizer
    batch = FW.prepare(model, tok, examples)
    joint = A.rollout_matrices(attentions(model, batch), batch.mask)
    valid = batch.mask.bool()
    for b in range(batch.size):
        m = joint[b][valid[b]][:, valid[b]]
        np.testing.assert_allclose(m.sum(-1).numpy(), 1.0, atol=1e-6)
        assert torch.allclose(torch.triu(m, diagonal=1), torch.zeros_like(m))


def test_attention_flow_on_a_hand_made_graph():
    # two positions, one layer: position 1 attends 0.5 to 0 and 0.5 to itself
    att = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])  # [heads=1, T, T] per layer, batch dim dropped
    flows = A.attention_flow([att[0]], torch.ones(2), [0, 1])
    # residual mixing: row 1 becomes [0.25, 0.75]
    np.testing.assert_allclose(flows, [0.25, 0.75], atol=1e-5)


def test_occlusion_equals_the_measured_drop(model_and_tokenizer, examples, monkeypatch):
    """Occlusion runs each call from its first ablated word on (the clean prompt's keys and
    values serve the rest): every word's score equals the drop a full pass measures, in a
    padded batch of two lengths, several calls per example."""
    model, tok = model_and_tokenizer
    mixed = examples[:1] + data.make_synthetic(1, seed=9, length=20)
    cuts = []
    real = perturbation.with_prefix
    monkeypatch.setattr(
        perturbation, "with_prefix", lambda b, kv, n: cuts.append(n) or real(b, kv, n)
    )
    df = A.attribute(
        model, tok, mixed, "occlusion", many_pass_batch_size=2, perturbations_per_eval=4
    )
    batch = FW.prepare(model, tok, mixed)
    assert len(set(cuts)) > 2 and min(cuts) > batch.prefix_len  # later calls skip words
    full, inp = FW.input_embeddings(model, batch)
    forward = FW.make_forward(model, batch)
    args = FW.forward_args(batch, full)
    with torch.no_grad():  # every masked copy of the batch in one pass: row r masks word w
        clean = forward(inp, *args)
        width = max(len(ex.flat_words()) for ex in mixed)
        masked = inp.repeat(width, 1, 1)
        for w in range(width):
            masked[w * batch.size : (w + 1) * batch.size][batch.tok_word == w] = 0.0
        repeated = [
            a.repeat(width, *[1] * (a.dim() - 1)) if torch.is_tensor(a) else a for a in args
        ]
        drops = (clean.repeat(width) - forward(masked, *repeated)).view(width, batch.size)
    for b, ex in enumerate(mixed):
        for w in range(len(ex.flat_words())):
            assert df["signed"][b][w] == pytest.approx(drops[w, b].item(), abs=1e-4)


def test_batching_does_not_change_scores(model_and_tokenizer, examples):
    model, tok = model_and_tokenizer
    mixed = examples[:2] + data.make_synthetic(1, seed=9, length=14)
    together = A.attribute(model, tok, mixed, "input_x_gradient", batch_size=3)
    alone = pd.concat([A.attribute(model, tok, [ex], "input_x_gradient") for ex in mixed])
    for a, b in zip(together["signed"], alone["signed"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    # many-pass methods: one example per batch by default, the same scores as a padded batch
    methods = ["integrated_gradients", "input_x_gradient", "occlusion"]
    one = A.attribute(model, tok, mixed, methods, ig_steps=4)
    padded = A.attribute(model, tok, mixed, methods, ig_steps=4, many_pass_batch_size=3)
    assert list(one["method"]) == list(padded["method"]) == methods * len(mixed)
    assert list(one["id"]) == [ex.id for ex in mixed for _ in methods]
    for a, b in zip(one["signed"], padded["signed"], strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)


def test_gold_and_contrast_targets(model_and_tokenizer, examples):
    model, tok = model_and_tokenizer
    gold = A.attribute(model, tok, examples, "saliency", target="gold")
    assert list(gold["target_label"]) == [ex.label for ex in examples]
    contrast = A.attribute(model, tok, examples, "input_x_gradient", target="contrast")
    pred = A.attribute(model, tok, examples, "input_x_gradient", target="pred")
    assert not np.allclose(
        np.concatenate(list(contrast["signed"])), np.concatenate(list(pred["signed"]))
    )


def test_stochastic_methods_are_seeded(model_and_tokenizer, examples):
    model, tok = model_and_tokenizer
    a = A.attribute(model, tok, examples[:1], "kernel_shap", n_samples=12, seed=3)
    b = A.attribute(model, tok, examples[:1], "kernel_shap", n_samples=12, seed=3)
    np.testing.assert_allclose(a["signed"][0], b["signed"][0])
    # Captum's GradientShap draws from NumPy's global RNG: whatever ran in between must
    # not change a seeded result, and the caller's streams must be left where they were.
    g1 = A.attribute(model, tok, examples[:1], "gradient_shap", gradient_shap_samples=4, seed=3)
    np.random.seed(0)
    expected_next = np.random.rand()
    np.random.seed(0)
    torch.randn(7)
    g2 = A.attribute(model, tok, examples[:1], "gradient_shap", gradient_shap_samples=4, seed=3)
    np.testing.assert_array_equal(g1["signed"][0], g2["signed"][0])
    assert np.random.rand() == expected_next
    r1 = A.attribute(model, tok, examples[:1], "random", seed=1)["signed"][0]
    r2 = A.attribute(model, tok, examples[:1], "random", seed=2)["signed"][0]
    assert not np.allclose(r1, r2)


def test_nonfinite_scores_are_detected(model_and_tokenizer, examples, monkeypatch):
    model, tok = model_and_tokenizer

    def broken(model, batch, **_):
        return [(np.full(8, np.nan), np.full(8, np.inf)) for _ in range(batch.size)], {}

    monkeypatch.setitem(A.METHODS, "broken", A.MethodSpec("broken", broken, "null", "one_pass"))
    df = A.attribute(model, tok, examples, "broken")
    assert (df["nonfinite"] == 8).all()
    assert all(np.all(s == 0) for s in df["signed"])


def test_shared_pass_gives_the_same_scores_as_separate_calls(model_and_tokenizer, examples):
    model, tok = model_and_tokenizer
    methods = ["saliency", "input_x_gradient", "attention", "attention_rollout"]
    together = A.attribute(model, tok, examples, methods)
    assert list(together["method"]) == methods * len(examples)
    for m in methods:
        alone = A.attribute(model, tok, examples, m)
        part = together[together["method"] == m]
        for a, b in zip(part["signed"], alone["signed"], strict=True):
            np.testing.assert_allclose(a, b, atol=1e-6)


def test_prompts_beyond_the_context_are_reported_not_dropped(model_and_tokenizer, examples):
    model, tok = model_and_tokenizer
    fits = len(FW.prepare(model, tok, examples[:1]).ids[0])
    long = data.make_synthetic(1, seed=5, length=40)[0]
    limit = model.config.max_position_embeddings
    model.config.max_position_embeddings = fits  # the 40-word prompt no longer fits
    try:
        df = A.attribute(model, tok, [examples[0], long], ["saliency", "random"])
    finally:
        model.config.max_position_embeddings = limit
    assert len(df) == 4
    over = df[df["id"] == long.id]
    assert set(over["status"]) == {"context_overflow"} and over["signed"].isna().all()
    assert set(df[df["id"] == examples[0].id]["status"]) == {"ok"}


FAITHFUL = A.methods_where(expected_faithful=True)  # every method expected to find the trigger


def test_faithful_methods_find_the_planted_word(planted_model, tokenizer):
    examples = data.make_synthetic(16, seed=0, length=8)
    trigger = np.array([ex.meta["trigger_position"] for ex in examples])
    options = {"ig_steps": 8, "n_samples": 32, "gradient_shap_samples": 8}
    options.update(noise_samples=4, bisection_steps=6)
    df = A.attribute(planted_model, tokenizer, examples, FAITHFUL + ["random"], **options)
    assert list(df[df["method"] == "random"]["target_label"]) == [ex.label for ex in examples]
    hits = {
        m: np.mean([np.argmax(s) for s in df[df["method"] == m]["magnitude"]] == trigger)
        for m in FAITHFUL + ["random"]
    }
    assert hits["random"] <= 0.4, hits  # chance is 1/8
    for m in FAITHFUL:
        assert hits[m] >= 0.9 and hits[m] >= hits["random"] + 0.5, (m, hits)


def test_path_values_end_at_the_target_and_give_the_completeness_error(
    model_and_tokenizer, examples
):
    model, tok = model_and_tokenizer
    path = A.path_values(model, tok, examples[:2], alphas=[0.0, 0.5, 1.0])
    assert len(path) == 6 and set(path["alpha"]) == {0.0, 0.5, 1.0}
    batch = FW.prepare(model, tok, examples[:2])
    full, inp = FW.input_embeddings(model, batch)
    with torch.no_grad():
        clean = FW.make_forward(model, batch)(inp, *FW.forward_args(batch, full))
    at_one = path[path["alpha"] == 1.0]["value"].to_numpy()
    np.testing.assert_allclose(at_one, clean.numpy(), atol=1e-4)
    ig = A.attribute(model, tok, examples[:2], "integrated_gradients", ig_steps=8)
    errors = A.completeness_errors(ig, path)
    total = at_one - path[path["alpha"] == 0.0]["value"].to_numpy()
    np.testing.assert_allclose(
        errors["relative_error"], np.abs(ig["ig_delta"]) / np.abs(total), rtol=1e-6
    )
    # a run without IG (the XNLI track's one-pass methods): no path, no errors, same columns
    none = A.completeness_errors(ig.assign(method="saliency").drop(columns="ig_delta"), path[:0])
    assert none.empty and "relative_error" in none
