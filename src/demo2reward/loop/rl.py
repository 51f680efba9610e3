"""The RL update of the IRL, guarded and oracle tracks: online RL against a reward, with a KL penalty to a reference.

The reward enters TRL through `reward_funcs`: a sequence-classification model (the learned reward) or a
callable (the oracle track's r*). Which TRL trainer runs is the `policy.optimizer` param.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from datasets import Dataset

from demo2reward.core.artifacts import atomic_dir
from demo2reward.core.conversation import as_generated
from demo2reward.core.params import PolicyParams
from demo2reward.core.runtime import Runtime
from demo2reward.models.generation import score, trl_vllm_kwargs
from demo2reward.models.modeling import load_policy, load_reward_model, load_tokenizer, lora_config
from demo2reward.models.training import save_trained, trainer_kwargs

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")


class LearnedReward:
    """A learned reward model as a TRL reward function: it scores each completion with the same text rendering as
    in its training (`as_generated`), which passing the model to TRL directly does not guarantee."""

    __name__ = "learned_reward"

    def __init__(self, path: str | Path, trust_remote_code: bool = False):
        self.model = load_reward_model(path, trust_remote_code=trust_remote_code)
        self.tokenizer = load_tokenizer(path, trust_remote_code)

    def __call__(self, prompts, completions, **_) -> list[float]:
        return score(self.model, self.tokenizer, list(prompts), as_generated(completions)).tolist()


def _trainer(
    p: PolicyParams, model, reference: Path, reward_funcs: list, tokenizer, dataset, args: dict, runtime: Runtime = Runtime()
):
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
            **trl_vllm_kwargs(Config, runtime.vllm),
            num_generations=p.num_generations,
            per_device_train_batch_size=p.per_device_batch_size,  # x gradient_accumulation_steps = batch_size
            top_k=0,
            trust_remote_code=runtime.trust_remote_code,
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
            peft_config=lora_config(p.lora, "CAUSAL_LM"),
        )
    from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

    config = OnlineDPOConfig(
        **{k: v for k, v in common.items() if k not in ("beta", "max_completion_length")},
        **trl_vllm_kwargs(OnlineDPOConfig, runtime.vllm),
        beta=[p.beta],
        max_new_tokens=p.max_new_tokens,
        per_device_train_batch_size=max(1, p.per_device_batch_size // 2),  # prompts: each gives a pair
        top_k=0,
    )
    peft_config = lora_config(p.lora, "CAUSAL_LM")
    return OnlineDPOTrainer(
        model=model,
        ref_model=None if peft_config else load_policy(reference, runtime.trust_remote_code),
        peft_config=peft_config,
        reward_funcs=reward_funcs,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
    )


def update_policy(
    start: str | Path,
    reference: str | Path,
    prompts: list[list[dict]],
    p: PolicyParams,
    out: str | Path,
    seed: int,
    reward_model: str | Path | None = None,
    reward_func: Callable | None = None,
    runtime: Runtime = Runtime(),
) -> dict[str, float]:
    """Run `p.steps` RL steps from the policy at `start`; save the new policy to `out`.

    Exactly one of `reward_model` (a path) or `reward_func` (a TRL reward callable) gives the reward.
    """
    if (reward_model is None) == (reward_func is None):
        raise ValueError("give exactly one of reward_model or reward_func")
    tokenizer = load_tokenizer(start, runtime.trust_remote_code)
    model = load_policy(start, runtime.trust_remote_code)
    reward_funcs = [reward_func or LearnedReward(reward_model, runtime.trust_remote_code)]
    dataset = Dataset.from_list([{"prompt": x} for x in prompts])
    with atomic_dir(out, manifest=True) as tmp:
        trainer = _trainer(
            p,
            model,
            Path(reference),
            reward_funcs,
            tokenizer,
            dataset,
            trainer_kwargs(str(tmp / "trainer"), seed, p),
            runtime,
        )
        result = trainer.train()
        save_trained(trainer, tokenizer, tmp)
    logs = [h for h in trainer.state.log_history if "loss" in h or "reward" in h]
    metrics = {"train_runtime_s": float(result.metrics["train_runtime"]), "train_loss": float(result.training_loss)}
    for key in ("reward", "kl", "objective/kl", "objective/rlhf_reward", "completions/mean_length"):
        vals = [h[key] for h in logs if key in h]
        if vals:
            name = key.replace("/", "_")
            metrics[f"{name}_first"], metrics[f"{name}_last"] = float(vals[0]), float(np.mean(vals[-3:]))
    return metrics
