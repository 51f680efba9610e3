"""Tables of rows from the hub or from local files, and the seeded, filtered sampling every data-set task shares.

A table comes from a local copy (a ``.jsonl``/``.json`` file, a ``.parquet`` or ``.csv`` file, a ``save_to_disk``
folder (`Dataset` or `DatasetDict`; the configured split is taken from a `DatasetDict`), or a hub snapshot folder
(``hf download --repo-type dataset``), which `datasets.load_dataset` reads as a local dataset) or from a hub id, so
that a machine without hub access (like CI) runs the same code as one with it.

Choices that change what the model sees, and why:

- Responses (completion, chosen, rejected) are stripped of leading/trailing whitespace: in a chat message the
  chat template supplies the separation, and a stray space would be one more token on which demos and the
  policy's rollouts differ, which a reward model learns to see. Prompts are kept byte-exact.
- Length limits *filter*, never truncate: a truncated post or answer is no longer what the writer or the human
  labeller saw. Rows are dropped before sizes are taken, so ``n_*`` counts rows that pass; asking for more than
  pass is an error, never a silent shortfall.
- Held-out rows whose prompt equals the prompt of a training row are dropped and counted (``drop_train_overlap``,
  whitespace-insensitive): a held-out score on training prompts measures memory.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from demo2reward.core.artifacts import DataFileError, iter_jsonl, repo_root
from demo2reward.core.hub import hub_offline, offline_requested
from demo2reward.core.params import DataTaskParams

log = logging.getLogger(__name__)

Row = dict[str, Any]
Converted = Row | str  # a row, or the reason it is skipped

_SCRIPTS_UNSUPPORTED = "Dataset scripts are no longer supported"
_CHUNK = 1024  # rows converted per batch while sampling
LOCAL_SUFFIXES = (".jsonl", ".json", ".parquet", ".csv")


class TaskDataError(DataFileError):
    """A task's data cannot be loaded: hub unreachable, file missing, or a column/value not in the schema."""


class RowError(ValueError):
    """A row that cannot be read, said in words that name the param to fix (`select` adds the file and the row)."""


# ------------------------------------------------------------------------------------------------- tables


@dataclass
class Table:
    """Rows of one source, read lazily: a hub `Dataset` stays memory-mapped, only sampled rows become dicts."""

    name: str  # the file or hub id, for error messages
    columns: frozenset[str]
    size: int
    take: Callable[[Sequence[int]], list[dict]]
    lines: Sequence[int] | None = None  # a JSON-lines file's line number of each row, for error messages

    def where(self, i: int) -> str:
        """Row `i` as a person finds it: its line in a JSON-lines file, else its index (datasets' row numbers)."""
        return f"line {self.lines[i]}" if self.lines is not None else f"row {i}"


def _from_dataset(name: str, ds) -> Table:
    return Table(name, frozenset(ds.column_names), len(ds), lambda idx: ds.select(idx).to_list())


def _from_rows(name: str, rows: list[dict], lines: Sequence[int] | None = None) -> Table:
    columns = frozenset().union(*rows) if rows else frozenset()
    return Table(name, columns, len(rows), lambda idx: [rows[i] for i in idx], lines)


def _from_arrow(name: str, table) -> Table:
    return Table(name, frozenset(table.column_names), table.num_rows, lambda idx: table.take(idx).to_pylist())


