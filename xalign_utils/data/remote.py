"""Fetching one remote file safely: checksums, atomic writes, archives, derived files.

The machinery behind :mod:`xalign_utils.data.download` (which holds the list of files):

* :class:`RemoteFile` says where a file comes from, where it goes and its sha256;
  :func:`fetch` downloads it to a temporary file next to its destination, unpacks or
  converts it there, checks the checksum and only then moves it into place, so a failed
  or interrupted download never leaves a half-written file where a loader would read it.
  A destination already holding the right checksum is skipped.
* Archives (zip, tar) are downloaded once per run into a cache folder and the listed
  members unpacked; a member that is a folder is checked with :func:`tree_sha256`.
* :class:`Derived` files are built from verified files by :func:`build_derived`.

Only the standard library and :mod:`xalign_utils.data.convert` are imported.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from .convert import CONVERTERS

#: ``opener(url)`` returns a readable binary stream usable as a context manager.
Opener = Callable[[str], IO[bytes]]

_CHUNK = 1 << 20


class ChecksumError(RuntimeError):
    """A downloaded (or unpacked, or converted) file does not have the expected sha256."""

    def __init__(self, path: Path | str, expected: str, actual: str, source: str = "") -> None:
        self.path, self.expected, self.actual = str(path), expected, actual
        where = f" (from {source})" if source else ""
        super().__init__(
            f"checksum mismatch for {path}{where}: expected sha256 {expected}, "
            f"got {actual}; nothing was written there"
        )


@dataclass(frozen=True)
class RemoteFile:
    """One file (or folder) of a raw dataset and where it comes from.

    Attributes:
        dataset: the dataset folder it belongs to (``--only`` selects by this name).
        url: public source: the file itself, or an archive holding it.
        dest_relpath: destination below the raw-data folder (POSIX separators); the
            path the loaders read.
        sha256: of the destination file; for a folder, :func:`tree_sha256` of it.
        unpack: ``None`` when ``url`` is the file itself; otherwise the member path
            inside the zip/tar archive at ``url`` (a trailing ``/`` unpacks a folder).
        archive_sha256: the archive's own published sha256, checked before unpacking
            (``None`` where no published checksum is known).
        convert: ``"name:arg"`` of a converter in
            :data:`~xalign_utils.data.convert.CONVERTERS`, applied to the downloaded or
            unpacked file before its checksum is checked.
    """

    dataset: str
    url: str
    dest_relpath: str
    sha256: str
    unpack: str | None = None
    archive_sha256: str | None = None
    convert: str | None = None


@dataclass(frozen=True)
class Derived:
    """Files the loaders read that are built from verified registry files.

    No reference checksum exists for them (their published form differs from the
    copies in ``../shared/data``); they are rebuilt whenever an input is newer. ``build``
    is ``fn(inputs, outputs)``, a builder of :mod:`xalign_utils.data.convert`.
    """

    dataset: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    build: Callable[[Sequence[Path], Sequence[Path]], None]


# --------------------------------------------------------------------------- hashing


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(root: Path) -> str:
    """One sha256 for a folder: over ``"<relative path>\\t<file sha256>\\n"``, sorted.

    Independent of file times and of the order the file system lists entries in, so a
    folder unpacked from an archive and the same folder copied elsewhere agree.
    """
    root = Path(root)
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    digest = hashlib.sha256()
    for rel in files:
        digest.update(f"{rel}\t{file_sha256(root / rel)}\n".encode())
    return digest.hexdigest()


def checksum(path: Path) -> str:
    """:func:`tree_sha256` of a folder, :func:`file_sha256` of a file."""
    return tree_sha256(path) if path.is_dir() else file_sha256(path)


# --------------------------------------------------------------------------- fetching


@contextlib.contextmanager
def atomic_output(target: Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it onto ``target``.

    The temporary lives in the same folder, so the final rename is atomic (a folder that
    already exists is swapped out and removed). On any error the temporary is removed and
    ``target`` is left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.part-", dir=target.parent))
    if not directory:
        tmp.rmdir()
    try:
        yield tmp
        if directory and target.is_dir():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            old.rmdir()
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()


def _download(url: str, out: Path, opener: Opener) -> str:
    """Stream ``url`` into ``out``; return the sha256 of what was written."""
    digest = hashlib.sha256()
    with opener(url) as response, open(out, "wb") as fh:
        for block in iter(lambda: response.read(_CHUNK), b""):
            digest.update(block)
            fh.write(block)
    return digest.hexdigest()


def archive_path(url: str, cache_dir: Path) -> Path:
    """Where the archive at ``url`` is kept in ``cache_dir`` (exists once downloaded)."""
    return cache_dir / (hashlib.sha256(url.encode()).hexdigest()[:16] + "-" + Path(url).name)


def _archive(entry: RemoteFile, cache_dir: Path, opener: Opener) -> Path:
    """The archive at ``entry.url``, downloaded once into ``cache_dir`` and verified."""
    path = archive_path(entry.url, cache_dir)
    if path.is_file():
        return path
    with atomic_output(path) as tmp:
        actual = _download(entry.url, tmp, opener)
        if entry.archive_sha256 and actual != entry.archive_sha256:
            raise ChecksumError(Path(entry.url).name, entry.archive_sha256, actual, entry.url)
    return path


def _safe_relpath(name: str, prefix: str) -> str | None:
    """``name`` relative to ``prefix`` (``None`` when outside it or unsafe)."""
    name = name[2:] if name.startswith("./") else name
    if not name.startswith(prefix):
        return None
    rel = PurePosixPath(name[len(prefix) :])
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        return None
    return rel.as_posix()


def unpack_member(archive: Path, member: str, out: Path) -> None:
    """Extract ``member`` of a zip or tar archive to ``out``.

    A member ending in ``/`` is a folder: every regular file below it is written under
    ``out`` (which is created). Names are checked so nothing is written outside ``out``.

    Raises:
        KeyError: the member is not in the archive.
    """
    folder = member.endswith("/")
    found = 0
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if info.is_dir():
                    continue
                rel = _member_target(info.filename, member, folder)
                if rel is None:
                    continue
                dest = out / rel if rel else out
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as fh:
                    shutil.copyfileobj(src, fh, _CHUNK)
                found += 1
    else:
        with tarfile.open(archive, "r:*") as tf:
            for info in tf:
                if not info.isfile():
                    continue
                rel = _member_target(info.name, member, folder)
                if rel is None:
                    continue
                dest = out / rel if rel else out
                dest.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(info)
                assert src is not None  # a regular file always has data
                with src, open(dest, "wb") as fh:
                    shutil.copyfileobj(src, fh, _CHUNK)
                found += 1
    if not found:
        raise KeyError(f"{member!r} is not in the archive {archive.name}")


def _member_target(name: str, member: str, folder: bool) -> str | None:
    """Where archive entry ``name`` goes: a path below the folder, ``""`` for the file."""
    if folder:
        return _safe_relpath(name, member)
    name = name[2:] if name.startswith("./") else name
    return "" if name == member else None


def is_current(entry: RemoteFile, dest: Path) -> bool:
    """Whether ``entry``'s destination exists under ``dest`` with the expected checksum."""
    target = Path(dest) / entry.dest_relpath
    return target.exists() and checksum(target) == entry.sha256


