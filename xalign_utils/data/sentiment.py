"""Sentiment: SST-2 (sentences, no rationales) and ERASER movie reviews (rationales)."""

from __future__ import annotations

import re
from pathlib import Path

from ..schema import Example, RawDataError
from .readers import dataset_dir, read_lines

SENTIMENT_LABELS = ("negative", "positive")
_SENT = "Determine the sentiment of the following {kind}.\n\n{kind_cap}: {text}\n\n"
SENTENCE_TASK = _SENT.replace("{kind}", "sentence").replace("{kind_cap}", "Sentence")
REVIEW_TASK = _SENT.replace("{kind}", "movie review").replace("{kind_cap}", "Review")


def load_sst2(split: str = "dev", raw_dir: Path | None = None) -> list[Example]:
    """GLUE SST-2 (``sentence<TAB>label`` with a header); no rationales."""
    path = dataset_dir("sst2", raw_dir) / f"{split}.tsv"
    lines = read_lines(path)
    if not lines or lines[0].split("\t")[:2] != ["sentence", "label"]:
        raise RawDataError(path, 1, "header", "expected the header 'sentence<TAB>label'")
    out = []
    for i, raw in enumerate(lines[1:], start=2):
        parts = raw.rstrip("\n").split("\t")
        if len(parts) != 2:
            raise RawDataError(
                path, i, None, f"expected 2 tab-separated fields, found {len(parts)}"
            )
        sentence, code = parts[0].strip(), parts[1].strip()
        if code not in {"0", "1"}:
            raise RawDataError(path, i, "label", f"label {code!r} is not 0 or 1")
        out.append(
            Example(
                id=f"sst2-{split}-{i - 2}",
                dataset="sst2",
                split=split,
                label=SENTIMENT_LABELS[int(code)],
                segments={"text": sentence},
                words={"text": sentence.split()},
            )
        )
    return out


_TAG = re.compile(r"</?(POS|NEG)>")


def parse_tagged_review(text: str, path: Path | str = "<string>") -> tuple[list[str], list[int]]:
    """Split a Zaidan et al. review into words and a 0/1 mask from ``<POS>``/``<NEG>`` tags.

    Tags may be glued to words and may span sentences; an unclosed or stray tag raises.
    """
    words: list[str] = []
    mask: list[int] = []
    open_tag: str | None = None
    for line_no, line in enumerate(text.splitlines(), start=1):
        for piece in re.split(r"(</?(?:POS|NEG)>)", line):
            m = _TAG.fullmatch(piece)
            if m:
                closing = piece.startswith("</")
                if closing and open_tag != m.group(1):
                    raise RawDataError(
                        path, line_no, "rationale tag", f"{piece} without a matching opening tag"
                    )
                if not closing and open_tag is not None:
                    raise RawDataError(
                        path, line_no, "rationale tag", f"{piece} inside an open <{open_tag}>"
                    )
                open_tag = None if closing else m.group(1)
                continue
            for w in piece.split():
                words.append(w)
                mask.append(int(open_tag is not None))
    if open_tag is not None:
        raise RawDataError(path, None, "rationale tag", f"<{open_tag}> never closed")
    return words, mask


def load_movies(split: str = "test", raw_dir: Path | None = None) -> list[Example]:
    """Movie reviews with rationales (Zaidan et al. 2007).

    Splits by file number, as in ERASER: ``train`` = 000–799, ``test`` = 800–899
    (tagged), ``unannotated`` = 900–999 (no tags: rationale ``None``). ``posR_161``
    carries no tags although it belongs to the tagged set; it is treated as unannotated
    (``meta['missing_tags']``) rather than as a review with no evidence.
    """
    ranges = {
        "train": range(0, 800),
        "test": range(800, 900),
        "unannotated": range(900, 1000),
        "all": range(0, 1000),
    }
    if split not in ranges:
        raise ValueError(f"movies split must be one of {sorted(ranges)}")
    folder = dataset_dir("movies", raw_dir)
    out = []
    for polarity, label in (("pos", "positive"), ("neg", "negative")):
        for n in ranges[split]:
            tagged = n < 900
            path = (
                folder
                / f"withRats_{polarity}"
                / (f"{polarity}R_{n:03d}.txt" if tagged else f"{polarity}_{n:03d}.txt")
            )
            if not path.is_file():
                raise RawDataError(path, None, None, "review file not found")
            words, mask = parse_tagged_review(
                path.read_text(encoding="utf-8", errors="replace"), path
            )
            missing = tagged and not any(mask)
            annotated = tagged and not missing
            out.append(
                Example(
                    id=f"movies-{polarity}-{n:03d}",
                    dataset="movies",
                    split=split,
                    label=label,
                    segments={"text": " ".join(words)},
                    words={"text": words},
                    rationale={"text": mask} if annotated else None,  # type: ignore[dict-item]
                    meta={"file": path.name, "missing_tags": missing},
                )
            )
    return out
