"""leaderboard: the Open LLM Leaderboard v1 tasks through lm-eval for SFT and the final IRL/SPIN iterates."""

import argparse
from pathlib import Path

from demo2reward.artifacts import write_json
from demo2reward.stage import StageError, stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--models", type=Path, required=True, help="the models/ folder (iter_0/policy, iter_K/policy, iter_K/spin)")
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("leaderboard", ("leaderboard",)) as (params, run):
    p = params.leaderboard
    if not p.enabled:
        write_json(args.metrics, {"enabled": False})
    else:
        from demo2reward.leaderboard import LEADERBOARD_V1, DatasetUnavailableError, run_leaderboard

        final = f"iter_{params.K}"
        where = {
            "sft": args.models / "iter_0" / "policy",
            "irl": args.models / final / "policy",
            "spin": args.models / final / "spin",
        }
        tasks = [tuple(t) for t in p.tasks] if p.tasks else LEADERBOARD_V1
        results = {}
        try:
            for name in p.policies:
                results[name] = run_leaderboard(
                    where[name], tasks, batch_size=p.batch_size, limit=p.limit, include_path=p.include_path
                )
        except DatasetUnavailableError as err:
            raise StageError(str(err)) from None
        version = next(iter(results.values()))["lm_eval_version"]
        scores = {name: {k: v for k, v in r.items() if k != "lm_eval_version"} for name, r in results.items()}
        write_json(args.metrics, {"enabled": True, "lm_eval_version": version, **scores})
        for name, s in scores.items():
            run.log_metrics(s, prefix=f"leaderboard/{name}/")
            run.log_pipeline_metrics({"average": s["average"]}, step=params.K, prefix=f"leaderboard/{name}/")
