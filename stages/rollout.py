"""rollout@k: sample the current policy on the demonstration prompts."""

import argparse
from pathlib import Path

from demo2reward.artifacts import read_jsonl, write_jsonl
from demo2reward.modeling import load_policy, load_tokenizer
from demo2reward.rollout import rollout_rows
from demo2reward.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--k", type=int, required=True)
ap.add_argument("--policy", type=Path, required=True, help="the policy of iteration k-1")
ap.add_argument("--demos", type=Path, required=True)
ap.add_argument("--out", type=Path, required=True)
args = ap.parse_args()

with stage(f"rollout@{args.k}", ("rollout",)) as (params, run):
    p = params.rollout
    demos = read_jsonl(args.demos, required=("prompt", "completion"))
    rows = rollout_rows(
        load_policy(args.policy),
        load_tokenizer(args.policy),
        demos,
        per_prompt=p.per_prompt,
        temperature=p.temperature,
        max_new_tokens=p.max_new_tokens,
        batch_size=p.batch_size,
        seed=params.seed * 1000 + args.k,
    )
    run.log_metrics({"rollouts": write_jsonl(args.out, rows)})
