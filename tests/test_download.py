"""`make data`: the download registry (``data.download``), checksums, atomic writes and
archives (``data.remote``), converters (``data.convert``).

Nothing here touches the network: local files (``file://`` URLs, or an ``opener`` that
maps each URL to a local file) stand in for the public sources. Where the real raw-data
folder is available, the registry's checksums are checked against it and the loaders are
run on exactly the files the registry (and its converters) produce.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import hashlib
import io
import json
import re
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest

from xalign_utils import data
from xalign_utils.data import convert, remote
from xalign_utils.data import download as dl

csv.field_size_limit(1 << 30)


def sha(data_bytes: bytes) -> str:
    return hashlib.sha256(data_bytes).hexdigest()


def counting_opener(mapping: dict[str, Path]):
    """An ``opener`` serving local files for URLs; counts the calls per URL."""
    calls: dict[str, int] = {}

    def opener(url: str):
        calls[url] = calls.get(url, 0) + 1
        return open(mapping[url], "rb")

    opener.calls = calls  # type: ignore[attr-defined]
    return opener


def leftovers(folder: Path) -> list[str]:
    """Temporary files or folders the download left behind."""
    return sorted(p.name for p in folder.rglob(".*"))


# --------------------------------------------------------------------------- registry


def test_every_entry_has_a_sha256_and_a_safe_unique_destination():
    hexdigest = re.compile(r"[0-9a-f]{64}")
    dests = [e.dest_relpath for e in dl.REGISTRY]
    assert len(dests) == len(set(dests))
    for entry in dl.REGISTRY:
        assert hexdigest.fullmatch(entry.sha256), entry
        assert entry.archive_sha256 is None or hexdigest.fullmatch(entry.archive_sha256)
        assert entry.url.startswith("https://"), entry
        rel = Path(entry.dest_relpath)
        assert not rel.is_absolute() and ".." not in rel.parts
        assert rel.parts[0] == entry.dataset
        if entry.convert:
            assert entry.convert.split(":")[0] in convert.CONVERTERS
    assert set(dl.DATASETS) == {"esnli", "sst2", "hatexplain", "fever", "movies", "xnli", "knowns"}


def test_every_destination_is_read_by_the_loaders_or_feeds_a_converter(raw_dir):
    """Each destination exists in the real raw-data folder, or is the input of a build."""
    derived_inputs = {p for d in dl.DERIVED for p in d.inputs}
    for entry in dl.REGISTRY:
        if not (raw_dir / entry.dest_relpath).exists():
            assert entry.dest_relpath in derived_inputs, entry.dest_relpath
    for item in dl.DERIVED:
        for out in item.outputs:
            assert (raw_dir / out).is_file(), out


def test_the_loaders_need_nothing_beyond_the_registry(raw_dir, tmp_path):
    """Loaders run on a raw folder holding only the registry's files (linked to the real ones)."""
    wanted = {e.dest_relpath for e in dl.REGISTRY} | {p for d in dl.DERIVED for p in d.outputs}
    for rel in wanted:
        src = raw_dir / rel
        if src.exists():
            (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / rel).symlink_to(src, target_is_directory=src.is_dir())
    for name, split in data.PUBLISHED_COUNTS:
        assert len(data.load(name, split, raw_dir=tmp_path)) == data.PUBLISHED_COUNTS[(name, split)]


# Local stand-ins for each source, built from the real raw-data folder, so that the
# registry's checksums are tested against the reference copies. Published archive
# checksums cannot hold for a rebuilt archive, so they are dropped here.


