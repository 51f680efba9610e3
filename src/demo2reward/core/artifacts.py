"""Reading and writing artifacts: atomic outputs, and data files that fail with the file and line."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from demo2reward.core.distributed import is_main_process


def repo_root() -> Path:
    """The DVC repository root; inside a queued `dvc exp run`, DVC_ROOT names the parent repository."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / ".dvc").is_dir() or (d / "dvc.yaml").is_file():
            return d
    return here


class DataFileError(ValueError):
    """A data file is missing, malformed or lacks a required column."""


class CorruptArtifactError(DataFileError):
    """A file of a model folder differs from the manifest written with it."""


SCRATCH = ".tmp"  # at the repository root: work in progress lives where no DVC-tracked folder can pick it up
MANIFEST = "manifest.json"  # in every model folder: the SHA-256 of each of its files, written last


def _scratch_for(path: Path) -> Path:
    """Where to build `path` before moving it into place: the repository's .tmp/ (same filesystem, outside every
    tracked folder), or beside `path` when it is not in a DVC repository."""
    for d in path.resolve().parents:
        if (d / "dvc.yaml").is_file():
            scratch = d / SCRATCH
            scratch.mkdir(exist_ok=True)
            return scratch
    return path.parent


def clean_scratch(root: str | Path = ".") -> int:
    """Remove what killed stages left in .tmp/ (each entry is named after its owner's pid); return how many."""
    import psutil

    removed = 0
    for entry in (Path(root) / SCRATCH).glob("*"):
        pid = entry.name.split("-", 1)[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed += 1
    return removed


@contextlib.contextmanager
def atomic_dir(path: str | Path, manifest: bool = False) -> Iterator[Path]:
    """Yield a scratch folder that replaces `path` only if the block finishes (with a manifest, written last).

    A killed stage leaves its scratch folder in .tmp/ (removed by the next stage), never a finished-looking `path`.
    Under `accelerate launch` only rank 0 replaces `path`; the other ranks' folders are discarded.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{path.name}-", dir=_scratch_for(path)))
    try:
        yield tmp
        if not is_main_process():
            return
        if manifest:
            write_manifest(tmp)
        tmp.chmod(0o777 & ~_umask())  # mkdtemp's 0700 would be the output's mode
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f"{os.getpid()}-{path.name}-", dir=_scratch_for(path))
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        if not is_main_process():
            return  # rank 0 writes the file
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would be the output's mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: str | Path) -> None:
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    digests = {p.relative_to(folder).as_posix(): _sha256(p) for p in files}
    (folder / MANIFEST).write_text(json.dumps(digests, indent=2, sort_keys=True) + "\n")


_verified: dict[Path, tuple] = {}


def verify_manifest(folder: str | Path) -> None:
    """Fail with one line naming the folder when a file differs from its manifest (a folder without one, from
    outside the pipeline, passes). A folder is hashed again only when one of its files changed on disk."""
    folder = Path(folder).resolve()
    manifest = folder / MANIFEST
    if not manifest.exists():
        return
    stats = tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*") if p.is_file()))
    if _verified.get(folder) == stats:
        return
    expected = json.loads(manifest.read_text())
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST}
    for name in sorted(set(expected) | present):
        if name not in expected or name not in present or _sha256(folder / name) != expected[name]:
            what = "is missing" if name not in present else "is not in its manifest" if name not in expected else "differs"
            raise CorruptArtifactError(
                f"{folder}: {name} {what} from manifest.json: the model folder is corrupt; restore it "
                "(dvc checkout, or dvc repro -f of the stage that writes it)"
            )
    _verified[folder] = stats


def write_json(path: str | Path, obj, sort_keys: bool = True) -> None:
    """Strict JSON: a NaN or infinite value fails here, naming its key, instead of landing in a metrics file.
    `sort_keys=False` keeps the caller's order (DVC shows a metrics file's keys as columns in file order)."""
    bad = [k for k, v in (obj.items() if isinstance(obj, dict) else []) if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        raise DataFileError(f"{path}: {', '.join(map(str, bad))} is not a finite number")
    with atomic_file(path) as f:
        json.dump(obj, f, indent=2, sort_keys=sort_keys, allow_nan=False)
        f.write("\n")


def read_json(path: str | Path) -> dict:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataFileError(f"{path}: not found") from None
    except json.JSONDecodeError as err:
        raise DataFileError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from None


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    n = 0
    with atomic_file(path) as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
            n += 1
    return n


CONVERSATIONAL = ("prompt", "completion", "chosen", "rejected", "demonstration")  # str or a list of messages


def _schema_error(column: str, value) -> str | None:
    """What is wrong with a required column's value, or None."""
    if value is None:
        return f"column {column} is null"
    if column not in CONVERSATIONAL or isinstance(value, str):
        return None
    if not isinstance(value, list) or not value:
        return f"column {column} must be a string or a non-empty list of messages, got {type(value).__name__}"
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            return f"column {column} holds a message without a string role and content: {str(m)[:80]}"
    return None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) of each non-blank line of a JSON-lines file; a bad line raises naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise DataFileError(f"{path}: not found")
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DataFileError(f"{path}:{lineno}: not UTF-8 text ({err.reason} at byte {err.start})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFileError(f"{path}:{lineno}: not valid JSON: {err.msg}") from None
            if not isinstance(row, dict):
                raise DataFileError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
            yield lineno, row


def read_jsonl(path: str | Path, required: Iterable[str] = (), allow_empty: bool = False) -> list[dict]:
    """Read a JSON-lines file; a bad line raises with the file, the line number and what is wrong.

    Required columns must be present and not null, and the conversational ones (prompt, completion, chosen,
    rejected) strings or lists of {role, content} messages. An empty file fails unless `allow_empty`.
    """
    required = tuple(required)
    rows = []
    for lineno, row in iter_jsonl(path):
        missing = [c for c in required if c not in row]
        if missing:
            raise DataFileError(f"{path}:{lineno}: missing column(s) {', '.join(missing)}")
        for column in required:
            if problem := _schema_error(column, row[column]):
                raise DataFileError(f"{path}:{lineno}: {problem}")
        rows.append(row)
    if not rows and not allow_empty:
        raise DataFileError(f"{path}: empty: no rows")
    return rows
