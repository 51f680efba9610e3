"""Synthetic preference pairs: the demonstration is chosen, the policy's rollout is rejected."""

from __future__ import annotations

from pathlib import Path

from demo2reward.core.artifacts import DataFileError, read_jsonl, write_jsonl
from demo2reward.core.conversation import response_text


def _norm(text: str) -> str:
    return " ".join(text.split())


def build_pairs(rollouts: list[dict]) -> tuple[list[dict], dict[str, int]]:
    """Pair each rollout with its prompt's demonstration, dropping pairs whose two sides are identical.

    An identical pair carries no preference and would push the reward model both ways at once.
    """
    pairs, identical = [], 0
    for row in rollouts:
        if _norm(response_text(row["demonstration"])) == _norm(response_text(row["completion"])):
            identical += 1
            continue
        pairs.append({"prompt": row["prompt"], "chosen": row["demonstration"], "rejected": row["completion"]})
    return pairs, {"pairs": len(pairs), "identical_dropped": identical, "rollouts": len(rollouts)}


def pool_pairs(previous: list[dict], new: list[dict], accumulate: bool) -> list[dict]:
    """The pairs the reward model trains on: all iterations' so far, or only this one's."""
    return [*previous, *new] if accumulate else list(new)


def pair_iterate(rollouts_path: Path, previous_pool: Path, accumulate: bool, out: Path) -> dict[str, int]:
    """Write iterate k's pair pool to `out`: its new pairs, after iterate k-1's pool when `accumulate`."""
    new, stats = build_pairs(read_jsonl(rollouts_path, required=("prompt", "demonstration", "completion")))
    previous = read_jsonl(previous_pool, required=("prompt", "chosen", "rejected"), allow_empty=True)  # iterate 0's is empty
    pool = pool_pairs(previous, new, accumulate)
    if not pool:
        raise DataFileError(f"{rollouts_path}: no pairs: every rollout equals its demonstration (sample hotter)")
    stats["pool"] = write_jsonl(out, pool)
    return stats