def _build_sources(raw_dir: Path, work: Path, dataset: str) -> dict[str, Path]:
    """Map every URL of ``dataset`` to a local file equivalent to the published one."""
    entries = [e for e in dl.REGISTRY if e.dataset == dataset]
    mapping: dict[str, Path] = {}
    for entry in entries:
        if entry.unpack is None and (raw_dir / entry.dest_relpath).is_file():
            mapping[entry.url] = raw_dir / entry.dest_relpath
    archive_urls = {e.url for e in entries if e.unpack is not None}
    for url in archive_urls:
        members = [e for e in entries if e.url == url]
        path = work / hashlib.sha256(url.encode()).hexdigest()[:8]
        if dataset == "xnli":  # rebuild xnli.dev.tsv from the per-language files
            rows = ["language\tgold_label\ta\tb\tc\td\tsentence1\tsentence2\tpromptID\n"]
            for entry in members:
                lang = entry.convert.split(":")[1]
                text = (raw_dir / entry.dest_relpath).read_text(encoding="utf-8")
                for line in text.splitlines():
                    prem, hyp, label = line.split("\t")
                    rows.append(f"{lang}\t{label}\t\t\t\t\t{prem}\t{hyp}\t1\n")
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr(members[0].unpack, "".join(rows))
        elif url.endswith(".zip"):
            with zipfile.ZipFile(path, "w") as zf:
                for entry in members:
                    zf.write(raw_dir / entry.dest_relpath, entry.unpack)
        else:
            with tarfile.open(path, "w:gz", compresslevel=1) as tf:
                for entry in members:
                    tf.add(raw_dir / entry.dest_relpath, entry.unpack.rstrip("/"))
        mapping[url] = path
    return mapping


@pytest.mark.parametrize(
    "dataset", ["esnli", "sst2", "hatexplain", "fever", "movies", "xnli", "knowns"]
)
def test_registry_checksums_match_the_reference_copies(raw_dir, tmp_path, dataset):
    mapping = _build_sources(raw_dir, tmp_path, dataset)
    testable = [
        dataclasses.replace(e, archive_sha256=None)
        for e in dl.REGISTRY
        if e.dataset == dataset and e.url in mapping
    ]
    assert testable
    dest = tmp_path / "raw"
    opener = counting_opener(mapping)
    with tempfile.TemporaryDirectory() as cache:
        for entry in testable:
            assert remote.fetch(entry, dest, opener, Path(cache)) == "fetched", entry.dest_relpath
    assert all(n == 1 for n in opener.calls.values())  # each archive downloaded once
    for entry in testable:
        assert remote.is_current(entry, dest)
    assert leftovers(dest) == []


# --------------------------------------------------------------------------- fetch


def test_fetch_puts_a_verified_file_in_place(tmp_path):
    src = tmp_path / "source.txt"
    src.write_bytes(b"hello\n")
    entry = remote.RemoteFile("toy", src.as_uri(), "toy/hello.txt", sha(b"hello\n"))
    assert remote.fetch(entry, tmp_path / "raw") == "fetched"  # real urllib on a file:// URL
    assert (tmp_path / "raw/toy/hello.txt").read_bytes() == b"hello\n"
    assert leftovers(tmp_path / "raw") == []


def test_a_wrong_checksum_raises_and_leaves_nothing(tmp_path):
    src = tmp_path / "source.txt"
    src.write_bytes(b"tampered\n")
    expected = sha(b"hello\n")
    entry = remote.RemoteFile("toy", src.as_uri(), "toy/hello.txt", expected)
    with pytest.raises(remote.ChecksumError) as err:
        remote.fetch(entry, tmp_path / "raw")
    message = str(err.value)
    assert "toy/hello.txt" in message and expected in message
    assert sha(b"tampered\n") in message
    assert list((tmp_path / "raw").rglob("*")) == [tmp_path / "raw/toy"]


def test_a_failed_replacement_keeps_the_old_file(tmp_path):
    target = tmp_path / "raw/toy/hello.txt"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"old\n")
    src = tmp_path / "source.txt"
    src.write_bytes(b"tampered\n")
    entry = remote.RemoteFile("toy", src.as_uri(), "toy/hello.txt", sha(b"hello\n"))
    with pytest.raises(remote.ChecksumError):
        remote.fetch(entry, tmp_path / "raw")
    assert target.read_bytes() == b"old\n"
    assert leftovers(tmp_path / "raw") == []


