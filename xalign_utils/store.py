"""Result tables on disk: parquet under ``runs/<profile>/<stage>/``, keyed by config hash
and by a hash of the code that produced them.

Writes are atomic (temporary file, then rename), so an interrupted run never leaves a
half-written table; :func:`cached` reuses a table whose config hash and code hash match,
which is how a re-run resumes from the last finished stage, and a code change is not
silently served stale results.

The code hash (:func:`code_hash`) covers the package modules named (default: the whole
package) and every package module they import, transitively; each module counts by its
syntax tree without docstrings, so comments, formatting and docstrings do not
invalidate results. It is read from the source files: in a long-lived session (a
notebook) restart after editing the package, since the hash follows the files, not the
code already loaded. It is stored in the parquet file's metadata (``DataFrame.attrs``,
keys ``code_hash`` and ``code_modules``): see :func:`table_metadata`.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import pandas as pd

from .config import RunConfig

PACKAGE = __name__.rpartition(".")[0]
#: The package's source folder, whose modules the code hash reads.
PACKAGE_DIR = Path(__file__).resolve().parent

#: What :func:`cached` keys a table by: ``None`` (the whole package), one module or a
#: sequence of modules (objects or names like ``"attribution"``), each with every package
#: module it imports, or ``False`` (no code key: the old behaviour).
CodeSpec = ModuleType | str | Sequence[ModuleType | str] | bool | None

#: ``DataFrame.attrs`` keys this module writes.
META_KEYS = ("code_hash", "code_modules")

_NORMALISED: dict[str, str] = {}  # sha256 of a file's bytes -> hash of its normalised tree
_IMPORT_NAMES: dict[str, list[str]] = {}  # sha256 of (module name, bytes) -> imported names


def _package_modules(package_dir: Path) -> dict[str, Path]:
    """Modules by dotted name relative to the package (a subpackage by its own name)."""
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _normalised_hash(path: Path) -> str:
    """Hash of a module's syntax tree without docstrings (cached by the file's bytes)."""
    source = path.read_bytes()
    key = hashlib.sha256(source).hexdigest()
    if key not in _NORMALISED:
        tree = ast.parse(source)
        for node in ast.walk(tree):
            body = getattr(node, "body", None)
            if (
                isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
                and body
                and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
        _NORMALISED[key] = hashlib.sha256(ast.dump(tree).encode()).hexdigest()
    return _NORMALISED[key]


def _imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Package modules a module imports (anywhere in it), with the subpackages above them
    (their ``__init__`` runs first)."""
    source = path.read_bytes()
    key = hashlib.sha256(name.encode() + b"\0" + source).hexdigest()
    if key not in _IMPORT_NAMES:
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        fulls = []
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                fulls += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    above = package[: len(package) - node.level + 1]
                    base = ".".join([PACKAGE, *above, *([node.module] if node.module else [])])
                fulls += [base, *(f"{base}.{a.name}" for a in node.names)]
        _IMPORT_NAMES[key] = fulls
    found: set[str] = set()
    for full in _IMPORT_NAMES[key]:
        if full.startswith(PACKAGE + "."):
            parts = full.removeprefix(PACKAGE + ".").split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & known.keys()
    return found - {name}


def _module_name(module: ModuleType | str) -> str:
    name = module.__name__ if isinstance(module, ModuleType) else module
    if name == PACKAGE or name.startswith(PACKAGE + "."):
        name = name.removeprefix(PACKAGE).lstrip(".")
    return name


def code_modules(code: CodeSpec = None, package_dir: Path | None = None) -> list[str]:
    """The package modules whose source :func:`code_hash` covers for ``code`` (sorted;
    ``""`` is the package's ``__init__``); empty for ``code=False``.

    Raises:
        ValueError: a named module is not part of the package.
    """
    known = _package_modules(package_dir or PACKAGE_DIR)
    if code is False:
        return []
    if code is None or code is True:
        return sorted(known)
    named = [code] if isinstance(code, ModuleType | str) else list(code)
    todo = [_module_name(m) for m in named]
    unknown = [n for n in todo if n not in known]
    if unknown:
        raise ValueError(f"not modules of {PACKAGE}: {unknown}; known: {sorted(known)}")
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            parts = name.split(".")  # its packages' __init__ runs first
            todo += [
                ".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in known
            ]
            todo.extend(_imported(name, known[name], known) - seen)
    return sorted(seen)


