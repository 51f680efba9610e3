"""Per-seed trajectories of the IRL tracks over the iterations: does a track help and hold, or collapse (the
collapse guards), and where did adaptive K stop against the best iteration?"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from demo2reward.core.artifacts import read_json
from demo2reward.evaluation.results import Evaluations, paired_difference


def _seed_curve(evals: Evaluations, track: str, seed: int, metric: str) -> dict[int, float]:
    """`metric` per iteration of one track and seed, SFT as iteration 0."""
    sft = evals.get("sft", {}).get(0, {}).get(seed, {})
    curve = {0: sft[metric]} if metric in sft else {}
    by_k = evals[track]
    return curve | {k: by_k[k][seed][metric] for k in sorted(by_k) if metric in by_k[k].get(seed, {})}


def _policy_metrics(train_dir: str | Path | None, track: str, seed: int, ks: Iterable[int], key: str) -> dict[int, dict]:
    """The `policy@…` metrics of iterations `ks` that record `key` (none without `train_dir`)."""
    found = {}
    for k in ks if train_dir else ():
        path = Path(train_dir) / f"seed_{seed}" / f"policy_{track}_{k}.json"
        if path.exists() and key in (m := read_json(path)):
            found[k] = m
    return found


def guard_trajectories(evals: Evaluations, answers, train_dir: str | Path | None, metric: str = "true_reward_mean") -> list[dict]:
    """Per IRL track and seed: does it help (peak > SFT) and then hold, or collapse (final < peak)?

    Both tests are paired per-prompt bootstraps of `metric` within the seed, so "collapses" means the final
    iterate is significantly worse than the track's best, not just noisily lower.
    """
    rows = []
    for track in ("irl", "irl_guarded"):
        by_k = evals.get(track)
        if not by_k:
            continue
        K = max(by_k)  # noqa: N806 - the paper's name
        for seed in sorted(by_k[K]):
            curve = _seed_curve(evals, track, seed, metric)
            if K not in curve:
                continue
            peak = max((k for k in curve if k > 0), key=curve.get)
            helps = paired_difference(answers, evals, (track, peak), ("sft", 0), metric, [seed])
            drop = paired_difference(answers, evals, (track, K), (track, peak), metric, [seed]) if peak != K else None
            gated = _policy_metrics(train_dir, track, seed, sorted(by_k), "gate_accepted")
            gate = [(k, bool(m["gate_accepted"])) for k, m in gated.items()]
            helped = helps is not None and helps["ci"][0] > 0
            collapsed = drop is not None and drop["ci"][1] < 0
            shape = ("helps, then collapses" if collapsed else "helps, then holds") if helped else "does not help"
            rows.append(
                {
                    "track": track,
                    "seed": seed,
                    "curve": curve,
                    "peak": peak,
                    "drop_from_peak": (curve[K] - curve[peak]),
                    "shape": shape,
                    "gate": gate,
                }
            )
    return rows


def adaptive_k(evals: Evaluations, answers, train_dir: str | Path | None, metric: str = "true_reward_mean") -> list[dict]:
    """Per IRL track and seed of a run with `loop.stop` on: where the loop stopped (K_stop, or K if it never did),
    against the iteration with the best `metric`, and the regret of stopping there (paired, within the seed)."""
    rows = []
    for track in ("irl", "irl_guarded"):
        by_k = evals.get(track)
        if not by_k:
            continue
        K = max(by_k)  # noqa: N806 - the paper's name
        for seed in sorted(by_k[K]):
            checks = _policy_metrics(train_dir, track, seed, sorted(by_k), "stopped")
            if not checks:
                continue  # loop.stop was off
            k_stop = next((int(m["k_stop"]) for m in checks.values() if m["stopped"]), K)
            curve = _seed_curve(evals, track, seed, metric)
            best = max(curve, key=curve.get)
            at = {k: ("sft", 0) if k == 0 else (track, k) for k in (best, k_stop, K)}
            regret = paired_difference(answers, evals, at[best], at[k_stop], metric, [seed]) if best != k_stop else None
            rows.append(
                {
                    "track": track,
                    "seed": seed,
                    "k_stop": k_stop,
                    "best": best,
                    "curve": curve,
                    "fresh_accuracy": {k: m["fresh_accuracy"] for k, m in checks.items() if "fresh_accuracy" in m},
                    "regret": curve[best] - curve[k_stop],
                    "regret_ci": regret["ci"] if regret else [0.0, 0.0],
                    "trainings_skipped": 2 * K - min(K, k_stop + 1) - min(K, k_stop),  # RM fits + RL updates
                    "K": K,
                }
            )
    return rows
