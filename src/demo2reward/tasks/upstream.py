"""The paper's tasks on their hub data sets, in the upstream schemas (or local copies of them): the shared loader.

Each task (`tasks.tldr`, `tasks.ultrachat`) says how to read one demonstration row and one preference row; this
module draws the tables: the demonstrations' train split, their held-out split (minus prompts seen in training), the
held-out preference pairs (minus the same), and with ``n_human_pairs`` > 0 the preference set's training split
(minus every evaluated prompt). Rows with no usable answer (empty response, no assistant turn, identical chosen and
rejected, CNN/DM rows of the TL;DR comparisons) are skipped and counted in the log.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Sequence
from typing import ClassVar

from demo2reward.core.params import UpstreamTaskParams
from demo2reward.tasks.base import Row, Task, TaskRows
from demo2reward.tasks.sources import (
    Converted,
    Source,
    Table,
    is_multi_split_folder,
    load_table,
    prompt_key,
    require_columns,
    select,
)


class UpstreamTask(Task):
    """A task on hub data sets: `demos_id` (prompt/completion) and `prefs_id` (preference pairs)."""

    demo_columns: ClassVar[Sequence[str]]

    @property
    def options(self) -> UpstreamTaskParams:
        return getattr(self.params, self.name)

    @abstractmethod
    def demo(self, raw: Row) -> Converted:
        """A demonstration row, converted (or the reason it is skipped)."""

    @abstractmethod
    def pref(self, raw: Row) -> Converted:
        """A preference row, converted (or the reason it is skipped)."""

    @abstractmethod
    def pref_columns(self, columns: frozenset[str]) -> Sequence[str]:
        """The columns `pref` reads, given the columns the preference table has (TL;DR has two schemas)."""

    def _table(self, path_field: str, id_field: str, split_field: str, prefs: bool) -> Table:
        """One table: the local copy `path_field` names if set, else the hub id; checked for the columns it needs."""
        o, key = self.options, f"task.{self.name}"
        local, path_key = getattr(o, path_field), f"{key}.{path_field}"
        if local is None and path_field == "heldout_path" and is_multi_split_folder(o.demos_path):
            local, path_key = o.demos_path, f"{key}.demos_path"  # a DatasetDict or snapshot of both splits
        dataset_id, split = getattr(o, id_field), getattr(o, split_field)
        config = o.prefs_config if prefs else None
        table = load_table(Source(local or dataset_id, split, path_key, f"{key}.{split_field}", config), o)
        needed = self.pref_columns(table.columns) if prefs else self.demo_columns
        require_columns(table, needed, f"the {dataset_id} schema" + ("" if local else f" (split {split})"))
        return table

    def rows(self) -> TaskRows:
        o, key = self.options, f"task.{self.name}"
        train_table = self._table("demos_path", "demos_id", "train_split", prefs=False)
        heldout_table = self._table("heldout_path", "demos_id", "heldout_split", prefs=False)
        dropped: Counter[str] = Counter()
        train = select(train_table, self.demo, o, o.n_train, f"{key}.n_train")
        exclude = {prompt_key(r["prompt"]) for r in train} if o.drop_train_overlap else None
        heldout = select(heldout_table, self.demo, o, o.n_heldout, f"{key}.n_heldout", exclude, skipped=dropped)
        rows = TaskRows(train, heldout)
        rows.dropped["heldout_prompt_in_train"] = dropped["prompt also in train"]
        if o.n_heldout_pairs == 0:
            rows.absent["heldout_prefs"] = f"no held-out preference pairs ({key}.n_heldout_pairs: 0)"
        else:
            prefs_table = self._table("prefs_path", "prefs_id", "prefs_split", prefs=True)
            dropped.clear()
            rows.heldout_prefs = select(
                prefs_table, self.pref, o, o.n_heldout_pairs, f"{key}.n_heldout_pairs", exclude, skipped=dropped
            )
            rows.dropped["heldout_pairs_prompt_in_train"] = dropped["prompt also in train"]
        if o.n_human_pairs:  # another split: disjoint from the held-out pairs; their prompts are dropped too
            human_table = self._table("human_prefs_path", "prefs_id", "human_prefs_split", prefs=True)
            evaluated = {prompt_key(r["prompt"]) for r in (*rows.heldout, *rows.heldout_prefs)}
            rows.human_prefs = select(
                human_table, self.pref, o, o.n_human_pairs, f"{key}.n_human_pairs", evaluated, "prompt evaluated"
            )
        else:
            rows.absent["human_prefs"] = f"none loaded ({key}.n_human_pairs: 0)"
        return rows
