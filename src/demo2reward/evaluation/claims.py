"""The paper's claims, tested at the final iteration as paired differences with a confidence interval."""

from __future__ import annotations

import numpy as np

from demo2reward.evaluation.results import Aggregated, Evaluations, final_k, paired_difference
from demo2reward.evaluation.statistics import MIN_SEEDS_FOR_VERDICT, seed_interval

# The paper's claims, as (better, worse) at the final iteration.
CLAIMS = (
    ("irl", "spin"),
    ("spin", "sft"),
    ("irl", "sft"),
    ("irl_guarded", "irl"),
    ("hybrid", "prefs_only"),
    ("hybrid", "irl"),
    ("irl", "prefs_only"),
)


CLAIM_METRICS = ("win_rate_vs_demos", "true_reward_mean", "win_rate_vs_demos_llm", "win_rate_vs_demos_rm")


def verdict(d: dict) -> str:
    if len(d["per_seed"]) < MIN_SEEDS_FOR_VERDICT:
        return f"– (needs ≥ {MIN_SEEDS_FOR_VERDICT} seeds)"
    if d["mean"] > 0:
        return "yes" if d["ci"][0] > 0 else "yes, not significant"
    return "no" if d["ci"][1] < 0 else "no, not significant"


def claims(agg: Aggregated, evals: Evaluations, answers) -> list[dict]:
    """The paper's orderings at the final iteration, each a paired difference with a CI."""
    rows = []
    for better, worse in CLAIMS:
        if not (agg.get(better) and agg.get(worse)):
            continue
        a, b = (better, final_k(agg, better)), (worse, final_k(agg, worse))
        for metric in CLAIM_METRICS:
            d = paired_difference(answers, evals, a, b, metric)
            if d:
                rows.append({"better": better, "worse": worse, "metric": metric, **d})
    if agg.get("irl") and agg.get("spin"):  # reward accuracy has no per-prompt answers: paired over seeds
        ka, kb = final_k(agg, "irl"), final_k(agg, "spin")
        ia, sa = evals["irl"][ka], evals["spin"][kb]
        seeds = sorted(set(ia) & set(sa))
        diffs = [
            ia[s]["reward_accuracy"] - sa[s]["reward_accuracy"]
            for s in seeds
            if "reward_accuracy" in ia[s] and "reward_accuracy" in sa[s]
        ]
        if len(diffs) > 1:
            lo, hi = seed_interval(diffs)
            rows.append(
                {
                    "better": "irl",
                    "worse": "spin",
                    "metric": "reward_accuracy",
                    "mean": float(np.mean(diffs)),
                    "ci": [lo, hi],
                    "per_seed": diffs,
                }
            )
    return rows
