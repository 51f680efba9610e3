"""mtbench: MT-Bench single-answer grading (FastChat prompts, LLM judge) of SFT and the final IRL/SPIN iterates."""

import argparse
from pathlib import Path

from demo2reward.artifacts import atomic_dir, write_json
from demo2reward.evaluation import judge_config
from demo2reward.judge import JudgeError
from demo2reward.policy import final_policies
from demo2reward.stage import StageError, stage
from demo2reward.tracking import repo_root

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument(
    "--models", type=Path, required=True, help="the models/ folder (seed_S/iter_0/policy, seed_S/iter_K/{irl,spin}/policy)"
)
ap.add_argument("--out", type=Path, required=True, help="answers and judgments, in FastChat's layout")
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("mtbench", ("mtbench",)) as (params, run):
    p = params.mtbench
    with atomic_dir(args.out) as out:
        if not p.enabled:
            (out / "DISABLED").write_text("mtbench.enabled is false in params.yaml\n")
            write_json(args.metrics, {"enabled": False})
        else:
            from demo2reward.mtbench import MTBenchDataError, fetch_mtbench_data, run_mtbench

            where = final_policies(args.models, params.seeds[0], params.K)  # benchmarks grade the first seed
            try:
                data_dir = Path(p.data_dir) if p.data_dir else fetch_mtbench_data(repo_root() / ".cache" / "mtbench")
                scores = run_mtbench(
                    {name: where[name] for name in p.policies},
                    data_dir,
                    judge_config(params.evaluate, repo_root(), grading_max_tokens=p.judge_max_tokens),
                    p.max_new_tokens,
                    p.batch_size,
                    seed=params.seeds[0],
                    out_dir=out,
                )
            except (JudgeError, MTBenchDataError) as err:
                raise StageError(str(err)) from None
            write_json(args.metrics, {"enabled": True, **scores})
            for name, s in scores.items():
                run.log_metrics(s, prefix=f"mtbench/{name}/")
                run.log_pipeline_metrics({"overall": s["overall"]}, step=params.K, prefix=f"mtbench/{name}/")
