"""Your own demonstrations (`task.name: demos`): any data set in one of TRL's formats, local or on the hub.

Formats (`task.demos.format`, detected from the columns by default):

- **prompt/completion**: a prompt and a completion column, either strings (TRL's standard format: the prompt
  becomes one user message, the completion one assistant message) or lists of messages (conversational: the
  completion's last message is the answer and must be the assistant's);
- **messages**: one dialogue per row; its last assistant turn is the completion, everything before it the prompt,
  which must end with a user turn.

Other column names are mapped by `task.demos.columns`. The base model's chat template renders every prompt; a base
without one gets the plain template (the prompt verbatim, a space, the answer, EOS).

Held-out rows come from `heldout_split` (a split of `path`), `heldout_path` (a file, folder or hub id of your own),
or else a seeded `heldout_fraction` of your rows, never from a source you did not name. Preference pairs
(`prefs_path`, `human_prefs_path`) are optional: without held-out pairs, reward accuracy is absent with the
reason stated, and everything else runs.

Your data is checked row by row and a bad row fails `prepare` with one line naming the file, the row and the
param: a missing column, an empty prompt or answer, a value of the wrong type, non-UTF-8 bytes. Prompts shared by
train and held-out rows are dropped from the held-out rows and counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from demo2reward.core.params import DemosTaskParams
from demo2reward.tasks.base import Row, Task, TaskRows, file_digest
from demo2reward.tasks.sources import (
    Converted,
    RowError,
    Source,
    Table,
    TaskDataError,
    dialogue_pair,
    load_table,
    local_path,
    message,
    messages,
    pair,
    prompt_key,
    select,
    split_at_assistant,
)

log = logging.getLogger(__name__)
KEY = "task.demos"


class DemosTask(Task):
    name = "demos"

    @property
    def options(self) -> DemosTaskParams:
        return self.params.demos

    # ------------------------------------------------------------------------------------------------ rows

    def _source(self, location: str, split: str, key: str, split_key: str) -> Source:
        o = self.options
        return Source(location, split, key, split_key, o.config if location == o.path else None, o.revision,
                      local_hint="a local file or folder of yours")  # fmt: skip

    def _demo_converter(self, table: Table) -> Callable[[Row], Converted]:
        """How to read a demonstration row of `table`: its format, from the params or from its columns."""
        o, cols = self.options, self.options.columns
        fmt = o.format
        if fmt == "auto":
            fmt = "messages" if cols.messages in table.columns else "prompt_completion"
        needed = [cols.messages] if fmt == "messages" else [cols.prompt, cols.completion]
        missing = [c for c in needed if c not in table.columns]
        if missing:
            keys = ", ".join(f"{KEY}.columns.{k}" for k in (("messages",) if fmt == "messages" else ("prompt", "completion")))
            raise TaskDataError(
                f"{table.name}: no column {' or '.join(repr(c) for c in missing)} for the {fmt} format (has: "
                f"{', '.join(sorted(table.columns)) or 'no columns'}); name yours with {keys}, or set {KEY}.format"
            )
        return self._from_messages if fmt == "messages" else self._from_prompt_completion

    def _from_prompt_completion(self, raw: Row) -> Row:
        cols = self.options.columns
        prompt = _as_prompt(raw.get(cols.prompt), f"{KEY}.columns.prompt ({cols.prompt!r})")
        answer = _as_answer(raw.get(cols.completion), f"{KEY}.columns.completion ({cols.completion!r})")
        return {"prompt": prompt, "completion": [message("assistant", answer)]}

    def _from_messages(self, raw: Row) -> Row:
        where = f"{KEY}.columns.messages ({self.options.columns.messages!r})"
        split = split_at_assistant(_dialogue(raw.get(self.options.columns.messages), where), "last")
        if isinstance(split, str):
            raise RowError(f"{where}: {split}")
        prompt, answer = split
        if not answer.strip():
            raise RowError(f"{where}: the last assistant turn is empty")
        return {"prompt": prompt, "completion": [message("assistant", answer.strip())]}

    def _pref(self, raw: Row) -> Converted:
        """prompt/chosen/rejected (strings or message lists), or chosen/rejected whole dialogues (implicit prompt)."""
        cols = self.options.columns
        chosen_key, rejected_key = f"{KEY}.columns.chosen ({cols.chosen!r})", f"{KEY}.columns.rejected ({cols.rejected!r})"
        chosen, rejected = raw.get(cols.chosen), raw.get(cols.rejected)
        if raw.get(cols.prompt) is None and isinstance(chosen, list) and isinstance(rejected, list):
            converted = dialogue_pair(_dialogue(chosen, chosen_key), _dialogue(rejected, rejected_key))
        else:
            prompt = _as_prompt(raw.get(cols.prompt), f"{KEY}.columns.prompt ({cols.prompt!r})")
            converted = pair(prompt, _as_answer(chosen, chosen_key), _as_answer(rejected, rejected_key))
        if converted == "empty response":
            raise RowError("an empty chosen or rejected answer")
        return converted  # identical chosen and rejected: skipped and counted (no preference to learn)

    def _read(self, table: Table, convert: Callable[[Row], Converted], order, n: int | None, size_key: str,
              exclude: set | None = None, skipped: Counter | None = None) -> list[Row]:  # fmt: skip
        return select(table, convert, self.options, n, size_key, exclude, order=order, skipped=skipped)

    def rows(self) -> TaskRows:
        o = self.options
        train_table = load_table(self._source(o.path, o.split, f"{KEY}.path", f"{KEY}.split"), o)
        _not_empty(train_table, f"{KEY}.path")
        convert = self._demo_converter(train_table)
        rows = TaskRows([], [])
        rows.sources["train"] = self._provenance(o.path, o.split)
        order = _order(train_table.size, o.seed)
        if o.heldout_split is None and o.heldout_path is None:
            fraction = 0.1 if o.heldout_fraction is None else o.heldout_fraction
            n_held = max(1, round(fraction * train_table.size))
            if n_held >= train_table.size:
                raise TaskDataError(
                    f"{train_table.name}: {train_table.size} rows leave none to train on after holding out "
                    f"{KEY}.heldout_fraction = {fraction}"
                )
            # A seeded shuffle's first rows; in file order (seed: null), the last rows.
            heldout_order, train_order = (
                (order[-n_held:], order[:-n_held]) if o.seed is None else (order[:n_held], order[n_held:])
            )
            heldout_table = train_table
            heldout_convert = convert
            rows.sources["heldout"] = {**rows.sources["train"], "heldout_fraction": fraction, "seed": o.seed}
        else:
            location = o.heldout_path or o.path
            split = o.heldout_split or "test"
            key = f"{KEY}.heldout_path" if o.heldout_path else f"{KEY}.heldout_split"
            heldout_table = load_table(self._source(location, split, key, f"{KEY}.heldout_split"), o)
            _not_empty(heldout_table, key)
            heldout_convert = self._demo_converter(heldout_table)
            heldout_order, train_order = _order(heldout_table.size, o.seed), order
            rows.sources["heldout"] = self._provenance(location, split)
        rows.train = self._read(train_table, convert, train_order, o.n_train, f"{KEY}.n_train")
        exclude = {prompt_key(r["prompt"]) for r in rows.train} if o.drop_train_overlap else None
        overlap: Counter[str] = Counter()
        rows.heldout = self._read(heldout_table, heldout_convert, heldout_order, o.n_heldout, f"{KEY}.n_heldout", exclude,
                                  overlap)  # fmt: skip
        rows.dropped["heldout_prompt_in_train"] = overlap["prompt also in train"]
        if not rows.heldout:
            raise TaskDataError(f"{heldout_table.name}: no held-out rows left (every prompt is also a training prompt)")

        if o.prefs_path is None or o.n_heldout_pairs == 0:
            why = "0" if o.prefs_path else "null"
            key = "n_heldout_pairs" if o.prefs_path else "prefs_path"
            rows.absent["heldout_prefs"] = f"the task has no held-out preference pairs ({KEY}.{key}: {why})"
        else:
            rows.heldout_prefs = self._pairs(o.prefs_path, o.prefs_split, "prefs", o.n_heldout_pairs, exclude, rows)
            rows.sources["heldout_prefs"] = self._provenance(o.prefs_path, o.prefs_split)
        if o.human_prefs_path is None or o.n_human_pairs == 0:
            rows.absent["human_prefs"] = f"none loaded ({KEY}.n_human_pairs: {o.n_human_pairs})"
        else:
            evaluated = {prompt_key(r["prompt"]) for r in (*rows.heldout, *rows.heldout_prefs)}
            rows.human_prefs = self._pairs(o.human_prefs_path, o.human_prefs_split, "human_prefs", o.n_human_pairs,
                                           evaluated, rows)  # fmt: skip
            rows.sources["human_prefs"] = self._provenance(o.human_prefs_path, o.human_prefs_split)
        return rows

    def _pairs(self, location: str, split: str, field: str, n: int | None, exclude: set | None, rows: TaskRows) -> list:
        o = self.options
        table = load_table(self._source(location, split, f"{KEY}.{field}_path", f"{KEY}.{field}_split"), o)
        _not_empty(table, f"{KEY}.{field}_path")
        cols = o.columns
        if cols.chosen not in table.columns or cols.rejected not in table.columns:
            raise TaskDataError(
                f"{table.name}: preference pairs need the columns {cols.chosen!r} and {cols.rejected!r} (has: "
                f"{', '.join(sorted(table.columns))}); name yours with {KEY}.columns.chosen / .rejected"
            )
        skipped: Counter[str] = Counter()
        size_key = f"{KEY}.n_heldout_pairs" if field == "prefs" else f"{KEY}.n_human_pairs"
        pairs = self._read(table, self._pref, _order(table.size, o.seed), n, size_key, exclude, skipped)
        rows.dropped[f"{field}_identical"] = skipped["identical chosen and rejected"]
        rows.dropped[f"{field}_prompt_in_train"] = skipped["prompt also in train"] + skipped["prompt evaluated"]
        return pairs

    def _provenance(self, location: str, split: str) -> dict:
        """Where a table came from: the local path and its SHA-256, or the hub id, config and revision."""
        local = local_path(location)
        if local is not None:
            return {"path": str(location), "sha256": file_digest(local)} | ({"split": split} if local.is_dir() else {})
        o = self.options
        return {"hub_id": location, "split": split, "config": o.config if location == o.path else None,
                "revision": o.revision}  # fmt: skip


def _order(size: int, seed: int | None) -> np.ndarray:
    return np.arange(size) if seed is None else np.random.default_rng(seed).permutation(size)


def _not_empty(table: Table, key: str) -> None:
    if table.size == 0:
        raise TaskDataError(f"{table.name}: empty: no rows (set by {key})")


def _as_prompt(value: Any, where: str) -> list[dict]:
    if isinstance(value, str):
        if not value.strip():
            raise RowError(f"{where}: empty prompt")
        return [message("user", value)]
    if isinstance(value, list):
        prompt = _dialogue(value, where)
        if not prompt or prompt[-1]["role"] != "user" or not prompt[-1]["content"].strip():
            raise RowError(f"{where}: a conversational prompt must end with a non-empty user message")
        return prompt
    raise RowError(f"{where}: {'missing' if value is None else type(value).__name__}, expected a string or a list of messages")


def _as_answer(value: Any, where: str) -> str:
    if isinstance(value, list):
        turns = _dialogue(value, where)
        if not turns or turns[-1]["role"] != "assistant":
            raise RowError(f"{where}: a conversational completion must end with the assistant's message")
        value = turns[-1]["content"]
    if not isinstance(value, str):
        raise RowError(f"{where}: {'missing' if value is None else type(value).__name__}, expected a string or messages")
    if not value.strip():
        raise RowError(f"{where}: empty answer")
    return value.strip()


def _dialogue(value: Any, where: str) -> list[dict[str, str]]:
    if value is None:
        raise RowError(f"{where}: missing")
    try:
        return messages(value, where)
    except TypeError as err:
        raise RowError(str(err)) from None
