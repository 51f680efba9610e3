"""evaluate@S-T-fromJ (and evaluate_sft, evaluate_spin, evaluate_oracle): one iterate's policy and its reward on held-out
prompts and held-out preference pairs."""

from demo2reward.core.warm import run_warm

run_warm()  # hand this process to the warm server (torch, TRL and MLflow imported) before it imports anything else

import argparse
from pathlib import Path

from demo2reward.core.params import IRL_TRACKS
from demo2reward.core.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--seed", type=int, required=True, help="training seed (one of params seeds)")
ap.add_argument("--track", required=True, choices=("sft", *IRL_TRACKS, "spin", "oracle"))
ap.add_argument("--k", type=int, required=True, help="iteration (0 for SFT)")
ap.add_argument("--iterate", type=Path, required=True, help="the iterate's folder (its policy/, and reward/ for IRL)")
ap.add_argument("--previous", type=Path, required=True, help="the policy it was trained from (implicit rewards)")
ap.add_argument("--sft", type=Path, required=True, help="the SFT policy (KL)")
ap.add_argument("--task", type=Path, required=True)
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--answers", type=Path, required=True)
args = ap.parse_args()

with stage("evaluate", ("evaluate", "vllm"), seed=args.seed) as (params, run):
    from demo2reward.core.artifacts import repo_root
    from demo2reward.core.iterates import folder
    from demo2reward.evaluation.metrics import evaluate_iterate

    metrics = evaluate_iterate(
        args.track, args.k, args.iterate, folder(args.previous), args.sft, args.task, params.evaluate, args.seed,
        args.answers, repo_root(), run.runtime,
    )  # fmt: skip
    run.record(metrics, args.out, step=args.k, prefix=f"{args.track}/seed_{args.seed}/")
