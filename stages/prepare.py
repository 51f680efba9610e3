"""prepare: the task's data, a locally trained tokenizer and the initial (random) model."""

import argparse
from pathlib import Path

from demo2reward.artifacts import atomic_dir, read_jsonl, write_json, write_jsonl
from demo2reward.modeling import build_causal_lm, train_tokenizer
from demo2reward.stage import stage
from demo2reward.task import build_task, prompt_text, response_text

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--data", type=Path, required=True, help="task data folder to write")
ap.add_argument("--model", type=Path, required=True, help="initial model folder to write")
ap.add_argument("--pool", type=Path, required=True, help="the empty pair pool that iteration 1 extends")
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("prepare", ("task", "model")) as (params, run):
    with atomic_dir(args.data) as tmp:
        counts = build_task(params.task, params.seed, tmp)
        texts = [
            text
            for name in ("pretrain.jsonl", "train.jsonl")
            for row in read_jsonl(tmp / name)
            for text in (prompt_text(row["prompt"]), response_text(row["completion"]))
        ]
    tokenizer = train_tokenizer(texts)
    with atomic_dir(args.model) as tmp:
        build_causal_lm(params.model, tokenizer, params.seed).save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
    write_jsonl(args.pool, [])
    counts["vocab_size"] = len(tokenizer)
    write_json(args.metrics, counts)
    run.log_metrics(counts)
