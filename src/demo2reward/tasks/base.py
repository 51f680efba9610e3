"""The task interface: what every task prepares, and what a prepared task tells the stages after it.

A `Task` turns its params into `TaskRows`, the tables every later stage reads, in TRL's conversational formats:

- ``train``          prompt/completion: the demonstrations;
- ``heldout``        prompt/completion on held-out prompts (the demonstrations to beat);
- ``heldout_prefs``  prompt/chosen/rejected: held-out human preference pairs (optional: reward accuracy needs them);
- ``human_prefs``    prompt/chosen/rejected: training preference pairs for ``reward.human_pairs`` (optional);
- ``pretrain``       prompt/completion: a corpus to pretrain a tiny base on (the synthetic task only).

`prepare` writes them as ``<table>.jsonl`` and a ``task.json`` (`TaskInfo`): the task's name, the gold reward it
scores with (or none), how many rows each table has and why an empty one is empty. The evaluation, the report and
the tracks ask the `TaskInfo` what the task offers instead of knowing which task it is.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from demo2reward.core.artifacts import DataFileError, read_json, write_json
from demo2reward.core.params import TaskParams

Row = dict[str, Any]
TABLES = ("train", "heldout", "heldout_prefs", "human_prefs", "pretrain")
TASK_INFO = "task.json"


@dataclass
class TaskRows:
    train: list[Row]
    heldout: list[Row]
    heldout_prefs: list[Row] = field(default_factory=list)
    human_prefs: list[Row] = field(default_factory=list)
    pretrain: list[Row] = field(default_factory=list)
    absent: dict[str, str] = field(default_factory=dict)  # an empty optional table -> why it is empty
    dropped: dict[str, int] = field(default_factory=dict)  # rows dropped on the way, by reason (prepare's metrics)
    sources: dict[str, dict] = field(default_factory=dict)  # table -> where it came from (path or hub id, split, sha256)


class Task(ABC):
    """One task: its params in, its tables out (`rows`), and files of its own (`write_files`), if any."""

    name: ClassVar[str]

    def __init__(self, params: TaskParams, seed: int):
        self.params, self.seed = params, seed

    @abstractmethod
    def rows(self) -> TaskRows:
        """Every table of the task, loaded or generated; bad input fails here, naming the file, row and param."""

    def write_files(self, out: Path) -> None:  # noqa: B027 - most tasks have none
        """Files of the task's own beside the tables (the synthetic world's hidden weights)."""

    def config(self) -> dict:
        """The task's params section, recorded in task.json (the model card cites it)."""
        data = self.params.data
        return {} if data is None else data.model_dump(mode="json")


@dataclass(frozen=True)
class TaskInfo:
    """`task.json`: what a prepared task offers the stages after `prepare`."""

    name: str
    gold_reward: str | None  # the spec of `task.gold_reward` in effect, or None: no true reward, no oracle
    tables: dict[str, int]  # rows per table
    absent: dict[str, str]  # an empty optional table -> why
    config: dict = field(default_factory=dict)
    sources: dict[str, dict] = field(default_factory=dict)
    gold_source: dict | None = None  # a module:function gold reward's file and its sha256, checked where it is used

    @property
    def has_preference_pairs(self) -> bool:
        return self.tables.get("heldout_prefs", 0) > 0

    def why_absent(self, table: str) -> str:
        return self.absent.get(table, f"the task has no {table}")

    def write(self, task_dir: Path) -> None:
        write_json(task_dir / TASK_INFO, asdict(self))


def read_task_info(task_dir: str | Path) -> TaskInfo:
    """The `task.json` that `prepare` wrote into `task_dir`."""
    path = Path(task_dir) / TASK_INFO
    raw = read_json(path)
    try:
        return TaskInfo(**raw)
    except TypeError as err:
        raise DataFileError(f"{path}: not a task.json written by prepare ({err}); rerun `dvc repro prepare`") from None


def file_digest(path: Path) -> str:
    """SHA-256 of a file, or of a folder's files (names and contents, in order): the data's identity in task.json."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(f.relative_to(path).as_posix().encode() if f != path else b"")
        with f.open("rb") as stream:
            for block in iter(lambda s=stream: s.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()