def code_hash(code: CodeSpec = None, package_dir: Path | None = None) -> str:
    """Short hash of the (docstring-free) source of :func:`code_modules` ``(code)``;
    ``""`` for ``code=False``."""
    names = code_modules(code, package_dir)
    if not names:
        return ""
    known = _package_modules(package_dir or PACKAGE_DIR)
    blob = "\n".join(f"{n}:{_normalised_hash(known[n])}" for n in names)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _metadata(code: CodeSpec) -> dict[str, str]:
    if code is False:
        return {}
    names = "all" if code is None or code is True else ", ".join(code_modules(code))
    return {"code_hash": code_hash(code), "code_modules": names}


def table_path(cfg: RunConfig, stage: str, name: str) -> Path:
    """``runs/<profile>/<stage>/<name>.parquet``."""
    return cfg.run_dir / stage / f"{name}.parquet"


def write_table(
    df: pd.DataFrame,
    cfg: RunConfig,
    stage: str,
    name: str,
    *,
    attribution: bool = False,
    training: bool = False,
    guide: bool = False,
    code: CodeSpec = None,
) -> Path:
    """Write ``df`` with ``config_hash`` and ``seed`` columns (and ``adapter`` on a run
    with one), atomically, and the code hash of ``code`` (see :data:`CodeSpec`) in the
    file's metadata.

    ``attribution=True`` keys the table by the hash that includes the attribution
    settings, ``training=True`` by the one that includes every field (notebook 05; see
    :meth:`RunConfig.hash`), ``guide=True`` by the one of notebook 06.

    Raises:
        ValueError: ``df`` has a ``seed`` column other than the config's seed (it would be
            overwritten; name such a column for what it is, e.g. ``train_seed``).
    """
    if "seed" in df.columns and (df["seed"] != cfg.seed).any():
        raise ValueError(
            f"{stage}/{name}: column 'seed' holds values other than the config seed "
            f"{cfg.seed}, which every stored table records there; rename it (e.g. train_seed)"
        )
    path = table_path(cfg, stage, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = df.copy()
    out["config_hash"] = cfg.hash(attribution=attribution, training=training, guide=guide)
    out["seed"] = cfg.seed
    if cfg.adapter:  # a run on a published adapter (notebook 05) says so in every table
        out["adapter"] = cfg.adapter
    out.attrs = {k: v for k, v in df.attrs.items() if k not in META_KEYS} | _metadata(code)
    tmp = path.with_suffix(".parquet.tmp")
    out.to_parquet(tmp, index=False)
    tmp.replace(path)
    return path


def read_table(cfg: RunConfig, stage: str, name: str) -> pd.DataFrame:
    """Read a stage's table (its ``attrs`` hold the code hash it was written with).

    Raises:
        FileNotFoundError: the stage has not been run for this profile; says which notebook.
    """
    path = table_path(cfg, stage, name)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: run the notebook that writes stage {stage!r} first "
            f"(`make all PROFILE={cfg.profile}` runs them in order)."
        )
    return pd.read_parquet(path)


def table_metadata(cfg: RunConfig, stage: str, name: str) -> dict:
    """A stored table's metadata without reading its rows: ``code_hash`` and
    ``code_modules`` (empty for tables written before code hashing, or with
    ``code=False``)."""
    path = table_path(cfg, stage, name)
    return dict(pd.read_parquet(path, columns=[]).attrs) if path.is_file() else {}


def cached(
    cfg: RunConfig,
    stage: str,
    name: str,
    compute: Callable[[], pd.DataFrame],
    force: bool = False,
    *,
    attribution: bool = False,
    training: bool = False,
    guide: bool = False,
    code: CodeSpec = None,
) -> pd.DataFrame:
    """Return the stored table when its config hash matches ``cfg`` and its code hash
    matches ``code`` (default: the whole package; a table without a code hash, written
    before code hashing, counts as stale), else compute and store it.

    Args:
        code: the modules that produce the table (:data:`CodeSpec`); naming them, e.g.
            ``code=scoring`` for model predictions, keeps an edit elsewhere in the
            package from recomputing an expensive table. ``False``: config hash only.
    """
    path = table_path(cfg, stage, name)
    if path.is_file() and not force:
        df = pd.read_parquet(path)
        key = cfg.hash(attribution=attribution, training=training, guide=guide)
        same_config = len(df) and (df["config_hash"] == key).all()
        if same_config and (code is False or df.attrs.get("code_hash") == code_hash(code)):
            return df
    write_table(
        compute(),
        cfg,
        stage,
        name,
        attribution=attribution,
        training=training,
        guide=guide,
        code=code,
    )
    return pd.read_parquet(path)