def test_a_current_file_is_skipped_and_a_corrupt_one_replaced(tmp_path):
    src = tmp_path / "source.txt"
    src.write_bytes(b"hello\n")
    entry = remote.RemoteFile(
        "toy", "https://example.org/hello.txt", "toy/hello.txt", sha(b"hello\n")
    )
    opener = counting_opener({entry.url: src})
    dest = tmp_path / "raw"
    assert remote.fetch(entry, dest, opener) == "fetched"
    assert remote.fetch(entry, dest, opener) == "skipped"
    assert opener.calls[entry.url] == 1
    (dest / "toy/hello.txt").write_bytes(b"corrupt\n")
    assert remote.fetch(entry, dest, opener) == "replaced"
    assert (dest / "toy/hello.txt").read_bytes() == b"hello\n"


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return path


def _tar(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


def test_zip_members_are_unpacked_and_the_archive_fetched_once(tmp_path):
    archive = _zip(tmp_path / "a.zip", {"A/train.tsv": b"t\n", "A/dev.tsv": b"d\n"})
    url = "https://example.org/A.zip"
    entries = [
        remote.RemoteFile(
            "toy", url, "toy/train.tsv", sha(b"t\n"), "A/train.tsv", sha(archive.read_bytes())
        ),
        remote.RemoteFile(
            "toy", url, "toy/dev.tsv", sha(b"d\n"), "A/dev.tsv", sha(archive.read_bytes())
        ),
    ]
    opener = counting_opener({url: archive})
    dest = tmp_path / "raw"
    with tempfile.TemporaryDirectory() as cache:
        for entry in entries:
            assert remote.fetch(entry, dest, opener, Path(cache)) == "fetched"
    assert opener.calls[url] == 1
    assert (dest / "toy/train.tsv").read_bytes() == b"t\n"
    assert (dest / "toy/dev.tsv").read_bytes() == b"d\n"
    assert leftovers(dest) == []


def test_a_tar_folder_member_is_unpacked_and_verified_as_a_tree(tmp_path):
    files = {"top/docs/a": b"alpha\n", "top/docs/sub/b": b"beta\n", "top/other": b"x"}
    archive = _tar(tmp_path / "a.tar.gz", files)
    expected_tree = tmp_path / "expected"
    for name, blob in files.items():
        if name.startswith("top/docs/"):
            (expected_tree / name[len("top/docs/") :]).parent.mkdir(parents=True, exist_ok=True)
            (expected_tree / name[len("top/docs/") :]).write_bytes(blob)
    entry = remote.RemoteFile(
        "toy", archive.as_uri(), "toy/docs", remote.tree_sha256(expected_tree), unpack="top/docs/"
    )
    dest = tmp_path / "raw"
    assert remote.fetch(entry, dest) == "fetched"
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "toy/docs/a",
        "toy/docs/sub/b",
    ]
    assert remote.fetch(entry, dest) == "skipped"
    (dest / "toy/docs/a").write_bytes(b"changed\n")
    assert remote.fetch(entry, dest) == "replaced"
    assert (dest / "toy/docs/a").read_bytes() == b"alpha\n"
    assert leftovers(dest) == []


