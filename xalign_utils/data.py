"""Dataset loaders: every raw format becomes a list of :class:`Example` (DESIGN.md §5).

Loaders parse each dataset's published files, validate them as they go, and raise a
:class:`RawDataError` naming the file, the line and the field when something is wrong.
Word-level rationales use ``1`` (highlighted), ``0`` (annotated, not highlighted) and
``None`` (not annotated); the last two are never conflated.
"""

from __future__ import annotations

import ast
import csv
import difflib
import json
import random
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import config

Mask = list[int | None]

LABELS: dict[str, tuple[str, ...]] = {
    "esnli": ("entailment", "neutral", "contradiction"),
    "xnli": ("entailment", "neutral", "contradiction"),
    "sst2": ("negative", "positive"),
    "movies": ("negative", "positive"),
    "hatexplain": ("hatespeech", "offensive", "normal"),
    "fever": ("SUPPORTS", "REFUTES"),
    "synthetic": ("negative", "positive"),
}
HATEXPLAIN_CODES = {0: "hatespeech", 1: "normal", 2: "offensive"}
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


class RawDataError(ValueError):
    """A raw file is malformed. The message names the file, the line and the field."""

    def __init__(self, path: Path | str, line: int | None, field_name: str | None, problem: str):
        self.path, self.line, self.field, self.problem = Path(path), line, field_name, problem
        where = f"{path}" + (f", line {line}" if line is not None else "")
        where += f", field {field_name!r}" if field_name else ""
        super().__init__(f"{where}: {problem}")


@dataclass
class Example:
    """One evaluation or training item in the shared schema.

    Attributes:
        id: unique within the dataset.
        dataset: registry name (``esnli``, ``sst2``, ...).
        split: the source split (``test``, ``dev``, ``test_highlights``, ...).
        label: gold label from ``LABELS[dataset]`` (free text for next-token datasets).
        segments: ordered named text fields, e.g. ``{"premise": ..., "hypothesis": ...}``.
        words: the words of each segment as the dataset tokenises them.
        rationale: per segment and word, 1 / 0 / None; ``None`` as a whole when the dataset
            has no rationales.
        annotators: per-annotator masks (same shape as ``rationale``) where available.
        explanations: human free-text explanations.
        meta: anything else (annotation scope, language, source line, truncation...).
    """

    id: str
    dataset: str
    split: str
    label: str
    segments: dict[str, str]
    words: dict[str, list[str]]
    rationale: dict[str, Mask] | None = None
    annotators: list[dict[str, Mask]] = field(default_factory=list)
    explanations: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    def flat_words(self) -> list[str]:
        """All input words, segment after segment."""
        return [w for seg in self.words.values() for w in seg]

    def flat_segments(self) -> list[str]:
        """The segment name of each flat word."""
        return [name for name, seg in self.words.items() for _ in seg]

    def flat_rationale(self) -> Mask:
        """Rationale aligned with :meth:`flat_words` (all ``None`` when unannotated)."""
        if self.rationale is None:
            return [None] * len(self.flat_words())
        return [v for name in self.words for v in self.rationale[name]]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Example:
        return cls(**d)


# --------------------------------------------------------------------------- helpers


def _dataset_dir(name: str, raw_dir: Path | None) -> Path:
    root = Path(raw_dir) if raw_dir is not None else config.raw_data_dir()
    path = root / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset folder {path} is missing.\n\n" + config._raw_help()  # noqa: SLF001
        )
    return path


def _read_lines(path: Path) -> list[str]:
    """Lines of a text file without line terminators (a missing final newline is fine)."""
    if not path.is_file():
        raise RawDataError(path, None, None, "file not found")
    return path.read_text(encoding="utf-8").splitlines()


def _check_label(label: str, dataset: str, path: Path, line: int, field_name: str) -> str:
    if label not in LABELS[dataset]:
        raise RawDataError(
            path, line, field_name, f"label {label!r} is not one of {LABELS[dataset]}"
        )
    return label


def combine_masks(masks: Sequence[Sequence[int]], rule: str) -> list[int]:
    """Combine annotators' 0/1 masks into one: ``majority`` (≥ half) or ``union``."""
    if rule not in {"majority", "union"}:
        raise ValueError(f"unknown rationale rule {rule!r}; use 'majority' or 'union'")
    if not masks:
        return []
    n = len(masks)
    sums = [sum(col) for col in zip(*masks, strict=True)]
    if rule == "union":
        return [int(s > 0) for s in sums]
    return [int(2 * s >= n) for s in sums]


