"""sft@S: supervised fine-tuning on the demonstrations; the baseline, the KL reference and iterate 0 of every track."""

from demo2reward.core.warm import run_warm

run_warm()  # hand this process to the warm server (torch, TRL and MLflow imported) before it imports anything else

import argparse
from pathlib import Path

from demo2reward.core.stage import stage

ap = argparse.ArgumentParser(description=__doc__)
ap.add_argument("--seed", type=int, required=True, help="training seed (one of params seeds)")
ap.add_argument("--init", type=Path, required=True, help="base model to fine-tune")
ap.add_argument("--demos", type=Path, required=True, help="prompt/completion demonstrations")
ap.add_argument("--out", type=Path, required=True, help="the SFT policy folder")
ap.add_argument("--pool", type=Path, required=True, help="iterate 0's pair pool (empty), which iteration 1 extends")
ap.add_argument("--metrics", type=Path, required=True)
args = ap.parse_args()

with stage("sft", ("sft", "distributed"), seed=args.seed) as (params, run):
    from demo2reward.loop.sft import sft

    metrics = sft(args.init, args.demos, params.sft, args.out, args.pool, args.seed, params.sft.max_length, run.runtime)
    run.record(metrics, args.metrics)
