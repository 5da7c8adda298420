"""Evaluation/training splits: stratified sampling, truncation, JSON-lines storage.

Notebook 01 writes the splits of a profile to ``data/processed/<profile>/``; every later
notebook reads them back with :func:`load_processed`.
"""

from __future__ import annotations

import inspect
import json
import random
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..schema import Example, RawDataError
from .readers import jsonl
from .registry import DATASETS, LOADERS, load


def stratified_sample(examples: Sequence[Example], n: int, seed: int) -> list[Example]:
    """Seeded sample of ``n`` examples keeping the label proportions (all when fewer)."""
    rng = random.Random(seed)
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in examples:
        by_label[ex.label].append(ex)
    keyed = []
    for label in sorted(by_label):
        group = by_label[label][:]
        rng.shuffle(group)
        keyed += [((i + rng.random()) / len(group), ex) for i, ex in enumerate(group)]
    keyed.sort(key=lambda t: t[0])
    return [ex for _, ex in keyed[:n]]


def truncate(ex: Example, max_words: int) -> Example:
    """Cap the total number of words, cutting the longest segment from its end.

    Returns the example unchanged when it fits; otherwise a copy with
    ``meta['truncated_words']`` (how many were cut) and ``meta['truncated_rationale']``
    (how many highlighted words were lost).
    """
    total = sum(len(w) for w in ex.words.values())
    if total <= max_words:
        return ex
    words = {k: list(v) for k, v in ex.words.items()}
    rationale = {k: list(v) for k, v in ex.rationale.items()} if ex.rationale else None
    annotators = [{k: list(v) for k, v in a.items()} for a in ex.annotators]
    lost = 0
    while sum(len(w) for w in words.values()) > max_words:
        seg = max(words, key=lambda k: len(words[k]))
        cut = sum(len(w) for w in words.values()) - max_words
        keep = max(len(words[seg]) - cut, 1)
        if rationale is not None:
            lost += sum(1 for v in rationale[seg][keep:] if v == 1)
            rationale[seg] = rationale[seg][:keep]
        for a in annotators:
            a[seg] = a[seg][:keep]
        words[seg] = words[seg][:keep]
        if keep == 1:
            break
    meta = dict(
        ex.meta,
        truncated_words=total - sum(len(w) for w in words.values()),
        truncated_rationale=lost,
    )
    return Example(
        id=ex.id,
        dataset=ex.dataset,
        split=ex.split,
        label=ex.label,
        segments={k: " ".join(v) for k, v in words.items()},
        words=words,
        rationale=rationale,
        annotators=annotators,
        explanations=list(ex.explanations),
        meta=meta,
    )


def build_split(
    name: str,
    role: str,
    n: int,
    seed: int,
    max_words: int,
    raw_dir: Path | None = None,
    rationale_rule: str = "majority",
) -> list[Example]:
    """Sample the ``role`` ("eval"/"train") split of a dataset and truncate long inputs.

    ``rationale_rule`` (``majority`` or ``union``) combines the annotators' masks of the
    sources that have several (e-SNLI highlights, HateXplain); other loaders ignore it.
    """
    if role not in DATASETS[name].splits:
        return []
    loader, split = DATASETS[name].splits[role]
    kwargs: dict[str, object] = {"n": max(n, 400)} if name == "synthetic" else {}
    if "rule" in inspect.signature(LOADERS[loader]).parameters:
        kwargs["rule"] = rationale_rule
    pool = load(loader, split, raw_dir=raw_dir, **kwargs)
    return [truncate(ex, max_words) for ex in stratified_sample(pool, n, seed)]


def save_examples(examples: Iterable[Example], path: Path) -> Path:
    """Write examples as JSON lines, atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")
    tmp.replace(path)
    return path


def load_examples(path: Path) -> list[Example]:
    """Read examples written by :func:`save_examples`; errors name the line."""
    out = []
    for line, rec in jsonl(Path(path)):
        try:
            out.append(Example.from_dict(rec))
        except TypeError as err:
            raise RawDataError(path, line, None, f"not an Example record ({err})") from None
    return out


def summarise(examples: Sequence[Example]) -> dict:
    """Counts that describe a list of examples: size, words, rationale coverage, truncation."""
    n_words = [len(ex.flat_words()) for ex in examples]
    rationale_len, annotated_share, unannotated_rows = [], [], 0
    for ex in examples:
        r = ex.flat_rationale()
        known = [v for v in r if v is not None]
        if not known:
            unannotated_rows += 1
            continue
        rationale_len.append(sum(known))
        annotated_share.append(len(known) / max(len(r), 1))
    mean = lambda xs: float(sum(xs) / len(xs)) if xs else float("nan")  # noqa: E731
    return {
        "n": len(examples),
        "labels": dict(Counter(ex.label for ex in examples)) if examples else {},
        "mean_words": mean(n_words),
        "max_words": max(n_words, default=0),
        "rows_with_rationale": len(examples) - unannotated_rows,
        "mean_rationale_words": mean(rationale_len),
        "mean_annotated_share": mean(annotated_share),
        "truncated_rows": sum(1 for ex in examples if ex.meta.get("truncated_words")),
        "truncated_rationale_words": sum(ex.meta.get("truncated_rationale", 0) for ex in examples),
    }


def processed_path(processed_dir: Path, dataset: str, role: str) -> Path:
    """``data/processed/<profile>/<dataset>_<role>.jsonl``."""
    return Path(processed_dir) / f"{dataset}_{role}.jsonl"


def load_processed(processed_dir: Path, dataset: str, role: str = "eval") -> list[Example]:
    """Read a split written by notebook 01, with a pointer to it when missing."""
    path = processed_path(processed_dir, dataset, role)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: run notebooks/01_data.ipynb for this profile first."
        )
    return load_examples(path)


# --------------------------------------------------------------------------- Hub copies

#: Hub dataset ids with a converter from their record format, for users with a network.
#: The local files remain the tested, default source; these paths need ``pip install
#: -e .[hub]`` and a connection.


def _normalised_text(ex: Example) -> str:
    text = " | ".join(" ".join(ex.segments[k].split()) for k in ex.segments)
    return unicodedata.normalize("NFKC", text).casefold()


def assert_no_leakage(train_examples: Sequence[Example], eval_examples: Sequence[Example]) -> None:
    """Refuse training data that holds an evaluation example.

    Raises:
        ValueError: an evaluation id, or an identical input text (NFKC, case and
            whitespace normalised, all segments), appears in training within the same
            dataset; the message names the offending ids and texts.
    """
    ids = {(ex.dataset, ex.id) for ex in train_examples}
    texts = {(ex.dataset, _normalised_text(ex)): ex.id for ex in train_examples}
    bad = [f"id {ex.id!r}" for ex in eval_examples if (ex.dataset, ex.id) in ids]
    for ex in eval_examples:
        hit = texts.get((ex.dataset, _normalised_text(ex)))
        if hit is not None and (ex.dataset, ex.id) not in ids:
            bad.append(f"text of {ex.id!r} (= training {hit!r}): {_normalised_text(ex)[:80]!r}")
    if bad:
        raise ValueError(f"{len(bad)} evaluation example(s) leak into training: {bad[:5]}")
