"""The model's own explanations: eliciting them, parsing them, mapping them to input words.

Word-list rationales ("Unbound" and "Top-Var" prompts) are parsed tolerantly — pipes,
commas, newlines, numbering, quotes, case, punctuation, inflected or partial forms,
repeats — and every listed word is either mapped to input-word positions or kept and
counted as *out of input*. An output with no usable word is a *parse failure*, recorded
with its reason, never dropped. Free-text explanations are mapped to the input words they
cite by normalised lexical match, stop words excluded.

A word-list rationale names word *types*: a listed word maps to every occurrence of it in
the input.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import pandas as pd
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from .models import generate
from .prompts import render
from .schema import Example
from .scoring import parse_label

REFUSAL = re.compile(
    r"\b(i\s*(?:'m| am)\s*(?:sorry|unable|not able)|i\s*can(?:no|')t|as an ai|i do not have|i don't have)\b",
    re.I,
)
_LEAD_IN = re.compile(
    r"^\s*(?:here (?:are|is)|(?:the )?(?:most )?important (?:words?|parts?)|the words?|(?:the )?answer|"
    r"rationale|key ?words?)\b[^:\n]*?(?::|\bare\b|\bis\b)\s*",
    re.I,
)
_QUOTED = re.compile(r"\"([^\"\n]{1,60})\"|“([^”\n]{1,60})”|(?<![\w])'([^'\n]{1,60})'(?![\w])")
_NUMBERING = re.compile(r"^\s*(?:\(?\d+[.)]|[-*•]|\(?[a-z][.)])\s+", re.I)
_SPLIT = re.compile(r"\s*(?:[,;|\n/]|\band\b|\s-\s)\s*", re.I)
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
        positions: flat input-word positions they name (sorted).
        out_of_input: listed words that match no input word.
        status: ``ok``, ``empty``, ``refusal``, ``sentence`` (prose, not a list: its
            content words were used) or ``no_match`` (nothing named is in the input).
        repeats: how many listed words were repeats.
    """

    items: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    out_of_input: list[str] = field(default_factory=list)
    status: str = "ok"
    repeats: int = 0

    @property
    def failed(self) -> bool:
        """No usable word: empty, refusal, or nothing that is in the input."""
        return self.status in {"empty", "refusal", "no_match"}


def parse_word_list(text: str, words: Sequence[str]) -> ParsedList:
    """Parse a model's word-list output and map it to input-word positions."""
    text = (text or "").strip()
    if not text:
        return ParsedList(status="empty")
    if REFUSAL.search(text):
        return ParsedList(status="refusal")
    quoted = ["".join(groups) for groups in _QUOTED.findall(text)]
    if quoted:  # 'The most important words are "people" and "boat".'
        text = "\n".join(quoted)
    else:
        text = _LEAD_IN.sub("", text, count=1)
    raw_items = [_NUMBERING.sub("", part) for part in _SPLIT.split(text)]
    raw_items = [p for p in (r.strip() for r in raw_items) if normalise(p)]
    status = "ok"
    tokens: list[str] = []
    if any(len(item.split()) >= 5 for item in raw_items):
        # prose (a sentence, or step-by-step reasoning) instead of a list: keep content words
        status = "sentence"
        stops = stop_words()
        tokens = [
            t
            for item in raw_items
            for t in item.split()
            if normalise(t) and normalise(t) not in stops
        ]
    else:
        for item in raw_items:
            tokens += item.split()  # a multi-word item names each of its words
    items, positions, out, seen, repeats = [], set(), [], set(), 0
    for tok in tokens:
        norm = normalise(tok)
        if not norm:
            continue
        if norm in seen:
            repeats += 1
            continue
        seen.add(norm)
        items.append(norm)
        hit = match_positions(norm, words)
        if hit:
            positions.update(hit)
        else:
            out.append(norm)
    if not items:
        status = "empty"
    elif not positions:
        status = "no_match"
    return ParsedList(items, sorted(positions), out, status, repeats)


def cited_positions(
    text: str, words: Sequence[str], exclude_stop_words: bool = True
) -> tuple[list[int], list[str]]:
    """Input-word positions a free-text explanation cites (normalised lexical match).

    Returns:
        ``(positions, matched_tokens)``; stop words are excluded on both sides.
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


def rationale_k(ex: Example, fixed_k: int) -> int:
    """Top-Var k: the number of human-rationale words, or ``fixed_k`` without rationales."""
    r = [v for v in ex.flat_rationale() if v is not None]
    return sum(r) if r else fixed_k


def parsed_row(parsed: ParsedList) -> dict:
    """A flat dict of a :class:`ParsedList` for a results table."""
    row = asdict(parsed)
    row["parse_failure"] = parsed.failed
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
    """Prompt for a rationale or explanation for each example and generate greedily.

    Only raw outputs are returned (and cached by the notebooks); :func:`parse_outputs`
    parses them, so a change to the parser never needs the model again.

    Args:
        role: ``rationale_unbound``, ``rationale_topk``, ``explain_then_predict`` or
            ``predict_then_explain``.
        labels: the label each rationale is asked for (gold by default).

    Returns:
        One row per example: ``id``, ``dataset``, ``role``, ``asked_label``, ``k``,
        ``raw`` and ``hit_limit``.
    """
    labels = list(labels) if labels is not None else [ex.label for ex in examples]
    ks = [rationale_k(ex, fixed_k) for ex in examples]
    rendered = [
        render(tokenizer, ex, role, label=lab, k=k)
        for ex, lab, k in zip(examples, labels, ks, strict=True)
    ]
    outputs = generate(
        model, tokenizer, [r.input_ids for r in rendered], max_new_tokens, batch_size
    )
    return pd.DataFrame(
        [
            {
                "id": ex.id,
                "dataset": ex.dataset,
                "role": role,
                "asked_label": lab,
                "k": k,
                "raw": out["text"],
                "hit_limit": out["hit_limit"],
            }
            for ex, lab, k, out in zip(examples, labels, ks, outputs, strict=True)
        ]
    )


def parse_outputs(raw: pd.DataFrame, examples_by_id: dict[str, Example]) -> pd.DataFrame:
    """Add parsed columns to raw outputs from :func:`elicit`.

    Word lists get the :class:`ParsedList` fields and ``parse_failure``; free-text
    outputs get ``explanation``, the cited ``positions`` and ``matched`` tokens, the
    ``answer`` label they name, ``answer_failure`` and ``empty_explanation``.
    """
    rows = []
    for rec in raw.to_dict("records"):
        ex = examples_by_id[rec["id"]]
        words = ex.flat_words()
        if rec["role"].startswith("rationale"):
            rec.update(parsed_row(parse_word_list(rec["raw"], words)))
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
            )
        rows.append(rec)
    return pd.DataFrame(rows)
