"""mtbench: MT-Bench single-answer grading (FastChat prompts, LLM judge) of SFT and the final IRL/SPIN iterates."""

from demo2reward.core.warm import run_warm

run_warm()  # hand this process to the warm server (torch, TRL and MLflow imported) before it imports anything else

import argparse
from pathlib import Path

from demo2reward.core.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--models", type=Path, required=True, help="the models/ folder (seed_S/sft, seed_S/<track>/iter_K)")
ap.add_argument("--out", type=Path, required=True, help="answers and judgments, in FastChat's layout")
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("mtbench", ("mtbench", "vllm")) as (params, run):
    from demo2reward.evaluation.mtbench import mtbench_stage

    for name, scores in mtbench_stage(params, args.models, args.out, args.metrics, run.runtime).items():
        run.log_metrics(scores, prefix=f"mtbench/{name}/")
        run.log_pipeline_metrics({"overall": scores["overall"]}, step=params.K, prefix=f"mtbench/{name}/")
