"""The oracle track, the upper bound: the same RL update as IRL, against the task's true reward r* itself."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from demo2reward.core import iterates
from demo2reward.core.artifacts import read_jsonl
from demo2reward.core.conversation import prompt_text, response_text
from demo2reward.core.distributed import on_main_process
from demo2reward.core.params import PolicyParams
from demo2reward.loop.rl import update_policy
from demo2reward.models.generation import generate
from demo2reward.models.modeling import load_policy, load_tokenizer
from demo2reward.tasks.synthetic import Oracle


def oracle_reward_func(oracle: Oracle, scale: float) -> Callable:
    """r* as a TRL reward function, divided by `scale` (its std on SFT samples) like a standardised RM."""

    def true_reward(prompts, completions, **_) -> list[float]:
        posts = [prompt_text(p) for p in prompts]
        return list(oracle.reward(posts, [response_text(c) for c in completions]) / scale)

    return true_reward


def oracle_iterate(
    iterate: Path, previous: Path, sft_policy: Path, demos_path: Path, task_dir: Path, p: PolicyParams, seed: int
) -> dict[str, float]:
    """Write `iterate`/policy: RL from iterate k-1 against r*, scaled like the learned reward (unit std on
    `p.guards.gate_prompts` SFT samples). A real task has no r*: the track is skipped (a folder with SKIPPED)."""
    out = iterates.policy(iterate)
    oracle = Oracle.load_optional(task_dir)
    if oracle is None:
        return iterates.skip_track(
            out, "skipped: the task has no true reward r*, so there is no oracle upper bound (synthetic task only)"
        )
    start, reference = iterates.start_and_reference(p.kl_reference, sft_policy, previous)
    prompts = [r["prompt"] for r in read_jsonl(demos_path, required=("prompt",))]
    sample_prompts = prompts[: p.guards.gate_prompts]

    def sampled_scale() -> float:
        answers = generate(
            load_policy(sft_policy),
            load_tokenizer(sft_policy),
            sample_prompts,
            max_new_tokens=p.max_new_tokens,
            temperature=p.temperature,
        )
        return float(np.std(oracle.reward([prompt_text(x) for x in sample_prompts], [a[0] for a in answers]))) or 1.0

    scale = on_main_process(sampled_scale)  # one scale for every rank
    metrics = update_policy(start, reference, prompts, p, out, seed, reward_func=oracle_reward_func(oracle, scale))
    metrics["oracle_scale"] = scale
    return metrics
