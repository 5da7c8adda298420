"""Readers shared by the dataset loaders: raw folders, lines, CSV, JSON, literals.

Every reader validates as it goes and raises :class:`RawDataError` naming the file, the
line and the field, so a broken download is reported where it is broken.
"""

from __future__ import annotations

import ast
import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from .. import config
from ..schema import RawDataError


def dataset_dir(name: str, raw_dir: Path | None) -> Path:
    """The raw folder of one dataset, with set-up help when it is missing."""
    root = Path(raw_dir) if raw_dir is not None else config.raw_data_dir()
    path = root / name
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset folder {path} is missing.\n\n" + config._raw_help()  # noqa: SLF001
        )
    return path


def read_lines(path: Path) -> list[str]:
    """Lines of a text file without line terminators (a missing final newline is fine)."""
    if not path.is_file():
        raise RawDataError(path, None, None, "file not found")
    return path.read_text(encoding="utf-8").splitlines()


def check_label(label: str, labels: Sequence[str], path: Path, line: int, field_name: str) -> str:
    """Return ``label`` when it belongs to ``labels``; else an error naming file and line."""
    if label not in labels:
        raise RawDataError(path, line, field_name, f"label {label!r} is not one of {tuple(labels)}")
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


def csv_rows(path: Path, required: Sequence[str]) -> Iterable[tuple[int, dict]]:
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


def literal(value: str, path: Path, line: int, field_name: str) -> object:
    """A Python literal from a CSV cell (HateXplain lists), parsed safely (no ``eval``)."""
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError) as err:
        raise RawDataError(
            path, line, field_name, f"not a Python literal ({err.__class__.__name__})"
        ) from None


def jsonl(path: Path) -> Iterable[tuple[int, dict]]:
    """Yield (line number, record) from a JSON-lines file, skipping blank lines."""
    for i, raw in enumerate(read_lines(path), start=1):
        if not raw.strip():
            continue
        try:
            yield i, json.loads(raw)
        except json.JSONDecodeError as err:
            raise RawDataError(
                path, i, None, f"malformed JSON ({err.msg} at column {err.colno})"
            ) from None


def json_list(path: Path, required: Sequence[str]) -> list[dict]:
    """Records of a JSON list file, each checked for the ``required`` keys."""
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