def fetch(
    entry: RemoteFile,
    dest: Path,
    opener: Opener = urllib.request.urlopen,
    cache_dir: Path | None = None,
) -> str:
    """Download (unpack, convert) one registry entry into ``dest`` and verify it.

    Args:
        entry: what to fetch.
        dest: the raw-data folder; the result goes to ``dest / entry.dest_relpath``.
        opener: ``opener(url)`` returns a binary stream (tests pass local files).
        cache_dir: where archives are kept between entries of one run (a temporary
            folder, removed afterwards, when ``None``).

    Returns:
        ``"skipped"`` when the destination already had the right checksum,
        ``"replaced"`` when a file with a wrong checksum was replaced, else ``"fetched"``.

    Raises:
        ChecksumError: the result (or the archive) has the wrong sha256; the
            destination is left as it was and no temporary file remains.
    """
    target = Path(dest) / entry.dest_relpath
    existed = target.exists()
    if is_current(entry, dest):
        return "skipped"
    if entry.unpack is not None and cache_dir is None:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
            return fetch(entry, dest, opener, Path(tmp))
    folder = entry.unpack is not None and entry.unpack.endswith("/")
    with atomic_output(target, directory=folder) as tmp:
        source = tmp.with_name(tmp.name + ".src") if entry.convert else tmp
        try:
            if entry.unpack is None:
                _download(entry.url, source, opener)
            else:
                assert cache_dir is not None
                unpack_member(_archive(entry, cache_dir, opener), entry.unpack, source)
            if entry.convert:
                name, _, arg = entry.convert.partition(":")
                CONVERTERS[name](source, tmp, arg)
        finally:
            if source != tmp and source.exists():
                source.unlink()
        actual = checksum(tmp)
        if actual != entry.sha256:
            raise ChecksumError(target, entry.sha256, actual, entry.url)
    return "replaced" if existed else "fetched"


def build_derived(item: Derived, dest: Path, force: bool = False) -> str:
    """Build ``item``'s outputs under ``dest`` when one is missing or older than an input.

    The builder writes into temporary folders beside the outputs, under the outputs' own
    file names (builders may read them, e.g. the split from ``test.csv``); the outputs
    are moved into place only once the builder has succeeded, so a failed build leaves
    the previous outputs (or none) and no temporary files.

    Returns:
        ``"skipped"`` or ``"built"``.
    """
    inputs = [Path(dest) / p for p in item.inputs]
    outputs = [Path(dest) / p for p in item.outputs]
    missing = [p for p in inputs if not p.exists()]
    if missing:
        raise FileNotFoundError(f"cannot build {item.outputs}: {missing[0]} is missing")
    newest_input = max(p.stat().st_mtime for p in inputs)
    if not force and all(p.exists() and p.stat().st_mtime >= newest_input for p in outputs):
        return "skipped"
    staged: list[Path] = []
    try:
        for out in outputs:
            out.parent.mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix=f".{out.name}.part-", dir=out.parent))
            staged.append(folder / out.name)
        item.build(inputs, staged)
        for tmp, out in zip(staged, outputs, strict=True):
            os.replace(tmp, out)
    finally:
        for tmp in staged:
            shutil.rmtree(tmp.parent, ignore_errors=True)
    return "built"
