"""report: Table 1 over seeds, the paper's claims, the collapse guards, the curves and the headline ratios."""

import argparse
from pathlib import Path

from demo2reward.report import CURVES, final_k, write_report
from demo2reward.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--evals", type=Path, required=True, help="metrics/eval (seed_S/*.json)")
ap.add_argument("--answers", type=Path, help="per-prompt answers (seed_S/*.jsonl), for bootstrap confidence intervals")
ap.add_argument("--train", type=Path, help="metrics/train (seed_S/*.json), for the acceptance gate's decisions")
ap.add_argument("--mtbench", type=Path, help="metrics/mtbench.json, whose scores join Table 1 when enabled")
ap.add_argument("--leaderboard", type=Path, help="metrics/leaderboard.json, likewise")
ap.add_argument("--out", type=Path, required=True)
args = ap.parse_args()

with stage("report", ()) as (params, run):
    summary, agg = write_report(
        args.evals, args.out, args.answers, args.mtbench, args.leaderboard, args.train, seeds=params.seeds, max_k=params.K
    )
    run.log_metrics(summary)
    # Seed-mean curves on the parent run (IRL's unprefixed), so the MLflow UI compares experiments by them.
    for track, by_k in agg.items():
        for k, m in by_k.items():
            means = {c: m[c] for c in (*CURVES, "kl_to_sft", "proxy_reward_mean") if c in m}
            run.log_pipeline_metrics(means, step=k, prefix="" if track in ("sft", "irl") else f"{track}/")
    run.log_pipeline_metrics(summary, step=final_k(agg, "irl") or 0, prefix="summary/")
    run.finish_pipeline()
