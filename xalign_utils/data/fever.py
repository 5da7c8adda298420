"""FEVER in ERASER format: claim + evidence document, evidence tokens as rationale."""

from __future__ import annotations

from pathlib import Path

from ..schema import Example, RawDataError
from .readers import check_label, dataset_dir, jsonl

FEVER_LABELS = ("SUPPORTS", "REFUTES")
FEVER_TASK = (
    "Determine whether the evidence supports or refutes the claim.\n\n"
    "Claim: {claim}\nEvidence: {evidence}\n\n"
)


def load_fever(split: str = "test", raw_dir: Path | None = None) -> list[Example]:
    """FEVER in ERASER format: claim + evidence document; rationale = evidence tokens.

    Claim words are unannotated (``None``); document words are 1 inside an evidence
    span (ERASER ``start_token``/``end_token`` over the whitespace-tokenised document).
    """
    folder = dataset_dir("fever", raw_dir)
    path = folder / f"{split}.jsonl"
    docs: dict[str, list[str]] = {}
    out = []
    for line, rec in jsonl(path):
        for key in ("annotation_id", "classification", "evidences", "query"):
            if key not in rec:
                raise RawDataError(path, line, key, "missing")
        label = check_label(rec["classification"], FEVER_LABELS, path, line, "classification")
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
