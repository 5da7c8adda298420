"""Prompt templates (data, one per dataset × role) and chat rendering with word spans.

The templates follow the structure of Fayyaz et al. (2024), Tables A.3–A.5: a task
instruction with the input, the label options, and a one-word answer (classification);
the same input with a request for the most important words for a label, unbounded
("Unbound") or exactly k of them ("Top-Var"); free-text explanations before or after the
answer. They are plain strings, editable from a notebook (``TEMPLATES[...] = ...``).
The ``minimal`` role is no task instruction at all: a one-line question naming the
options, then the input (:data:`MINIMAL_QUESTIONS`), for the scoring sensitivity check.

Rendering records, for every input word, the token positions it occupies in the
chat-formatted prompt, via the tokenizer's offset mapping on the rendered string, so
attribution and masking touch input words only — never the instruction, the chat
template or special tokens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from .data.registry import DATASETS, LABELS
from .schema import Example

#: The verbaliser the model is expected to produce for each label (from the dataset
#: registry). Label scoring sums the probability of the lower-case and the capitalised
#: form (:func:`verbaliser_forms`).
VERBALISERS: dict[str, dict[str, str]] = {
    name: dict(spec.verbalisers) for name, spec in DATASETS.items() if spec.kind == "classification"
}
#: Task instruction with the input fields, per dataset (from the registry).
TASKS: dict[str, str] = {name: DATASETS[name].task for name in VERBALISERS}


def verbaliser_forms(dataset: str, label: str) -> tuple[str, ...]:
    """Surface forms whose probabilities make up a label's score (``normal``, ``Normal``)."""
    v = VERBALISERS[dataset][label]
    return tuple(dict.fromkeys((v, v[:1].upper() + v[1:])))


#: Role → instruction appended to the task text. ``{options}`` lists the verbalisers.
ROLES: dict[str, str] = {
    "classify": "Answer with one of: {options}. Answer with the label only.",
    "rationale_unbound": (
        "The answer is: {label}. Which words of the input are the most important for this "
        "answer? List them, separated by commas, and nothing else."
    ),
    "rationale_topk": (
        "The answer is: {label}. List exactly the {k} words of the input that are the most "
        "important for this answer, separated by commas, and nothing else."
    ),
    "explain_then_predict": (
        "First explain your reasoning in one sentence, then give the answer on a new line "
        "as 'Answer: <label>', where <label> is one of: {options}."
    ),
    "predict_then_explain": (
        "Give the answer as 'Answer: <label>', where <label> is one of: {options}; then "
        "explain in one sentence why, starting with 'Explanation:'."
    ),
}

#: Editable copy of every template: ``TEMPLATES[(dataset, role)]``.
TEMPLATES: dict[tuple[str, str], str] = {(d, r): TASKS[d] + ROLES[r] for d in TASKS for r in ROLES}


def or_options(dataset: str) -> str:
    """The verbalisers joined as a spoken choice: ``entailment, neutral or contradiction``."""
    names = [VERBALISERS[dataset][lab] for lab in LABELS[dataset]]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


#: The ``minimal`` role's one-line question per dataset (``{choice}``: :func:`or_options`).
#: It replaces the task instruction and the answer format request: the scoring
#: sensitivity analysis (:mod:`xalign_utils.calibration`) asks whether the label
#: collapse comes from the project prompt's wording.
MINIMAL_QUESTIONS: dict[str, str] = {
    "esnli": "Premise, then hypothesis: {choice}?",
    "xnli": "Premise, then hypothesis: {choice}?",
    "sst2": "Is the sentiment of this sentence {choice}?",
    "synthetic": "Is the sentiment of this sentence {choice}?",
    "movies": "Is the sentiment of this review {choice}?",
    "hatexplain": "Is this post {choice}?",
    "fever": "Claim, then evidence: {choice}?",
}


def minimal_template(dataset: str) -> str:
    """The ``minimal`` template: the question, then each input field on its own line."""
    question = MINIMAL_QUESTIONS.get(dataset, "Which is it: {choice}?")
    fields = re.findall(r"\{(\w+)\}", TASKS[dataset])
    return question.format(choice=or_options(dataset)) + "".join(f"\n{{{f}}}" for f in fields)


TEMPLATES.update({(d, "minimal"): minimal_template(d) for d in TASKS})


class ContextLengthError(ValueError):
    """A rendered prompt does not fit the model's context window."""


@dataclass
class RenderedPrompt:
    """A chat-formatted prompt and where its input words sit.

    Attributes:
        text: the rendered string (chat template applied).
        input_ids: its token ids (no special tokens added beyond the template's own).
        word_tokens: per flat input word, the token positions it covers.
        words: the flat input words.
        shared_tokens: token positions that cover both an input word and template text
            (e.g. a final period merged with a closing quote); attributed to the word.
    """

    text: str
    input_ids: list[int]
    word_tokens: list[list[int]]
    words: list[str]
    shared_tokens: list[int] = field(default_factory=list)

    @property
    def input_positions(self) -> list[int]:
        """All token positions that belong to input words, in order."""
        return sorted({p for span in self.word_tokens for p in span})


def options_text(dataset: str) -> str:
    """Comma-separated verbalisers, e.g. ``entailment, neutral, contradiction``."""
    return ", ".join(VERBALISERS[dataset][lab] for lab in LABELS[dataset])


