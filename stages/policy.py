"""policy@S-T-fromJ: RL against iterate J+1's reward model, KL-penalised to a reference (every IRL track)."""

from demo2reward.core.warm import run_warm

run_warm()  # hand this process to the warm server (torch, TRL and MLflow imported) before it imports anything else

import argparse
from pathlib import Path

from demo2reward.core.params import IRL_TRACKS
from demo2reward.core.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--seed", type=int, required=True, help="training seed (one of params seeds)")
ap.add_argument("--track", choices=IRL_TRACKS, required=True)
ap.add_argument("--k", type=int, required=True)
ap.add_argument("--iterate", type=Path, required=True, help="iterate k's folder: reward/ in, policy/ out")
ap.add_argument("--previous", type=Path, required=True, help="iterate k-1's folder (its policy/)")
ap.add_argument("--sft", type=Path, required=True, help="the SFT policy (the KL reference with kl_reference: sft)")
ap.add_argument("--demos", type=Path, required=True, help="training prompts (the demonstrations' file)")
ap.add_argument("--rollouts", type=Path, required=True, help="iterate k's rollouts (irl_guarded: standardise the RMs)")
ap.add_argument("--reward-metrics", type=Path, required=True, help="iterate k's RM fit (loop.stop reads its fresh accuracy)")
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("policy", ("policy", "loop", "distributed", "vllm"), seed=args.seed) as (params, run):
    from demo2reward.core.artifacts import read_json
    from demo2reward.loop.policy import improve_iterate

    fresh_accuracy = read_json(args.reward_metrics).get("val_accuracy_fresh")
    metrics = improve_iterate(
        args.track, args.k, args.iterate, args.previous, args.sft, args.demos, args.rollouts, params.policy,
        args.seed + args.k, params.loop, fresh_accuracy, run.runtime,
    )  # fmt: skip
    run.record(metrics, args.metrics)
    if decisions := {key: metrics[key] for key in ("k_stop", "gate_accepted") if key in metrics}:
        run.log_pipeline_metrics(decisions, step=args.k, prefix=f"{args.track}/seed_{args.seed}/")
