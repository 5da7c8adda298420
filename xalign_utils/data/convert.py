"""Converters from published raw files to the formats the loaders read (``make data``).

Two kinds, both used by :mod:`xalign_utils.data.download`:

* *converters* (:data:`CONVERTERS`, ``fn(src, out, arg)``) turn one downloaded or
  unpacked file into the destination of a registry entry, whose checksum is then checked
  (XNLI's per-language ``dev-<lang>.tsv``);
* *builders* (``fn(inputs, outputs)``) write files that are derived from several verified
  registry files (HateXplain's CSVs, the e-SNLI highlight CSVs).

Both write to the paths they are given; :func:`xalign_utils.data.remote.fetch` and
:func:`~xalign_utils.data.remote.build_derived` hand them temporary paths and move the
results into place only when everything succeeded. Only the standard library is imported.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path


def xnli_dev_tsv(src: Path, out: Path, lang: str) -> None:
    """One language of ``XNLI-1.0/xnli.dev.tsv`` as ``premise<TAB>hypothesis<TAB>label``.

    Mirrors XTREME's ``xnli_preprocess`` (google-research/xtreme, ``utils_preprocess.py``),
    which wrote the ``dev-<lang>.tsv`` files in ``../shared/data/xnli``: no header, rows in
    file order, ``csv.writer`` with a tab delimiter (so ``\\r\\n`` line ends).
    """
    rows = []
    with open(src, encoding="utf-8") as fh:
        for i, line in enumerate(fh):
            if i == 0:
                continue
            items = line.strip().split("\t")
            if items[0].strip() != lang:
                continue
            label = "contradiction" if items[1].strip() == "contradictory" else items[1].strip()
            rows.append((items[6].strip(), items[7].strip(), label))
    if not rows:
        raise ValueError(f"{src} has no rows for language {lang!r}")
    with open(out, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh, delimiter="\t").writerows(rows)


#: Converters by name: ``fn(src, out, arg)`` writes ``out`` from ``src``.
CONVERTERS: dict[str, Callable[[Path, Path, str], None]] = {"xnli": xnli_dev_tsv}

#: HateXplain's label names in the order of its Hugging Face ``ClassLabel``; the codes
#: are what the CSV's ``annotators`` column holds (0 = hatespeech, 1 = normal, 2 = offensive).
HATEXPLAIN_LABEL_NAMES = ("hatespeech", "normal", "offensive")
HATEXPLAIN_COLUMNS = ("id", "annotators", "rationales", "post_tokens")


def hatexplain_rows(dataset: dict, post_ids: Sequence[str]) -> list[tuple[str, str, str, str]]:
    """Rows of the HateXplain CSV for ``post_ids`` from the published ``dataset.json``.

    ``annotators`` becomes the dict of lists the CSV stores (``{'label': [codes],
    'annotator_id': [...], 'target': [[...], ...]}``); every column is the Python literal
    the loader parses with ``ast.literal_eval``.
    """
    codes = {name: i for i, name in enumerate(HATEXPLAIN_LABEL_NAMES)}
    rows = []
    for post_id in post_ids:
        post = dataset[post_id]
        annotators = {
            "label": [codes[a["label"]] for a in post["annotators"]],
            "annotator_id": [int(a["annotator_id"]) for a in post["annotators"]],
            "target": [list(a["target"]) for a in post["annotators"]],
        }
        rationales = [[int(v) for v in mask] for mask in post["rationales"]]
        tokens = [str(t) for t in post["post_tokens"]]
        rows.append((post_id, repr(annotators), repr(rationales), repr(tokens)))
    return rows


def build_hatexplain(inputs: Sequence[Path], outputs: Sequence[Path]) -> None:
    """``test.csv`` and ``val.csv`` from ``dataset.json`` and ``post_id_divisions.json``.

    Rows follow the order of the official split file, as in ``../shared/data``; the
    third-party columns of the shared copy (``masked_tokens`` ...) are not produced (the
    loaders ignore them).
    """
    dataset_json, divisions_json = inputs
    dataset = json.loads(Path(dataset_json).read_text(encoding="utf-8"))
    divisions = json.loads(Path(divisions_json).read_text(encoding="utf-8"))
    for out in outputs:
        split = Path(out).stem
        with open(out, "w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(HATEXPLAIN_COLUMNS)
            writer.writerows(hatexplain_rows(dataset, divisions[split]))


ESNLI_HIGHLIGHT_COLUMNS = (
    ["pairID", "gold_label", "Sentence1", "Sentence2"]
    + [
        f"{c}_{k}"
        for k in (1, 2, 3)
        for c in ("Explanation", "Sentence1_marked", "Sentence2_marked")
    ]
    + ["annotation_scope", "source_index"]
)


def build_esnli_highlights(inputs: Sequence[Path], outputs: Sequence[Path]) -> None:
    """``esnli_<split>_highlights.csv`` from the original ``esnli_<split>.csv``.

    The original CSV has every annotator's highlights for every row, in the order of the
    parallel files, so each row is ``annotation_scope = full`` and ``source_index`` is its
    0-based row number. That order is checked against ``labels.<split>`` (the second
    input): a mismatch raises instead of writing misaligned rows. (The copy in
    ``../shared/data`` is a reassembled subset; this is the complete set.)
    """
    original, labels_file = (Path(p) for p in inputs)
    (out,) = (Path(p) for p in outputs)
    labels = labels_file.read_text(encoding="utf-8").splitlines()
    with open(original, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) != len(labels):
        raise ValueError(f"{original} has {len(rows)} rows but {labels_file} has {len(labels)}")
    for i, (row, label) in enumerate(zip(rows, labels, strict=True)):
        if row["gold_label"].strip() != label.strip():
            raise ValueError(
                f"{original} row {i + 2}: gold_label {row['gold_label']!r} differs from "
                f"line {i + 1} of {labels_file} ({label!r}); the files are not aligned"
            )
    with open(out, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=ESNLI_HIGHLIGHT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow({**row, "annotation_scope": "full", "source_index": i})
