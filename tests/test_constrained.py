"""Lexically constrained beam search (DBA) with the real offline model: plain beam search
equals Hugging Face's, constraints are met or reported unmet, batching changes nothing."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from helpers import segments_example

from xalign_utils import models, prompts
from xalign_utils.data import Example
from xalign_utils.decoding.constrained import allocate, constrained_beam_search

pytestmark = pytest.mark.slow

ESNLI = {
    "premise": "Three people wearing black blindfolds near a Salvar O Planeta sign .",
    "hypothesis": "they are protesting",
}
SST2 = {"text": "the film is a charming , funny and moving portrait of a family ."}
MOVIES = {"text": "a dull , lifeless script that wastes its talented cast ."}


def _example(dataset: str, segments: dict[str, str]) -> Example:
    return segments_example(dataset, segments)


@pytest.fixture(scope="module")
def lm():
    """The offline model (SDPA attention, as in generation) and tokenizer, loaded once."""
    return models.load_model(None, device="cpu")


@pytest.fixture(scope="module")
def prompt_ids(lm) -> list[list[int]]:
    """Two label-only prompts (the model ends them with EOS) and one explanation prompt
    (it runs into ``max_new_tokens``), of different lengths (left padding matters)."""
    tok = lm[1]
    return [
        prompts.render(tok, _example("sst2", SST2), "classify").input_ids,
        prompts.render(tok, _example("esnli", ESNLI), "explain_then_predict").input_ids,
        prompts.render(tok, _example("movies", MOVIES), "classify").input_ids,
    ]


def _alternatives(tok, word: str) -> list[list[int]]:
    """The with-space and bare tokenisations of ``word``."""
    return [
        tok.encode(" " + word, add_special_tokens=False),
        tok.encode(word, add_special_tokens=False),
    ]


def _contains(tokens: Sequence[int], alt: Sequence[int]) -> bool:
    n = len(alt)
    return any(list(tokens[i : i + n]) == list(alt) for i in range(len(tokens) - n + 1))


@pytest.fixture(scope="module")
def constrained(lm, prompt_ids):
    """``(constraints, outputs)``: each prompt constrained by words of its own input, a
    single-token and a multi-token one, each with two tokenisations; one batch."""
    tok = lm[1]
    words = [("family", "portrait"), ("protesting", "blindfolds"), ("cast", "lifeless")]
    constraints = [[_alternatives(tok, w) for w in pair] for pair in words]
    assert all(len(c[0][0]) == 1 and len(c[1][1]) > 1 for c in constraints)  # single, multi
    out = constrained_beam_search(
        lm[0], tok, prompt_ids, constraints, num_beams=4, max_new_tokens=20, batch_size=3
    )
    return constraints, out


@pytest.mark.parametrize(("num_beams", "length_penalty"), [(3, 1.0), (4, 0.5)])
def test_without_constraints_it_is_hf_beam_search(lm, prompt_ids, num_beams, length_penalty):
    """HF beam search with ``early_stopping=True`` (a prompt is done once ``num_beams``
    hypotheses ended) and the same EOS ids defines the same search, token for token."""
    model, tok = lm
    eos = sorted(
        {tok.eos_token_id} | set(np.atleast_1d(model.generation_config.eos_token_id).tolist())
    )
    ids, mask = models.left_pad(prompt_ids, tok.pad_token_id)
    with torch.inference_mode():
        hf = model.generate(
            input_ids=ids,
            attention_mask=mask,
            num_beams=num_beams,
            do_sample=False,
            max_new_tokens=12,
            length_penalty=length_penalty,
            early_stopping=True,
            eos_token_id=eos,
            pad_token_id=tok.pad_token_id,
            return_dict_in_generate=True,
            output_scores=True,
        )
    ours = constrained_beam_search(
        model,
        tok,
        prompt_ids,
        [[]] * 3,
        num_beams=num_beams,
        max_new_tokens=12,
        length_penalty=length_penalty,
    )
    rows = hf.sequences[:, ids.shape[1] :].tolist()
    for row, score, out in zip(rows, hf.sequences_scores.tolist(), ours, strict=True):
        end = next((i for i, t in enumerate(row) if t in eos), None)
        assert out.tokens == row[:end]
        assert out.hit_limit == (end is None)
        assert out.met == []
        assert out.score == pytest.approx(score, abs=1e-4)
    assert {o.hit_limit for o in ours} == {True, False}  # both ways of ending are covered


def test_satisfiable_constraints_are_all_met(constrained):
    constraints, outputs = constrained
    for cons, out in zip(constraints, outputs, strict=True):
        assert out.met == [True, True], out
        for alts in cons:
            assert any(_contains(out.tokens, a) for a in alts)
        assert np.isfinite(out.score) and len(out.tokens) <= 20


def test_an_unsatisfiable_constraint_is_reported_unmet(lm, prompt_ids):
    """A 6-token phrase cannot fit in 4 new tokens: the best hypothesis still comes back,
    meeting the satisfiable constraint and saying that the other one was not met."""
    tok = lm[1]
    phrase = tok.encode(" a b c d e f", add_special_tokens=False)
    assert len(phrase) == 6
    cons = [[_alternatives(tok, "family"), [phrase]]]
    (out,) = constrained_beam_search(lm[0], tok, prompt_ids[:1], cons, max_new_tokens=4)
    assert out.met == [True, False]
    assert out.hit_limit and len(out.tokens) == 4
    assert not _contains(out.tokens, phrase)
    assert any(_contains(out.tokens, a) for a in cons[0][0])


def test_a_prompt_decodes_the_same_alone_and_in_a_batch(lm, prompt_ids, constrained):
    """Batch of 3 (left-padded, rows dropped as prompts end) vs one prompt alone and a
    batch of 2: same tokens, same constraint flags."""
    constraints, batched = constrained
    model, tok = lm
    alone = constrained_beam_search(
        model, tok, prompt_ids[1:2], constraints[1:2], num_beams=4, max_new_tokens=20
    )
    pair = constrained_beam_search(
        model, tok, prompt_ids[::2], constraints[::2], num_beams=4, max_new_tokens=20
    )
    for a, b in zip(alone + pair, [batched[1], batched[0], batched[2]], strict=True):
        assert (a.tokens, a.met, a.hit_limit) == (b.tokens, b.met, b.hit_limit)
        assert a.score == pytest.approx(b.score, abs=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_beams": 0}, "num_beams must be >= 1"),
        ({"max_new_tokens": 0}, "max_new_tokens must be >= 1"),
        ({"constraints": [[[[5], []]]]}, "constraint 0, alternative 1 is empty"),
        ({"constraints": [[[]]]}, "constraint 0 has no alternatives"),
        ({"constraints": [[[[2]]]]}, "EOS or outside the vocabulary"),
        ({"constraints": []}, "one list per prompt"),
    ],
)
def test_bad_input_is_refused(lm, kwargs, message):
    args = {"constraints": [[]], **kwargs}
    with pytest.raises(ValueError, match=message):
        constrained_beam_search(lm[0], lm[1], [[1, 2, 3]], **args)


def test_bank_allocation():
    """k // banks each, remainder on top; a short bank's spare slots go down, then wrap."""
    assert allocate([9], 4) == [4]
    assert allocate([5, 5, 5], 4) == [1, 1, 2]
    assert allocate([5, 0, 5], 4) == [2, 0, 2]  # bank 1's slot goes to bank 0
    assert allocate([0, 5, 1], 4) == [0, 3, 1]  # top and bottom spill into bank 1
    assert allocate([1, 0, 0], 4) == [1, 0, 0]  # fewer candidates than slots
    assert allocate([4, 4, 4, 4, 4, 4], 4) == [0, 0, 0, 0, 0, 4]  # more banks than beams
