"""Hub copies of the datasets, for users with a network (``pip install -e .[hub]``).

The local files remain the tested, default source; the converters are tested offline
with records in the Hub's format.
"""

from __future__ import annotations

from collections import Counter

from ..schema import Example, RawDataError
from .hate import HATEXPLAIN_CODES
from .nli import NLI_LABELS
from .readers import combine_masks
from .sentiment import SENTIMENT_LABELS

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
            SENTIMENT_LABELS[label],
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
            NLI_LABELS[label],
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
    try:  # optional heavy dependency (the `hub` extra)
        from datasets import load_dataset
    except ImportError as err:
        raise ImportError("Hub loading needs the optional extra: pip install -e '.[hub]'") from err
    if name not in HUB_IDS:
        raise KeyError(f"no Hub copy known for {name!r}; available: {sorted(HUB_IDS)}")
    records = load_dataset(HUB_IDS[name], split=split, trust_remote_code=False)
    return [from_hub_record(name, rec, split, i) for i, rec in enumerate(records)]
