"""Supervised language-model training: the `pretrain` and `sft` stages, both TRL `SFTTrainer`."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from demo2reward.artifacts import atomic_dir
from demo2reward.modeling import load_policy, load_tokenizer
from demo2reward.params import TrainParams
from demo2reward.training import save_trained, trainer_kwargs


def train_language_model(
    init: str | Path,
    rows: list[dict],
    p: TrainParams,
    out: str | Path,
    seed: int,
    max_length: int,
    completion_only: bool = True,
) -> dict[str, float]:
    """Fine-tune the model at `init` on prompt/completion `rows`; save model and tokenizer to `out`.

    `completion_only=False` trains on the prompts too, as pretraining on a raw corpus would.
    """
    tokenizer = load_tokenizer(init)
    model = load_policy(init)
    with atomic_dir(out) as tmp:
        config = SFTConfig(
            **trainer_kwargs(str(tmp / "trainer"), seed),
            learning_rate=p.learning_rate,
            num_train_epochs=p.epochs,
            per_device_train_batch_size=p.batch_size,
            lr_scheduler_type="linear",
            max_length=max_length,
            completion_only_loss=completion_only,
        )
        trainer = SFTTrainer(model=model, args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
        result = trainer.train()
        save_trained(trainer, tokenizer, tmp)
    return {"train_loss": float(result.training_loss), "train_runtime_s": float(result.metrics["train_runtime"])}
