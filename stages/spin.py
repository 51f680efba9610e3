"""spin@seed-k: one SPIN round (DPO: demonstration ≻ sample of iterate k-1, reference = iterate k-1)."""

import argparse
from pathlib import Path

from demo2reward.artifacts import read_jsonl, write_json
from demo2reward.policy import start_and_reference
from demo2reward.spin import spin_pairs, spin_round
from demo2reward.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--seed", type=int, required=True, help="training seed (one of params seeds)")
ap.add_argument("--k", type=int, required=True)
ap.add_argument("--previous", type=Path, required=True, help="SPIN's folder of iteration k-1 (its policy/ is iterate k-1)")
ap.add_argument("--sft", type=Path, required=True, help="iterate 0")
ap.add_argument("--demos", type=Path, required=True)
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage(f"spin@s{args.seed}-k{args.k}", ("spin",), seed=args.seed) as (params, run):
    previous, _ = start_and_reference("previous", args.sft, args.previous, args.k)
    demos = read_jsonl(args.demos, required=("prompt", "completion"))
    pairs, stats = spin_pairs(previous, demos, params.spin, args.seed * 1000 + args.k)
    metrics = {
        **stats,
        **spin_round(previous, pairs, params.spin, args.out, args.seed + args.k, params.model.max_position_embeddings),
    }
    write_json(args.metrics, metrics)
    run.log_metrics(metrics)
