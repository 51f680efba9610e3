"""pairs@seed-k: demonstration (chosen) vs rollout (rejected), identical pairs dropped, optionally pooled."""

import argparse
from pathlib import Path

from demo2reward.artifacts import read_jsonl, write_json, write_jsonl
from demo2reward.pairs import build_pairs, pool_pairs
from demo2reward.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--seed", type=int, required=True, help="training seed (one of params seeds)")
ap.add_argument("--track", required=True, help="irl or irl_guarded")
ap.add_argument("--k", type=int, required=True)
ap.add_argument("--rollouts", type=Path, required=True)
ap.add_argument("--previous", type=Path, required=True, help="iteration k-1's data folder (iter_0 holds the empty pool)")
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage(f"pairs@s{args.seed}-{args.track}-k{args.k}", ("pairs",), seed=args.seed) as (params, run):
    new, stats = build_pairs(read_jsonl(args.rollouts, required=("prompt", "demonstration", "completion")))
    pool = args.previous / ("pairs.jsonl" if args.k == 1 else f"{args.track}/pairs.jsonl")
    previous = read_jsonl(pool, required=("prompt", "chosen", "rejected"))
    stats["pool"] = write_jsonl(args.out, pool_pairs(previous, new, params.pairs.accumulate))
    write_json(args.metrics, stats)
    run.log_metrics(stats)
    run.log_pipeline_metrics(stats, step=args.k, prefix=f"{args.track}/seed_{args.seed}/pairs/")
