"""pairs@S-T-fromJ: demonstration (chosen) vs rollout (rejected), identical pairs dropped, pooled over iterations."""

from demo2reward.core.warm import run_warm

run_warm()  # hand this process to the warm server (torch, TRL and MLflow imported) before it imports anything else

import argparse
from pathlib import Path

from demo2reward.core.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--seed", type=int, required=True, help="training seed (one of params seeds)")
ap.add_argument("--track", required=True)
ap.add_argument("--k", type=int, required=True)
ap.add_argument("--rollouts", type=Path, required=True)
ap.add_argument("--previous", type=Path, required=True, help="iterate k-1's data folder (its pairs.jsonl is the pool so far)")
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("pairs", ("pairs",), seed=args.seed, torch=False) as (params, run):
    from demo2reward.core.iterates import folder
    from demo2reward.loop.pairs import pair_iterate

    stats = pair_iterate(args.rollouts, folder(args.previous) / "pairs.jsonl", params.pairs.accumulate, args.out)
    run.record(stats, args.metrics, step=args.k, prefix=f"{args.track}/seed_{args.seed}/pairs/")
