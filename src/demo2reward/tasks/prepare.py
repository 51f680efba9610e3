"""The `prepare` stage's work, for every task: its tables, its `task.json`, and the initial model.

- The task (`TASKS[task.name]`) gives its tables, written as ``<table>.jsonl`` in TRL's conversational formats.
- The gold reward in effect (`task.gold_reward`, or the task's own) scores the held-out demonstrations once here,
  so that a broken scorer fails before any training.
- ``task.json`` (`tasks.base.TaskInfo`) records what the task offers the stages after it.
- The initial model: a tiny Llama and a word-level tokenizer trained on the task's texts, or, for a real base
  (`model.name_or_path`), a base pointer (`modeling.write_base_pointer`): its id and its prepared tokenizer, never
  its weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from demo2reward.core.artifacts import atomic_dir, write_jsonl
from demo2reward.core.conversation import assistant_turns, prompt_text, response_text
from demo2reward.core.params import Params, TaskParams
from demo2reward.models.modeling import build_causal_lm, load_tokenizer, train_tokenizer, write_base_pointer
from demo2reward.models.training import check_lengths, token_lengths
from demo2reward.tasks.base import Task, TaskInfo, TaskRows
from demo2reward.tasks.demos import DemosTask
from demo2reward.tasks.gold import load_gold_reward, source_of
from demo2reward.tasks.synthetic import SyntheticTask
from demo2reward.tasks.tldr import TLDRTask
from demo2reward.tasks.ultrachat import UltraChatTask

TASKS: dict[str, type[Task]] = {t.name: t for t in (SyntheticTask, TLDRTask, UltraChatTask, DemosTask)}
# Table -> the key of its row count in prepare's metrics.
COUNTS = {"train": "train", "heldout": "heldout", "heldout_prefs": "heldout_pairs", "human_prefs": "human_pairs",
          "pretrain": "pretrain"}  # fmt: skip


def make_task(task: TaskParams, seed: int) -> Task:
    return TASKS[task.name](task, seed)


def write_task(task: Task, rows: TaskRows, gold_reward: str | None, out: Path) -> dict[str, int]:
    """Write every table, the task's own files and task.json into `out`; return the row counts."""
    counts = {COUNTS[name]: write_jsonl(out / f"{name}.jsonl", getattr(rows, name)) for name in COUNTS}
    task.write_files(out)
    gold_source = None
    if gold_reward is not None:
        gold = load_gold_reward(gold_reward, out)
        gold([r["prompt"] for r in rows.heldout], [response_text(r["completion"]) for r in rows.heldout])  # fails here
        gold_source = source_of(gold_reward)
    tables = {name: len(getattr(rows, name)) for name in COUNTS}
    absent = {name: why for name, why in rows.absent.items() if not tables[name]}
    if gold_reward is None:
        absent["gold_reward"] = f"the {task.name} task has no gold reward (task.gold_reward: null)"
    info = TaskInfo(task.name, gold_reward, tables, absent, task.config(), rows.sources, gold_source)
    info.write(out)
    return counts


def prepare(params: Params, data_out: Path, model_out: Path) -> dict[str, float]:
    """Write the task's data to `data_out` and the initial model (or base pointer) to `model_out`; return counts."""
    counts: dict[str, float] = {}
    with atomic_dir(model_out, manifest=True) as model_tmp:  # moved into place last: a failure below leaves no initial model
        if params.model.name_or_path is not None:  # first: an unreachable base model fails before any data download
            counts.update(write_base_pointer(params.model, model_tmp))
        with atomic_dir(data_out) as tmp:
            task = make_task(params.task, params.seed)
            rows = task.rows()
            counts.update(write_task(task, rows, params.task.gold, tmp))
            counts.update({k: v for k, v in rows.dropped.items() if v})
            if params.model.name_or_path is None:
                texts = [
                    text
                    for row in (*rows.pretrain, *rows.train)
                    for text in (prompt_text(row["prompt"]), response_text(row["completion"]))
                ]
                tokenizer = train_tokenizer(texts)
                build_causal_lm(params.model, tokenizer, params.seed).save_pretrained(model_tmp)
                tokenizer.save_pretrained(model_tmp)
                counts["vocab_size"] = len(tokenizer)
            counts.update(check_task_lengths(params, load_tokenizer(model_tmp, params.model.trust_remote_code), rows.train))
    return counts


LENGTH_SAMPLE = 20_000  # demonstrations whose lengths `prepare` measures (all of them, up to this many)


def check_task_lengths(params: Params, tokenizer, demos: list[dict]) -> dict[str, float]:
    """The demonstrations' token lengths against every trainer's max_length, before any training: SFT trains on
    prompt + demonstration; the RM and SPIN on pairs whose other side is a sample of up to max_new_tokens tokens.
    More than 1% too long fails here with one line naming the param.

    Beyond `LENGTH_SAMPLE` rows a seeded sample of that many is measured (the over-length share to about ±0.2%):
    rendering and tokenising 200,000 long rows took minutes, and SFT checks every row again before it trains."""
    figures: dict[str, float] = {}
    if len(demos) > LENGTH_SAMPLE:
        picked = np.random.default_rng(params.seed).choice(len(demos), size=LENGTH_SAMPLE, replace=False)
        demos = [demos[i] for i in sorted(picked)]
        figures["length_check_sample"] = LENGTH_SAMPLE
    prompts = [d["prompt"] for d in demos]
    full = token_lengths(tokenizer, [d["prompt"] + d["completion"] for d in demos])
    empty = token_lengths(tokenizer, [x + assistant_turns([""])[0] for x in prompts])  # the template around an answer
    for section, new_tokens in (("sft", None), ("reward", params.rollout.max_new_tokens), ("spin", params.spin.max_new_tokens)):
        lengths = full if new_tokens is None else [max(f, e + new_tokens) for f, e in zip(full, empty, strict=True)]
        key = f"{section}.max_length"
        checked = check_lengths(f"prepare: {section} examples", lengths, getattr(params, section).max_length, key)
        figures |= {f"{section}_{k}": v for k, v in checked.items()}
    return figures