def _csv_rows(path: Path, required: Sequence[str]) -> Iterable[tuple[int, dict]]:
    """Yield (line number, row) from a CSV, checking columns and row completeness."""
    if not path.is_file():
        raise RawDataError(path, None, None, "file not found")
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise RawDataError(path, 1, missing[0], f"missing column(s) {missing}")
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except csv.Error as err:
                raise RawDataError(path, reader.line_num, None, f"malformed CSV ({err})") from None
            line = reader.line_num
            if None in row or any(row.get(c) is None for c in required):
                raise RawDataError(
                    path, line, None, "row has the wrong number of fields (truncated file?)"
                )
            yield line, row


# --------------------------------------------------------------------------- e-SNLI


def load_esnli(split: str = "test", raw_dir: Path | None = None) -> list[Example]:
    """e-SNLI text, labels and the three free-text explanations (parallel files).

    No word rationales here (see :func:`load_esnli_highlights`).
    """
    if split not in {"test", "dev"}:
        raise ValueError(f"e-SNLI split must be 'test' or 'dev', not {split!r}")
    folder = _dataset_dir("esnli", raw_dir)
    names = ["s1", "s2", "labels"] + [f"preproc1_expl_{k}" for k in (1, 2, 3)]
    columns = {n: _read_lines(folder / f"{n}.{split}") for n in names}
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
        label = _check_label(
            columns["labels"][i].strip(), "esnli", folder / f"labels.{split}", i + 1, "label"
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
    path = _dataset_dir("esnli", raw_dir) / f"esnli_{split}_highlights.csv"
    required = ["gold_label", "Sentence1", "Sentence2", "annotation_scope", "source_index"]
    required += [
        f"{c}_{k}"
        for k in (1, 2, 3)
        for c in ("Explanation", "Sentence1_marked", "Sentence2_marked")
    ]
    out = []
    for line, row in _csv_rows(path, required):
        label = _check_label(row["gold_label"], "esnli", path, line, "gold_label")
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


# --------------------------------------------------------------------------- SST-2


def load_sst2(split: str = "dev", raw_dir: Path | None = None) -> list[Example]:
    """GLUE SST-2 (``sentence<TAB>label`` with a header); no rationales."""
    path = _dataset_dir("sst2", raw_dir) / f"{split}.tsv"
    lines = _read_lines(path)
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
                label=LABELS["sst2"][int(code)],
                segments={"text": sentence},
                words={"text": sentence.split()},
            )
        )
    return out


# --------------------------------------------------------------------------- HateXplain


def _literal(value: str, path: Path, line: int, field_name: str) -> object:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError) as err:
        raise RawDataError(
            path, line, field_name, f"not a Python literal ({err.__class__.__name__})"
        ) from None


def load_hatexplain(
    split: str = "test", raw_dir: Path | None = None, rule: str = "majority"
) -> list[Example]:
    """HateXplain CSV: majority label of the annotators; rationales per annotator.

    The rationale is the annotators' masks combined by ``rule`` (HateXplain's own ground
    truth uses the majority). Normal posts have no rationale masks: their words are 0
    (annotators were asked to mark only for hateful/offensive posts).
    """
    path = _dataset_dir("hatexplain", raw_dir) / f"{split}.csv"
    out = []
    for line, row in _csv_rows(path, ["id", "annotators", "rationales", "post_tokens"]):
        ann = _literal(row["annotators"], path, line, "annotators")
        tokens = _literal(row["post_tokens"], path, line, "post_tokens")
        masks = _literal(row["rationales"], path, line, "rationales")
        if not isinstance(ann, dict) or "label" not in ann:
            raise RawDataError(path, line, "annotators", "expected a dict with a 'label' list")
        if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
            raise RawDataError(path, line, "post_tokens", "expected a list of strings")
        codes = ann["label"]
        if any(c not in HATEXPLAIN_CODES for c in codes):
            raise RawDataError(
                path, line, "annotators", f"label codes {codes} outside {sorted(HATEXPLAIN_CODES)}"
            )
        (top, count), *rest = Counter(codes).most_common()
        if rest and rest[0][1] == count:
            raise RawDataError(path, line, "annotators", f"no majority label among {codes}")
        if not isinstance(masks, list) or any(len(m) != len(tokens) for m in masks):
            raise RawDataError(
                path, line, "rationales", "each mask must have one 0/1 per post token"
            )
        annotators = [{"text": [int(v) for v in m]} for m in masks]
        rationale = (
            combine_masks([a["text"] for a in annotators], rule) if masks else [0] * len(tokens)
        )
        out.append(
            Example(
                id=f"hatexplain-{row['id']}",
                dataset="hatexplain",
                split=split,
                label=HATEXPLAIN_CODES[top],
                segments={"text": " ".join(tokens)},
                words={"text": list(tokens)},
                rationale={"text": rationale},  # type: ignore[dict-item]
                annotators=annotators,  # type: ignore[arg-type]
                meta={
                    "annotator_labels": [HATEXPLAIN_CODES[c] for c in codes],
                    "rationale_rule": rule,
                    "agreement": count / len(codes),
                },
            )
        )
    return out


