"""sft@seed: supervised fine-tuning on the demonstrations; the baseline, the reference and iterate 0."""

import argparse
from pathlib import Path

from demo2reward.artifacts import read_jsonl, write_json, write_jsonl
from demo2reward.stage import stage
from demo2reward.supervised import train_language_model

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--seed", type=int, required=True, help="training seed (one of params seeds)")
ap.add_argument("--init", type=Path, required=True, help="base model to fine-tune")
ap.add_argument("--demos", type=Path, required=True, help="prompt/completion demonstrations")
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--pool", type=Path, required=True, help="iteration 0's pair pool (empty), which iteration 1 extends")
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage(f"sft@s{args.seed}", ("sft",), seed=args.seed) as (params, run):
    rows = read_jsonl(args.demos, required=("prompt", "completion"))
    metrics = train_language_model(args.init, rows, params.sft, args.out, args.seed, params.model.max_position_embeddings)
    write_jsonl(args.pool, [])
    write_json(args.metrics, metrics)
    run.log_metrics(metrics)
