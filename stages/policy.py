"""policy@k (and oracle@k): RL against the learned reward (or r* itself), KL-penalised to a reference."""

import argparse
from pathlib import Path

import numpy as np

from demo2reward.artifacts import read_jsonl, write_json
from demo2reward.modeling import load_policy, load_tokenizer
from demo2reward.policy import oracle_reward_func, start_and_reference, update_policy
from demo2reward.rollout import generate
from demo2reward.stage import stage
from demo2reward.task import Oracle, prompt_text

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--k", type=int, required=True)
ap.add_argument("--track", choices=("irl", "oracle"), default="irl")
ap.add_argument("--previous", type=Path, required=True, help="iteration k-1's folder (its policy/ or oracle/)")
ap.add_argument("--sft", type=Path, required=True)
ap.add_argument("--prompts", type=Path, required=True, help="training prompts (the demonstrations' file)")
ap.add_argument("--reward", type=Path, help="learned reward model (irl track)")
ap.add_argument("--task", type=Path, help="task folder, for r* (oracle track)")
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage(f"{'policy' if args.track == 'irl' else 'oracle'}@{args.k}", ("policy",)) as (params, run):
    p = params.policy
    start, reference = start_and_reference(args.track, p.kl_reference, args.sft, args.previous)
    prompts = [r["prompt"] for r in read_jsonl(args.prompts, required=("prompt",))]
    if args.track == "irl":
        metrics = update_policy(start, reference, prompts, p, args.out, params.seed + args.k, reward_model=args.reward)
    else:
        oracle = Oracle.from_task_dir(args.task)
        # Scale r* like the learned reward: unit std on SFT samples.
        sft = load_policy(args.sft)
        samples = generate(
            sft,
            load_tokenizer(args.sft),
            prompts[:256],
            max_new_tokens=p.max_new_tokens,
            temperature=p.temperature,
            seed=params.seed,
        )
        scale = float(np.std(oracle.reward([prompt_text(x) for x in prompts[:256]], [s[0] for s in samples]))) or 1.0
        metrics = update_policy(
            start, reference, prompts, p, args.out, params.seed + args.k, reward_func=oracle_reward_func(oracle, scale)
        )
        metrics["oracle_scale"] = scale
    write_json(args.metrics, metrics)
    run.log_metrics(metrics)
