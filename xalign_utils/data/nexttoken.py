"""Next-token prompts of the Noiser paper: Knowns (Meng et al. 2022) and LongRA."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..schema import Example
from .readers import dataset_dir, json_list


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
        for rec in json_list(path, [id_key, "prompt", label_key])
    ]


def load_knowns(split: str = "test", raw_dir: Path | None = None) -> list[Example]:
    """Knowns (Meng et al. 2022): a factual prompt and its one-word gold continuation."""
    path = dataset_dir("knowns", raw_dir) / "known_1000.json"
    return _next_token_examples(
        "knowns", split, path, "known_id", "attribute", ["subject", "relation_id"]
    )


def load_longra(split: str = "test", raw_dir: Path | None = None) -> list[Example]:
    """LongRA (Vafa et al. 2021, as used by Noiser): long-range agreement prompts."""
    path = dataset_dir("knowns", raw_dir) / "LongRA.json"
    return _next_token_examples("longra", split, path, "id", "target", ["relative", "type"])