# --------------------------------------------------------------------------- FEVER


def _jsonl(path: Path) -> Iterable[tuple[int, dict]]:
    for i, raw in enumerate(_read_lines(path), start=1):
        if not raw.strip():
            continue
        try:
            yield i, json.loads(raw)
        except json.JSONDecodeError as err:
            raise RawDataError(
                path, i, None, f"malformed JSON ({err.msg} at column {err.colno})"
            ) from None


def load_fever(split: str = "test", raw_dir: Path | None = None) -> list[Example]:
    """FEVER in ERASER format: claim + evidence document; rationale = evidence tokens.

    Claim words are unannotated (``None``); document words are 1 inside an evidence
    span (ERASER ``start_token``/``end_token`` over the whitespace-tokenised document).
    """
    folder = _dataset_dir("fever", raw_dir)
    path = folder / f"{split}.jsonl"
    docs: dict[str, list[str]] = {}
    out = []
    for line, rec in _jsonl(path):
        for key in ("annotation_id", "classification", "evidences", "query"):
            if key not in rec:
                raise RawDataError(path, line, key, "missing")
        label = _check_label(rec["classification"], "fever", path, line, "classification")
        spans = [ev for group in rec["evidences"] for ev in group]
        docids = rec.get("docids") or sorted({ev["docid"] for ev in spans})
        if not docids:
            raise RawDataError(path, line, "docids", "no document")
        docid = docids[0]
        if docid not in docs:
            doc_path = folder / "docs" / docid
            if not doc_path.is_file():
                raise RawDataError(path, line, "docids", f"document {doc_path} not found")
            docs[docid] = doc_path.read_text(encoding="utf-8").split()
        doc = docs[docid]
        mask = [0] * len(doc)
        for ev in spans:
            if ev["docid"] != docid:
                continue
            s, e = ev["start_token"], ev["end_token"]
            if not (0 <= s < e <= len(doc)):
                raise RawDataError(
                    path,
                    line,
                    "evidences",
                    f"span [{s}, {e}) outside document of {len(doc)} tokens",
                )
            mask[s:e] = [1] * (e - s)
        claim = rec["query"].split()
        out.append(
            Example(
                id=f"fever-{rec['annotation_id']}",
                dataset="fever",
                split=split,
                label=label,
                segments={"claim": rec["query"], "evidence": " ".join(doc)},
                words={"claim": claim, "evidence": doc},
                rationale={"claim": [None] * len(claim), "evidence": mask},  # type: ignore[dict-item]
                meta={"docid": docid},
            )
        )
    return out


# --------------------------------------------------------------------------- movies

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
    folder = _dataset_dir("movies", raw_dir)
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


# --------------------------------------------------------------------------- XNLI, Knowns, LongRA


def load_xnli(
    split: str = "dev", raw_dir: Path | None = None, langs: Sequence[str] = XNLI_LANGS
) -> list[Example]:
    """XNLI dev (``premise<TAB>hypothesis<TAB>label``, no header), one file per language.

    Words are white-space tokens; for Thai and Chinese, which do not separate words with
    spaces, a "word" is a space-delimited chunk (``meta['unsegmented']``).
    """
    folder = _dataset_dir("xnli", raw_dir)
    out = []
    for lang in langs:
        path = folder / f"{split}-{lang}.tsv"
        for i, raw in enumerate(_read_lines(path), start=1):
            parts = raw.split("\t")
            if len(parts) != 3:
                raise RawDataError(
                    path, i, None, f"expected 3 tab-separated fields, found {len(parts)}"
                )
            prem, hyp, label = (p.strip() for p in parts)
            _check_label(label, "xnli", path, i, "label")
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


def _json_list(path: Path, required: Sequence[str]) -> list[dict]:
    if not path.is_file():
        raise RawDataError(path, None, None, "file not found")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise RawDataError(path, err.lineno, None, f"malformed JSON ({err.msg})") from None
    if not isinstance(records, list):
        raise RawDataError(path, 1, None, "expected a JSON list")
    for i, rec in enumerate(records):
        for key in required:
            if key not in rec:
                raise RawDataError(path, None, key, f"missing in record {i}")
    return records


