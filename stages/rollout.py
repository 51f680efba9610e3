"""rollout@seed-k: sample the current policy on the demonstration prompts."""

import argparse
from pathlib import Path

from demo2reward.artifacts import read_jsonl, write_jsonl
from demo2reward.modeling import load_policy, load_tokenizer
from demo2reward.policy import start_and_reference
from demo2reward.rollout import rollout_rows
from demo2reward.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--seed", type=int, required=True, help="training seed (one of params seeds)")
ap.add_argument("--track", required=True, help="irl or irl_guarded")
ap.add_argument("--k", type=int, required=True)
ap.add_argument("--previous", type=Path, required=True, help="the track's folder of iteration k-1 (its policy/)")
ap.add_argument("--sft", type=Path, required=True, help="iterate 0, where k = 1 starts")
ap.add_argument("--demos", type=Path, required=True)
ap.add_argument("--out", type=Path, required=True)
args = ap.parse_args()

with stage(f"rollout@s{args.seed}-{args.track}-k{args.k}", ("rollout",), seed=args.seed) as (params, run):
    p = params.rollout
    policy, _ = start_and_reference("previous", args.sft, args.previous, args.k)
    demos = read_jsonl(args.demos, required=("prompt", "completion"))
    rows = rollout_rows(
        load_policy(policy),
        load_tokenizer(policy),
        demos,
        per_prompt=p.per_prompt,
        temperature=p.temperature,
        max_new_tokens=p.max_new_tokens,
        batch_size=p.batch_size,
        seed=args.seed * 1000 + args.k,
    )
    run.log_metrics({"rollouts": write_jsonl(args.out, rows)})
