"""oracle@S-oracle-fromJ: the upper bound, the same RL update against the task's gold reward (task.gold_reward)."""

from demo2reward.core.warm import run_warm

run_warm()  # hand this process to the warm server (torch, TRL and MLflow imported) before it imports anything else

import argparse
from pathlib import Path

from demo2reward.core.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--seed", type=int, required=True, help="training seed (one of params seeds)")
ap.add_argument("--k", type=int, required=True)
ap.add_argument("--iterate", type=Path, required=True, help="iterate k's folder (policy/ out)")
ap.add_argument("--previous", type=Path, required=True, help="iterate k-1's folder (its policy/)")
ap.add_argument("--sft", type=Path, required=True, help="the SFT policy")
ap.add_argument("--demos", type=Path, required=True, help="training prompts")
ap.add_argument("--task", type=Path, required=True, help="task folder (task.json names the gold reward)")
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("oracle", ("policy", "distributed", "vllm"), seed=args.seed) as (params, run):
    from demo2reward.loop.oracle import oracle_iterate

    metrics = oracle_iterate(
        args.iterate, args.previous, args.sft, args.demos, args.task, params.policy, args.seed + args.k, run.runtime
    )
    run.record(metrics, args.metrics)
