"""prepare: the task's data and the initial model (a tiny Llama and its trained tokenizer, or a base pointer)."""

from demo2reward.core.warm import run_warm

run_warm()  # hand this process to the warm server (torch, TRL and MLflow imported) before it imports anything else

import argparse
from pathlib import Path

from demo2reward.core.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--data", type=Path, required=True, help="task data folder to write")
ap.add_argument("--model", type=Path, required=True, help="initial model folder to write (a base pointer for a real base)")
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("prepare", ("task", "model")) as (params, run):
    from demo2reward.tasks.prepare import prepare

    run.record(prepare(params, args.data, args.model), args.metrics)
