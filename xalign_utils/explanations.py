"""The model's own explanations: eliciting them, parsing them, mapping them to input words.

Word-list rationales ("Unbound" and "Top-Var" prompts) are parsed tolerantly — pipes,
commas, newlines, numbering, quotes, case, punctuation, inflected or partial forms,
repeats — and every listed word is either mapped to input-word positions or kept and
counted as *out of input*. An output with no usable word is a *parse failure*, recorded
with its reason, never dropped. Free-text explanations are mapped to the input words they
cite by normalised lexical match, stop words excluded.

A word-list rationale names word *types*: a listed word maps to every occurrence of it in
the input. Its positions keep the order in which the list names its words (the first
mention of a position wins), so graded consistency can read the list's order; free-text
citations are a set (sorted positions) and carry no grades. An output that explicitly
names no word ("none", "N/A", "no words") is a *non-answer*, counted apart from parse
failures. A lone letter never stands for an input word unless the list names it on its
own (``N/A`` is not ``a``; ``c a t`` is the word ``cat`` spelled out).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import pandas as pd
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from .decoding.generation import greedy_generate
from .prompts import render
from .schema import Example
from .scoring import parse_label

REFUSAL = re.compile(
    r"\b(i\s*(?:'m| am)\s*(?:sorry|unable|not able)|i\s*can(?:no|')t|as an ai|i do not have|i don't have)\b",
    re.I,
)
_LEAD_IN = re.compile(
    r"^\s*(?:here (?:are|is)|(?:the )?(?:most )?important (?:words?|parts?)|(?:the )?words?|(?:the )?answer|"
    r"rationale|key ?words?)\b[^:\n]*?(?::|\bare\b|\bis\b)\s*",
    re.I,
)
_QUOTED = re.compile(r"\"([^\"\n]{1,60})\"|“([^”\n]{1,60})”|(?<![\w])'([^'\n]{1,60})'(?![\w])")
_NUMBERING = re.compile(r"^\s*(?:\(?\d+[.)]|[-*•]|\(?[a-z][.)])\s+", re.I)
_SPLIT = re.compile(r"\s*(?:[,;|\n/]|\band\b|\s-\s)\s*", re.I)
#: Clause boundaries at which a refusal is cut from a list that follows it ("I'm sorry, but
#: the words are cat, dog"): a sentence end after a letter, a newline, or "but".
_CLAUSE = re.compile(r"(?<=[^\W\d_][.!?])\s+|\n+|,?\s+but\s+", re.I)
#: A whole output that explicitly names no word (matched on the normalised text).
_NON_ANSWER = re.compile(
    r"^(?:none|nothing|nil|null|n/?a|not applicable|no answer|"
    r"(?:there (?:are|is) )?no(?:ne of the)?(?: \w+)? words?(?: \w+)*)$"
)
#: ``N/A`` inside a list: dropped before splitting, so its letters never match ``a``.
_NA_TOKEN = re.compile(r"(?<!\w)n/a(?!\w)", re.I)
_SUFFIXES = ("ingly", "edly", "ing", "ed", "es", "s", "ly", "er", "est", "'s", "’s")


def normalise(token: str) -> str:
    """Lower-case, NFKC, strip surrounding punctuation and quotes."""
    token = unicodedata.normalize("NFKC", token).lower().strip()
    return token.strip(" \t\"'`“”‘’.,;:!?()[]{}<>*_")


def stem(token: str) -> str:
    """A light suffix stripper, enough to match ``dogs``/``dog`` and ``playing``/``play``."""
    for suffix in _SUFFIXES:
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            base = token[: -len(suffix)]
            if (
                suffix in {"ing", "ed", "er", "est"}
                and len(base) >= 4
                and base[-1] == base[-2]
                and base[-1] not in "aeiouls"
            ):
                base = base[:-1]  # squatting -> squat, planned -> plan
            return base
    return token


def stop_words() -> frozenset[str]:
    """English stop words (scikit-learn's list) plus tokenisation debris."""
    return frozenset(ENGLISH_STOP_WORDS) | {"``", "''", "'s", "n't", "s", "t"}


def match_positions(token: str, words: Sequence[str]) -> list[int]:
    """Positions of input words that ``token`` names: exact, then stem, then sub-word.

    Sub-word matches (the token is a part of an input word or vice versa) need at least
    four characters on the shorter side, so ``a`` never matches ``cat``.
    """
    norm = normalise(token)
    if not norm:
        return []
    normed = [normalise(w) for w in words]
    exact = [i for i, w in enumerate(normed) if w == norm]
    if exact:
        return exact
    s = stem(norm)
    stemmed = [i for i, w in enumerate(normed) if w and stem(w) == s]
    if stemmed:
        return stemmed
    if len(norm) >= 4:
        return [i for i, w in enumerate(normed) if len(w) >= 4 and (norm in w or w in norm)]
    return []


@dataclass
class ParsedList:
    """A parsed word-list rationale.

    Attributes:
        items: the listed words, normalised, duplicates removed, in order.
        positions: input-word positions they name, in the order the list names them (a
            word's occurrences in input order; a position named twice kept at its first
            mention), so ``positions[0]`` belongs to the first-named word.
        out_of_input: listed words that match no input word.
        status: ``ok``, ``empty`` (no text), ``refusal``, ``non_answer`` (the output
            explicitly names no word: "none", "N/A", "no words", an empty list),
            ``sentence`` (prose, not a list: its content words were used) or
            ``no_match`` (nothing named is in the input).
        repeats: how many listed words were repeats.
    """

    items: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    out_of_input: list[str] = field(default_factory=list)
    status: str = "ok"
    repeats: int = 0

    @property
    def failed(self) -> bool:
        """No usable word: empty, refusal, or nothing that is in the input. A non-answer
        is not a failure: it was parsed, and says "no word"."""
        return self.status in {"empty", "refusal", "no_match"}

    @property
    def non_answer(self) -> bool:
        """The output explicitly names no word (counted apart from failures)."""
        return self.status == "non_answer"


def _is_non_answer(text: str, words: Sequence[str]) -> bool:
    """Whether ``text`` (a lead-in already removed) explicitly names no word. A lone
    "none" that is itself an input word is a word, not a non-answer."""
    core = " ".join(normalise(text).split())
    if not core:  # "[]", "-", a lead-in with nothing after it
        return True
    if not _NON_ANSWER.match(core):
        return False
    return " " in core or not any(normalise(w) == core for w in words)


def _list_tokens(raw_items: Sequence[str]) -> list[tuple[str, bool]]:
    """Tokens of a list's items, each with whether its item is that token alone. An item
    of single letters (``c a t``) is one spelled-out word."""
    tokens: list[tuple[str, bool]] = []
    for item in raw_items:
        parts = item.split()
        letters = [normalise(p) for p in parts]
        if len(parts) > 1 and all(len(c) == 1 and c.isalpha() for c in letters):
            tokens.append(("".join(letters), True))
        else:  # a multi-word item names each of its words
            tokens += [(p, len(parts) == 1) for p in parts]
    return tokens


def _without_refusal(text: str) -> str:
    """``text`` less its clauses that refuse or apologise, one clause a line."""
    return "\n".join(c for c in _CLAUSE.split(text) if c.strip() and not REFUSAL.search(c))


def parse_word_list(text: str, words: Sequence[str]) -> ParsedList:
    """Parse a model's word-list output and map it to input-word positions (in the order
    named). A refusal followed by a list ("I'm sorry, but the words are cat, dog") keeps
    the list; a single letter matches an input word only when the list names it alone."""
    text = (text or "").strip()
    if not text:
        return ParsedList(status="empty")
    if REFUSAL.search(text):
        rest = _without_refusal(text)
        salvaged = _parse_list(rest, words) if rest.strip() else None
        if salvaged is None or salvaged.status != "ok":
            return ParsedList(status="refusal")
        return salvaged
    return _parse_list(text, words)


def _parse_list(text: str, words: Sequence[str]) -> ParsedList:
    """:func:`parse_word_list` of a non-blank output that is not a refusal."""
    quoted = ["".join(groups) for groups in _QUOTED.findall(text)]
    if quoted:  # 'The most important words are "people" and "boat".'
        text = "\n".join(quoted)
    else:
        text = _LEAD_IN.sub("", text, count=1)
    if _is_non_answer(text, words):
        return ParsedList(status="non_answer")
    raw_items = [_NUMBERING.sub("", part) for part in _SPLIT.split(_NA_TOKEN.sub(" ", text))]
    raw_items = [p for p in (r.strip() for r in raw_items) if normalise(p)]
    status = "ok"
    if any(len(item.split()) >= 5 for item in raw_items):
        # prose (a sentence, or step-by-step reasoning) instead of a list: keep content words
        status = "sentence"
        stops = stop_words()
        tokens = [
            (t, False)
            for item in raw_items
            for t in item.split()
            if normalise(t) and normalise(t) not in stops
        ]
    else:
        tokens = _list_tokens(raw_items)
    items, out, seen, repeats = [], [], set(), 0
    positions: dict[int, None] = {}  # insertion-ordered: the order named
    for tok, alone in tokens:
        norm = normalise(tok)
        if not norm:
            continue
        if norm in seen:
            repeats += 1
            continue
        seen.add(norm)
        items.append(norm)
        lone_letter = len(norm) == 1 and norm.isalpha() and not alone
        hit = [] if lone_letter else match_positions(norm, words)
        if hit:
            positions.update(dict.fromkeys(hit))
        else:
            out.append(norm)
    if not items:
        status = "empty"
    elif not positions:
        status = "no_match"
    return ParsedList(items, list(positions), out, status, repeats)


def cited_positions(
    text: str, words: Sequence[str], exclude_stop_words: bool = True
) -> tuple[list[int], list[str]]:
    """Input-word positions a free-text explanation cites (normalised lexical match).

    Returns:
        ``(positions, matched_tokens)``; stop words are excluded on both sides. The
        positions are a set (sorted): prose has no order of importance to grade.
    """
    stops = stop_words() if exclude_stop_words else frozenset()
    positions, matched = set(), []
    for tok in dict.fromkeys(normalise(t) for t in re.split(r"\s+", text or "")):
        if not tok or tok in stops:
            continue
        hit = [i for i in match_positions(tok, words) if normalise(words[i]) not in stops]
        if hit:
            positions.update(hit)
            matched.append(tok)
    return sorted(positions), matched


def split_explanation(text: str, order: str) -> str:
    """The explanation part of an explain-then-predict / predict-then-explain output."""
    text = text or ""
    if order == "predict_then_explain":
        m = re.search(r"explanation\s*[:：]\s*(.*)", text, re.I | re.S)
        if m:
            return m.group(1).strip()
        return re.sub(
            r"^.*?answer\s*[:：][^\n.]*[\n.]?", "", text, count=1, flags=re.I | re.S
        ).strip()
    return re.split(r"\banswer\s*[:：]", text, maxsplit=1, flags=re.I)[0].strip()


def is_word_list(role: str) -> bool:
    """Whether ``role`` elicits a word list (Unbound, Top-Var), whose order can be graded,
    rather than free text."""
    return role.startswith("rationale")


def k_source(ex: Example) -> str:
    """Where :func:`rationale_k` takes k from: ``human`` (the example's human rationale
    names at least one word) or ``fixed`` (no rationale, or an empty one)."""
    return "human" if sum(v for v in ex.flat_rationale() if v is not None) > 0 else "fixed"


def rationale_k(ex: Example, fixed_k: int) -> int:
    """Top-Var k: the number of human-rationale words, else ``fixed_k`` (always ≥ 1).

    An empty human rationale (HateXplain's ``normal`` posts mark no word) falls back to
    ``fixed_k`` like a missing one: asking for "exactly 0 words", or erasing nothing for
    the flip rate, measures nothing. :func:`k_source` says which k an example got, so
    tables can count the fallbacks.

    Raises:
        ValueError: ``fixed_k`` < 1.
    """
    if fixed_k < 1:
        raise ValueError(f"fixed_k must be at least 1 (got {fixed_k}): Top-Var asks for k words")
    if k_source(ex) == "fixed":
        return fixed_k
    return int(sum(v for v in ex.flat_rationale() if v is not None))


def parsed_row(parsed: ParsedList) -> dict:
    """A flat dict of a :class:`ParsedList` for a results table: its fields (positions in
    the order named), ``parse_failure``, ``non_answer``, ``n_items``, ``n_out_of_input``."""
    row = asdict(parsed)
    row["parse_failure"] = parsed.failed
    row["non_answer"] = parsed.non_answer
    row["n_items"] = len(parsed.items)
    row["n_out_of_input"] = len(parsed.out_of_input)
    return row


def elicit(
    model,
    tokenizer,
    examples: Sequence[Example],
    role: str,
    *,
    labels: Sequence[str] | None = None,
    fixed_k: int = 3,
    max_new_tokens: int = 32,
    batch_size: int = 16,
) -> pd.DataFrame:
    """Prompt for a rationale or explanation for each example and generate greedily
    (:func:`elicit_many` with one role; ``labels`` default to the gold labels)."""
    labels = list(labels) if labels is not None else [ex.label for ex in examples]
    requests = [(ex, role, lab) for ex, lab in zip(examples, labels, strict=True)]
    return elicit_many(
        model,
        tokenizer,
        requests,
        fixed_k=fixed_k,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
    )


def elicit_many(
    model,
    tokenizer,
    requests: Sequence[tuple[Example, str, str | None]],
    *,
    fixed_k: int = 3,
    max_new_tokens: int | Sequence[int] = 32,
    batch_size: int = 16,
    processor=None,
    keep_tokens: bool = False,
) -> pd.DataFrame:
    """Prompt for rationales or explanations and generate greedily, all requests at once.

    The prompts about one example share its instruction and text, so they are decoded as
    one group (:func:`xalign_utils.decoding.generation.greedy_generate`): that prefix is
    computed once. Only raw outputs are returned (and cached by the notebooks);
    :func:`parse_outputs` parses them, so a change to the parser never needs the model.

    Args:
        requests: ``(example, role, label)``; role ``rationale_unbound``,
            ``rationale_topk``, ``explain_then_predict`` or ``predict_then_explain``;
            the label a word list is asked for (ignored by free-text roles).
        max_new_tokens: one budget, or one per request.
        processor: a step processor (steering, constraints: notebook 06).
        keep_tokens: add a ``tokens`` column (the generated ids, end token excluded).

    Returns:
        One row per request: ``id``, ``dataset``, ``role``, ``asked_label``, ``k``,
        ``k_source`` (``human`` or ``fixed``, see :func:`rationale_k`), ``raw`` and
        ``hit_limit``.

    Raises:
        ValueError: a k below 1 (``fixed_k`` < 1): no prompt asks for 0 words.
    """
    ks = [rationale_k(ex, fixed_k) for ex, _, _ in requests]
    if any(k < 1 for k in ks):
        raise ValueError(f"Top-Var k must be at least 1 (got {min(ks)})")
    rendered = [
        render(tokenizer, ex, role, label=lab, k=k)
        for (ex, role, lab), k in zip(requests, ks, strict=True)
    ]
    outputs = greedy_generate(
        model,
        tokenizer,
        [r.input_ids for r in rendered],
        max_new_tokens,
        batch_size,
        groups=[ex.id for ex, _, _ in requests],
        processor=processor,
    )
    return pd.DataFrame(
        [
            output_row(ex, role, lab, k, out.text, out.hit_limit)
            | ({"tokens": out.tokens} if keep_tokens else {})
            for (ex, role, lab), k, out in zip(requests, ks, outputs, strict=True)
        ]
    )


def output_row(
    ex: Example, role: str, label: str | None, k: int, raw: str, hit_limit: bool
) -> dict:
    """One generated output as :func:`elicit_many` stores it (the columns
    :func:`parse_outputs` reads)."""
    return {
        "id": ex.id,
        "dataset": ex.dataset,
        "role": role,
        "asked_label": label,
        "k": k,
        "k_source": k_source(ex),
        "raw": raw,
        "hit_limit": hit_limit,
    }


def parse_outputs(raw: pd.DataFrame, examples_by_id: dict[str, Example]) -> pd.DataFrame:
    """Add parsed columns to raw outputs from :func:`elicit`.

    Word lists get the :class:`ParsedList` fields (``positions`` in the order named),
    ``parse_failure`` and ``non_answer``; free-text outputs get ``explanation``, the cited
    ``positions`` (sorted) and ``matched`` tokens, the ``answer`` label they name,
    ``answer_failure`` and ``empty_explanation``. Every row gets ``graded``: whether its
    positions carry an order of importance (a word list parsed as a list, status ``ok``),
    which :func:`xalign_utils.consistency.consistency_table` reads for graded Spearman.
    """
    rows = []
    for rec in raw.to_dict("records"):
        ex = examples_by_id[rec["id"]]
        words = ex.flat_words()
        if is_word_list(rec["role"]):
            parsed = parse_word_list(rec["raw"], words)
            rec.update(parsed_row(parsed), graded=parsed.status == "ok")
        else:
            expl = split_explanation(rec["raw"], rec["role"])
            pos, matched = cited_positions(expl, words)
            answer = parse_label(rec["raw"], ex.dataset)
            rec.update(
                explanation=expl,
                positions=pos,
                matched=matched,
                answer=answer,
                answer_failure=answer is None,
                empty_explanation=not expl,
                graded=False,
            )
        rows.append(rec)
    return pd.DataFrame(rows)
