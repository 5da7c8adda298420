"""Download every raw dataset from its public source and verify it (``make data``).

For users with a network: the project otherwise reads the raw datasets from
``XALIGN_RAW_DATA`` or ``../shared/data`` (see :func:`xalign_utils.config.raw_data_dir`),
and that offline path is unchanged. This module writes the same layout, in the same
published formats, under ``data/raw/`` (or ``--dest``)::

    python -m xalign_utils.data.download [--dest DIR] [--only NAME ...]

:data:`REGISTRY` lists every file: where it comes from, where it goes and its sha256;
:data:`DERIVED` the files built from them. How one entry is fetched, verified, unpacked
and moved into place atomically is :mod:`xalign_utils.data.remote`; the converters
(XNLI's per-language files, HateXplain's CSVs, the e-SNLI highlight CSVs) are
:mod:`xalign_utils.data.convert`.

Checksums and where they come from (comments on each entry say which applies):

* the file is byte-identical to the copy in ``../shared/data``: its sha256 was computed
  from that copy;
* the source is an archive (or a conversion) that could not be hashed offline: the
  checksum is that of the shared copy *after* unpacking/converting, so the member the
  loaders read is verified; where Hugging Face ``datasets`` publishes the archive's own
  sha256 (``download_checksums`` in its ``dataset_infos.json``), that is checked too;
* a file absent from ``../shared/data`` (HateXplain's ``dataset.json``, the original
  e-SNLI CSVs): the sha256 published by Hugging Face ``datasets`` for the same URL.

Only the standard library, :mod:`xalign_utils.config` and the two modules above are
imported here: the download does not depend on the loaders it feeds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import config
from .convert import build_esnli_highlights, build_hatexplain
from .remote import Derived, Opener, RemoteFile, archive_path, build_derived, fetch

_ESNLI_RAW = "https://raw.githubusercontent.com/OanaMariaCamburu/e-SNLI"
_ESNLI_FILES = (
    # (file, commit, path in the repository, sha256 of ../shared/data/esnli/<file>).
    # The parallel files are not on the default branch any more; these commits hold them.
    (
        "labels.dev",
        "38f9d62ad6da930d0575e97bafa26023822130a5",
        "dataset/eSNLI/labels.dev",
        "d164d72435c3289fe53cb01e983f7c06e104bf192c0cae9caf2e99bf2e15f974",
    ),
    (
        "labels.test",
        "38f9d62ad6da930d0575e97bafa26023822130a5",
        "dataset/eSNLI/labels.test",
        "e25c363e5cc70d5494d6e6555d8053eced22dca836e0f03067530eaad3d4f5f5",
    ),
    (
        "preproc1_expl_1.dev",
        "38f9d62ad6da930d0575e97bafa26023822130a5",
        "dataset/eSNLI/preproc1_expl_1.dev",
        "55a502fdb187ea76c9e48282116f2d2c4a7bd57750addcdf1a8640cb2a0df28c",
    ),
    (
        "preproc1_expl_1.test",
        "38f9d62ad6da930d0575e97bafa26023822130a5",
        "dataset/eSNLI/preproc1_expl_1.test",
        "44c87e2cb429c3e077c8030e067a9ebb1f7a642b3a0d6fea0996655af431c50b",
    ),
    (
        "preproc1_expl_2.dev",
        "38f9d62ad6da930d0575e97bafa26023822130a5",
        "dataset/eSNLI/preproc1_expl_2.dev",
        "44032ffb894e2ed079550d8a33fda89dedabe8dd8e55a2633f6ab2771a86c731",
    ),
    (
        "preproc1_expl_2.test",
        "b42870ea843fcea851e767e4cc98228206506db2",
        "dataset/preproc1_expl_2.test",
        "f8245cc0abc39aff7fe5991c8e334c227be78918e9811dc83015dcae5b42c7fc",
    ),
    (
        "preproc1_expl_3.dev",
        "b42870ea843fcea851e767e4cc98228206506db2",
        "dataset/preproc1_expl_3.dev",
        "18933041c16a55c9594f8b8f2e694a10a1ed114121a8c466b4c65f507d1029ae",
    ),
    (
        "preproc1_expl_3.test",
        "b42870ea843fcea851e767e4cc98228206506db2",
        "dataset/preproc1_expl_3.test",
        "6a3b788c3252738d65491a8c3cf4396017db787ce9eee712dd3d3dd53c397e30",
    ),
    (
        "s1.dev",
        "c39b05bcceff28b1ea0a7fcb2fec8bea086f7e94",
        "dataset/s1.dev",
        "28a398b5478b10b4b851d4bb5b2e5767171519add6586015ed50b9436df11d00",
    ),
    (
        "s1.test",
        "c39b05bcceff28b1ea0a7fcb2fec8bea086f7e94",
        "dataset/s1.test",
        "62cb8107dc3c56a4376e5e521842be24e0d61c92c346b94917da2bbf2a47d8be",
    ),
    (
        "s2.dev",
        "c39b05bcceff28b1ea0a7fcb2fec8bea086f7e94",
        "dataset/s2.dev",
        "a8c59709630b64ba103f7784c0cb7104a6baf23234562487264d9634714f5d2b",
    ),
    (
        "s2.test",
        "38f9d62ad6da930d0575e97bafa26023822130a5",
        "dataset/eSNLI/s2.test",
        "1174f3ad30a3c30fc0f9eeffc1b3b6a79e0514026c5a658968a8e2a324b311a1",
    ),
)

_SST2_ZIP = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"
# Published by Hugging Face datasets (datasets/sst2/dataset_infos.json) for this URL.
_SST2_ZIP_SHA256 = "d67e16fb55739c1b32cdce9877596db1c127dc322d93c082281f64057c16deaa"

_HATEXPLAIN_RAW = "https://raw.githubusercontent.com/hate-alert/HateXplain/master/Data"

_FEVER_TGZ = "https://www.eraserbenchmark.com/zipped/fever.tar.gz"

# Zaidan et al.'s reviews with inline <POS>/<NEG> tags, as the shared copy has them
# (ERASER's movies.tar.gz stores untagged documents and offsets instead).
_MOVIES_COMMIT = "703804d264f4ab2a9e657eac8b7eb563493a13cf"
_MOVIES_TGZ = f"https://github.com/yezhang-xiaofan/Rationale-CNN/archive/{_MOVIES_COMMIT}.tar.gz"
_MOVIES_ROOT = f"Rationale-CNN-{_MOVIES_COMMIT}/movies"

_XNLI_ZIP = "https://dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip"
# Published by Hugging Face datasets (datasets/xnli/dataset_infos.json) for this URL.
_XNLI_ZIP_SHA256 = "4ba1d5e1afdb7161f0f23c66dc787802ccfa8a25a3ddd3b165a35e50df346ab1"
# sha256 of ../shared/data/xnli/dev-<lang>.tsv: the output of xnli_dev_tsv, not a file
# the source publishes as such.
_XNLI_DEV_SHA256 = {
    "ar": "234237be8250fbdf4eafeae06f7d65f33ae02fc6a9c502f2fa67fb7c1ed0aaa6",
    "bg": "1137999816dc8c7f0fbfa16f5542d4c38bc8018d9c03bab1cb14a7db69753a27",
    "de": "cc72840e5daa08a8f2f7bf780de1d8a81ad035ac21cb8308e3a66f0c48342838",
    "el": "ad9730e84ef2943d20ab96f31a5b62812fa19744cc4494498ea8deea3a288950",
    "en": "7e7ac6fe0b84ce13517710e2c3edfc9371076059f44ff6e1090e6eb82439a8b2",
    "es": "eadee2bff6f31f9b271cb4668351ec089301ec258a4138367679faa5c3495da6",
    "fr": "58db1c233ec2833542cc6671255e688b1db44238f33f7080919910da6b6b4e5b",
    "hi": "911c4dc546d50642a62e2363f18598988feb56e885f28e1052314788a7a41ac7",
    "ru": "fcc3ac697104165aca0355fdf850c079adec3de67dd7ba689ffc79314ea6d42e",
    "sw": "f81755c66d97564cbc70598cb006f63baaf8e6156de18f89ff9fe86f154f8cfa",
    "th": "8632d6380c0a440ad16788dedde1b832b7fbedc6ae161fff4613830c00dccace",
    "tr": "f94f63d8ef4fcf78d2a90df3682a54b52ace625caaf8fae4436e2137da184696",
    "ur": "ebd30b594a2c5e33e5d99117a5090dbc9b96bc8cab4c8c50eeb51baf5278ffac",
    "vi": "8cb3648cacceb056fda51313560d50ed2e7567c55493d5e16158a93245db84be",
    "zh": "9a1e2df22ad00831698698da699fcdcd4e4c72192e6d8b5feed3126dbb287873",
}

REGISTRY: tuple[RemoteFile, ...] = (
    # e-SNLI parallel files: byte-identical to ../shared/data/esnli (sha256 from there).
    *(
        RemoteFile("esnli", f"{_ESNLI_RAW}/{commit}/{path}", f"esnli/{name}", sha)
        for name, commit, path, sha in _ESNLI_FILES
    ),
    # The original e-SNLI CSVs (every annotator's highlights), input of the highlight
    # CSVs; not in ../shared/data: sha256 as published by Hugging Face datasets
    # (datasets/esnli/dataset_infos.json) for these URLs.
    RemoteFile(
        "esnli",
        f"{_ESNLI_RAW}/master/dataset/esnli_dev.csv",
        "esnli/esnli_dev.csv",
        "d7a656d196eea18fd827d6f5486b00f5d4cf469dbf13a252cc211495a186bcb4",
    ),
    RemoteFile(
        "esnli",
        f"{_ESNLI_RAW}/master/dataset/esnli_test.csv",
        "esnli/esnli_test.csv",
        "9269aa8075dbfed0fa8a5012eb2ac9c18a92be139671f05df897f69092592927",
    ),
    # SST-2: the GLUE zip; members checked against ../shared/data/sst2 after unpacking.
    RemoteFile(
        "sst2",
        _SST2_ZIP,
        "sst2/train.tsv",
        "48eac26399f8456935f81dd9e3a745c1430adb6c62e233ccfe22db4a0d15d1d1",
        unpack="SST-2/train.tsv",
        archive_sha256=_SST2_ZIP_SHA256,
    ),
    RemoteFile(
        "sst2",
        _SST2_ZIP,
        "sst2/dev.tsv",
        "54a9c12c77e402fc14d6a66a506f24d999f596b0176eb777c972cccc2f9cc4b0",
        unpack="SST-2/dev.tsv",
        archive_sha256=_SST2_ZIP_SHA256,
    ),
    # HateXplain: dataset.json is not in ../shared/data (sha256 published by Hugging Face
    # datasets, datasets/hatexplain/dataset_infos.json); post_id_divisions.json is
    # byte-identical to the shared copy (and to that published checksum). The CSVs the
    # loader reads are built from both (DERIVED).
    RemoteFile(
        "hatexplain",
        f"{_HATEXPLAIN_RAW}/dataset.json",
        "hatexplain/dataset.json",
        "63bb3340fee0ec469b09690d04cb68f7c187787dd8b83807f071892c084967fb",
    ),
    RemoteFile(
        "hatexplain",
        f"{_HATEXPLAIN_RAW}/post_id_divisions.json",
        "hatexplain/post_id_divisions.json",
        "c2fb0d89862e7897b11ea3e9380753f15a793482b4b70ad0532dfb1212212835",
    ),
    # FEVER (ERASER): no published checksum for the archive; members checked against
    # ../shared/data/fever after unpacking (docs/ as one tree_sha256 over 4,099 files).
    RemoteFile(
        "fever",
        _FEVER_TGZ,
        "fever/val.jsonl",
        "380841eac4d33f97ea5e9b11abe719349dcce3ec159b73c55aabe8717f2babb8",
        unpack="fever/val.jsonl",
    ),
    RemoteFile(
        "fever",
        _FEVER_TGZ,
        "fever/test.jsonl",
        "fd8d9c203a5103bc0e1def698ee11e07f253e22b265a68c55f73db7bfb92fbb6",
        unpack="fever/test.jsonl",
    ),
    RemoteFile(
        "fever",
        _FEVER_TGZ,
        "fever/docs",
        "e865e729e2506a553b2ae3a6a20dcfa636f88ce21886aef0a088fde0c764ebd4",
        unpack="fever/docs/",
    ),
    # Movies: GitHub's archive of a fixed commit is not byte-stable, so the unpacked
    # folders are checked (tree_sha256 of ../shared/data/movies/withRats_*, 1,000 files each).
    RemoteFile(
        "movies",
        _MOVIES_TGZ,
        "movies/withRats_pos",
        "42a5620ea1a53c7833be607a18bf6767b540ff94f79b696293010e6372ec4a18",
        unpack=f"{_MOVIES_ROOT}/withRats_pos/",
    ),
    RemoteFile(
        "movies",
        _MOVIES_TGZ,
        "movies/withRats_neg",
        "098652477ff6065950ae8806c8b1878c6843bb6567c50aa8d952bccd05d47359",
        unpack=f"{_MOVIES_ROOT}/withRats_neg/",
    ),
    # XNLI: one conversion of XNLI-1.0/xnli.dev.tsv per language (xnli_dev_tsv),
    # checked against ../shared/data/xnli/dev-<lang>.tsv.
    *(
        RemoteFile(
            "xnli",
            _XNLI_ZIP,
            f"xnli/dev-{lang}.tsv",
            sha,
            unpack="XNLI-1.0/xnli.dev.tsv",
            archive_sha256=_XNLI_ZIP_SHA256,
            convert=f"xnli:{lang}",
        )
        for lang, sha in _XNLI_DEV_SHA256.items()
    ),
    # Knowns and LongRA from the copies ../shared/data/README.md names (byte-identical).
    RemoteFile(
        "knowns",
        "https://raw.githubusercontent.com/MaxLEAF3824/gpt_re/"
        "a0134700ce4c073ad92b75facb15ae180c9b3e24/data/known_1000.json",
        "knowns/known_1000.json",
        "685ed2a0c3e8323921ea8a945b237cfe75e1f4948b9dda7a92aa6c2401f1d9df",
    ),
    RemoteFile(
        "knowns",
        "https://raw.githubusercontent.com/qasemii/noiser/"
        "3ae8f9dbcb16e471bae1c63db475596f73cb6e2d/data/LongRA.json",
        "knowns/LongRA.json",
        "81ef4fbf6d4d523eaad026eadf0ad9839caa22f18aee1127952f1e60de0fecb1",
    ),
)

DERIVED: tuple[Derived, ...] = (
    Derived(
        "esnli",
        ("esnli/esnli_test.csv", "esnli/labels.test"),
        ("esnli/esnli_test_highlights.csv",),
        build_esnli_highlights,
    ),
    Derived(
        "esnli",
        ("esnli/esnli_dev.csv", "esnli/labels.dev"),
        ("esnli/esnli_dev_highlights.csv",),
        build_esnli_highlights,
    ),
    Derived(
        "hatexplain",
        ("hatexplain/dataset.json", "hatexplain/post_id_divisions.json"),
        ("hatexplain/test.csv", "hatexplain/val.csv"),
        build_hatexplain,
    ),
)

#: Dataset folder names, in registry order (the choices of ``--only``).
DATASETS: tuple[str, ...] = tuple(dict.fromkeys(e.dataset for e in REGISTRY))


# --------------------------------------------------------------------------- download


def download(
    dest: Path,
    only: Sequence[str] | None = None,
    opener: Opener = urllib.request.urlopen,
    log: Callable[[str], None] = print,
) -> list[str]:
    """Fetch every registry entry (of the ``only`` datasets) and build the derived files.

    One failure does not stop the others; the messages of all failures are returned
    (an empty list means everything is in place and verified).
    """
    unknown = sorted(set(only or ()) - set(DATASETS))
    if unknown:
        raise KeyError(f"unknown dataset(s) {unknown}; choose from {list(DATASETS)}")
    chosen = set(only or DATASETS)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    failed: set[str] = set()
    bad_archives: dict[str, str] = {}

    def fail(what: str, err: object) -> None:
        failures.append(f"{what}: {err}")
        log(f"  FAILED   {what}: {err}")

    with tempfile.TemporaryDirectory(prefix=".download-", dir=dest) as cache:
        for entry in REGISTRY:
            if entry.dataset not in chosen:
                continue
            if entry.url in bad_archives:  # do not download a broken archive again
                failed.add(entry.dest_relpath)
                fail(entry.dest_relpath, bad_archives[entry.url])
                continue
            try:
                status = fetch(entry, dest, opener, Path(cache))
            except Exception as err:  # report it and carry on with the other files
                failed.add(entry.dest_relpath)
                fail(entry.dest_relpath, err)
                if entry.unpack is not None and not archive_path(entry.url, Path(cache)).exists():
                    bad_archives[entry.url] = f"archive {entry.url} failed (see above)"
                continue
            log(f"  {status:8s} {entry.dest_relpath}")
    for item in DERIVED:
        if item.dataset not in chosen or failed & set(item.inputs):
            continue
        try:
            status = build_derived(item, dest)
        except Exception as err:  # report it and carry on
            fail(", ".join(item.outputs), err)
            continue
        for out in item.outputs:
            log(f"  {status:8s} {out}")
    return failures


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m xalign_utils.data.download [--dest DIR] [--only NAME ...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m xalign_utils.data.download",
        description="Download the raw datasets from their public sources and verify sha256.",
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=config.DATA_DIR / "raw",
        help="raw-data folder to fill (default: data/raw)",
    )
    parser.add_argument(
        "--only", nargs="+", choices=DATASETS, metavar="NAME", help=f"subset of {list(DATASETS)}"
    )
    args = parser.parse_args(argv)
    print(f"downloading into {args.dest}")
    failures = download(args.dest, args.only)
    if failures:
        print(f"\n{len(failures)} problem(s):", *failures, sep="\n  ", file=sys.stderr)
        return 1
    print(
        f"\nall files in place and verified in {args.dest}.\n"
        "xalign reads XALIGN_RAW_DATA first, then ../shared/data, then data/raw/; "
        f"to use these files set XALIGN_RAW_DATA={Path(args.dest).resolve()}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
