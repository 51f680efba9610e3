"""policy@k (and oracle@k): RL against the learned reward (or r* itself), KL-penalised to a reference."""

import argparse
import shutil
from pathlib import Path

import numpy as np

from demo2reward.artifacts import atomic_dir, read_jsonl, write_json
from demo2reward.guards import MinOverRewardModels, acceptance_gate
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
ap.add_argument("--reward", type=Path, help="learned reward model of iteration k (irl track)")
ap.add_argument("--rollouts", type=Path, help="iteration k's rollouts (irl track: standardise the min-over-RMs reward)")
ap.add_argument("--task", type=Path, help="task folder, for r* (oracle track)")
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage(f"{'policy' if args.track == 'irl' else 'oracle'}@{args.k}", ("policy",)) as (params, run):
    p = params.policy
    start, reference = start_and_reference(args.track, p.kl_reference, args.sft, args.previous)
    demos = read_jsonl(args.prompts, required=("prompt",))
    prompts = [r["prompt"] for r in demos]
    seed = params.seed + args.k
    if args.track == "oracle":
        oracle = Oracle.from_task_dir(args.task)
        # Scale r* like the learned reward: unit std on SFT samples.
        sample = prompts[: p.gate_prompts]
        answers = generate(
            load_policy(args.sft), load_tokenizer(args.sft), sample, max_new_tokens=p.max_new_tokens, temperature=p.temperature
        )
        scale = float(np.std(oracle.reward([prompt_text(x) for x in sample], [a[0] for a in answers]))) or 1.0
        metrics = update_policy(start, reference, prompts, p, args.out, seed, reward_func=oracle_reward_func(oracle, scale))
        metrics["oracle_scale"] = scale
    else:
        reward_models = [args.previous.parent / f"iter_{j}" / "reward" for j in range(1, args.k)] + [args.reward]
        reward = {"reward_model": args.reward}
        if p.reward_aggregation == "min" and args.k > 1:
            rollouts = read_jsonl(args.rollouts, required=("prompt", "completion"))[: p.gate_prompts]
            reference_set = [(d["prompt"], d["completion"]) for d in demos[: p.gate_prompts]]
            reference_set += [(r["prompt"], r["completion"]) for r in rollouts]
            reward = {"reward_func": MinOverRewardModels(reward_models, *map(list, zip(*reference_set, strict=True)))}
        with atomic_dir(args.out) as final:
            candidate = final / "candidate"
            metrics = update_policy(start, reference, prompts, p, candidate, seed, **reward)
            accepted = True
            if p.acceptance_gate:
                accepted, gate = acceptance_gate(
                    candidate, start, reward_models[:-1], prompts[: p.gate_prompts], p.max_new_tokens
                )
                metrics.update(gate)
            kept = candidate if accepted else start  # a rejected update carries policy k-1 forward
            for f in kept.iterdir():
                shutil.copy2(f, final / f.name)
            shutil.rmtree(candidate)
    write_json(args.metrics, metrics)
    run.log_metrics(metrics)
    if "gate_accepted" in metrics:
        run.log_pipeline_metrics({"gate_accepted": metrics["gate_accepted"]}, step=args.k)
