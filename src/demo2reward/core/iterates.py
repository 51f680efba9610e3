"""Where the iterates live. Each track has its own chain of iterate folders, so a stage of track T depends only
on T's previous iterate, and an ablation of one track reruns that track alone:

    models/seed_S/sft/policy                      iterate 0 of every track (SFT)
    models/seed_S/<track>/iter_k/policy, reward   iterate k of <track> (reward: IRL tracks only)
    data/seed_S/sft/pairs.jsonl                   iterate 0's pair pool (empty)
    data/seed_S/<track>/iter_k/rollouts.jsonl, pairs.jsonl

`dvc.yaml` names iterate k-1 as `<track>/${item.from.prev}`, where `prev` is `../sft` for k = 1 and `iter_{k-1}`
after, so that the path of iterate 0 is SFT's folder and no weights are copied.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

STOPPED = "STOPPED.json"  # in a policy folder: the loop stopped (adaptive K); this is policy K_stop, carried forward


def folder(path: str | Path) -> Path:
    """A path from dvc.yaml with its `..` resolved textually (`irl/../sft` is SFT's folder even before `irl/` exists)."""
    return Path(os.path.normpath(path))


def policy(iterate: str | Path) -> Path:
    return folder(iterate) / "policy"


def reward(iterate: str | Path) -> Path:
    return folder(iterate) / "reward"


def earlier_reward_models(iterate: str | Path, k: int) -> list[Path]:
    """The reward models of iterates 1..k-1 of the same track as `iterate` (iterate k's folder)."""
    track = folder(iterate).parent
    return [track / f"iter_{j}" / "reward" for j in range(1, k)]


def start_and_reference(kl_reference: str, sft_policy: Path, previous: Path) -> tuple[Path, Path]:
    """Policy k starts from iterate k-1's policy; its KL reference is the SFT policy or that start."""
    start = policy(previous)
    return start, (Path(sft_policy) if kl_reference == "sft" else start)


def final_policies(models: Path, seed: int, K: int) -> dict[str, Path]:  # noqa: N803 - the paper's name
    """SFT and the final (iteration K) IRL and SPIN iterates of one training seed, for the benchmarks."""
    return {
        "sft": models / f"seed_{seed}" / "sft" / "policy",
        "irl": models / f"seed_{seed}" / "irl" / f"iter_{K}" / "policy",
        "spin": models / f"seed_{seed}" / "spin" / f"iter_{K}" / "policy",
    }


def stopped_at(iterate: str | Path) -> int | None:
    """K_stop when `iterate`'s policy is a carried-forward one (the loop stopped at or before it), else None."""
    marker = policy(iterate) / STOPPED
    return int(json.loads(marker.read_text())["k_stop"]) if marker.exists() else None


def carry_forward(source: Path, out: Path, k_stop: int | None = None) -> None:
    """Write `out` as a copy of the model folder `source`; with `k_stop`, marked as the stopped loop's final policy."""
    from demo2reward.core.artifacts import atomic_dir

    with atomic_dir(out, manifest=True) as tmp:
        for f in Path(source).iterdir():
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        if k_stop is not None:
            (tmp / STOPPED).write_text(json.dumps({"k_stop": k_stop}) + "\n")
