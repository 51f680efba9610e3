"""report: Table 1 over seeds, the paper's claims, the collapse guards, the curves and the headline ratios."""

from demo2reward.core.warm import run_warm

run_warm()  # hand this process to the warm server (torch, TRL and MLflow imported) before it imports anything else

import argparse
from pathlib import Path

from demo2reward.core.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--evals", type=Path, required=True, help="metrics/eval (seed_S/*.json)")
ap.add_argument("--answers", type=Path, help="per-prompt answers (seed_S/*.jsonl), for bootstrap confidence intervals")
ap.add_argument("--train", type=Path, help="metrics/train (seed_S/*.json), for the acceptance gate's decisions")
ap.add_argument("--mtbench", type=Path, help="metrics/mtbench.json, whose scores join Table 1 when enabled")
ap.add_argument("--leaderboard", type=Path, help="metrics/leaderboard.json, likewise")
ap.add_argument("--task", type=Path, help="the prepared task (data/task): its task.json says why an absent metric is absent")
ap.add_argument("--out", type=Path, required=True)
args = ap.parse_args()

with stage("report", (), torch=False) as (params, run):
    from demo2reward.evaluation.report import mirror_report, write_report

    tracks = ("sft", *params.irl_tracks, *params.spin_tracks, *params.oracle_tracks)
    summary, agg = write_report(
        args.evals, args.out, args.answers, args.mtbench, args.leaderboard, args.train,
        seeds=params.seeds, tracks=tracks, max_k=params.K,
        human_pairs=params.reward.human_pairs, human_weight=params.reward.human_weight, task_dir=args.task,
    )  # fmt: skip
    mirror_report(run, summary, agg)
