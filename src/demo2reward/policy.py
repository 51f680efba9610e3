"""The policy update: online RL against a reward, with a KL penalty to a reference model.

The reward enters TRL through `reward_funcs`: a sequence-classification model (the learned reward) or a
callable (the oracle track's r*). Which TRL trainer runs is the `policy.optimizer` param.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from datasets import Dataset

from demo2reward.artifacts import atomic_dir
from demo2reward.modeling import load_policy, load_reward_model, load_tokenizer, lora_config, trust_remote_code
from demo2reward.params import PolicyParams
from demo2reward.rollout import generate
from demo2reward.task import Oracle, prompt_text, response_text
from demo2reward.training import save_trained, trainer_kwargs

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


def oracle_reward_func(oracle: Oracle, scale: float) -> Callable:
    """r* as a TRL reward function, divided by `scale` (its std on SFT samples) like a standardised RM."""

    def true_reward(prompts, completions, **_) -> list[float]:
        posts = [prompt_text(p) for p in prompts]
        return list(oracle.reward(posts, [response_text(c) for c in completions]) / scale)

    return true_reward


def _trainer(p: PolicyParams, model, reference: Path, reward_funcs: list, reward_tokenizers, tokenizer, dataset, args: dict):
    common = {
        "learning_rate": p.learning_rate,
        "lr_scheduler_type": "constant",
        "max_steps": p.steps,
        "beta": p.beta,
        "temperature": p.temperature,
        "max_completion_length": p.max_new_tokens,
        **args,
    }
    if p.optimizer in ("rloo", "grpo"):
        if p.optimizer == "rloo":
            from trl import RLOOConfig as Config
            from trl import RLOOTrainer as Trainer
        else:
            from trl import GRPOConfig as Config
            from trl import GRPOTrainer as Trainer
        config = Config(
            **common,
            num_generations=p.num_generations,
            per_device_train_batch_size=p.per_device_batch_size,  # x gradient_accumulation_steps = batch_size
            top_k=0,
            trust_remote_code=trust_remote_code(reference),
        )
        # TRL builds the KL reference from the policy's config id; point it at the chosen reference. With LoRA it
        # uses the start policy with the adapter off instead (the params refuse LoRA with a distinct reference).
        model.config._name_or_path = str(reference)
        return Trainer(
            model=model,
            reward_funcs=reward_funcs,
            args=config,
            train_dataset=dataset,
            processing_class=tokenizer,
            reward_processing_classes=reward_tokenizers,
            peft_config=lora_config(p.lora, "CAUSAL_LM"),
        )
    from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

    config = OnlineDPOConfig(
        **{k: v for k, v in common.items() if k not in ("beta", "max_completion_length")},
        beta=[p.beta],
        max_new_tokens=p.max_new_tokens,
        per_device_train_batch_size=max(1, p.batch_size // 2 // p.gradient_accumulation_steps),
        top_k=0,
    )
    peft_config = lora_config(p.lora, "CAUSAL_LM")
    return OnlineDPOTrainer(
        model=model,
        ref_model=None if peft_config else load_policy(reference),
        peft_config=peft_config,
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        reward_processing_classes=reward_tokenizers,
    )


SKIPPED = "SKIPPED"  # a track's model folder holding only this file: the track does not apply to the task


def skip_track(out: str | Path, reason: str) -> dict[str, float]:
    """Write `out` as a skipped track (DVC's static graph still expects the folder) and return its metrics."""
    with atomic_dir(out) as tmp:
        (tmp / SKIPPED).write_text(reason + "\n")
    return {"skipped": 1.0}


def is_skipped(path: str | Path) -> bool:
    return (Path(path) / SKIPPED).exists()


def oracle_update(
    task_dir: Path,
    sft: Path,
    start: Path,
    reference: Path,
    prompts: list[list[dict]],
    p: PolicyParams,
    out: Path,
    seed: int,
    sample: int,
) -> dict[str, float]:
    """The oracle track: the same RL against r* itself, scaled like the learned reward (unit std on `sample` SFT
    samples). A real task has no r*: the track is skipped (a folder with SKIPPED, metrics {"skipped": 1})."""
    oracle = Oracle.load_optional(task_dir)
    if oracle is None:
        return skip_track(out, "skipped: the task has no true reward r*, so there is no oracle upper bound (synthetic task only)")
    sample_prompts = prompts[:sample]
    answers = generate(
        load_policy(sft), load_tokenizer(sft), sample_prompts, max_new_tokens=p.max_new_tokens, temperature=p.temperature
    )
    scale = float(np.std(oracle.reward([prompt_text(x) for x in sample_prompts], [a[0] for a in answers]))) or 1.0
    metrics = update_policy(start, reference, prompts, p, out, seed, reward_func=oracle_reward_func(oracle, scale))
    metrics["oracle_scale"] = scale
    return metrics


def start_and_reference(kl_reference: str, sft: Path, previous: Path, k: int) -> tuple[Path, Path]:
    """Policy k starts from its track's policy k-1, `previous`/policy (SFT at k = 1); its KL reference is SFT
    or that start."""
    start = sft if k == 1 else previous / "policy"
    return start, (sft if kl_reference == "sft" else start)


def final_policies(models: Path, seed: int, K: int) -> dict[str, Path]:  # noqa: N803 - the paper's name
    """SFT and the final (iteration K) IRL and SPIN iterates of one training seed, for the benchmarks."""
    return {
        "sft": models / f"seed_{seed}" / "iter_0" / "policy",
        "irl": models / f"seed_{seed}" / f"iter_{K}" / "irl" / "policy",
        "spin": models / f"seed_{seed}" / f"iter_{K}" / "spin" / "policy",
    }


def update_policy(
    start: str | Path,
    reference: str | Path,
    prompts: list[list[dict]],
    p: PolicyParams,
    out: str | Path,
    seed: int,
    reward_model: str | Path | None = None,
    reward_func: Callable | None = None,
) -> dict[str, float]:
    """Run `p.steps` RL steps from the policy at `start`; save the new policy to `out`.

    Exactly one of `reward_model` (a path) or `reward_func` (a TRL reward callable) gives the reward.
    """
    if (reward_model is None) == (reward_func is None):
        raise ValueError("give exactly one of reward_model or reward_func")
    tokenizer = load_tokenizer(start)
    model = load_policy(start)
    if reward_model is not None:
        reward_funcs, reward_tokenizers = [load_reward_model(reward_model)], [load_tokenizer(reward_model)]
    else:
        reward_funcs, reward_tokenizers = [reward_func], None
    dataset = Dataset.from_list([{"prompt": x} for x in prompts])
    with atomic_dir(out) as tmp:
        trainer = _trainer(
            p,
            model,
            Path(reference),
            reward_funcs,
            reward_tokenizers,
            tokenizer,
            dataset,
            trainer_kwargs(str(tmp / "trainer"), seed, p),
        )
        result = trainer.train()
        save_trained(trainer, tokenizer, tmp, like=start)
    logs = [h for h in trainer.state.log_history if "loss" in h or "reward" in h]
    metrics = {"train_runtime_s": float(result.metrics["train_runtime"]), "train_loss": float(result.training_loss)}
    for key in ("reward", "kl", "objective/kl", "objective/rlhf_reward", "completions/mean_length"):
        vals = [h[key] for h in logs if key in h]
        if vals:
            name = key.replace("/", "_")
            metrics[f"{name}_first"], metrics[f"{name}_last"] = float(vals[0]), float(np.mean(vals[-3:]))
    return metrics
