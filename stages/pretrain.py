"""pretrain: give the embedded task's base model the habits of its unlabelled corpus.

A real task writes an empty corpus: its base model is already pretrained, so the stage passes the initial
model folder (a base pointer of a few MB, not the weights) through unchanged.
"""

import argparse
from pathlib import Path

from demo2reward.artifacts import read_jsonl, write_json
from demo2reward.stage import stage
from demo2reward.supervised import pass_through, train_language_model

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--init", type=Path, required=True)
ap.add_argument("--corpus", type=Path, required=True)
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("pretrain", ("pretrain",)) as (params, run):
    rows = read_jsonl(args.corpus, required=("prompt", "completion"))
    if not rows:
        metrics = pass_through(args.init, args.out)
    else:
        metrics = train_language_model(
            args.init, rows, params.pretrain, args.out, params.seed, params.model.max_position_embeddings, completion_only=False
        )
    write_json(args.metrics, metrics)
    run.log_metrics(metrics)
