"""rollout@S-T-fromJ: sample iterate J's policy (of track T, training seed S) on the demonstration prompts."""

from demo2reward.core.warm import run_warm

run_warm()  # hand this process to the warm server (torch, TRL and MLflow imported) before it imports anything else

import argparse
from pathlib import Path

from demo2reward.core.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--seed", type=int, required=True, help="training seed (one of params seeds)")
ap.add_argument("--k", type=int, required=True, help="the iteration these rollouts start")
ap.add_argument("--previous", type=Path, required=True, help="iterate k-1's folder (its policy/)")
ap.add_argument("--demos", type=Path, required=True)
ap.add_argument("--out", type=Path, required=True)
args = ap.parse_args()

with stage("rollout", ("rollout", "vllm"), seed=args.seed) as (params, run):
    from demo2reward.loop.rollout import rollout

    run.record(rollout(args.previous, args.demos, params.rollout, args.out, args.seed * 1000 + args.k, run.runtime))