def _hub_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the hub could not be reached", as `datasets` 5 / `huggingface_hub` raise them.

    `load_dataset` turns a failed DNS lookup, a refused connection, a timeout and offline mode into the builtin
    `ConnectionError` ("Couldn't reach '<id>' on the Hub (...)"; `OfflineModeIsEnabled` subclasses it). A
    failure later, while downloading data files, surfaces as httpx's `TransportError`, a `TimeoutError`, an
    `HfHubHTTPError` (e.g. 5xx after retries) or `LocalEntryNotFoundError` (offline, file not cached).
    """
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    errors: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError, HfHubHTTPError, LocalEntryNotFoundError)
    try:
        from huggingface_hub.utils import httpx  # the HTTP client huggingface_hub uses (httpx or its fork)

        errors += (httpx.TransportError,)
    except (ImportError, AttributeError):
        pass
    return errors


@dataclass(frozen=True)
class Source:
    """Where one table comes from: a local path or a hub id, and the params keys that name it (for messages)."""

    location: str  # a local path, or a hub id
    split: str
    key: str  # the param that names `location`, e.g. task.demos.path
    split_key: str  # the param that names `split`
    config: str | None = None
    revision: str | None = None
    local_hint: str = "a local jsonl/parquet/save_to_disk copy in the upstream schema"


def load_table(source: Source, data: DataTaskParams) -> Table:
    """Read `source`: a local file or folder when the path exists (or plainly is one), else the hub id."""
    local = local_path(source.location)
    if local is not None:
        return _load_local(data, local, source)
    return _load_hub(data, source)


def local_path(location: str) -> Path | None:
    """`location` as a local path, or None for a hub id. Relative paths are read from the working directory or the
    repository root (where `dvc exp run --queue` finds them too: it runs in a copy under .dvc/tmp). A string that
    plainly is a path (a known suffix, `./`, `/`, `~`, or more than one `/`) is local even when it does not exist,
    so that a typo fails as "not found" rather than as an unknown hub id."""
    path = Path(location).expanduser()
    for candidate in (path, repo_root() / path):
        if candidate.exists():
            return candidate
    looks_local = location.startswith(("/", "./", "../", "~")) or location.count("/") > 1
    return path if looks_local or path.suffix.lower() in LOCAL_SUFFIXES else None


def _load_hub(data: DataTaskParams, source: Source) -> Table:
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    dataset_id = source.location
    offline = data.offline or offline_requested()
    local_hint = f"set {source.key} to {source.local_hint}"
    with hub_offline(offline):
        try:
            ds = datasets.load_dataset(
                dataset_id, name=source.config, split=source.split, revision=source.revision, cache_dir=data.cache_dir
            )
        except DatasetNotFoundError as err:
            raise TaskDataError(f"{dataset_id} was not found on the hub or is gated ({err}); {local_hint}") from None
        except _hub_errors() as err:
            why = "offline mode, and it is not in the local HF cache" if offline else f"{type(err).__name__}: {err}"
            raise TaskDataError(f"cannot reach {dataset_id} on the hub ({why}); {local_hint}") from None
        except RuntimeError as err:
            if _SCRIPTS_UNSUPPORTED not in str(err):
                raise
            raise TaskDataError(
                f"{dataset_id} ships a loading script, which datasets>=4 no longer runs; {local_hint} "
                f"(e.g. the parquet export on its refs/convert/parquet branch)"
            ) from None
        except ValueError as err:
            if "split" not in str(err).lower():
                raise
            raise TaskDataError(f"{dataset_id}: {err}; check {source.split_key}") from None
    return _from_dataset(dataset_id, ds)


def _read_json_file(path: Path) -> Table:
    """JSON lines (what `Dataset.to_json` writes, whatever the suffix) or one JSON array of objects."""
    import json

    with path.open("rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        try:
            rows = json.loads(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as err:
            raise TaskDataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
        except json.JSONDecodeError as err:
            raise TaskDataError(f"{path}:{err.lineno}: not valid JSON: {err.msg}") from None
        if not all(isinstance(r, dict) for r in rows):
            raise TaskDataError(f"{path}: expected a JSON array of objects")
        return _from_rows(str(path), rows)
    lines, rows = [], []
    try:
        for lineno, row in iter_jsonl(path):
            lines.append(lineno)
            rows.append(row)
    except DataFileError as err:
        raise TaskDataError(str(err)) from None
    return _from_rows(str(path), rows, lines)


def _read_csv(path: Path) -> Table:
    """A CSV file with a header row; every cell is text (TRL's standard format: prompt and completion strings)."""
    import csv
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    raw = path.read_bytes()
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise TaskDataError(f"{path}:{line}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    header = next(csv.reader(io.StringIO(decoded)), [])
    strings = dict.fromkeys(header, pa.string())  # "007" stays text; pyarrow would read it as the number 7
    try:
        table = pacsv.read_csv(pa.BufferReader(raw), convert_options=pacsv.ConvertOptions(column_types=strings))
    except pa.ArrowInvalid as err:
        raise TaskDataError(f"{path}: not a readable CSV file: {err}") from None
    return _from_arrow(str(path), table)


def _load_local(data: DataTaskParams, path: Path, source: Source) -> Table:
    """Read a local copy; a multi-split folder gives the source's split, a single-split file or `Dataset` is used whole."""
    import datasets
    from datasets.exceptions import DatasetsError

    if not path.exists():
        raise TaskDataError(f"{path}: not found (set by {source.key})")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".json"):
            return _read_json_file(path)
        if suffix == ".csv":
            return _read_csv(path)
        if suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(path)
            except (pa.ArrowInvalid, OSError) as err:
                raise TaskDataError(f"{path}: not a readable parquet file: {err}") from None
            return _from_arrow(str(path), table)
        supported = ", ".join(LOCAL_SUFFIXES)
        raise TaskDataError(f"{path}: unsupported file type {suffix!r} (set by {source.key}); use {supported}")

    if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if source.split not in ds:
                raise TaskDataError(
                    f"{path}: no split {source.split!r} in this save_to_disk folder (has: {', '.join(ds)}; "
                    f"set by {source.split_key})"
                )
            ds = ds[source.split]
        return _from_dataset(str(path), ds)

    # A hub snapshot: README.md and data files, which `load_dataset` resolves to splits like the hub does.
    try:
        ds = datasets.load_dataset(str(path), name=source.config, split=source.split, cache_dir=data.cache_dir)
    except (ValueError, FileNotFoundError, DatasetsError) as err:
        raise TaskDataError(
            f"{path}: cannot load split {source.split!r} from this folder ({type(err).__name__}: {err})"
        ) from None
    return _from_dataset(str(path), ds)


def is_multi_split_folder(location: str | None) -> bool:
    """A local folder of several splits (a `DatasetDict` or a hub snapshot), not a single `Dataset`."""
    path = None if location is None else local_path(location)
    return path is not None and path.is_dir() and not (path / "state.json").exists()


def require_columns(table: Table, needed: Sequence[str], schema: str) -> None:
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise TaskDataError(
            f"{table.name}: missing column(s) {', '.join(missing)}; expected {schema} "
            f"(has: {', '.join(sorted(table.columns)) or 'no columns'})"
        )


# -------------------------------------------------------------------------------------------- row helpers


def message(role: str, content: str) -> dict[str, str]:
    return {"role": role, "content": content}


def text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} is {type(value).__name__}, expected a string")
    return value


