"""leaderboard: the Open LLM Leaderboard v1 tasks through lm-eval for SFT and the final IRL/SPIN iterates."""

import argparse
from pathlib import Path

from demo2reward.artifacts import write_json
from demo2reward.policy import final_policies
from demo2reward.stage import StageError, stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument(
    "--models", type=Path, required=True, help="the models/ folder (seed_S/iter_0/policy, seed_S/iter_K/{irl,spin}/policy)"
)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("leaderboard", ("leaderboard",)) as (params, run):
    p = params.leaderboard
    if not p.enabled:
        write_json(args.metrics, {"enabled": False})
    else:
        from demo2reward.leaderboard import LEADERBOARD_V1, DatasetUnavailableError, run_leaderboard

        where = final_policies(args.models, params.seeds[0], params.K)  # benchmarks grade the first seed
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
