"""Greedy generation with shared-prefix caches and the steering processors, with the real
offline model: same tokens as ``model.generate``, exact teacher-forced log-probabilities,
the bias touches exactly the attributed words' tokens, extractive lists always parse."""

from __future__ import annotations

import pytest
import torch
from helpers import segments_example

from xalign_utils import models, prompts
from xalign_utils.data import Example
from xalign_utils.decoding.generation import (
    continuation_logprobs,
    eos_ids,
    greedy_generate,
    greedy_texts,
    plan_batches,
)
from xalign_utils.decoding.steering import (
    ExtractiveList,
    WordBias,
    as_logits_processor,
    word_alternatives,
)
from xalign_utils.explanations import parse_word_list

pytestmark = pytest.mark.slow

SEGMENTS = {
    "esnli": {
        "premise": "Three people wearing black blindfolds near a Salvar O Planeta sign .",
        "hypothesis": "they are protesting",
    },
    "sst2": {"text": "the film is a charming , funny and moving portrait of a family ."},
    "hatexplain": {"text": "those people should all be sent back where they came from"},
}
ROLES = ("rationale_unbound", "rationale_topk", "explain_then_predict")


def _example(dataset: str) -> Example:
    return segments_example(dataset, SEGMENTS[dataset], ex_id=dataset)


@pytest.fixture(scope="module")
def lm():
    """The offline model with fused attention, as generation runs it."""
    return models.load_model(None, device="cpu")


@pytest.fixture(scope="module")
def cases(lm):
    """``(examples, prompt ids, group keys)``: three roles for each of three examples."""
    tok = lm[1]
    exs = [_example(d) for d in SEGMENTS]
    rows = [(ex, role) for ex in exs for role in ROLES]
    ids = [prompts.render(tok, ex, role, label=ex.label, k=3).input_ids for ex, role in rows]
    return [ex for ex, _ in rows], ids, [ex.id for ex, _ in rows]


def test_plan_keeps_groups_together_and_respects_the_batch_size():
    prompts_ = [[1, 2, 3, 4, 5], [1, 2, 3, 4, 6, 7], [1, 2, 9], [1, 2, 9, 9, 9, 9]]
    batches = plan_batches(prompts_, ["a", "a", "b", "c"], shared=2, batch_size=2)
    units = [u for b in batches for u in b]
    assert sorted(i for _, idx in units for i in idx) == [0, 1, 2, 3]
    assert all(sum(len(idx) for _, idx in b) <= 2 for b in batches)
    assert (2, [0, 1]) in units  # "a" shares [3, 4] after the 2 shared tokens
    assert (0, [2]) in units  # a lone prompt keeps its last token for the suffix


def test_greedy_generate_equals_model_generate(lm, cases):
    model, tok = lm
    _, ids, groups = cases
    new = greedy_generate(model, tok, ids, 14, batch_size=4, groups=groups)
    old = models.generate(model, tok, ids, 14, batch_size=16)
    assert [g.text for g in new] == [o["text"] for o in old]
    assert [g.hit_limit for g in new] == [o["hit_limit"] for o in old]
    assert greedy_texts(model, tok, ids, 14, batch_size=4) == old  # models.generate's format
    assert 0 < sum(g.hit_limit for g in new) < len(new)  # some end by themselves, some hit 14
    # per-prompt budgets: a prompt stops at its own
    short = greedy_generate(model, tok, ids, [3] * 3 + [14] * 6, batch_size=9, groups=groups)
    assert all(len(g.tokens) <= 3 for g in short[:3])
    assert [g.tokens for g in short[3:]] == [g.tokens for g in new[3:]]
    # one row ending early stays in the cache (8 of 9 alive, above COMPACT_BELOW), fed pads
    one = greedy_generate(model, tok, ids, [2] + [14] * 8, batch_size=9, groups=groups)
    assert len(one[0].tokens) <= 2
    assert [g.tokens for g in one[1:]] == [g.tokens for g in new[1:]]


