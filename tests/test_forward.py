"""Batches of prompts with replaceable input-word embeddings, served from a prefix cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import logsumexp

from xalign_utils import data
from xalign_utils import forward as FW
from xalign_utils.scoring import label_logprobs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def examples():
    return data.make_synthetic(3, seed=7, length=8)


def test_only_input_word_tokens_are_replaceable(model_and_tokenizer, examples):
    model, tok = model_and_tokenizer
    batch = FW.prepare(model, tok, examples)
    for b, ex in enumerate(examples):
        pos = batch.in_pos[b][batch.in_valid[b]]
        text = tok.decode(batch.ids[b][pos]).split()
        assert text == ex.flat_words()
        assert not set(batch.ids[b][pos].tolist()) & set(tok.all_special_ids)


def test_first_token_target_unchanged_by_prefix_cache_and_padding(model_and_tokenizer, examples):
    model, tok = model_and_tokenizer
    mixed = examples[:2] + data.make_synthetic(1, seed=9, length=14)
    batch = FW.prepare(model, tok, mixed, target_mode="first_token")
    assert batch.prefix_len > 10  # the system prompt and instruction are shared
    full, inp = FW.input_embeddings(model, batch)
    with torch.no_grad():
        cached = FW.make_forward(model, batch)(inp, *FW.forward_args(batch, full))
        for b, rp in enumerate(batch.rendered):
            out = model(input_ids=torch.tensor([rp.input_ids])).logits[0, -1]
            token = batch.forms[b, batch.target[b], 0]
            plain = torch.log_softmax(out.float(), -1)[token]
            assert cached[b].item() == pytest.approx(plain.item(), abs=1e-4)


@pytest.mark.parametrize(
    ("dataset", "source"), [("esnli", "esnli_highlights"), ("hatexplain", "hatexplain")]
)
def test_label_target_is_the_teacher_forced_label_log_probability(
    model_and_tokenizer, raw_dir, dataset, source
):
    """The default target is log Σ_forms p(form | prompt) of the whole label string (multi-
    token labels such as "hate speech" included), as predictions score it — not the
    first sub-word of one form."""
    model, tok = model_and_tokenizer
    exs = data.load(source, "test", raw_dir=raw_dir)[:3]
    labels = [data.LABELS[dataset][i % len(data.LABELS[dataset])] for i in range(len(exs))]
    batch = FW.prepare(model, tok, exs, labels=labels)
    prompts = [r.input_ids for r in batch.rendered]
    expected = label_logprobs(model, tok, prompts, dataset)
    full, inp = FW.input_embeddings(model, batch)
    with torch.no_grad():
        got = FW.make_forward(model, batch)(inp, *FW.forward_args(batch, full))
        renorm = FW.make_forward(model, batch, renormalise=True)(
            inp, *FW.forward_args(batch, full, all_labels=True)
        )
    want = [expected[b, data.LABELS[dataset].index(lab)] for b, lab in enumerate(labels)]
    np.testing.assert_allclose(got.numpy(), want, atol=2e-4)
    norm = expected - logsumexp(expected, axis=1, keepdims=True)
    want_norm = [norm[b, data.LABELS[dataset].index(lab)] for b, lab in enumerate(labels)]
    np.testing.assert_allclose(renorm.numpy(), want_norm, atol=2e-4)
    with pytest.raises(ValueError, match="all_labels"):
        FW.make_forward(model, batch, renormalise=True)(inp, *FW.forward_args(batch, full))
