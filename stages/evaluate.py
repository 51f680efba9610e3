"""evaluate@seed-…: one policy and its reward on held-out prompts and held-out preference pairs."""

import argparse
from pathlib import Path

from demo2reward.artifacts import read_jsonl, write_json, write_jsonl
from demo2reward.evaluation import build_judge, evaluate_policy
from demo2reward.judge import JudgeError
from demo2reward.policy import start_and_reference
from demo2reward.stage import StageError, stage
from demo2reward.task import Oracle
from demo2reward.tracking import repo_root

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--seed", type=int, required=True, help="training seed (one of params seeds)")
ap.add_argument("--track", required=True, choices=("sft", "irl", "irl_guarded", "spin", "oracle"))
ap.add_argument("--k", type=int, required=True, help="iteration (0 for SFT)")
ap.add_argument("--policy", type=Path, required=True)
ap.add_argument("--sft", type=Path, required=True)
ap.add_argument("--task", type=Path, required=True)
ap.add_argument("--reward", type=Path, help="the learned reward model to score")
ap.add_argument("--implicit-reference", type=Path, help="score the implicit reward log π − log π_ref instead")
ap.add_argument(
    "--previous", type=Path, help="SPIN: the track's folder of iteration k-1, whose iterate is the implicit reference"
)
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--answers", type=Path, required=True)
args = ap.parse_args()

with stage(f"evaluate@s{args.seed}-{args.track}-k{args.k}", ("evaluate",), seed=args.seed) as (params, run):
    try:  # a missing key or an unreachable endpoint fails here, before any generation
        judge = build_judge(params.evaluate, repo_root())
    except JudgeError as err:
        raise StageError(str(err)) from None
    if args.previous:  # SPIN's implicit reward β·log(π_k / π_{k-1}); β does not change its ranking
        args.implicit_reference, _ = start_and_reference("previous", args.sft, args.previous, args.k)
    metrics, answers = evaluate_policy(
        args.policy,
        args.sft,
        read_jsonl(args.task / "heldout.jsonl", required=("prompt", "completion")),
        read_jsonl(args.task / "heldout_prefs.jsonl", required=("prompt", "chosen", "rejected")),
        Oracle.load_optional(args.task),  # None on a real task: no r* metrics
        params.evaluate,
        args.seed,
        reward_model_path=args.reward,
        implicit_reference_path=args.implicit_reference,
        judge=judge,
    )
    metrics["iteration"] = args.k
    metrics["seed"] = args.seed
    write_jsonl(args.answers, answers)
    write_json(args.out, metrics)
    run.log_metrics(metrics)
    run.log_pipeline_metrics(metrics, step=args.k, prefix=f"{args.track}/seed_{args.seed}/")
