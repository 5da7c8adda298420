"""Hate speech: HateXplain (3 classes, per-annotator word rationales)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from ..schema import Example, RawDataError
from .readers import combine_masks, csv_rows, dataset_dir, literal

HATE_LABELS = ("hatespeech", "offensive", "normal")
HATEXPLAIN_CODES = {0: "hatespeech", 1: "normal", 2: "offensive"}
HATE_TASK = (
    "Classify the following social-media post as hate speech, offensive, or normal.\n\n"
    "Post: {text}\n\n"
)


def load_hatexplain(
    split: str = "test", raw_dir: Path | None = None, rule: str = "majority"
) -> list[Example]:
    """HateXplain CSV: majority label of the annotators; rationales per annotator.

    The rationale is the annotators' masks combined by ``rule`` (HateXplain's own ground
    truth uses the majority). Normal posts have no rationale masks: their words are 0
    (annotators were asked to mark only for hateful/offensive posts).
    """
    path = dataset_dir("hatexplain", raw_dir) / f"{split}.csv"
    out = []
    for line, row in csv_rows(path, ["id", "annotators", "rationales", "post_tokens"]):
        ann = literal(row["annotators"], path, line, "annotators")
        tokens = literal(row["post_tokens"], path, line, "post_tokens")
        masks = literal(row["rationales"], path, line, "rationales")
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
