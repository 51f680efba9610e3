"""leaderboard: the Open LLM Leaderboard v1 tasks through lm-eval for SFT and the final IRL/SPIN iterates."""

from demo2reward.core.warm import run_warm

run_warm()  # hand this process to the warm server (torch, TRL and MLflow imported) before it imports anything else

import argparse
from pathlib import Path

from demo2reward.core.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--models", type=Path, required=True, help="the models/ folder (seed_S/sft, seed_S/<track>/iter_K)")
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("leaderboard", ("leaderboard",)) as (params, run):
    from demo2reward.evaluation.leaderboard import leaderboard_stage

    for name, scores in leaderboard_stage(params, args.models, args.metrics).items():
        run.log_metrics(scores, prefix=f"leaderboard/{name}/")
        run.log_pipeline_metrics({"average": scores["average"]}, step=params.K, prefix=f"leaderboard/{name}/")
