"""Scoring sensitivity: calibration maths on arrays, and every prompt × rule with the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import text_example
from scipy.special import logsumexp, softmax

from xalign_utils import calibration as C
from xalign_utils.data import LABELS
from xalign_utils.prompts import render, verbaliser_forms
from xalign_utils.schema import Example
from xalign_utils.scoring import label_logprobs, verbaliser_ids


def nli_example(ex_id: str, premise: str, hypothesis: str, label: str) -> Example:
    return Example(
        id=ex_id,
        dataset="esnli",
        split="test",
        label=label,
        segments={"premise": premise, "hypothesis": hypothesis},
        words={"premise": premise.split(), "hypothesis": hypothesis.split()},
        rationale={
            "premise": [0] * len(premise.split()),
            "hypothesis": [1] * len(hypothesis.split()),
        },
    )


# --------------------------------------------------------------------------- maths


def test_uniform_content_free_distribution_changes_nothing():
    rng = np.random.default_rng(0)
    logp = rng.normal(size=(20, 3)) * 3
    out = C.contextual_calibration(logp, np.full(3, 1 / 3))
    np.testing.assert_array_equal(out.argmax(1), logp.argmax(1))
    np.testing.assert_allclose(np.exp(out), softmax(logp, axis=1))


def test_calibration_divides_by_the_content_free_distribution():
    logp = np.log([[0.6, 0.4], [0.9, 0.1]])
    p_cf = np.array([0.8, 0.2])  # the model favours label 0 on empty inputs
    out = np.exp(C.contextual_calibration(logp, p_cf))
    expected = np.array([[0.6 / 0.8, 0.4 / 0.2], [0.9 / 0.8, 0.1 / 0.2]])
    np.testing.assert_allclose(out, expected / expected.sum(1, keepdims=True))
    assert list(out.argmax(1)) == [1, 0]  # the first flips, the confident one stays
    # unnormalised log-scores (label mass < 1) calibrate the same way
    np.testing.assert_allclose(np.exp(C.contextual_calibration(logp - 2.0, p_cf)), out)


def test_content_free_distribution_averages_probabilities():
    logp_cf = np.log([[0.5, 0.5], [0.9, 0.1], [0.1, 0.9]]) - 1.0  # not normalised
    np.testing.assert_allclose(C.content_free_distribution(logp_cf), [0.5, 0.5])
    np.testing.assert_allclose(C.content_free_distribution(np.log([0.3, 0.7])), [0.3, 0.7])


def test_content_free_example_replaces_every_field():
    ex = nli_example("n1", "A dog runs .", "An animal moves .", "entailment")
    for text, words in (("N/A", ["N/A"]), ("", []), ("[MASK]", ["[MASK]"])):
        cf = C.content_free_example(ex, text)
        assert cf.segments == {"premise": text, "hypothesis": text}
        assert cf.words == {"premise": words, "hypothesis": words}
        assert cf.rationale is None and cf.dataset == "esnli" and cf.id != ex.id
    assert ex.words["premise"] == ["A", "dog", "runs", "."]  # the original is untouched


# --------------------------------------------------------------------------- with the model


EXAMPLES = [  # single-token (sst2) and multi-token, two-field (esnli) verbalisers
    text_example("s1", "a gorgeous , witty film".split(), dataset="sst2", label="positive"),
    text_example("s2", "dull and lifeless".split(), dataset="sst2", label="negative"),
    nli_example("n1", "A dog runs in the park .", "An animal is outside .", "entailment"),
    nli_example("n2", "A man sleeps .", "The man runs .", "contradiction"),
]
DATASETS = ("sst2", "esnli")


@pytest.fixture(scope="module")
def sensitivity(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    return C.scoring_sensitivity(model, tokenizer, EXAMPLES, batch_size=4)


def _prompt_ids(tokenizer, dataset: str, prompt: str) -> list[list[int]]:
    return [render(tokenizer, ex, prompt).input_ids for ex in EXAMPLES if ex.dataset == dataset]


def _preds(predictions, dataset: str, prompt: str, rule: str) -> list[str]:
    sel = predictions[
        (predictions["dataset"] == dataset)
        & (predictions["prompt"] == prompt)
        & (predictions["rule"] == rule)
    ]
    assert list(sel["id"]) == [ex.id for ex in EXAMPLES if ex.dataset == dataset]
    return list(sel["pred"])


@pytest.mark.slow
def test_table_has_every_dataset_prompt_and_rule(sensitivity):
    summary, predictions = sensitivity
    keys = set(zip(summary["dataset"], summary["prompt"], summary["rule"], strict=True))
    assert keys == {(d, p, r) for d in DATASETS for p in C.PROMPTS for r in C.RULES}
    assert len(summary) == len(keys)
    assert len(predictions) == len(EXAMPLES) * len(C.PROMPTS) * len(C.RULES)
    assert set(predictions.columns) >= {"id", "dataset", "prompt", "rule", "label", "pred"}
    for _, row in summary.iterrows():
        preds = predictions[
            (predictions["dataset"] == row["dataset"])
            & (predictions["prompt"] == row["prompt"])
            & (predictions["rule"] == row["rule"])
        ]
        assert row["n"] == len(preds)
        assert row["accuracy"] == pytest.approx((preds["pred"] == preds["label"]).mean())
        assert row["top_share"] == pytest.approx(preds["pred"].value_counts().iloc[0] / len(preds))
        assert row["top_label"] in LABELS[row["dataset"]]
        assert bool(row["p_cf"]) == (row["rule"] == "contextual_calibration")
    perf = C.sensitivity_performance(predictions)
    assert set(perf["system"]) == {"model", "zero-rate"}
    assert len(perf) == len(keys) * 2 * 2  # accuracy, macro-F1 × model, zero-rate


@pytest.mark.slow
@pytest.mark.parametrize("prompt", C.PROMPTS)
def test_sequence_rule_reproduces_label_logprobs(model_and_tokenizer, sensitivity, prompt):
    model, tokenizer = model_and_tokenizer
    _, predictions = sensitivity
    for dataset in DATASETS:
        logp = label_logprobs(model, tokenizer, _prompt_ids(tokenizer, dataset, prompt), dataset)
        expected = [LABELS[dataset][i] for i in logp.argmax(1)]
        assert _preds(predictions, dataset, prompt, "sequence") == expected


@pytest.mark.slow
@pytest.mark.parametrize("prompt", C.PROMPTS)
def test_first_token_rule_matches_a_direct_forward(model_and_tokenizer, sensitivity, prompt):
    model, tokenizer = model_and_tokenizer
    _, predictions = sensitivity
    for dataset in DATASETS:
        expected = []
        for ids in _prompt_ids(tokenizer, dataset, prompt):
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
            logp = torch.log_softmax(logits, -1).double().numpy()
            per_label = []
            for lab in LABELS[dataset]:
                firsts = {t[0] for t in verbaliser_ids(tokenizer, verbaliser_forms(dataset, lab))}
                per_label.append(logsumexp(logp[sorted(firsts)]))
            expected.append(LABELS[dataset][int(np.argmax(per_label))])
        assert _preds(predictions, dataset, prompt, "first_token") == expected


@pytest.mark.slow
def test_next_token_datasets_are_refused(model_and_tokenizer):
    model, tokenizer = model_and_tokenizer
    with pytest.raises(ValueError, match="no labels"):
        C.scoring_sensitivity(
            model, tokenizer, [text_example("k", ["Paris", "is"], dataset="knowns")]
        )
