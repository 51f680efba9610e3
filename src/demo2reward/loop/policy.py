"""The policy step of an IRL iteration: RL against the iteration's learned reward, optionally with collapse guards."""

from __future__ import annotations

import shutil
from pathlib import Path

from demo2reward.core import iterates
from demo2reward.core.artifacts import atomic_dir, read_jsonl
from demo2reward.core.params import LoopParams, PolicyParams
from demo2reward.core.runtime import Runtime
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
    loop: LoopParams | None = None,
    fresh_accuracy: float | None = None,
    runtime: Runtime = Runtime(),
) -> dict[str, float]:
    """Write `iterate`/policy: RL from iterate k-1's policy against iterate k's reward model, `iterate`/reward.

    `irl` is the paper's method. `irl_guarded` adds `p.guards` (see `loop.guards`): the reward is the min over the
    reward models of iterations 1..k, and an acceptance gate keeps iterate k-1's policy when the frozen earlier
    reward models score the new one lower.

    With `loop.stop: indistinguishable`, iterate k's RM decides whether to go on (`fresh_accuracy`, its held-out
    accuracy on this iteration's pairs): if it cannot tell the demonstrations from policy k-1's rollouts, policy k-1
    is final and is carried forward, as it is by every later iterate, with no training. `prefs_only` has no
    demonstration pairs to tell apart, so the rule does not apply to it.
    """
    if track == "prefs_only":
        loop = None
    k_stop = stop_iteration(k, previous, loop, fresh_accuracy)
    if k_stop is not None:
        iterates.carry_forward(iterates.policy(previous), iterates.policy(iterate), k_stop)
        stopped = {"stopped": 1.0, "k_stop": float(k_stop)}
        return stopped if fresh_accuracy is None else {**stopped, "fresh_accuracy": fresh_accuracy}
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
        prompts_and_completions = map(list, zip(*reference_set, strict=True))
        reward = {"reward_func": MinOverRewardModels(reward_models, *prompts_and_completions, runtime=runtime)}
    with atomic_dir(iterates.policy(iterate), manifest=True) as final:
        candidate = final / "candidate"
        metrics = update_policy(start, reference, prompts, p, candidate, seed, **reward, runtime=runtime)
        accepted = True
        if guards and guards.acceptance_gate:
            accepted, gate = acceptance_gate(
                candidate, start, reward_models[:-1], prompts[: guards.gate_prompts], p.max_new_tokens, runtime=runtime
            )
            metrics.update(gate)
        kept = candidate if accepted else start  # a rejected update carries policy k-1 forward
        for f in kept.iterdir():
            shutil.copy2(f, final / f.name)
        shutil.rmtree(candidate)
    if loop is not None and loop.stop != "off":  # the rule was checked and let the loop go on
        metrics |= {"stopped": 0.0, "fresh_accuracy": float(fresh_accuracy)}
    return metrics


def stop_iteration(k: int, previous: Path, loop: LoopParams | None, fresh_accuracy: float | None) -> int | None:
    """K_stop if the loop has stopped by iteration k (earlier, or now by `loop.stop`'s rule), else None."""
    earlier = iterates.stopped_at(previous)
    if earlier is not None or loop is None or loop.stop == "off":
        return earlier
    if fresh_accuracy is None:
        raise ValueError(f"loop.stop: {loop.stop} needs iterate {k}'s reward model's held-out accuracy on fresh pairs")
    return k - 1 if fresh_accuracy < loop.stop_accuracy else None
