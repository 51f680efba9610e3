"""The oracle track, the upper bound: the same RL update as IRL, against the task's gold reward itself
(`task.gold_reward`: the synthetic world's r*, or a scorer of the user's)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from demo2reward.core import iterates
from demo2reward.core.artifacts import read_jsonl
from demo2reward.core.conversation import response_text
from demo2reward.core.distributed import on_main_process
from demo2reward.core.params import PolicyParams
from demo2reward.core.runtime import Runtime
from demo2reward.core.stage import StageError
from demo2reward.loop.rl import update_policy
from demo2reward.models.generation import generate
from demo2reward.models.modeling import load_policy, load_tokenizer
from demo2reward.tasks.base import read_task_info
from demo2reward.tasks.gold import GoldReward, load_gold_reward


def gold_reward_func(gold: GoldReward, scale: float) -> Callable:
    """The gold reward as a TRL reward function, divided by `scale` (its std on SFT samples) like a standardised RM."""

    def true_reward(prompts, completions, **_) -> list[float]:
        return list(gold(prompts, [response_text(c) for c in completions]) / scale)

    return true_reward


def task_gold_reward(task_dir: Path) -> GoldReward:
    """The gold reward the prepared task scores with; a task without one has no oracle track (params refuse it)."""
    info = read_task_info(task_dir)
    if info.gold_reward is None:
        raise StageError(f"oracle: {info.why_absent('gold_reward')}; set oracle_tracks: []")
    return load_gold_reward(info.gold_reward, task_dir, info.gold_source)


def oracle_iterate(
    iterate: Path,
    previous: Path,
    sft_policy: Path,
    demos_path: Path,
    task_dir: Path,
    p: PolicyParams,
    seed: int,
    runtime: Runtime = Runtime(),
) -> dict[str, float]:
    """Write `iterate`/policy: RL from iterate k-1 against the gold reward, scaled like the learned reward (unit std
    on `p.guards.gate_prompts` SFT samples)."""
    gold = task_gold_reward(task_dir)
    start, reference = iterates.start_and_reference(p.kl_reference, sft_policy, previous)
    prompts = [r["prompt"] for r in read_jsonl(demos_path, required=("prompt",))]
    sample_prompts = prompts[: p.guards.gate_prompts]

    def sampled_scale() -> float:
        trust = runtime.trust_remote_code
        answers = generate(
            load_policy(sft_policy, trust),
            load_tokenizer(sft_policy, trust),
            sample_prompts,
            max_new_tokens=p.max_new_tokens,
            temperature=p.temperature,
            vllm=runtime.vllm,
            trust_remote_code=trust,
        )
        return float(np.std(gold(sample_prompts, [a[0] for a in answers]))) or 1.0

    scale = on_main_process(sampled_scale)  # one scale for every rank
    reward_func = gold_reward_func(gold, scale)
    metrics = update_policy(
        start, reference, prompts, p, iterates.policy(iterate), seed, reward_func=reward_func, runtime=runtime
    )
    metrics["oracle_scale"] = scale
    return metrics
