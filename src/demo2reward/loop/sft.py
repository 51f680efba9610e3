"""Supervised language-model training with TRL `SFTTrainer`: SFT on the demonstrations (iterate 0 of every track),
and the embedded task's pretraining of its tiny base model."""

from __future__ import annotations

import shutil
from pathlib import Path

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from demo2reward.core.artifacts import atomic_dir, read_jsonl, write_jsonl
from demo2reward.core.params import PretrainParams, SFTParams, TrainParams
from demo2reward.core.runtime import Runtime
from demo2reward.models.modeling import load_policy, load_tokenizer, lora_config
from demo2reward.models.training import check_lengths, save_trained, token_lengths, trainer_kwargs


def pass_through(init: str | Path, out: str | Path) -> dict[str, float]:
    """Copy the model folder at `init` to `out` unchanged: `pretrain` on a real task, whose corpus is empty.

    For a real base this copies a base pointer (a few MB: the id and the tokenizer), never the weights.
    """
    with atomic_dir(out, manifest=True) as tmp:
        shutil.copytree(init, tmp, dirs_exist_ok=True)
    return {"skipped": 1.0}


def train_language_model(
    init: str | Path,
    rows: list[dict],
    p: TrainParams,
    out: str | Path,
    seed: int,
    max_length: int,
    completion_only: bool = True,
    section: str = "sft",
    runtime: Runtime = Runtime(),
) -> dict[str, float]:
    """Fine-tune the model at `init` on prompt/completion `rows`; save model and tokenizer to `out`.

    `completion_only=False` trains on the prompts too, as pretraining on a raw corpus would. `section` names the
    params section whose max_length the examples are checked against.
    """
    tokenizer = load_tokenizer(init, runtime.trust_remote_code)
    lengths = check_lengths(
        f"{section}: examples", token_lengths(tokenizer, [r["prompt"] + r["completion"] for r in rows]), max_length,
        f"{section}.max_length",
    )  # fmt: skip
    model = load_policy(init, runtime.trust_remote_code)
    with atomic_dir(out, manifest=True) as tmp:
        config = SFTConfig(
            **trainer_kwargs(str(tmp / "trainer"), seed, p),
            learning_rate=p.learning_rate,
            num_train_epochs=p.epochs,
            per_device_train_batch_size=p.per_device_batch_size,
            lr_scheduler_type="linear",
            max_length=max_length,
            completion_only_loss=completion_only,
        )
        trainer = SFTTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(rows),
            processing_class=tokenizer,
            peft_config=lora_config(getattr(p, "lora", None), "CAUSAL_LM"),
        )
        result = trainer.train()
        save_trained(trainer, tokenizer, tmp)
    return {
        "train_loss": float(result.training_loss),
        "train_runtime_s": float(result.metrics["train_runtime"]),
        **lengths,
    }


def pretrain(
    init: Path, corpus_path: Path, p: PretrainParams, out: Path, seed: int, max_length: int, runtime: Runtime = Runtime()
) -> dict[str, float]:
    """Give the embedded task's base model the habits of its unlabelled corpus (prompts included in the loss).

    A real task writes an empty corpus: its base is already pretrained, so `init` (a base pointer of a few MB,
    not the weights) passes through unchanged.
    """
    rows = read_jsonl(corpus_path, required=("prompt", "completion"), allow_empty=True)
    if not rows:
        return pass_through(init, out)
    return train_language_model(init, rows, p, out, seed, max_length, completion_only=False, section="pretrain", runtime=runtime)


def sft(
    init: Path, demos_path: Path, p: SFTParams, out: Path, pool: Path, seed: int, max_length: int, runtime: Runtime = Runtime()
) -> dict[str, float]:
    """Write iterate 0: the SFT policy (`out`) and its pair pool, empty (`pool`), which iteration 1 extends."""
    rows = read_jsonl(demos_path, required=("prompt", "completion"))
    metrics = train_language_model(init, rows, p, out, seed, max_length, runtime=runtime)
    write_jsonl(pool, [])
    return metrics
