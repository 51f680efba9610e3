"""Trainer settings shared by every TRL trainer we wrap.

TRL configs default to bf16 and gradient checkpointing, which fail or slow down on a CPU; the device
decides instead, so the same stage runs on a laptop and on a GPU box.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from demo2reward.core.distributed import end_other_ranks


def merge_lora(trainer):
    """Fold a trained LoRA adapter into its base (in place), so that every saved model is a plain one.

    The next stage then loads it like any other model, and the next LoRA run starts from merged weights.
    """
    from accelerate.utils import is_peft_model

    if is_peft_model(trainer.model):
        trainer.model = trainer.model.merge_and_unload()
        trainer.model_wrapped = trainer.model
    return trainer.model


def save_trained(trainer, tokenizer, out: Path) -> None:
    """Save the trained model and its tokenizer with save_pretrained; no checkpoints: DVC caches the model.

    A LoRA adapter is merged first, so that every saved model is a plain one.
    """
    merge_lora(trainer)
    trainer.save_model(str(out))  # under accelerate launch: rank 0 writes; under ZeRO-3 or FSDP every rank gathers
    end_other_ranks()
    tokenizer.save_pretrained(str(out))
    shutil.rmtree(out / "trainer", ignore_errors=True)
    # It pickles the run's settings, temp output_dir included: every rerun would change the folder's hash.
    (out / "training_args.bin").unlink(missing_ok=True)


def trainer_kwargs(output_dir: str, seed: int, p=None) -> dict:
    """Settings of every TRL config. `p` (a params section with DeviceFields) adds its GPU memory settings;
    their defaults (no accumulation, no checkpointing) are what the CPU runs use."""
    cuda = torch.cuda.is_available()
    kwargs = {
        "output_dir": output_dir,
        "seed": seed,
        "use_cpu": not cuda,
        "bf16": cuda and torch.cuda.is_bf16_supported(),
        "activation_checkpointing": False,  # tiny models: recomputation costs ~30% and saves nothing
        "report_to": "none",  # our own tracking mirrors metrics/ into MLflow
        "save_strategy": "no",
        "logging_steps": 10,
        "ddp_find_unused_parameters": False,  # under accelerate launch: every parameter gets a gradient
        "disable_tqdm": False,
        "dataloader_num_workers": 0,
    }
    if p is not None:
        kwargs["gradient_accumulation_steps"] = p.gradient_accumulation_steps
        if p.gradient_checkpointing:
            kwargs["activation_checkpointing"] = True
            kwargs["activation_checkpointing_kwargs"] = {"use_reentrant": False}  # what LoRA (frozen inputs) needs
    return kwargs


TOO_LONG_TOLERANCE = 0.01  # the fraction of a stage's examples that may exceed its max_length


TOKENIZE_CHUNK = 2048  # conversations per batch: a tokenizer's encodings of 200k long rows at once took 8 GB


def tokenize_conversations(tokenizer, conversations: list[list[dict]]) -> list[list[int]]:
    """Token ids of each conversation exactly as TRL's trainers make them (`apply_chat_template(tokenize=True)`:
    the chat template rendered, then tokenised without special tokens), in batches."""
    ids: list[list[int]] = []
    for start in range(0, len(conversations), TOKENIZE_CHUNK):
        texts = tokenizer.apply_chat_template(conversations[start : start + TOKENIZE_CHUNK], tokenize=False)
        ids += tokenizer(texts, add_special_tokens=False)["input_ids"]
    return ids


def token_lengths(tokenizer, conversations: list[list[dict]]) -> list[int]:
    """Tokens of each conversation as the trainers see it: rendered by the chat template, then tokenised."""
    return [len(ids) for ids in tokenize_conversations(tokenizer, conversations)]


def check_lengths(what: str, lengths: list[int], max_length: int, key: str) -> dict[str, float]:
    """Fail with one line when more than TOO_LONG_TOLERANCE of `lengths` exceed `max_length` (the param `key`):
    TRL would silently truncate them (an SFT example loses its EOS, so the policy never learns to stop) or drop
    them (a reward model trains on fewer pairs than its metrics say). Return the lengths' figures otherwise."""
    from demo2reward.core.stage import StageError

    if not lengths:
        raise StageError(f"{what}: no examples")
    over = sum(n > max_length for n in lengths)
    if over > TOO_LONG_TOLERANCE * len(lengths):
        raise StageError(
            f"{what}: {over} of {len(lengths)} ({over / len(lengths):.0%}) are longer than {key} = {max_length} tokens "
            f"(longest {max(lengths)}); raise {key}, or drop long rows (task.<name>.max_prompt_chars / max_response_chars)"
        )
    return {"tokens_max": float(max(lengths)), "tokens_over_max_length": float(over)}
