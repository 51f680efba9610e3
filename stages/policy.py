"""policy@seed-k (and oracle@seed-k): RL against the learned reward (or r* itself), KL-penalised to a reference.

Tracks: `irl` is the paper's method; `irl_guarded` adds the collapse guards of `policy.guards`; `oracle` trains
on the task's true reward r* (the upper bound, synthetic task only).
"""

import argparse
import shutil
from pathlib import Path

from demo2reward.artifacts import atomic_dir, read_jsonl, write_json
from demo2reward.guards import MinOverRewardModels, acceptance_gate
from demo2reward.policy import oracle_update, start_and_reference, update_policy
from demo2reward.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--seed", type=int, required=True, help="training seed (one of params seeds)")
ap.add_argument("--track", choices=("irl", "irl_guarded", "oracle"), required=True)
ap.add_argument("--k", type=int, required=True)
ap.add_argument("--previous", type=Path, required=True, help="the track's folder of iteration k-1 (its policy/)")
ap.add_argument("--sft", type=Path, required=True)
ap.add_argument("--prompts", type=Path, required=True, help="training prompts (the demonstrations' file)")
ap.add_argument("--reward", type=Path, help="learned reward model of iteration k (IRL tracks)")
ap.add_argument("--rollouts", type=Path, help="iteration k's rollouts (irl_guarded: standardise the min-over-RMs reward)")
ap.add_argument("--task", type=Path, help="task folder, for r* (oracle track)")
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

name = f"{'oracle' if args.track == 'oracle' else 'policy'}@s{args.seed}-{args.track}-k{args.k}"
with stage(name, ("policy",), seed=args.seed) as (params, run):
    p = params.policy
    guards = p.guards if args.track == "irl_guarded" else None
    start, reference = start_and_reference(p.kl_reference, args.sft, args.previous, args.k)
    demos = read_jsonl(args.prompts, required=("prompt",))
    prompts = [r["prompt"] for r in demos]
    seed = args.seed + args.k
    if args.track == "oracle":  # r* scaled to unit std on SFT samples; skipped on a real task (no r*)
        metrics = oracle_update(args.task, args.sft, start, reference, prompts, p, args.out, seed, p.guards.gate_prompts)
    else:
        # RMs 1..k of this track: the earlier ones are frozen, for the guards.
        reward_models = [args.previous.parent.parent / f"iter_{j}" / args.track / "reward" for j in range(1, args.k)]
        reward_models.append(args.reward)
        reward = {"reward_model": args.reward}
        if guards and guards.reward_aggregation == "min" and args.k > 1:
            rollouts = read_jsonl(args.rollouts, required=("prompt", "completion"))[: guards.gate_prompts]
            reference_set = [(d["prompt"], d["completion"]) for d in demos[: guards.gate_prompts]]
            reference_set += [(r["prompt"], r["completion"]) for r in rollouts]
            reward = {"reward_func": MinOverRewardModels(reward_models, *map(list, zip(*reference_set, strict=True)))}
        with atomic_dir(args.out) as final:
            candidate = final / "candidate"
            metrics = update_policy(start, reference, prompts, p, candidate, seed, **reward)
            accepted = True
            if guards and guards.acceptance_gate:
                accepted, gate = acceptance_gate(
                    candidate, start, reward_models[:-1], prompts[: guards.gate_prompts], p.max_new_tokens
                )
                metrics.update(gate)
            kept = candidate if accepted else start  # a rejected update carries policy k-1 forward
            for f in kept.iterdir():
                shutil.copy2(f, final / f.name)
            shutil.rmtree(candidate)
    write_json(args.metrics, metrics)
    run.log_metrics(metrics)
    if "gate_accepted" in metrics:
        run.log_pipeline_metrics(
            {"gate_accepted": metrics["gate_accepted"]}, step=args.k, prefix=f"{args.track}/seed_{args.seed}/"
        )
