"""Trainer settings shared by every TRL trainer we wrap.

TRL configs default to bf16 and gradient checkpointing, which fail or slow down on a CPU; the device
decides instead, so the same stage runs on a laptop and on a GPU box.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch


def set_threads(n: int) -> None:
    torch.set_num_threads(n)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def save_trained(trainer, tokenizer, out: Path) -> None:
    """Save the trained model and its tokenizer with save_pretrained; no checkpoints: DVC caches the model."""
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    shutil.rmtree(out / "trainer", ignore_errors=True)


def trainer_kwargs(output_dir: str, seed: int) -> dict:
    cuda = torch.cuda.is_available()
    return {
        "output_dir": output_dir,
        "seed": seed,
        "use_cpu": not cuda,
        "bf16": cuda and torch.cuda.is_bf16_supported(),
        "activation_checkpointing": False,  # tiny models: recomputation costs ~30% and saves nothing
        "report_to": "none",  # our own tracking mirrors metrics/ into MLflow
        "save_strategy": "no",
        "logging_steps": 10,
        "disable_tqdm": False,
        "dataloader_num_workers": 0,
    }
