"""Label scoring: whole-label log-probabilities, the prefix cache, parsing generated answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xalign_utils import data, prompts, scoring


def test_parse_label_needs_an_unambiguous_answer():
    assert scoring.parse_label("Answer: Hate speech", "hatexplain") == "hatespeech"
    assert scoring.parse_label("The post is offensive.\nAnswer: normal", "hatexplain") == "normal"
    assert scoring.parse_label("It is hate speech, offensive, or normal.", "hatexplain") is None
    assert scoring.parse_label("The sentiment is clearly positive.", "sst2") == "positive"
    assert scoring.parse_label("I cannot decide.", "esnli") is None


def test_forms_of_a_label_add_up_in_probability():
    # label 0 has two forms (p = 0.1 and 0.3), label 1 one (p = 0.2)
    raw = np.log([[0.1, 0.3, 0.2]])
    forms = [(0, "normal"), (0, "Normal"), (1, "offensive")]
    np.testing.assert_allclose(np.exp(scoring.forms_to_labels(raw, forms, 2)), [[0.4, 0.2]])


def test_a_verbaliser_without_tokens_is_refused():
    def tokenizer(text, add_special_tokens=False):
        return {"input_ids": [ord(c) for c in text]}

    assert scoring.verbaliser_ids(tokenizer, ["no", "yes"]) == [[110, 111], [121, 101, 115]]
    with pytest.raises(ValueError, match="tokenises to nothing"):
        scoring.verbaliser_ids(tokenizer, ["yes", ""])


@pytest.mark.slow
def test_label_scoring_on_esnli(model_and_tokenizer, raw_dir):
    model, tok = model_and_tokenizer
    exs = data.load_esnli_highlights("test", raw_dir=raw_dir)[:5]
    ids = [prompts.render(tok, ex, "classify").input_ids for ex in exs]
    logp = scoring.label_logprobs(model, tok, ids, "esnli", batch_size=2)
    assert logp.shape == (5, 3) and np.isfinite(logp).all()
    assert (np.exp(logp).sum(1) <= 1 + 1e-6).all()
    # batching and padding do not change the numbers
    alone = scoring.label_logprobs(model, tok, ids[:1], "esnli", batch_size=1)
    np.testing.assert_allclose(alone[0], logp[0], atol=1e-4)


@pytest.mark.slow
def test_cached_scoring_equals_a_plain_forward(model_and_tokenizer):
    model, tok = model_and_tokenizer
    ex = data.make_synthetic(1)[0]
    ids = prompts.render(tok, ex, "classify").input_ids
    verbs = ["hate speech", "contradiction", "no"]  # 1..3 tokens each
    got = scoring.score_labels(model, tok, [ids], verbs)[0]
    for j, v in enumerate(scoring.verbaliser_ids(tok, verbs)):
        with torch.no_grad():
            lp = torch.log_softmax(model(torch.tensor([ids + v])).logits[0].double(), -1)
        want = sum(lp[len(ids) - 1 + t, v[t]].item() for t in range(len(v)))
        assert got[j] == pytest.approx(want, abs=1e-3)
