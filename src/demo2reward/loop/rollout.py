"""Rollouts: the current policy's samples on the demonstration prompts, each beside its demonstration."""

from __future__ import annotations

from pathlib import Path

from demo2reward.core import iterates
from demo2reward.core.artifacts import read_jsonl, write_jsonl
from demo2reward.core.params import RolloutParams
from demo2reward.core.runtime import Runtime
from demo2reward.models.generation import generate
from demo2reward.models.modeling import load_policy, load_tokenizer


def rollout_rows(
    model,
    tokenizer,
    demos: list[dict],
    *,
    per_prompt: int,
    temperature: float,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    runtime: Runtime = Runtime(),
) -> list[dict]:
    """One row per sample: the prompt, the demonstration and a policy sample, in conversational form."""
    samples = generate(
        model,
        tokenizer,
        [d["prompt"] for d in demos],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        num_return_sequences=per_prompt,
        batch_size=batch_size,
        seed=seed,
        desc="rollout",
        vllm=runtime.vllm,
        trust_remote_code=runtime.trust_remote_code,
    )
    return [
        {"prompt": d["prompt"], "demonstration": d["completion"], "completion": [{"role": "assistant", "content": s}]}
        for d, group in zip(demos, samples, strict=True)
        for s in group
    ]


def rollout(
    previous: Path, demos_path: Path, p: RolloutParams, out: Path, seed: int, runtime: Runtime = Runtime()
) -> dict[str, float]:
    """Write `out`: `p.per_prompt` samples of iterate k-1's policy per demonstration prompt."""
    policy = iterates.policy(previous)
    rows = rollout_rows(
        load_policy(policy, runtime.trust_remote_code),
        load_tokenizer(policy, runtime.trust_remote_code),
        read_jsonl(demos_path, required=("prompt", "completion")),
        per_prompt=p.per_prompt,
        temperature=p.temperature,
        max_new_tokens=p.max_new_tokens,
        batch_size=p.batch_size,
        seed=seed,
        runtime=runtime,
    )
    return {"rollouts": write_jsonl(out, rows)}