def messages(value: Any, what: str) -> list[dict[str, str]]:
    if not isinstance(value, list):
        raise TypeError(f"{what} is {type(value).__name__}, expected a list of messages")
    out = []
    for m in value:
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise TypeError(f"{what} holds {str(m)[:60]!r}, expected a message with a role and a content")
        out.append(message(text(m["role"], f"{what}.role"), text(m["content"], f"{what}.content")))
    return out


def pair(prompt: list[dict], chosen: str, rejected: str) -> Converted:
    chosen, rejected = chosen.strip(), rejected.strip()
    if not chosen or not rejected:
        return "empty response"
    if chosen == rejected:
        return "identical chosen and rejected"
    return {"prompt": prompt, "chosen": [message("assistant", chosen)], "rejected": [message("assistant", rejected)]}


def split_at_assistant(dialogue: list[dict[str, str]], which: Literal["first", "last"]) -> tuple[list[dict], str] | str:
    """(prompt, answer): the messages before the first/last assistant turn, and that turn's text."""
    turns = [i for i, m in enumerate(dialogue) if m["role"] == "assistant"]
    turns = [i for i in turns if any(m["role"] == "user" for m in dialogue[:i])]
    if not turns:
        return "no assistant reply after a user turn"
    i = turns[0] if which == "first" else turns[-1]
    if dialogue[i - 1]["role"] != "user":
        return "prompt does not end with a user turn"
    return dialogue[:i], dialogue[i]["content"]


