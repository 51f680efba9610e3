"""spin@S-fromJ: one SPIN round (DPO: demonstration ≻ a sample of iterate J, reference = iterate J)."""

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
ap.add_argument("--demos", type=Path, required=True)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("spin", ("spin", "distributed", "vllm"), seed=args.seed) as (params, run):
    from demo2reward.loop.spin import spin_iterate

    metrics = spin_iterate(
        args.iterate, args.previous, args.demos, params.spin, args.seed * 1000 + args.k, args.seed + args.k,
        params.spin.max_length, run.runtime,
    )  # fmt: skip
    run.record(metrics, args.metrics)
