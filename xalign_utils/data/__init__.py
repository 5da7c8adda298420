"""Datasets in the shared schema (DESIGN.md §5): registry, loaders, splits, Hub copies.

``from xalign_utils import data`` gives the names notebooks use: the registry
(:data:`DATASETS`, :data:`LABELS`), :func:`load`, the split helpers and the schema.
Loaders parse each dataset's published files and raise :class:`RawDataError` naming the
file, the line and the field when something is wrong. Word rationales use ``1``
(highlighted), ``0`` (annotated, not highlighted) and ``None`` (not annotated).
"""

from ..schema import DatasetSpec, Example, Mask, RawDataError
from .fever import load_fever
from .hate import HATEXPLAIN_CODES, load_hatexplain
from .hub import HUB_IDS, from_hub_record, load_hub
from .nexttoken import load_knowns, load_longra
from .nli import XNLI_LANGS, align_highlights, load_esnli, load_esnli_highlights, load_xnli
from .readers import combine_masks
from .registry import DATASETS, LABELS, LOADERS, PUBLISHED_COUNTS, dataset, load
from .sentiment import load_movies, load_sst2, parse_tagged_review
from .splits import (
    assert_no_leakage,
    build_split,
    load_examples,
    load_processed,
    processed_path,
    save_examples,
    stratified_sample,
    summarise,
    truncate,
)
from .synthetic import SYNTHETIC_FILLER, SYNTHETIC_TRIGGERS, make_synthetic

__all__ = [
    "DATASETS",
    "HATEXPLAIN_CODES",
    "HUB_IDS",
    "LABELS",
    "LOADERS",
    "PUBLISHED_COUNTS",
    "SYNTHETIC_FILLER",
    "SYNTHETIC_TRIGGERS",
    "XNLI_LANGS",
    "DatasetSpec",
    "Example",
    "Mask",
    "RawDataError",
    "align_highlights",
    "assert_no_leakage",
    "build_split",
    "combine_masks",
    "dataset",
    "from_hub_record",
    "load",
    "load_esnli",
    "load_esnli_highlights",
    "load_examples",
    "load_fever",
    "load_hatexplain",
    "load_hub",
    "load_knowns",
    "load_longra",
    "load_movies",
    "load_processed",
    "load_sst2",
    "load_xnli",
    "make_synthetic",
    "parse_tagged_review",
    "processed_path",
    "save_examples",
    "stratified_sample",
    "summarise",
    "truncate",
]