def test_a_wrong_folder_or_archive_checksum_leaves_nothing(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", {"top/docs/a": b"alpha\n"})
    dest = tmp_path / "raw"
    entry = remote.RemoteFile("toy", archive.as_uri(), "toy/docs", "0" * 64, unpack="top/docs/")
    with pytest.raises(remote.ChecksumError, match="toy/docs"):
        remote.fetch(entry, dest)
    bad_archive = dataclasses.replace(entry, archive_sha256="1" * 64)
    with pytest.raises(remote.ChecksumError, match="a.tar.gz"):
        remote.fetch(bad_archive, dest)
    assert [p for p in dest.rglob("*") if p.name != "toy"] == []


def test_archive_members_cannot_escape_the_destination(tmp_path):
    archive = _tar(tmp_path / "a.tar", {"top/docs/../../evil": b"x", "top/docs/ok": b"ok"})
    out = tmp_path / "out"
    out.mkdir()
    remote.unpack_member(archive, "top/docs/", out)
    assert [p.name for p in out.rglob("*")] == ["ok"]
    assert not (tmp_path / "evil").exists()
    with pytest.raises(KeyError, match="missing"):
        remote.unpack_member(archive, "missing", out / "x")


# --------------------------------------------------------------------------- converters

XNLI_HEADER = (
    "language\tgold_label\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
    "sentence2_parse\tsentence1\tsentence2\tpromptID\tpairID\tgenre\n"
)


def test_xnli_converter_writes_one_language_as_loaded(tmp_path):
    src = tmp_path / "xnli.dev.tsv"
    src.write_text(
        XNLI_HEADER
        + "de\tneutral\t\t\t\t\tEr sagte.\tEr rief an.\t1\t1\tx\n"
        + "en\tneutral\t\t\t\t\tHe said.\tHe called.\t1\t1\tx\n"
        + "en\tcontradictory\t\t\t\t\tHe said.\tHe was silent.\t1\t2\tx\n",
        encoding="utf-8",
    )
    out = tmp_path / "xnli/dev-en.tsv"
    out.parent.mkdir()
    convert.xnli_dev_tsv(src, out, "en")
    assert out.read_bytes() == (
        b"He said.\tHe called.\tneutral\r\nHe said.\tHe was silent.\tcontradiction\r\n"
    )
    examples = data.load_xnli("dev", raw_dir=tmp_path, langs=["en"])
    assert [ex.label for ex in examples] == ["neutral", "contradiction"]
    with pytest.raises(ValueError, match="no rows"):
        convert.xnli_dev_tsv(src, out, "fr")


def test_a_converted_entry_is_verified_after_conversion(tmp_path):
    archive = _zip(
        tmp_path / "x.zip",
        {
            "XNLI-1.0/xnli.dev.tsv": (
                XNLI_HEADER + "en\tneutral\t\t\t\t\tA.\tB.\t1\t1\tx\n"
            ).encode()
        },
    )
    expected = sha(b"A.\tB.\tneutral\r\n")
    entry = remote.RemoteFile(
        "xnli",
        archive.as_uri(),
        "xnli/dev-en.tsv",
        expected,
        "XNLI-1.0/xnli.dev.tsv",
        convert="xnli:en",
    )
    assert remote.fetch(entry, tmp_path / "raw") == "fetched"
    assert leftovers(tmp_path / "raw") == []


TINY_HATEXPLAIN = {
    "1_gab": {
        "post_id": "1_gab",
        "annotators": [
            {"label": "hatespeech", "annotator_id": 4, "target": ["African"]},
            {"label": "hatespeech", "annotator_id": 5, "target": ["African", "Other"]},
            {"label": "offensive", "annotator_id": 6, "target": ["None"]},
        ],
        "rationales": [[0, 1, 1], [0, 0, 1], [0, 1, 0]],
        "post_tokens": ["they", "are", "'vermin'"],
    },
    "2_twitter": {
        "post_id": "2_twitter",
        "annotators": [
            {"label": "normal", "annotator_id": 1, "target": ["None"]},
            {"label": "normal", "annotator_id": 2, "target": ["None"]},
            {"label": "offensive", "annotator_id": 3, "target": ["Women"]},
        ],
        "rationales": [],
        "post_tokens": ["<user>", "good", "morning"],
    },
    "3_gab": {
        "post_id": "3_gab",
        "annotators": [
            {"label": "offensive", "annotator_id": 7, "target": ["None"]},
            {"label": "offensive", "annotator_id": 8, "target": ["None"]},
            {"label": "normal", "annotator_id": 9, "target": ["None"]},
        ],
        "rationales": [[1, 0], [1, 1]],
        "post_tokens": ["so", "dumb"],
    },
}


def test_hatexplain_converter_builds_csvs_the_loader_reads(tmp_path):
    folder = tmp_path / "hatexplain"
    folder.mkdir()
    (folder / "dataset.json").write_text(json.dumps(TINY_HATEXPLAIN), encoding="utf-8")
    divisions = {"train": [], "val": ["3_gab"], "test": ["2_twitter", "1_gab"]}
    (folder / "post_id_divisions.json").write_text(json.dumps(divisions), encoding="utf-8")
    assert dict(enumerate(convert.HATEXPLAIN_LABEL_NAMES)) == data.HATEXPLAIN_CODES
    item = next(d for d in dl.DERIVED if d.dataset == "hatexplain")
    assert remote.build_derived(item, tmp_path) == "built"
    assert remote.build_derived(item, tmp_path) == "skipped"
    with open(folder / "test.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["id"] for r in rows] == ["2_twitter", "1_gab"]  # the split file's order
    assert list(rows[0]) == list(convert.HATEXPLAIN_COLUMNS)
    assert ast.literal_eval(rows[1]["annotators"]) == {
        "label": [0, 0, 2],
        "annotator_id": [4, 5, 6],
        "target": [["African"], ["African", "Other"], ["None"]],
    }
    test = data.load_hatexplain("test", raw_dir=tmp_path)
    assert [(ex.label, ex.rationale["text"]) for ex in test] == [
        ("normal", [0, 0, 0]),
        ("hatespeech", [0, 1, 1]),
    ]
    assert test[1].words["text"] == ["they", "are", "'vermin'"]
    (val,) = data.load_hatexplain("val", raw_dir=tmp_path)
    assert (val.label, val.rationale["text"]) == ("offensive", [1, 1])


def test_hatexplain_converter_reproduces_the_reference_columns(raw_dir):
    """Turn the reference CSV back into dataset.json form: conversion gives it back exactly."""
    divisions = json.loads((raw_dir / "hatexplain/post_id_divisions.json").read_text())
    for split in ("test", "val"):
        with open(raw_dir / f"hatexplain/{split}.csv", encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
        dataset = {}
        for r in rows:
            ann = ast.literal_eval(r["annotators"])
            dataset[r["id"]] = {
                "annotators": [
                    {"label": convert.HATEXPLAIN_LABEL_NAMES[code], "annotator_id": a, "target": t}
                    for code, a, t in zip(
                        ann["label"], ann["annotator_id"], ann["target"], strict=True
                    )
                ],
                "rationales": ast.literal_eval(r["rationales"]),
                "post_tokens": ast.literal_eval(r["post_tokens"]),
            }
        assert [r["id"] for r in rows] == divisions[split]
        expected = [tuple(r[c] for c in convert.HATEXPLAIN_COLUMNS) for r in rows]
        assert convert.hatexplain_rows(dataset, divisions[split]) == expected


ORIGINAL_ESNLI_HEADER = (
    "pairID,gold_label,Sentence1,Sentence2,"
    + ",".join(
        f"Explanation_{k},Sentence1_marked_{k},Sentence2_marked_{k},"
        f"Sentence1_Highlighted_{k},Sentence2_Highlighted_{k}"
        for k in (1, 2, 3)
    )
    + "\n"
)


def test_esnli_highlights_are_built_from_the_original_csv(tmp_path):
    folder = tmp_path / "esnli"
    folder.mkdir()
    (folder / "esnli_test.csv").write_text(
        ORIGINAL_ESNLI_HEADER
        + "1e,entailment,A woman smiles.,A woman is present.,"
        + "Smiling needs presence.,A woman *smiles.*,A woman is *present.*,{},3,"
        + "x,A woman *smiles.*,A woman is present.,{},{},"
        + 'y,A woman smiles.,A *woman* is *present.*,{},"1,3"\n'
        + "2c,contradiction,A dog runs.,A cat sleeps.,Dogs are not cats.,"
        + "A *dog* runs.,A *cat* *sleeps.*,{},{},,,,,,,,,,\n",
        encoding="utf-8",
    )
    (folder / "labels.test").write_text("entailment\ncontradiction\n", encoding="utf-8")
    item = next(d for d in dl.DERIVED if d.outputs == ("esnli/esnli_test_highlights.csv",))
    assert remote.build_derived(item, tmp_path) == "built"
    rows = data.load_esnli_highlights("test", raw_dir=tmp_path)
    assert [ex.meta["source_index"] for ex in rows] == [0, 1]
    assert {ex.meta["annotation_scope"] for ex in rows} == {"full"}
    assert rows[0].rationale == {"premise": [0, 0, 1], "hypothesis": [0, 0, 0, 1]}
    assert rows[1].rationale == {"premise": [0, 1, 0], "hypothesis": [0, 1, 1]}
    assert len(rows[1].annotators) == 1


def test_esnli_highlights_refuse_misaligned_labels(tmp_path):
    folder = tmp_path / "esnli"
    folder.mkdir()
    (folder / "esnli_dev.csv").write_text(
        ORIGINAL_ESNLI_HEADER + "1e,entailment,A.,B.,e,*A.*,B.,{},{},,,,,,,,,,\n",
        encoding="utf-8",
    )
    (folder / "labels.dev").write_text("neutral\n", encoding="utf-8")
    item = next(d for d in dl.DERIVED if d.outputs == ("esnli/esnli_dev_highlights.csv",))
    with pytest.raises(ValueError, match="not aligned"):
        remote.build_derived(item, tmp_path)
    assert not (folder / "esnli_dev_highlights.csv").exists()
    assert leftovers(folder) == []


def test_a_failed_build_keeps_the_old_outputs_and_leaves_no_temporaries(tmp_path):
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy/in.txt").write_text("input\n")
    (tmp_path / "toy/a.txt").write_text("old a\n")

    def half_then_fail(inputs, outputs):
        assert [p.name for p in outputs] == ["a.txt", "b.txt"]  # the outputs' own names
        outputs[0].write_text("new a\n")
        raise ValueError("broken input")

    item = remote.Derived("toy", ("toy/in.txt",), ("toy/a.txt", "toy/b.txt"), half_then_fail)
    with pytest.raises(ValueError, match="broken input"):
        remote.build_derived(item, tmp_path, force=True)
    assert (tmp_path / "toy/a.txt").read_text() == "old a\n"
    assert not (tmp_path / "toy/b.txt").exists()
    assert leftovers(tmp_path) == []


# --------------------------------------------------------------------------- download()


def test_download_reports_failures_and_skips_on_rerun(raw_dir, tmp_path, monkeypatch):
    mapping = _build_sources(raw_dir, tmp_path, "knowns")
    wrong = next(e for e in dl.REGISTRY if e.dest_relpath == "knowns/LongRA.json")
    monkeypatch.setattr(
        dl,
        "REGISTRY",
        tuple(dataclasses.replace(e, sha256="0" * 64) if e == wrong else e for e in dl.REGISTRY),
    )
    log: list[str] = []
    dest = tmp_path / "raw"
    failures = dl.download(dest, ["knowns"], counting_opener(mapping), log.append)
    assert len(failures) == 1 and "knowns/LongRA.json" in failures[0]
    assert (dest / "knowns/known_1000.json").is_file()
    assert not (dest / "knowns/LongRA.json").exists()
    assert dl.download(dest, ["knowns"], counting_opener(mapping), log.append) == failures
    assert any(line.split() == ["skipped", "knowns/known_1000.json"] for line in log)
    with pytest.raises(KeyError, match="unknown dataset"):
        dl.download(dest, ["nope"], counting_opener(mapping))


def test_command_line_lists_the_datasets(capsys):
    with pytest.raises(SystemExit):
        dl.main(["--help"])
    assert "--only" in capsys.readouterr().out
