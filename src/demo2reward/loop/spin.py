"""SPIN, the demonstration-only baseline: iterated DPO with the demonstration as chosen, a sample of the
previous iterate as rejected, and the previous iterate as the DPO reference (TRL has no SPIN trainer)."""

from __future__ import annotations

from pathlib import Path

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from demo2reward.core import iterates
from demo2reward.core.artifacts import atomic_dir, read_jsonl
from demo2reward.core.distributed import on_main_process
from demo2reward.core.params import SpinParams
from demo2reward.core.runtime import Runtime
from demo2reward.loop.pairs import build_pairs
from demo2reward.loop.rollout import rollout_rows
from demo2reward.models.modeling import load_policy, load_tokenizer, lora_config
from demo2reward.models.training import check_lengths, save_trained, token_lengths, trainer_kwargs


def spin_pairs(
    previous: Path, demos: list[dict], p: SpinParams, seed: int, runtime: Runtime = Runtime()
) -> tuple[list[dict], dict[str, int]]:
    """Demonstration ≻ one sample of the previous iterate, per training prompt; identical pairs dropped."""
    rows = rollout_rows(
        load_policy(previous, runtime.trust_remote_code),
        load_tokenizer(previous, runtime.trust_remote_code),
        demos,
        per_prompt=1,
        temperature=p.temperature,
        max_new_tokens=p.max_new_tokens,
        batch_size=256,
        seed=seed,
        runtime=runtime,
    )
    return build_pairs(rows)


def spin_round(
    previous: Path,
    pairs: list[dict],
    p: SpinParams,
    out: str | Path,
    seed: int,
    max_length: int,
    runtime: Runtime = Runtime(),
) -> dict[str, float]:
    """One SPIN iteration: DPO from the previous iterate, which is also the reference (TRL copies it)."""
    tokenizer = load_tokenizer(previous, runtime.trust_remote_code)
    sides = [token_lengths(tokenizer, [q["prompt"] + q[side] for q in pairs]) for side in ("chosen", "rejected")]
    lengths = check_lengths("spin: pairs", [max(c, r) for c, r in zip(*sides, strict=True)], max_length, "spin.max_length")
    model = load_policy(previous, runtime.trust_remote_code)
    with atomic_dir(out, manifest=True) as tmp:
        config = DPOConfig(
            **trainer_kwargs(str(tmp / "trainer"), seed, p),
            beta=p.beta,
            learning_rate=p.learning_rate,
            num_train_epochs=p.epochs,
            per_device_train_batch_size=p.per_device_batch_size,
            lr_scheduler_type="linear",
            max_length=max_length,
        )
        # With LoRA the reference is the previous iterate with the adapter off: SPIN's reference, without a copy.
        trainer = DPOTrainer(
            model=model,
            args=config,
            train_dataset=Dataset.from_list(pairs),
            processing_class=tokenizer,
            peft_config=lora_config(p.lora, "CAUSAL_LM"),
        )
        result = trainer.train()
        save_trained(trainer, tokenizer, tmp)
    return {"train_loss": float(result.training_loss), "train_runtime_s": float(result.metrics["train_runtime"]), **lengths}


def spin_iterate(
    iterate: Path,
    previous: Path,
    demos_path: Path,
    p: SpinParams,
    sample_seed: int,
    seed: int,
    max_length: int,
    runtime: Runtime = Runtime(),
):
    """Write `iterate`/policy: one SPIN round from iterate k-1 on fresh pairs (demonstration ≻ its sample)."""
    start = iterates.policy(previous)
    demos = read_jsonl(demos_path, required=("prompt", "completion"))
    pairs, stats = on_main_process(lambda: spin_pairs(start, demos, p, sample_seed, runtime))  # the same pairs on every rank
    return {**stats, **spin_round(start, pairs, p, iterates.policy(iterate), seed, max_length, runtime)}