def _next_token_examples(
    dataset: str, split: str, path: Path, id_key: str, label_key: str, meta_keys: Sequence[str]
) -> list[Example]:
    """Prompt-plus-gold-continuation records (Knowns, LongRA) as examples."""
    return [
        Example(
            id=f"{dataset}-{rec[id_key]}",
            dataset=dataset,
            split=split,
            label=rec[label_key],
            segments={"text": rec["prompt"]},
            words={"text": rec["prompt"].split()},
            meta={k: rec.get(k) for k in meta_keys},
        )
        for rec in _json_list(path, [id_key, "prompt", label_key])
    ]


def load_knowns(split: str = "test", raw_dir: Path | None = None) -> list[Example]:
    """Knowns (Meng et al. 2022): a factual prompt and its one-word gold continuation."""
    path = _dataset_dir("knowns", raw_dir) / "known_1000.json"
    return _next_token_examples(
        "knowns", split, path, "known_id", "attribute", ["subject", "relation_id"]
    )


def load_longra(split: str = "test", raw_dir: Path | None = None) -> list[Example]:
    """LongRA (Vafa et al. 2021, as used by Noiser): long-range agreement prompts."""
    path = _dataset_dir("knowns", raw_dir) / "LongRA.json"
    return _next_token_examples("longra", split, path, "id", "target", ["relative", "type"])


# --------------------------------------------------------------------------- synthetic

SYNTHETIC_FILLER = (
    "the a this that my our their some every one table window street morning paper train "
    "chair river garden city road book phone coffee letter office door wall kitchen "
    "yesterday today later then again also just still there here near after before "
    "walked looked opened carried moved waited read wrote saw found left took"
).split()
SYNTHETIC_TRIGGERS = {
    "positive": ("wonderful", "excellent", "delightful", "superb", "fantastic"),
    "negative": ("terrible", "awful", "horrible", "dreadful", "disgusting"),
}


def make_synthetic(n: int = 200, seed: int = 0, length: int = 12) -> list[Example]:
    """Planted-evidence sentiment task: neutral filler plus one planted trigger word.

    The trigger alone decides the label, so its position is the ground-truth evidence.
    """
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = LABELS["synthetic"][i % 2]
        words = [rng.choice(SYNTHETIC_FILLER) for _ in range(length - 1)]
        pos = rng.randrange(length)
        words.insert(pos, rng.choice(SYNTHETIC_TRIGGERS[label]))
        mask = [int(j == pos) for j in range(length)]
        out.append(
            Example(
                id=f"synthetic-{seed}-{i}",
                dataset="synthetic",
                split="test",
                label=label,
                segments={"text": " ".join(words)},
                words={"text": words},
                rationale={"text": mask},  # type: ignore[dict-item]
                meta={"trigger_position": pos, "seed": seed},
            )
        )
    return out


# --------------------------------------------------------------------------- registry

LOADERS: dict[str, Callable[..., list[Example]]] = {
    "esnli": load_esnli,
    "esnli_highlights": load_esnli_highlights,
    "sst2": load_sst2,
    "hatexplain": load_hatexplain,
    "fever": load_fever,
    "movies": load_movies,
    "xnli": load_xnli,
    "knowns": load_knowns,
    "longra": load_longra,
}

#: (loader, split) for the evaluation and training pools of each dataset.
SPLITS: dict[str, dict[str, tuple[str, str]]] = {
    "esnli": {"eval": ("esnli_highlights", "test"), "train": ("esnli_highlights", "dev")},
    "sst2": {"eval": ("sst2", "dev"), "train": ("sst2", "train")},
    "hatexplain": {"eval": ("hatexplain", "test"), "train": ("hatexplain", "val")},
    "fever": {"eval": ("fever", "test"), "train": ("fever", "val")},
    "movies": {"eval": ("movies", "test"), "train": ("movies", "train")},
    "xnli": {"eval": ("xnli", "dev")},
    "knowns": {"eval": ("knowns", "test")},
    "longra": {"eval": ("longra", "test")},
    "synthetic": {"eval": ("synthetic", "test"), "train": ("synthetic", "train")},
}


