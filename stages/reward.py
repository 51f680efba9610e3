"""reward@k: fit a Bradley-Terry reward model on the pair pool (TRL RewardTrainer)."""

import argparse
from pathlib import Path

from demo2reward.artifacts import read_jsonl, write_json
from demo2reward.reward import fit_reward_model, reward_init
from demo2reward.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--k", type=int, required=True)
ap.add_argument("--pairs", type=Path, required=True)
ap.add_argument("--sft", type=Path, required=True, help="SFT policy: the initialisation with reward.init=sft")
ap.add_argument("--previous", type=Path, required=True, help="iteration k-1's folder: its reward/ is the warm start")
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage(f"reward@{args.k}", ("reward",)) as (params, run):
    init = reward_init(params.reward.init, args.sft, args.previous)
    pairs = read_jsonl(args.pairs, required=("prompt", "chosen", "rejected"))
    metrics = fit_reward_model(
        init, args.sft, pairs, params.reward, args.out, params.seed + args.k, params.model.max_position_embeddings
    )
    write_json(args.metrics, metrics)
    run.log_metrics(metrics)
    run.log_pipeline_metrics(metrics, step=args.k, prefix="reward/")
