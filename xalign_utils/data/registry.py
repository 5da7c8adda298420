"""The dataset registry: one :class:`~xalign_utils.schema.DatasetSpec` per dataset.

A new dataset is one entry here plus one loader module. Prompts, loaders, splits and
notebook 01 read everything they need from :data:`DATASETS`; the flat tables below
(:data:`LABELS`, :data:`LOADERS`, :data:`PUBLISHED_COUNTS`) are derived from it.
"""

from __future__ import annotations

from pathlib import Path

from ..schema import DatasetSpec, Example, lookup
from .fever import FEVER_LABELS, FEVER_TASK, load_fever
from .hate import HATE_LABELS, HATE_TASK, load_hatexplain
from .nexttoken import load_knowns, load_longra
from .nli import (
    NLI_LABELS,
    NLI_TASK,
    XNLI_LANGS,
    load_esnli,
    load_esnli_highlights,
    load_xnli,
    xnli_language_loader,
)
from .sentiment import REVIEW_TASK, SENTENCE_TASK, SENTIMENT_LABELS, load_movies, load_sst2
from .synthetic import make_synthetic

_SAME = {label: label for label in NLI_LABELS + SENTIMENT_LABELS}


def _load_synthetic(
    split: str = "test", raw_dir: Path | None = None, n: int = 400
) -> list[Example]:
    """The generated planted-evidence task (no raw files; ``test`` and ``train`` seeds)."""
    return make_synthetic(n=int(n), seed=0 if split == "test" else 1)


#: In the order of the published-counts table of notebook 01.
_SPECS = (
    DatasetSpec(
        name="esnli",
        labels=NLI_LABELS,
        verbalisers={lab: _SAME[lab] for lab in NLI_LABELS},
        task=NLI_TASK,
        sources={"esnli": load_esnli, "esnli_highlights": load_esnli_highlights},
        splits={"eval": ("esnli_highlights", "test"), "train": ("esnli_highlights", "dev")},
        published_counts={
            ("esnli", "test"): 9824,
            ("esnli", "dev"): 9842,
            ("esnli_highlights", "test"): 3894,
            ("esnli_highlights", "dev"): 3683,
        },
        rationales="human",
    ),
    DatasetSpec(
        name="sst2",
        labels=SENTIMENT_LABELS,
        verbalisers={lab: _SAME[lab] for lab in SENTIMENT_LABELS},
        task=SENTENCE_TASK,
        sources={"sst2": load_sst2},
        splits={"eval": ("sst2", "dev"), "train": ("sst2", "train")},
        published_counts={("sst2", "train"): 67349, ("sst2", "dev"): 872},
    ),
    DatasetSpec(
        name="hatexplain",
        labels=HATE_LABELS,
        verbalisers={"hatespeech": "hate speech", "offensive": "offensive", "normal": "normal"},
        task=HATE_TASK,
        sources={"hatexplain": load_hatexplain},
        splits={"eval": ("hatexplain", "test"), "train": ("hatexplain", "val")},
        published_counts={("hatexplain", "test"): 1924, ("hatexplain", "val"): 1922},
        rationales="human",
    ),
    DatasetSpec(
        name="fever",
        labels=FEVER_LABELS,
        verbalisers={"SUPPORTS": "supports", "REFUTES": "refutes"},
        task=FEVER_TASK,
        sources={"fever": load_fever},
        splits={"eval": ("fever", "test"), "train": ("fever", "val")},
        published_counts={("fever", "val"): 6122, ("fever", "test"): 6111},
        rationales="evidence",
    ),
    DatasetSpec(
        name="movies",
        labels=SENTIMENT_LABELS,
        verbalisers={lab: _SAME[lab] for lab in SENTIMENT_LABELS},
        task=REVIEW_TASK,
        sources={"movies": load_movies},
        splits={"eval": ("movies", "test"), "train": ("movies", "train")},
        published_counts={("movies", "all"): 2000},
        rationales="human",
    ),
    DatasetSpec(
        name="xnli",
        labels=NLI_LABELS,
        verbalisers={lab: _SAME[lab] for lab in NLI_LABELS},
        task=NLI_TASK,
        sources={"xnli": load_xnli},
        splits={"eval": ("xnli", "dev")},
        published_counts={("xnli", "dev"): 2490 * len(XNLI_LANGS)},
    ),
    # one dataset per XNLI language (the multilingual track); notebook 01 validates their
    # files' row counts once, through the combined ``xnli`` entry above
    *(
        DatasetSpec(
            name=f"xnli-{lang}",
            labels=NLI_LABELS,
            verbalisers={lab: _SAME[lab] for lab in NLI_LABELS},
            task=NLI_TASK,
            sources={f"xnli-{lang}": xnli_language_loader(lang)},
            splits={"eval": (f"xnli-{lang}", "dev")},
        )
        for lang in XNLI_LANGS
    ),
    DatasetSpec(
        name="knowns",
        labels=(),
        verbalisers={},
        task="{text}",
        sources={"knowns": load_knowns},
        splits={"eval": ("knowns", "test")},
        published_counts={("knowns", "test"): 1209},
        kind="next_token",
    ),
    DatasetSpec(
        name="longra",
        labels=(),
        verbalisers={},
        task="{text}",
        sources={"longra": load_longra},
        splits={"eval": ("longra", "test")},
        published_counts={("longra", "test"): 573},
        kind="next_token",
    ),
    DatasetSpec(
        name="synthetic",
        labels=SENTIMENT_LABELS,
        verbalisers={lab: _SAME[lab] for lab in SENTIMENT_LABELS},
        task=SENTENCE_TASK,
        sources={"synthetic": _load_synthetic},
        splits={"eval": ("synthetic", "test"), "train": ("synthetic", "train")},
        rationales="planted",
    ),
)

#: Every dataset by name.
DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}
#: Label sets of the classification datasets.
LABELS: dict[str, tuple[str, ...]] = {
    s.name: s.labels for s in _SPECS if s.kind == "classification"
}
#: Every raw-file loader by source name.
LOADERS = {name: fn for spec in _SPECS for name, fn in spec.sources.items()}
#: Row counts of the raw files as published, by ``(source, split)``.
PUBLISHED_COUNTS: dict[tuple[str, str], int] = {
    key: n for spec in _SPECS for key, n in spec.published_counts.items()
}


def dataset(name: str) -> DatasetSpec:
    """The registry entry of a dataset.

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    return lookup(DATASETS, name, "dataset")


def load(name: str, split: str, raw_dir: Path | None = None, **kwargs: object) -> list[Example]:
    """Load a split of one raw source by name (``esnli_highlights``, ``sst2`` ...).

    Raises:
        KeyError: unknown name; the message lists the valid ones.
    """
    loader = lookup(LOADERS, name, "dataset")
    if name != "synthetic":
        kwargs.pop("n", None)
    return loader(split, raw_dir=raw_dir, **kwargs)
