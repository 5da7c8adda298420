"""The planted-evidence model answers from the planted trigger word, reproducibly."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from xalign_utils import data, prompts
from xalign_utils.planted import build_planted_model

pytestmark = pytest.mark.slow  # the offline model's tokenizer; training takes ~10 s


def answers(model, tokenizer, examples: list[data.Example]) -> list[str]:
    """The label whose first token the model ranks higher after each classify prompt."""
    labels = data.LABELS["synthetic"]
    first = [tokenizer(lab, add_special_tokens=False)["input_ids"][0] for lab in labels]
    out = []
    with torch.no_grad():
        for ex in examples:
            ids = prompts.render(tokenizer, ex, "classify").input_ids
            logits = model(torch.tensor([ids])).logits[0, -1, first]
            out.append(labels[int(logits.argmax())])
    return out


def with_other_trigger(ex: data.Example) -> data.Example:
    """``ex`` with its trigger replaced by one of the other label (and that label)."""
    other = next(lab for lab in data.LABELS["synthetic"] if lab != ex.label)
    words = list(ex.words["text"])
    words[ex.meta["trigger_position"]] = data.SYNTHETIC_TRIGGERS[other][0]
    return dataclasses.replace(
        ex, label=other, segments={"text": " ".join(words)}, words={"text": words}
    )


def test_the_planted_model_answers_from_the_trigger(planted_model, tokenizer):
    examples = data.make_synthetic(48, seed=0, length=8)  # the test seed; training uses 1
    got = answers(planted_model, tokenizer, examples)
    accuracy = sum(g == ex.label for g, ex in zip(got, examples, strict=True)) / len(examples)
    assert accuracy >= 0.9  # chance is 0.5
    swapped = [with_other_trigger(ex) for ex in examples]
    flipped = answers(planted_model, tokenizer, swapped)
    assert sum(f == ex.label for f, ex in zip(flipped, swapped, strict=True)) >= 0.9 * len(swapped)


def test_training_is_deterministic_for_a_seed(tokenizer):
    def weights(seed: int) -> dict[str, torch.Tensor]:
        return build_planted_model(tokenizer, n_train=16, steps=3, seed=seed).state_dict()

    a, b, c = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
