"""spin@k: one SPIN round (DPO: demonstration ≻ sample of iterate k-1, reference = iterate k-1)."""

import argparse
from pathlib import Path

from demo2reward.artifacts import read_jsonl, write_json
from demo2reward.policy import start_and_reference
from demo2reward.spin import spin_pairs, spin_round
from demo2reward.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--k", type=int, required=True)
ap.add_argument("--previous", type=Path, required=True, help="iteration k-1's folder (its spin/ is iterate k-1)")
ap.add_argument("--sft", type=Path, required=True, help="iterate 0")
ap.add_argument("--demos", type=Path, required=True)
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage(f"spin@{args.k}", ("spin",)) as (params, run):
    previous, _ = start_and_reference("spin", "previous", args.sft, args.previous)
    demos = read_jsonl(args.demos, required=("prompt", "completion"))
    pairs, stats = spin_pairs(previous, demos, params.spin, params.seed * 1000 + args.k)
    metrics = {
        **stats,
        **spin_round(previous, pairs, params.spin, args.out, params.seed + args.k, params.model.max_position_embeddings),
    }
    write_json(args.metrics, metrics)
    run.log_metrics(metrics)
