"""reward@S-T-fromJ: fit iterate J+1's Bradley-Terry reward model on the pair pool (TRL RewardTrainer)."""

from demo2reward.core.warm import run_warm

run_warm()  # hand this process to the warm server (torch, TRL and MLflow imported) before it imports anything else

import argparse
from pathlib import Path

from demo2reward.core.params import IRL_TRACKS
from demo2reward.core.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--seed", type=int, required=True, help="training seed (one of params seeds)")
ap.add_argument("--track", choices=IRL_TRACKS, required=True, help="what the RM fits on (src/demo2reward/loop/reward.py)")
ap.add_argument("--k", type=int, required=True)
ap.add_argument("--pairs", type=Path, required=True)
ap.add_argument("--rollouts", type=Path, required=True, help="iterate k's rollouts: which pairs of the pool are fresh")
ap.add_argument("--human", type=Path, required=True, help="the task's human_prefs.jsonl (hybrid, prefs_only)")
ap.add_argument("--sft", type=Path, required=True, help="the SFT policy: the initialisation with reward.init=sft")
ap.add_argument("--previous", type=Path, required=True, help="iterate k-1's folder: its reward/ is the warm start")
ap.add_argument("--iterate", type=Path, required=True, help="iterate k's folder, to write reward/ in")
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("reward", ("reward", "distributed"), seed=args.seed) as (params, run):
    from demo2reward.loop.reward import reward_iterate

    metrics = reward_iterate(
        args.track, args.iterate, args.k, args.previous, args.sft, args.pairs, args.rollouts, args.human, params.reward,
        args.seed + args.k, params.reward.max_length, run.runtime,
    )  # fmt: skip
    run.record(metrics, args.metrics, step=args.k, prefix=f"{args.track}/seed_{args.seed}/reward/")
