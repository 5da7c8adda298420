"""Builders shared by the tests (pytest puts this folder on ``sys.path``)."""

from __future__ import annotations

from collections.abc import Sequence

from xalign_utils.schema import Example


def text_example(
    ex_id: str,
    words: Sequence[str],
    *,
    dataset: str = "esnli",
    label: str = "pos",
    rationale: list | None = None,
    meta: dict | None = None,
) -> Example:
    """A one-segment (``text``) example with an optional word rationale."""
    return Example(
        id=ex_id,
        dataset=dataset,
        split="test",
        label=label,
        segments={"text": " ".join(words)},
        words={"text": list(words)},
        rationale=None if rationale is None else {"text": rationale},
        meta=dict(meta or {}),
    )


def segments_example(dataset: str, segments: dict[str, str], ex_id: str = "t") -> Example:
    """An example of ``dataset`` from its segment texts (words split on spaces), labelled
    with the dataset's first label: enough to render any prompt."""
    from xalign_utils.data import LABELS

    return Example(
        id=ex_id,
        dataset=dataset,
        split="test",
        label=LABELS[dataset][0],
        segments=segments,
        words={k: v.split() for k, v in segments.items()},
    )
