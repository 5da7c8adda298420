"""Natural-language inference: e-SNLI (text, explanations, word highlights) and XNLI."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from ..schema import Example, Mask, RawDataError
from .readers import check_label, combine_masks, csv_rows, dataset_dir, read_lines

NLI_LABELS = ("entailment", "neutral", "contradiction")
NLI_TASK = (
    "Determine whether the hypothesis is entailed by the premise, contradicts it, or is "
    "neutral to it.\n\nPremise: {premise}\nHypothesis: {hypothesis}\n\n"
)
XNLI_LANGS = (
    "ar",
    "bg",
    "de",
    "el",
    "en",
    "es",
    "fr",
    "hi",
    "ru",
    "sw",
    "th",
    "tr",
    "ur",
    "vi",
    "zh",
)


def load_esnli(split: str = "test", raw_dir: Path | None = None) -> list[Example]:
    """e-SNLI text, labels and the three free-text explanations (parallel files).

    No word rationales here (see :func:`load_esnli_highlights`).
    """
    if split not in {"test", "dev"}:
        raise ValueError(f"e-SNLI split must be 'test' or 'dev', not {split!r}")
    folder = dataset_dir("esnli", raw_dir)
    names = ["s1", "s2", "labels"] + [f"preproc1_expl_{k}" for k in (1, 2, 3)]
    columns = {n: read_lines(folder / f"{n}.{split}") for n in names}
    lengths = {n: len(v) for n, v in columns.items()}
    if len(set(lengths.values())) != 1:
        short = min(lengths, key=lengths.get)
        raise RawDataError(
            folder / f"{short}.{split}",
            lengths[short] + 1,
            short,
            f"parallel files have different lengths {lengths}",
        )
    out = []
    for i in range(lengths["s1"]):
        label = check_label(
            columns["labels"][i].strip(), NLI_LABELS, folder / f"labels.{split}", i + 1, "label"
        )
        prem, hyp = columns["s1"][i].strip(), columns["s2"][i].strip()
        out.append(
            Example(
                id=f"esnli-{split}-{i}",
                dataset="esnli",
                split=split,
                label=label,
                segments={"premise": prem, "hypothesis": hyp},
                words={"premise": prem.split(), "hypothesis": hyp.split()},
                explanations=[columns[f"preproc1_expl_{k}"][i].strip() for k in (1, 2, 3)],
                meta={"source_index": i},
            )
        )
    return out


def align_highlights(words: Sequence[str], marked: str) -> list[int]:
    """Mark which of ``words`` are starred in ``marked`` (e-SNLI ``*word*`` notation).

    The marked sentence is sometimes tokenised differently from the plain one
    (``t - shirt`` vs ``t-shirt``, ``' HELP ME '`` vs ````HELP ME''``), so the two are
    aligned character by character, ignoring white space; a word counts as highlighted
    when any of its characters is.
    """
    plain_chars, plain_word = [], []
    for wi, w in enumerate(words):
        plain_chars.extend(w)
        plain_word.extend([wi] * len(w))
    marked_chars, marked_flag = [], []
    for token in marked.split():
        inside = token.startswith("*") and token.endswith("*") and len(token) > 1
        for ch in token.strip("*") if inside else token:
            marked_chars.append(ch)
            marked_flag.append(inside)
    mask = [0] * len(words)
    if plain_chars == marked_chars:
        pairs: Iterable[tuple[int, int]] = zip(
            range(len(plain_chars)), range(len(plain_chars)), strict=True
        )
    else:
        matcher = difflib.SequenceMatcher(a=plain_chars, b=marked_chars, autojunk=False)
        pairs = (
            (a + k, b + k) for a, b, size in matcher.get_matching_blocks() for k in range(size)
        )
    for a, b in pairs:
        if marked_flag[b]:
            mask[plain_word[a]] = 1
    return mask


def load_esnli_highlights(
    split: str = "test", raw_dir: Path | None = None, rule: str = "majority"
) -> list[Example]:
    """e-SNLI rows with word highlights (``esnli_<split>_highlights.csv``).

    ``annotation_scope = hypothesis_only`` rows carry one annotator's hypothesis
    highlights and no premise annotation: their premise words are ``None``.
    """
    path = dataset_dir("esnli", raw_dir) / f"esnli_{split}_highlights.csv"
    required = ["gold_label", "Sentence1", "Sentence2", "annotation_scope", "source_index"]
    required += [
        f"{c}_{k}"
        for k in (1, 2, 3)
        for c in ("Explanation", "Sentence1_marked", "Sentence2_marked")
    ]
    out = []
    for line, row in csv_rows(path, required):
        label = check_label(row["gold_label"], NLI_LABELS, path, line, "gold_label")
        scope = row["annotation_scope"]
        if scope not in {"full", "hypothesis_only"}:
            raise RawDataError(path, line, "annotation_scope", f"unknown scope {scope!r}")
        try:
            source_index = int(row["source_index"])
        except ValueError:
            raise RawDataError(
                path, line, "source_index", f"not an integer: {row['source_index']!r}"
            ) from None
        words = {"premise": row["Sentence1"].split(), "hypothesis": row["Sentence2"].split()}
        annotators: list[dict[str, Mask]] = []
        for k in (1, 2, 3):
            m1, m2 = row[f"Sentence1_marked_{k}"], row[f"Sentence2_marked_{k}"]
            if not m2 and not m1:
                continue
            prem: Mask = (
                align_highlights(words["premise"], m1)
                if (m1 and scope == "full")
                else [None] * len(words["premise"])
            )
            hyp: Mask = (
                align_highlights(words["hypothesis"], m2)
                if m2
                else [None] * len(words["hypothesis"])
            )
            annotators.append({"premise": prem, "hypothesis": hyp})
        if not annotators:
            raise RawDataError(
                path, line, "Sentence2_marked_1", "no annotator's highlights in this row"
            )
        rationale: dict[str, Mask] = {}
        for seg in ("premise", "hypothesis"):
            masks = [a[seg] for a in annotators if a[seg] and a[seg][0] is not None]
            rationale[seg] = combine_masks(masks, rule) if masks else [None] * len(words[seg])  # type: ignore[assignment]
        out.append(
            Example(
                id=f"esnli-{split}-{source_index}",
                dataset="esnli",
                split=f"{split}_highlights",
                label=label,
                segments={"premise": row["Sentence1"], "hypothesis": row["Sentence2"]},
                words=words,
                rationale=rationale,
                annotators=annotators,
                explanations=[
                    row[f"Explanation_{k}"] for k in (1, 2, 3) if row[f"Explanation_{k}"]
                ],
                meta={
                    "annotation_scope": scope,
                    "source_index": source_index,
                    "pair_id": row.get("pairID", ""),
                    "rationale_rule": rule,
                },
            )
        )
    return out


def load_xnli(
    split: str = "dev", raw_dir: Path | None = None, langs: Sequence[str] = XNLI_LANGS
) -> list[Example]:
    """XNLI dev (``premise<TAB>hypothesis<TAB>label``, no header), one file per language.

    Words are white-space tokens; for Thai and Chinese, which do not separate words with
    spaces, a "word" is a space-delimited chunk (``meta['unsegmented']``).
    """
    folder = dataset_dir("xnli", raw_dir)
    out = []
    for lang in langs:
        path = folder / f"{split}-{lang}.tsv"
        for i, raw in enumerate(read_lines(path), start=1):
            parts = raw.split("\t")
            if len(parts) != 3:
                raise RawDataError(
                    path, i, None, f"expected 3 tab-separated fields, found {len(parts)}"
                )
            prem, hyp, label = (p.strip() for p in parts)
            check_label(label, NLI_LABELS, path, i, "label")
            out.append(
                Example(
                    id=f"xnli-{lang}-{i - 1}",
                    dataset="xnli",
                    split=split,
                    label=label,
                    segments={"premise": prem, "hypothesis": hyp},
                    words={"premise": prem.split(), "hypothesis": hyp.split()},
                    meta={"lang": lang, "unsegmented": lang in {"th", "zh"}},
                )
            )
    return out


def xnli_language_loader(lang: str) -> Callable[..., list[Example]]:
    """The loader of one XNLI language as a dataset of its own, ``xnli-<lang>`` (the
    multilingual track: ``DATASETS=xnli-en,xnli-de,...``), so every table reports it per
    language."""

    def load(split: str = "dev", raw_dir: Path | None = None) -> list[Example]:
        exs = load_xnli(split, raw_dir, langs=(lang,))
        return [replace(ex, dataset=f"xnli-{lang}") for ex in exs]

    load.__name__ = f"load_xnli_{lang}"
    return load
