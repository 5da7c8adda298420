"""The shared data schema (DESIGN.md §5): :class:`Example`, :class:`DatasetSpec` and the
error every loader raises on malformed input.

It imports nothing from the package, so every other module can depend on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

Mask = list[int | None]
T = TypeVar("T")


def lookup(table: Mapping[str, T], name: str, what: str) -> T:
    """``table[name]``, or a KeyError that names ``what`` was asked for and lists the valid
    names (every registry of the package looks names up through this)."""
    if name not in table:
        raise KeyError(f"unknown {what} {name!r}; valid: {sorted(table)}")
    return table[name]


class RawDataError(ValueError):
    """A raw file is malformed. The message names the file, the line and the field."""

    def __init__(self, path: Path | str, line: int | None, field_name: str | None, problem: str):
        self.path, self.line, self.field, self.problem = Path(path), line, field_name, problem
        where = f"{path}" + (f", line {line}" if line is not None else "")
        where += f", field {field_name!r}" if field_name else ""
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class DatasetSpec:
    """Everything the package knows about a dataset, in one registry entry.

    Attributes:
        name: registry name (``esnli``); examples carry it in ``Example.dataset``.
        labels: the label set, in the order tables and probability columns use.
        verbalisers: label → the words the model is expected to answer with.
        task: the task instruction with the input fields (``{premise}``, ``{text}``);
            the role's request is appended to it (:mod:`xalign_utils.prompts`).
        sources: loader name → function reading the published raw files (most datasets
            have one; e-SNLI has the plain files and the highlight CSVs).
        splits: role (``eval``/``train``) → ``(source, split)`` it is sampled from.
        published_counts: ``(source, split)`` → rows of the raw file as published
            (``shared/data/README.md``); notebook 01 and the tests check loaders against it.
        rationales: what word rationales the dataset has (``human``, ``evidence``,
            ``planted`` or ``none``).
        kind: ``classification`` or ``next_token`` (plain prompts, no label set).
    """

    name: str
    labels: tuple[str, ...]
    verbalisers: Mapping[str, str]
    task: str
    sources: Mapping[str, Callable[..., list[Example]]]
    splits: Mapping[str, tuple[str, str]]
    published_counts: Mapping[tuple[str, str], int] = field(default_factory=dict)
    rationales: str = "none"
    kind: str = "classification"


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

    def rationale_positions(self) -> list[int]:
        """Flat positions of the words the rationale marks 1 (``[]`` without one): what
        erasure, the Table-4 selections and rationale-regularised training use."""
        return [i for i, r in enumerate(self.flat_rationale()) if r == 1]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Example:
        return cls(**d)
