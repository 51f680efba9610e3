"""sft: supervised fine-tuning on the demonstrations; the baseline and the reference model."""

import argparse
from pathlib import Path

from demo2reward.artifacts import read_jsonl, write_json
from demo2reward.stage import stage
from demo2reward.supervised import train_language_model

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--init", type=Path, required=True, help="base model to fine-tune")
ap.add_argument("--demos", type=Path, required=True, help="prompt/completion demonstrations")
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("sft", ("sft",)) as (params, run):
    rows = read_jsonl(args.demos, required=("prompt", "completion"))
    metrics = train_language_model(args.init, rows, params.sft, args.out, params.seed, params.model.max_position_embeddings)
    write_json(args.metrics, metrics)
    run.log_metrics(metrics)
