"""pretrain: give the embedded task's base model the habits of its unlabelled corpus (a real base passes through)."""

from demo2reward.core.warm import run_warm

run_warm()  # hand this process to the warm server (torch, TRL and MLflow imported) before it imports anything else

import argparse
from pathlib import Path

from demo2reward.core.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--init", type=Path, required=True)
ap.add_argument("--corpus", type=Path, required=True)
ap.add_argument("--out", type=Path, required=True)
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("pretrain", ("pretrain", "distributed")) as (params, run):
    from demo2reward.loop.sft import pretrain

    metrics = pretrain(args.init, args.corpus, params.pretrain, args.out, params.seed, params.pretrain.max_length, run.runtime)
    run.record(metrics, args.metrics)
