"""pairs@k: demonstration (chosen) vs rollout (rejected), identical pairs dropped, optionally pooled."""

import argparse
from pathlib import Path

from demo2reward.artifacts import read_jsonl, write_json, write_jsonl
from demo2reward.pairs import build_pairs, pool_pairs
from demo2reward.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--k", type=int, required=True)
ap.add_argument("--rollouts", type=Path, required=True)
ap.add_argument("--previous", type=Path, required=True, help="the pair pool of iteration k-1")
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage(f"pairs@{args.k}", ("pairs",)) as (params, run):
    new, stats = build_pairs(read_jsonl(args.rollouts, required=("prompt", "demonstration", "completion")))
    previous = read_jsonl(args.previous, required=("prompt", "chosen", "rejected"))
    stats["pool"] = write_jsonl(args.out, pool_pairs(previous, new, params.pairs.accumulate))
    write_json(args.metrics, stats)
    run.log_metrics(stats)
    run.log_pipeline_metrics(stats, step=args.k, prefix="pairs/")
