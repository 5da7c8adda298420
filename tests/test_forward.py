"""Batches of prompts with replaceable input-word embeddings, served from a prefix cache."""

from __future__ import annotations

import pytest
import torch

from xalign_utils import data
from xalign_utils import forward as FW

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


def test_prefix_cache_and_padding_leave_the_target_unchanged(model_and_tokenizer, examples):
    model, tok = model_and_tokenizer
    mixed = examples[:2] + data.make_synthetic(1, seed=9, length=14)
    batch = FW.prepare(model, tok, mixed)
    assert batch.prefix_len > 10  # the system prompt and instruction are shared
    full, inp = FW.input_embeddings(model, batch)
    with torch.no_grad():
        cached = FW.make_forward(model, batch)(inp, *FW.forward_args(batch, full))
        for b, rp in enumerate(batch.rendered):
            out = model(input_ids=torch.tensor([rp.input_ids])).logits[0, -1]
            plain = torch.log_softmax(out.float(), -1)[batch.target[b]]
            assert cached[b].item() == pytest.approx(plain.item(), abs=1e-4)
