"""The `prepare` stage's work: the task's data files and the initial model, for every task.

- ``synthetic``: the embedded task (`task.build_task`, with r* in ``world.json``), a word-level tokenizer
  trained on its texts and a tiny Llama built from `model` (unless `model.name_or_path` names a real base).
- ``tldr`` / ``ultrachat``: the rows of `real_tasks.load_task_rows` under the same file names, an empty
  ``pretrain.jsonl`` (so that `pretrain` passes the base through) and no ``world.json`` (no r*: the oracle
  metrics and the oracle track are skipped downstream). The initial model is a base pointer
  (`modeling.write_base_pointer`): the base's id and its prepared tokenizer, never its weights.
"""

from __future__ import annotations

import json
from pathlib import Path

from demo2reward.core.artifacts import atomic_dir, read_jsonl, write_jsonl
from demo2reward.core.conversation import assistant_turns, prompt_text, response_text
from demo2reward.core.params import Params, TaskParams
from demo2reward.models.modeling import build_causal_lm, load_tokenizer, train_tokenizer, write_base_pointer
from demo2reward.models.training import check_lengths, token_lengths
from demo2reward.tasks.real import TASK_CONFIGS, RealTaskConfig, load_task_rows, write_task_files
from demo2reward.tasks.synthetic import build_task


def real_task_config(task: TaskParams) -> RealTaskConfig:
    """The loader config of a real task from its params section (task.tldr or task.ultrachat)."""
    return TASK_CONFIGS[task.name](**getattr(task, task.name).model_dump())


def build_real_task(task: TaskParams, out: Path) -> dict[str, int]:
    """Write a real task's train/heldout/heldout_prefs files, an empty pretraining corpus and its provenance."""
    config = real_task_config(task)
    counts = write_task_files(load_task_rows(config), out)
    write_jsonl(out / "pretrain.jsonl", [])  # no corpus: `pretrain` passes the base model through
    provenance = {"name": task.name, "config": getattr(task, task.name).model_dump()}
    (out / "task.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return {**counts, "pretrain": 0}


def prepare(params: Params, data_out: Path, model_out: Path) -> dict[str, float]:
    """Write the task's data to `data_out` and the initial model (or base pointer) to `model_out`; return counts."""
    counts: dict[str, float] = {}
    with atomic_dir(model_out, manifest=True) as model_tmp:  # moved into place last: a failure below leaves no initial model
        if params.model.name_or_path is not None:  # first: an unreachable base model fails before any data download
            counts.update(write_base_pointer(params.model, model_tmp))
        with atomic_dir(data_out) as tmp:
            if params.task.name == "synthetic":
                counts.update(build_task(params.task, params.seed, tmp))
                texts = [
                    text
                    for name in ("pretrain.jsonl", "train.jsonl")
                    for row in read_jsonl(tmp / name)
                    for text in (prompt_text(row["prompt"]), response_text(row["completion"]))
                ]
            else:
                counts.update(build_real_task(params.task, tmp))
            if params.model.name_or_path is None:
                tokenizer = train_tokenizer(texts)
                build_causal_lm(params.model, tokenizer, params.seed).save_pretrained(model_tmp)
                tokenizer.save_pretrained(model_tmp)
                counts["vocab_size"] = len(tokenizer)
            counts.update(check_task_lengths(params, load_tokenizer(model_tmp), read_jsonl(tmp / "train.jsonl")))
    return counts


def check_task_lengths(params: Params, tokenizer, demos: list[dict]) -> dict[str, float]:
    """The demonstrations' token lengths against every trainer's max_length, before any training: SFT trains on
    prompt + demonstration; the RM and SPIN on pairs whose other side is a sample of up to max_new_tokens tokens.
    More than 1% too long fails here with one line naming the param."""
    prompts = [d["prompt"] for d in demos]
    full = token_lengths(tokenizer, [d["prompt"] + d["completion"] for d in demos])
    empty = token_lengths(tokenizer, [x + assistant_turns([""])[0] for x in prompts])  # the template around an answer
    figures = {}
    for section, new_tokens in (("sft", None), ("reward", params.rollout.max_new_tokens), ("spin", params.spin.max_new_tokens)):
        lengths = full if new_tokens is None else [max(f, e + new_tokens) for f, e in zip(full, empty, strict=True)]
        key = f"{section}.max_length"
        checked = check_lengths(f"prepare: {section} examples", lengths, getattr(params, section).max_length, key)
        figures |= {f"{section}_{k}": v for k, v in checked.items()}
    return figures
