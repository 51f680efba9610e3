"""report: the table of methods against metrics, the curves, and the headline ratios."""

import argparse
from pathlib import Path

from demo2reward.report import write_report
from demo2reward.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--evals", type=Path, required=True)
ap.add_argument("--answers", type=Path, help="per-prompt answers, for bootstrap confidence intervals")
ap.add_argument("--mtbench", type=Path, help="metrics/mtbench.json, whose scores join Table 1 when enabled")
ap.add_argument("--leaderboard", type=Path, help="metrics/leaderboard.json, likewise")
ap.add_argument("--out", type=Path, required=True)
args = ap.parse_args()

with stage("report", ()) as (params, run):
    summary = write_report(args.evals, args.out, args.answers, args.mtbench, args.leaderboard)
    run.log_metrics(summary)
    run.log_pipeline_metrics(summary, step=params.K, prefix="summary/")
    run.finish_pipeline()