def load(name: str, split: str, raw_dir: Path | None = None, **kwargs: object) -> list[Example]:
    """Load a dataset split by registry name.

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    if name == "synthetic":
        return make_synthetic(n=int(kwargs.get("n", 400)), seed=0 if split == "test" else 1)
    if name not in LOADERS:
        raise KeyError(f"unknown dataset {name!r}; valid: {sorted(LOADERS) + ['synthetic']}")
    return LOADERS[name](split, raw_dir=raw_dir, **kwargs)


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
    name: str, role: str, n: int, seed: int, max_words: int, raw_dir: Path | None = None
) -> list[Example]:
    """Sample the ``role`` ("eval"/"train") split of a dataset and truncate long inputs."""
    if role not in SPLITS[name]:
        return []
    loader, split = SPLITS[name][role]
    pool = (
        load(loader, split, raw_dir=raw_dir, n=max(n, 400))
        if name == "synthetic"
        else load(loader, split, raw_dir=raw_dir)
    )
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
    for line, rec in _jsonl(Path(path)):
        try:
            out.append(Example.from_dict(rec))
        except TypeError as err:
            raise RawDataError(path, line, None, f"not an Example record ({err})") from None
    return out


#: Row counts of the raw files as published (shared/data/README.md); notebook 01 and the
#: tests check every loader against them.
PUBLISHED_COUNTS: dict[tuple[str, str], int] = {
    ("esnli", "test"): 9824,
    ("esnli", "dev"): 9842,
    ("esnli_highlights", "test"): 3894,
    ("esnli_highlights", "dev"): 3683,
    ("sst2", "train"): 67349,
    ("sst2", "dev"): 872,
    ("hatexplain", "test"): 1924,
    ("hatexplain", "val"): 1922,
    ("fever", "val"): 6122,
    ("fever", "test"): 6111,
    ("movies", "all"): 2000,
    ("xnli", "dev"): 2490 * len(XNLI_LANGS),
    ("knowns", "test"): 1209,
    ("longra", "test"): 573,
}


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
HUB_IDS: dict[str, str] = {"sst2": "stanfordnlp/sst2", "esnli": "esnli", "hatexplain": "hatexplain"}


def from_hub_record(name: str, rec: dict, split: str, index: int) -> Example:
    """Convert one Hub record (SST-2, e-SNLI, HateXplain formats) into an :class:`Example`.

    Raises:
        RawDataError: a label outside the label set (the Hub uses integer class ids).
    """
    where = f"hub:{HUB_IDS.get(name, name)}/{split}"
    if name == "sst2":
        label = rec["label"]
        if label not in (0, 1):
            raise RawDataError(where, index, "label", f"label {label!r} is not 0 or 1")
        text = rec["sentence"].strip()
        return Example(
            f"sst2-hub-{split}-{index}",
            "sst2",
            split,
            LABELS["sst2"][label],
            {"text": text},
            {"text": text.split()},
        )
    if name == "esnli":
        label = rec["label"]
        if label not in (0, 1, 2):  # -1 marks pairs without a gold label
            raise RawDataError(where, index, "label", f"label {label!r} is not 0, 1 or 2")
        prem, hyp = rec["premise"].strip(), rec["hypothesis"].strip()
        expl = [rec[k] for k in ("explanation_1", "explanation_2", "explanation_3") if rec.get(k)]
        return Example(
            f"esnli-hub-{split}-{index}",
            "esnli",
            split,
            LABELS["esnli"][label],
            {"premise": prem, "hypothesis": hyp},
            {"premise": prem.split(), "hypothesis": hyp.split()},
            explanations=expl,
        )
    if name == "hatexplain":
        codes = rec["annotators"]["label"]
        (top, count), *rest = Counter(codes).most_common()
        if rest and rest[0][1] == count:
            raise RawDataError(where, index, "annotators", f"no majority label among {codes}")
        tokens = list(rec["post_tokens"])
        masks = [list(m) for m in rec["rationales"]]
        return Example(
            f"hatexplain-{rec['id']}",
            "hatexplain",
            split,
            HATEXPLAIN_CODES[top],
            {"text": " ".join(tokens)},
            {"text": tokens},
            rationale={"text": combine_masks(masks, "majority") if masks else [0] * len(tokens)},  # type: ignore[dict-item]
            annotators=[{"text": m} for m in masks],  # type: ignore[misc]
        )
    raise KeyError(f"no Hub converter for {name!r}; available: {sorted(HUB_IDS)}")


def load_hub(name: str, split: str) -> list[Example]:
    """Load a dataset's Hub copy with ``datasets`` (needs a network and ``.[hub]``)."""
    try:
        from datasets import load_dataset
    except ImportError as err:
        raise ImportError("Hub loading needs the optional extra: pip install -e '.[hub]'") from err
    if name not in HUB_IDS:
        raise KeyError(f"no Hub copy known for {name!r}; available: {sorted(HUB_IDS)}")
    records = load_dataset(HUB_IDS[name], split=split, trust_remote_code=False)
    return [from_hub_record(name, rec, split, i) for i, rec in enumerate(records)]