def dialogue_pair(chosen_dialogue: list[dict], rejected_dialogue: list[dict]) -> Converted:
    """Two whole dialogues (UltraFeedback's implicit-prompt format): their last assistant turns are compared."""
    chosen = split_at_assistant(chosen_dialogue, "last")
    rejected = split_at_assistant(rejected_dialogue, "last")
    if isinstance(chosen, str):
        return chosen
    if isinstance(rejected, str):
        return rejected
    if chosen[0] != rejected[0]:
        return "chosen and rejected answer different prompts"
    return pair(chosen[0], chosen[1], rejected[1])


def prompt_key(prompt: list[dict]) -> tuple[tuple[str, str], ...]:
    """Whitespace-insensitive identity of a prompt, to find held-out prompts that also occur in training."""
    return tuple((m["role"], " ".join(m["content"].split())) for m in prompt)


def _responses(row: Row) -> list[str]:
    return [row[k][-1]["content"] for k in ("completion", "chosen", "rejected") if k in row]


# ------------------------------------------------------------------------------------------------ sampling


def select(
    table: Table,
    convert: Callable[[Row], Converted],
    data: DataTaskParams,
    n: int | None,
    size_key: str,
    exclude: set[tuple] | None = None,
    excluded: str = "prompt also in train",
    order: Sequence[int] | None = None,
    skipped: Counter[str] | None = None,
) -> list[Row]:
    """Convert rows in a seeded random order (or `order`), drop those that fail a filter, and stop at `n` kept rows.

    A row `convert` cannot read raises, naming the table and the row; one it returns a reason for is skipped and
    counted (in `skipped`, when given, and in the log).
    """
    if order is None:
        order = np.arange(table.size) if data.seed is None else np.random.default_rng(data.seed).permutation(table.size)
    kept: list[Row] = []
    skipped = Counter() if skipped is None else skipped
    bar = tqdm(total=len(order) if n is None else n, desc=f"{Path(table.name).name}: {size_key}", unit="rows", leave=False)
    for start in range(0, len(order), _CHUNK):
        idx = [int(i) for i in order[start : start + _CHUNK]]
        for i, raw in zip(idx, table.take(idx), strict=True):
            try:
                row = convert(raw)
            except RowError as err:
                raise TaskDataError(f"{table.name}: {table.where(i)}: {err}") from None
            except (KeyError, TypeError, ValueError, IndexError, AttributeError) as err:
                detail = f"{type(err).__name__}: {err}"
                raise TaskDataError(f"{table.name}: {table.where(i)}: not in the expected schema ({detail})") from None
            if isinstance(row, str):
                skipped[row] += 1
            elif data.max_prompt_chars is not None and sum(len(m["content"]) for m in row["prompt"]) > data.max_prompt_chars:
                skipped["prompt longer than max_prompt_chars"] += 1
            elif data.max_response_chars is not None and max(map(len, _responses(row))) > data.max_response_chars:
                skipped["response longer than max_response_chars"] += 1
            elif exclude is not None and prompt_key(row["prompt"]) in exclude:
                skipped[excluded] += 1
            else:
                kept.append(row)
                if n is not None and len(kept) == n:
                    bar.close()
                    _log_skips(table.name, len(kept), skipped)
                    return kept
            if n is None:
                bar.update()
        if n is not None:
            bar.n = len(kept)
            bar.refresh()
    bar.close()
    _log_skips(table.name, len(kept), skipped)
    if n is not None:
        reasons = "; ".join(f"{c} {why}" for why, c in skipped.most_common()) or "none skipped"
        raise TaskDataError(
            f"{table.name}: {size_key}={n} but only {len(kept)} of {len(order)} rows pass the filters ({reasons}); "
            f"lower {size_key} (null takes all) or relax the length limits"
        )
    return kept


def _log_skips(name: str, kept: int, skipped: Counter[str]) -> None:
    details = ", ".join(f"{c} {why}" for why, c in skipped.most_common())
    log.info("%s: kept %d rows%s", name, kept, f"; skipped {details}" if details else "")
