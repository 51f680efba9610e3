"""The policy step of an IRL iteration: RL against the iteration's learned reward, optionally with collapse guards."""

from __future__ import annotations

import shutil
from pathlib import Path

from demo2reward.core import iterates
from demo2reward.core.artifacts import atomic_dir, read_jsonl
from demo2reward.core.params import PolicyParams
from demo2reward.loop.guards import MinOverRewardModels, acceptance_gate
from demo2reward.loop.rl import update_policy


def improve_iterate(
    track: str,
    k: int,
    iterate: Path,
    previous: Path,
    sft_policy: Path,
    demos_path: Path,
    rollouts_path: Path,
    p: PolicyParams,
    seed: int,
) -> dict[str, float]:
    """Write `iterate`/policy: RL from iterate k-1's policy against iterate k's reward model, `iterate`/reward.

    `irl` is the paper's method. `irl_guarded` adds `p.guards` (see `loop.guards`): the reward is the min over the
    reward models of iterations 1..k, and an acceptance gate keeps iterate k-1's policy when the frozen earlier
    reward models score the new one lower.
    """
    guards = p.guards if track == "irl_guarded" else None
    start, reference = iterates.start_and_reference(p.kl_reference, sft_policy, previous)
    demos = read_jsonl(demos_path, required=("prompt", "completion"))
    prompts = [r["prompt"] for r in demos]
    reward_models = [*iterates.earlier_reward_models(iterate, k), iterates.reward(iterate)]
    reward = {"reward_model": reward_models[-1]}
    if guards and guards.reward_aggregation == "min" and k > 1:
        # Each RM is standardised on demonstrations plus the current policy's rollouts.
        rollouts = read_jsonl(rollouts_path, required=("prompt", "completion"))[: guards.gate_prompts]
        reference_set = [(d["prompt"], d["completion"]) for d in demos[: guards.gate_prompts]]
        reference_set += [(r["prompt"], r["completion"]) for r in rollouts]
        reward = {"reward_func": MinOverRewardModels(reward_models, *map(list, zip(*reference_set, strict=True)))}
    with atomic_dir(iterates.policy(iterate), manifest=True) as final:
        candidate = final / "candidate"
        metrics = update_policy(start, reference, prompts, p, candidate, seed, **reward)
        accepted = True
        if guards and guards.acceptance_gate:
            accepted, gate = acceptance_gate(
                candidate, start, reward_models[:-1], prompts[: guards.gate_prompts], p.max_new_tokens
            )
            metrics.update(gate)
        kept = candidate if accepted else start  # a rejected update carries policy k-1 forward
        for f in kept.iterdir():
            shutil.copy2(f, final / f.name)
        shutil.rmtree(candidate)
    return metrics