def test_continuation_logprobs_equal_a_plain_forward(lm, cases):
    model, tok = lm
    _, ids, groups = cases
    conts = [[tok.encode(" people", add_special_tokens=False)[0], 11, 13], [], [42]] * 3
    got = continuation_logprobs(model, tok, ids, conts, batch_size=4, groups=groups)
    for prompt, cont, lp in zip(ids, conts, got, strict=True):
        assert len(lp) == len(cont)
        if not cont:
            continue
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([prompt + cont])).logits[0].float()
        want = torch.log_softmax(logits, -1)[len(prompt) - 1 : -1].gather(
            1, torch.tensor(cont)[:, None]
        )[:, 0]
        assert torch.allclose(torch.tensor(lp), want, atol=1e-4)


def test_bias_raises_exactly_the_attributed_words_tokens(lm, cases):
    model, tok = lm
    exs, ids, groups = cases
    weights = [{"blindfolds": 1.0, "protesting": 0.5, ".": 1.0}] + [{}] * 8
    bias = WordBias(tok, weights, alpha=3.0)
    scores = torch.zeros((1, len(tok)))
    changed = (bias([0], [[]], scores)[0] != 0).nonzero()[:, 0].tolist()
    begins = {a[0] for w in ("blindfolds", "protesting") for a in word_alternatives(tok, w)}
    assert set(changed) == begins  # punctuation is not steered
    alt = word_alternatives(tok, " blindfolds".strip())[-1]
    if len(alt) > 1:  # inside a word, its next token is raised
        inside = bias([0], [list(alt[:1])], scores)[0]
        assert inside[alt[1]] == pytest.approx(3.0)
    written = list(word_alternatives(tok, "blindfolds")[-1])
    after = bias([0], [written], scores)[0]  # a word once written is no longer raised
    assert set((after != 0).nonzero()[:, 0].tolist()) == {
        a[0] for a in word_alternatives(tok, "protesting")
    }
    plain = greedy_generate(model, tok, ids, 16, groups=groups)
    zero = greedy_generate(model, tok, ids, 16, groups=groups, processor=WordBias(tok, weights, 0))
    assert [g.tokens for g in zero] == [g.tokens for g in plain]
    steered = greedy_generate(model, tok, ids[:1], 16, processor=WordBias(tok, weights[:1], 8.0))
    assert "blindfolds" in steered[0].text or "protesting" in steered[0].text


def test_extractive_lists_always_parse_to_input_words(lm, cases):
    model, tok = lm
    exs, ids, groups = cases
    lists = [
        i
        for i, (ex, role) in enumerate(zip(exs, ROLES * 3, strict=False))
        if role.startswith("rat")
    ]
    for budget in (3, 7, 24):
        proc = ExtractiveList(
            tok,
            [exs[i].flat_words() for i in lists],
            [budget] * len(lists),
            end_id=tok.eos_token_id,
        )
        out = greedy_generate(model, tok, [ids[i] for i in lists], budget, processor=proc)
        for i, g in zip(lists, out, strict=True):
            parsed = parse_word_list(g.text, exs[i].flat_words())
            assert parsed.status == "ok", (budget, g.text)
            assert parsed.positions and not parsed.out_of_input, (budget, g.text)
            assert not g.hit_limit


def test_processors_run_inside_model_generate(lm, cases):
    model, tok = lm
    _, ids, _ = cases
    proc = WordBias(tok, [{"blindfolds": 1.0, "protesting": 1.0}], alpha=4.0)
    ours = greedy_generate(model, tok, ids[:1], 12, processor=proc)[0]
    theirs = model.generate(
        input_ids=torch.tensor([ids[0]]),
        max_new_tokens=12,
        do_sample=False,
        logits_processor=[as_logits_processor(proc, len(ids[0]))],
        pad_token_id=tok.pad_token_id,
        eos_token_id=sorted(eos_ids(model, tok)),
    )[0, len(ids[0]) :].tolist()
    assert [t for t in theirs if t not in eos_ids(model, tok)] == ours.tokens


def test_bad_input_is_refused(lm):
    model, tok = lm
    with pytest.raises(ValueError, match="at least one token"):
        greedy_generate(model, tok, [[1, 2], []])
    with pytest.raises(ValueError, match="one budget"):
        greedy_generate(model, tok, [[1, 2]], [4, 4])
    with pytest.raises(ValueError, match="keys for"):
        greedy_generate(model, tok, [[1, 2]], 4, groups=["a", "b"])
