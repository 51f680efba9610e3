"""reward@seed-k: fit a Bradley-Terry reward model on the pair pool (TRL RewardTrainer)."""

import argparse
from pathlib import Path

from demo2reward.artifacts import read_jsonl, write_json
from demo2reward.reward import fit_reward_model, reward_init
from demo2reward.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--seed", type=int, required=True, help="training seed (one of params seeds)")
ap.add_argument("--track", required=True, help="irl or irl_guarded")
ap.add_argument("--k", type=int, required=True)
ap.add_argument("--pairs", type=Path, required=True)
ap.add_argument("--sft", type=Path, required=True, help="SFT policy: the initialisation with reward.init=sft")
ap.add_argument("--previous", type=Path, required=True, help="the track's folder of iteration k-1: its reward/ is the warm start")
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage(f"reward@s{args.seed}-{args.track}-k{args.k}", ("reward",), seed=args.seed) as (params, run):
    init = reward_init(params.reward.init, args.sft, args.previous, args.k)
    pairs = read_jsonl(args.pairs, required=("prompt", "chosen", "rejected"))
    metrics = fit_reward_model(
        init, args.sft, pairs, params.reward, args.out, args.seed + args.k, params.model.max_position_embeddings
    )
    write_json(args.metrics, metrics)
    run.log_metrics(metrics)
    run.log_pipeline_metrics(metrics, step=args.k, prefix=f"{args.track}/seed_{args.seed}/reward/")