def build_user_message(
    ex: Example, role: str, **fields: object
) -> tuple[str, list[tuple[int, int]]]:
    """Fill the (dataset, role) template; return the text and each flat word's char span."""
    key = (ex.dataset, role)
    if key not in TEMPLATES:
        valid = sorted({r for d, r in TEMPLATES if d == ex.dataset})
        raise KeyError(f"no template for {key}; roles for {ex.dataset!r}: {valid}")
    values = {"options": options_text(ex.dataset), **fields}
    if "label" in values and values["label"] in VERBALISERS[ex.dataset]:
        values["label"] = VERBALISERS[ex.dataset][values["label"]]
    parts: list[str] = []
    spans_by_segment: dict[str, list[tuple[int, int]]] = {}
    pos = 0
    for piece in re.split(r"(\{\w+\})", TEMPLATES[key]):
        name = piece[1:-1] if piece.startswith("{") and piece.endswith("}") else None
        if name is not None and name in ex.words:
            spans = []
            for i, word in enumerate(ex.words[name]):
                if i:
                    parts.append(" ")
                    pos += 1
                spans.append((pos, pos + len(word)))
                parts.append(word)
                pos += len(word)
            spans_by_segment[name] = spans
            continue
        if name is not None:
            if name not in values:
                raise KeyError(f"template {key} needs the field {name!r}")
            piece = str(values[name])
        parts.append(piece)
        pos += len(piece)
    missing = [s for s in ex.words if s not in spans_by_segment]
    if missing:
        raise KeyError(f"template {key} does not place the segment(s) {missing}")
    flat = [span for seg in ex.words for span in spans_by_segment[seg]]
    return "".join(parts), flat


def render(
    tokenizer,
    ex: Example,
    role: str = "classify",
    *,
    assistant_prefix: str = "",
    max_length: int | None = None,
    **fields: object,
) -> RenderedPrompt:
    """Render a prompt with the tokenizer's chat template and map words to tokens.

    Args:
        tokenizer: a fast Hugging Face tokenizer with a chat template.
        ex: the example.
        role: key into :data:`ROLES`, or ``minimal``.
        assistant_prefix: text the assistant turn starts with (e.g. a label to attribute).
        max_length: the model's context; longer prompts raise :class:`ContextLengthError`.
        **fields: template fields such as ``label`` and ``k``.
    """
    user, word_spans = build_user_message(ex, role, **fields)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    start = text.find(user)
    if start < 0:
        raise ValueError("the chat template altered the user message; cannot locate input words")
    text += assistant_prefix
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    if max_length is not None and len(ids) > max_length:
        raise ContextLengthError(f"{ex.id}: prompt has {len(ids)} tokens, context is {max_length}")
    char_word = [-1] * len(text)
    for wi, (s, e) in enumerate(word_spans):
        for c in range(start + s, start + e):
            char_word[c] = wi
    word_tokens: list[list[int]] = [[] for _ in word_spans]
    shared = []
    for ti, (s, e) in enumerate(offsets):
        covered = [char_word[c] for c in range(s, e) if not text[c].isspace()]
        hits = [w for w in covered if w >= 0]
        if not hits:
            continue
        word_tokens[hits[0]].append(ti)
        if len(hits) != len(covered) or len(set(hits)) > 1:
            shared.append(ti)
    return RenderedPrompt(text, list(ids), word_tokens, ex.flat_words(), shared)


def leading_special_tokens(tokenizer) -> list[int]:
    """The tokens the tokenizer puts before any text by default (Llama's, Mistral's and
    Gemma's BOS; none for SmolLM2): plain prompts keep them, as the Noiser paper's
    tokenisation does, and they are never attributed, perturbed or noised."""
    probe = tokenizer("x")["input_ids"]
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    return probe[: len(probe) - len(plain)] if probe[-len(plain) :] == plain else []


def render_plain(tokenizer, ex: Example, *, max_length: int | None = None) -> RenderedPrompt:
    """A next-token prompt (Knowns, LongRA) as plain text: its words joined by spaces, no
    chat template, the tokenizer's default leading special tokens (a BOS) only
    (:func:`leading_special_tokens`), words mapped to the tokens that cover them. Every
    other token of the prompt belongs to an input word.

    Raises:
        ContextLengthError: the prompt is longer than ``max_length`` tokens.
    """
    words = ex.flat_words()
    text = " ".join(words)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    lead = leading_special_tokens(tokenizer)
    ids, offsets = lead + list(enc["input_ids"]), enc["offset_mapping"]
    if max_length is not None and len(ids) > max_length:
        raise ContextLengthError(f"{ex.id}: prompt has {len(ids)} tokens, context is {max_length}")
    starts = np.cumsum([0] + [len(w) + 1 for w in words[:-1]])  # each word's first char
    word_tokens: list[list[int]] = [[] for _ in words]
    for ti, (s, e) in enumerate(offsets):
        piece = text[s:e]
        first_char = s + len(piece) - len(piece.lstrip()) if piece.strip() else s
        word_tokens[int(np.searchsorted(starts, first_char, side="right")) - 1].append(
            ti + len(lead)
        )
    return RenderedPrompt(text, ids, word_tokens, words)
