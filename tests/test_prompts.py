"""Word ↔ token spans on the rendered chat prompt, with the real offline tokenizer."""

from __future__ import annotations

import re

import pytest
from helpers import segments_example

from xalign_utils import data, prompts
from xalign_utils.data import Example

pytestmark = pytest.mark.slow


def _example(dataset: str, **segments: str) -> Example:
    return segments_example(dataset, segments)


def _check_spans(tokenizer, rp: prompts.RenderedPrompt) -> None:
    """Every word has tokens; its tokens decode to text containing the word; no overlap."""
    seen: set[int] = set()
    for word, span in zip(rp.words, rp.word_tokens, strict=True):
        assert span, f"word {word!r} has no token"
        assert span == list(range(span[0], span[-1] + 1)), "a word's tokens are contiguous"
        decoded = tokenizer.decode([rp.input_ids[p] for p in span]).strip()
        assert word in decoded or decoded in word, (word, decoded)
        assert not seen & set(span)
        seen |= set(span)


@pytest.mark.parametrize(
    ("dataset", "segments"),
    [
        ("sst2", {"text": "it 's a charming , often-affecting journey ."}),
        ("esnli", {"premise": "The dog , the dog and the dog .", "hypothesis": "A dog ."}),
        (
            "esnli",
            {
                "premise": "A woman squats down to touch the *cracked* earth.",
                "hypothesis": "packages. t-shirt `` HELP ''",
            },
        ),
        (
            "sst2",
            {"text": "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis"},
        ),
        ("hatexplain", {"text": "<user> i didn ’ t get it 😂 😂"}),
    ],
)
def test_spans_cover_input_words_only(tokenizer, dataset, segments):
    ex = _example(dataset, **segments)
    rp = prompts.render(tokenizer, ex, "classify")
    _check_spans(tokenizer, rp)
    # nothing outside the user message's input words is attributed
    user, _ = prompts.build_user_message(ex, "classify")
    start = rp.text.find(user)
    first_input = min(rp.input_positions)
    before = user[: user.find(ex.flat_words()[0])].rstrip()
    assert tokenizer.decode(rp.input_ids[:first_input]).rstrip().endswith(before)
    assert all(rp.input_ids[p] not in tokenizer.all_special_ids for p in rp.input_positions)
    assert start > 0


def test_repeated_words_get_distinct_positions(tokenizer):
    ex = _example("sst2", text="good good good bad good")
    rp = prompts.render(tokenizer, ex, "classify")
    _check_spans(tokenizer, rp)
    firsts = [span[0] for span in rp.word_tokens]
    assert firsts == sorted(firsts) and len(set(firsts)) == 5


@pytest.mark.parametrize("lang", ["ar", "hi", "th", "zh", "ru", "el"])
def test_non_latin_scripts(tokenizer, raw_dir, lang):
    ex = data.load_xnli("dev", raw_dir=raw_dir, langs=[lang])[0]
    rp = prompts.render(tokenizer, ex, "classify")
    assert all(rp.word_tokens)
    # byte-level BPE may merge bytes across words in these scripts only through spaces,
    # so each word's tokens re-decode to the word
    for word, span in zip(rp.words, rp.word_tokens, strict=True):
        assert word in tokenizer.decode([rp.input_ids[p] for p in span])


def test_many_subwords_and_label_field(tokenizer):
    ex = _example("sst2", text="supercalifragilisticexpialidocious")
    rp = prompts.render(tokenizer, ex, "rationale_topk", label="positive", k=2)
    assert len(rp.word_tokens[0]) > 3
    assert "exactly the 2 words" in rp.text and "The answer is: positive" in rp.text


def test_assistant_prefix_and_context_limit(tokenizer):
    ex = _example("sst2", text="fine film")
    rp = prompts.render(tokenizer, ex, "classify", assistant_prefix="positive")
    assert rp.text.endswith("assistant\npositive")
    with pytest.raises(prompts.ContextLengthError, match="context is 10"):
        prompts.render(tokenizer, ex, "classify", max_length=10)


def test_unknown_role_lists_valid_ones():
    with pytest.raises(KeyError, match="classify"):
        prompts.build_user_message(_example("sst2", text="x"), "summarise")


@pytest.mark.parametrize("dataset", sorted(prompts.TASKS))
def test_minimal_prompt_renders_with_word_positions(tokenizer, dataset):
    fields = re.findall(r"\{(\w+)\}", prompts.TASKS[dataset])
    ex = _example(dataset, **{f: f"the {f} is short , isn't it ?" for f in fields})
    rp = prompts.render(tokenizer, ex, "minimal")
    _check_spans(tokenizer, rp)
    assert len(rp.word_tokens) == 8 * len(fields)
    user, _ = prompts.build_user_message(ex, "minimal")
    question = user.split("\n")[0]
    assert question.endswith("?") and prompts.or_options(dataset) in question
    assert all(prompts.VERBALISERS[dataset][lab] in question for lab in data.LABELS[dataset])
    assert "Answer with" not in user and prompts.TASKS[dataset].split("\n")[0] not in user
    assert user.split("\n")[1:] == [ex.segments[f] for f in fields]  # one field per line
