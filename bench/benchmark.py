"""What do our training wrappers cost over the bare TRL trainers they wrap, and what does a no-op `dvc repro` cost?

Each wrapper is timed side by side with a hand-written bare TRL run of the same trainer, on the same rows and
with the same config, in one process: bare, wrapper, bare, wrapper, ... (`--repeats` pairs), and the median of
each side is kept. The figure that matters is the ratio wrapper/bare, not the seconds: on this 2-core machine
absolute timings swing by up to 4x with whatever else runs, but such swings hit both sides of an adjacent pair
alike, so their ratio is stable where the seconds are not.

Both sides do what it takes to produce the same artifact from the same files: load the model and tokenizer,
build the config and the trainer, train, save. The ratio then measures only what a wrapper adds on top
(atomic output folder, metric collection, and for the reward model its validation pass and score rescaling).
The bare side of a pair runs first, so a one-time cost (lazy imports, allocator warm-up) would count against
it; an untimed warm-up run pays that first unless `--no-warmup`.

Inputs are the outputs of `dvc repro pairs@0-irl-from0` in `--workspace`:
data/task/*.jsonl, models/pretrain, models/seed_0/sft/policy, data/seed_0/irl/iter_1/pairs.jsonl.
The policy bench uses the reward model that the reward bench just fitted.

Results are merged into <workspace>/metrics/bench.json (keys `trainer_overhead`, `noop_repro_s`, `judge` and
`pipeline_<n>_seeds`).

    python bench/benchmark.py                                   # trainer overhead in the repo root
    python bench/benchmark.py --workspace /tmp/ws --n 64 --policy-steps 2 --repeats 1
    python bench/benchmark.py --skip-trainers --noop .          # only the no-op `dvc repro`
    python bench/benchmark.py --skip-trainers --pipeline --seeds 0   # one seed from scratch, in a scratch clone
    python bench/benchmark.py --skip-trainers --pipeline --in-place  # `dvc repro` of the repo itself, timed
    python bench/benchmark.py --skip-trainers --prepare-rows 200000  # `prepare` of your own data at UltraChat's size
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from datasets import Dataset
from trl import RewardConfig, RewardTrainer, RLOOConfig, RLOOTrainer, SFTConfig, SFTTrainer

from demo2reward.core.artifacts import read_json, read_jsonl, write_json
from demo2reward.core.params import Params, PolicyParams, RewardParams, SFTParams, load_params
from demo2reward.core.stage import set_threads_and_seed
from demo2reward.loop.reward import fit_reward_model
from demo2reward.loop.rl import update_policy
from demo2reward.loop.sft import train_language_model
from demo2reward.models.modeling import load_policy, load_reward_model, load_tokenizer
from demo2reward.models.training import trainer_kwargs

REPO_ROOT = Path(__file__).resolve().parent.parent
SFT_POLICY, PAIRS = "models/seed_0/sft/policy", "data/seed_0/irl/iter_1/pairs.jsonl"
REQUIRED_INPUTS = ("data/task/train.jsonl", "models/pretrain", SFT_POLICY, PAIRS)


# --- timing helpers ---------------------------------------------------------------------------------------------------


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call, after collecting the previous run's garbage."""
    gc.collect()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def side_by_side(bare: Callable[[Path], object], wrapper: Callable[[Path], object], repeats: int, scratch: Path) -> dict:
    """Alternate bare and wrapper `repeats` times; each call gets a fresh output folder, removed afterwards."""
    times: dict[str, list[float]] = {"bare": [], "wrapper": []}
    for i in range(repeats):
        for side, fn in (("bare", bare), ("wrapper", wrapper)):
            out = scratch / f"{side}-{i}"
            times[side].append(timed(lambda fn=fn, out=out: fn(out)))
            shutil.rmtree(out, ignore_errors=True)
            print(f"  {side:<7} run {i + 1}/{repeats}: {times[side][-1]:.2f}s", flush=True)
    bare_s, wrapper_s = statistics.median(times["bare"]), statistics.median(times["wrapper"])
    return {"wrapper_s": round(wrapper_s, 3), "bare_s": round(bare_s, 3), "ratio": round(wrapper_s / bare_s, 3)}


# --- bare TRL runs: the same config as the wrapper builds, with nothing around it -------------------------------------


def bare_sft(init: Path, rows: list[dict], p: SFTParams, out: Path, seed: int, max_length: int) -> None:
    """What `train_language_model` does, written directly against `trl.SFTTrainer`."""
    tokenizer = load_tokenizer(init)
    config = SFTConfig(
        **trainer_kwargs(str(out / "trainer"), seed),
        learning_rate=p.learning_rate,
        num_train_epochs=p.epochs,
        per_device_train_batch_size=p.batch_size,
        lr_scheduler_type="linear",
        max_length=max_length,
        completion_only_loss=True,
    )
    trainer = SFTTrainer(model=load_policy(init), args=config, train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    trainer.train()
    trainer.save_model(str(out))


def reward_split(pairs: list[dict], p: RewardParams, seed: int) -> tuple[list[dict], list[dict]]:
    """The validation/training split `fit_reward_model` makes, so that both sides train on the same pairs."""
    shuffled = pairs[:]
    random.Random(seed).shuffle(shuffled)
    n_val = int(len(shuffled) * p.validation_fraction)
    return shuffled[:n_val], shuffled[n_val:]


def bare_reward(init: Path, pairs: list[dict], p: RewardParams, out: Path, seed: int, max_length: int) -> None:
    """What `fit_reward_model` does, written directly against `trl.RewardTrainer`."""
    tokenizer = load_tokenizer(init)
    val, train = reward_split(pairs, p, seed)
    config = RewardConfig(
        **trainer_kwargs(str(out / "trainer"), seed),
        learning_rate=p.learning_rate,
        num_train_epochs=p.epochs,
        per_device_train_batch_size=p.batch_size,
        per_device_eval_batch_size=256,
        lr_scheduler_type="linear",
        max_length=max_length,
        eval_strategy="no",
    )
    trainer = RewardTrainer(
        model=load_reward_model(init, tokenizer),
        args=config,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(val) if val else None,
        processing_class=tokenizer,
    )
    trainer.train()
    if val:
        trainer.evaluate()  # the wrapper logs validation loss/accuracy; a bare run with eval data would too
    trainer.save_model(str(out))


def bare_rloo(start: Path, reward_model: Path, prompts: list[list[dict]], p: PolicyParams, out: Path, seed: int) -> None:
    """What `update_policy` does for RLOO with a reward model, written directly against `trl.RLOOTrainer`."""
    tokenizer = load_tokenizer(start)
    model = load_policy(start)
    config = RLOOConfig(
        **trainer_kwargs(str(out / "trainer"), seed),
        learning_rate=p.learning_rate,
        lr_scheduler_type="constant",
        max_steps=p.steps,
        beta=p.beta,
        temperature=p.temperature,
        max_completion_length=p.max_new_tokens,
        num_generations=p.num_generations,
        per_device_train_batch_size=p.batch_size,
        top_k=0,
    )
    model.config._name_or_path = str(start)  # the KL reference: the start policy, as at iteration 1
    trainer = RLOOTrainer(
        model=model,
        reward_funcs=[load_reward_model(reward_model)],
        args=config,
        train_dataset=Dataset.from_list([{"prompt": x} for x in prompts]),
        processing_class=tokenizer,
        reward_processing_classes=[load_tokenizer(reward_model)],
    )
    trainer.train()
    trainer.save_model(str(out))


# --- the three benches ------------------------------------------------------------------------------------------------


def check_workspace(ws: Path) -> None:
    missing = [rel for rel in REQUIRED_INPUTS if not (ws / rel).exists()]
    if missing:
        sys.exit(f"{ws}: missing {', '.join(missing)}; run `dvc repro pairs@1` there first")


def bench_trainers(ws: Path, params: Params, n: int, policy_steps: int, repeats: int, warmup: bool) -> dict[str, dict]:
    seed, max_length = params.seed, params.sft.max_length
    pretrain, sft_policy = ws / "models/pretrain", ws / SFT_POLICY
    demos = read_jsonl(ws / "data/task/train.jsonl", required=("prompt", "completion"))[:n]
    pairs = read_jsonl(ws / PAIRS, required=("prompt", "chosen", "rejected"))[:n]
    prompts = [row["prompt"] for row in demos]
    policy_p = params.policy.model_copy(update={"optimizer": "rloo", "steps": policy_steps})
    print(f"{len(demos)} demonstrations, {len(pairs)} pairs, {policy_steps} RLOO steps, {repeats} repeat(s)")
    if len(pairs) < 2:
        sys.exit(f"{ws / PAIRS}: fewer than 2 pairs, nothing to fit a reward model on")

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="demo2reward-bench-") as tmp:
        scratch = Path(tmp)
        if warmup:
            print("warm-up (untimed)", flush=True)
            bare_sft(pretrain, demos[: params.sft.batch_size], params.sft, scratch / "warmup", seed, max_length)

        print("sft: train_language_model vs SFTTrainer", flush=True)
        results["sft"] = side_by_side(
            lambda out: bare_sft(pretrain, demos, params.sft, out, seed, max_length),
            lambda out: train_language_model(pretrain, demos, params.sft, out, seed, max_length),
            repeats,
            scratch,
        )

        print("reward: fit_reward_model vs RewardTrainer", flush=True)
        results["reward"] = side_by_side(
            lambda out: bare_reward(sft_policy, pairs, params.reward, out, seed, max_length),
            lambda out: fit_reward_model(sft_policy, sft_policy, pairs, params.reward, out, seed, max_length),
            repeats,
            scratch,
        )

        # The policy needs a standardised reward model, as the pipeline's reward stage writes; fit one, untimed.
        reward_model = scratch / "reward_model"
        fit_reward_model(sft_policy, sft_policy, pairs, params.reward, reward_model, seed, max_length)

        print("policy: update_policy vs RLOOTrainer", flush=True)
        results["policy"] = side_by_side(
            lambda out: bare_rloo(sft_policy, reward_model, prompts, policy_p, out, seed),
            lambda out: update_policy(sft_policy, sft_policy, prompts, policy_p, out, seed, reward_model=reward_model),
            repeats,
            scratch,
        )
    return results


def bench_noop_repro(ws: Path, targets: list[str], repeats: int = 3) -> float:
    """Median seconds of `dvc repro` in a workspace that is already up to date (so that nothing runs)."""
    venv_bin = Path(sys.executable).parent
    dvc = str(venv_bin / "dvc") if (venv_bin / "dvc").exists() else "dvc"
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    status = subprocess.run([dvc, "status", "--quiet", *targets], cwd=ws, env=env)
    if status.returncode != 0:
        what = " ".join(targets) or "the pipeline"
        sys.exit(f"{ws}: {what} is not up to date, so `dvc repro` would run stages; reproduce it first or pass --noop-targets")
    times = []
    for i in range(repeats):
        times.append(timed(lambda: subprocess.run([dvc, "repro", *targets], cwd=ws, env=env, check=True, capture_output=True)))
        print(f"  no-op dvc repro run {i + 1}/{repeats}: {times[-1]:.2f}s", flush=True)
    return round(statistics.median(times), 3)


def lock_rewrite(lock: Path, repeats: int = 3) -> dict:
    """What DVC pays for dvc.lock after every stage it runs: `Lockfile.dump_stages` re-parses the whole file with
    ruamel's pure-Python round-trip loader and dumps it again (dvc/dvcfile.py), so each stage costs time in
    proportion to the lines the lock already holds, and a fresh run's total grows with the square of its stages
    (treeverse/dvc#10629). Timed on a copy, through DVC's own `modify_yaml`; median of `repeats`."""
    from dvc.utils.serialize import modify_yaml

    def rewrite(path: Path) -> None:
        with modify_yaml(str(path)) as data:
            data["stages"] = data.get("stages", {})

    text = lock.read_text()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "dvc.lock"
        copy.write_text(text)
        seconds = statistics.median(timed(lambda: rewrite(copy)) for _ in range(repeats))
        if copy.read_text() != text:
            sys.exit(f"{lock}: DVC's rewrite of the lock changed it; the timing would not be of a no-change rewrite")
    lines = text.count("\n")
    return {"lines": lines, "rewrite_s": round(seconds, 3), "ms_per_1000_lines": round(1000 * seconds / lines * 1000, 1)}


# --- command line -----------------------------------------------------------------------------------------------------


def scratch_copy(dest: Path) -> Path:
    """A fresh git repository holding the pipeline's tracked files, as a user's clone would."""
    for name in ("dvc.yaml", "params.yaml", "stages", "src", ".dvc/config", ".dvcignore", "data/raw"):
        src = REPO_ROOT / name
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / name)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.email=b@b", "-c", "user.name=b", "commit", "-qm", "bench"],
        # Share the repository's DVC cache, so that a later `dvc repro` there restores these results from the run-cache.
        ["dvc", "cache", "dir", "--local", str(REPO_ROOT / ".dvc" / "cache")],
    ):
        subprocess.run(cmd, cwd=dest, check=True, env=env)
    return dest


def bench_pipeline(ws: Path, seeds: list[int] | None = None, fresh: bool = True) -> dict:
    """Wall time and peak RSS of a default `dvc repro`, and each stage's time (from MLflow).

    `fresh`: `ws` is a scratch clone, run with `--no-run-cache`, since the shared cache may already hold these
    stages' results, which must not be restored here. `seeds` overrides params `seeds` there.
    """
    import resource

    import yaml
    from mlflow.tracking import MlflowClient

    if seeds is not None:
        raw = yaml.safe_load((ws / "params.yaml").read_text())
        raw["seeds"] = seeds
        (ws / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    since_ms = int(time.time() * 1000)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    start = time.perf_counter()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    subprocess.run(["dvc", "repro", *(["--no-run-cache"] if fresh else [])], cwd=ws, env=env, check=True, **quiet)
    wall = time.perf_counter() - start
    peak_rss_gib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    exp = client.get_experiment_by_name(load_params(ws / "params.yaml").tracking.experiment)
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`demo2reward.role` = 'stage' AND attributes.start_time >= {since_ms}",
        max_results=5000,
    )
    runs = [r for r in runs if "stage_seconds" in r.data.metrics]
    stages = {r.info.run_name: round(r.data.metrics["stage_seconds"], 2) for r in runs}
    # Where the wall time went besides the stages' own work: their start-up and MLflow set-up (logged by each stage),
    # and DVC's own work, the rest, of which the lock's rewrites are estimated from the final lock.
    startup, mlflow_setup = ({r.info.run_name: r.data.metrics.get(k, 0.0) for r in runs} for k in ("startup_s", "mlflow_setup_s"))
    dvc = round(wall - sum(stages.values()) - sum(startup.values()) - sum(mlflow_setup.values()), 1)
    lock = lock_rewrite(ws / "dvc.lock")
    return {
        "seeds": load_params(ws / "params.yaml").seeds,
        "fresh": fresh,
        "stages_run": len(stages),
        "wall_s": round(wall, 1),
        "peak_rss_gib": round(peak_rss_gib, 3),
        "stage_seconds": dict(sorted(stages.items())),
        "stage_seconds_sum": round(sum(stages.values()), 1),
        "wall_over_stage_seconds": round(wall / max(sum(stages.values()), 1e-9), 2),
        "noop_repro_s": bench_noop_repro(ws, []),
        # The lock grew by one stage's lines after each stage, and its rewrite costs in proportion to its lines:
        # stage i paid about i/n of the final rewrite, (n+1)/2 final rewrites in all.
        "dvc_lock_rewrites_s": round(lock["rewrite_s"] * (len(stages) + 1) / 2, 1),
        "dvc_lock_final": lock,
        "startup_s_sum": round(sum(startup.values()), 1),
        "mlflow_setup_s_sum": round(sum(mlflow_setup.values()), 1),
        "startup_s": {name: round(v, 2) for name, v in sorted(startup.items())},
        "mlflow_setup_s": {name: round(v, 2) for name, v in sorted(mlflow_setup.items())},
        "dvc_s": dvc,
    }


def _stage_runs(ws: Path, since_ms: int) -> list:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    exp = client.get_experiment_by_name(load_params(ws / "params.yaml").tracking.experiment)
    return client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`demo2reward.role` = 'stage' AND attributes.start_time >= {since_ms}",
        max_results=5000,
    )


def bench_stage_overhead(ws: Path, stage: str = "pairs@0-irl-from0", repeats: int = 5) -> dict:
    """End-to-end seconds of `dvc repro -f -s <stage>` for a stage that computes almost nothing, warm and cold, with
    the breakdown: DVC's own work (the rest), interpreter and imports (`startup_s`), MLflow set-up, the stage's work."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = {}
    for mode, warm in (("warm", "1"), ("cold", "0")):
        walls, parts = [], {"startup_s": [], "mlflow_setup_s": [], "stage_seconds": []}
        for i in range(repeats + 1):  # the first warm run may start the server: not counted
            since_ms = int(time.time() * 1000)
            run_env = {**env, "DEMO2REWARD_WARM": warm}
            started = time.perf_counter()
            subprocess.run(["dvc", "repro", "-f", "-s", stage], cwd=ws, env=run_env, check=True, capture_output=True)
            wall = time.perf_counter() - started
            if i == 0:
                continue
            walls.append(wall)
            run = _stage_runs(ws, since_ms)[0]
            for key in parts:
                parts[key].append(run.data.metrics.get(key, 0.0))
        row = {"end_to_end_s": round(statistics.median(walls), 3)}
        row |= {k: round(statistics.median(v), 3) for k, v in parts.items()}
        row["dvc_s"] = round(row["end_to_end_s"] - row["startup_s"] - row["mlflow_setup_s"] - row["stage_seconds"], 3)
        out[mode] = row
        print(f"  {stage} {mode}: {row}", flush=True)
    lock = lock_rewrite(ws / "dvc.lock")
    print(f"  of DVC's part, the rewrite of dvc.lock ({lock['lines']} lines): {lock['rewrite_s']}s", flush=True)
    return {"stage": stage, "repeats": repeats, **out, "dvc_lock": lock}


def bench_parallel_queue(seeds: tuple[int, ...] = (0,)) -> dict:
    """Two one-seed experiments (two task worlds, so that nothing is shared), queued and run with `dvc queue start`:
    one worker (one after the other) against two workers at once, each pair from scratch in its own clone."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    out = {}
    for jobs, worlds in ((1, (101, 102)), (2, (103, 104))):
        with tempfile.TemporaryDirectory(prefix="bench-queue-") as scratch:
            ws = scratch_copy(Path(scratch))
            subprocess.run(["dvc", "cache", "dir", "--local", str(Path(scratch) / "cache")], cwd=ws, check=True, env=env)
            for world in worlds:
                sets = ["-S", f"seed={world}", "-S", f"seeds={list(seeds)}"]
                subprocess.run(["dvc", "exp", "run", "--queue", "-n", f"world-{world}", *sets], cwd=ws, check=True, env=env)
            start = time.perf_counter()
            subprocess.run(["dvc", "queue", "start", "-j", str(jobs)], cwd=ws, check=True, env=env, capture_output=True)
            while any(w in subprocess.run(["dvc", "queue", "status"], cwd=ws, env=env, capture_output=True, text=True).stdout
                      for w in ("Queued", "Running")):  # fmt: skip
                time.sleep(2)
            out[f"jobs_{jobs}_wall_s"] = round(time.perf_counter() - start, 1)
            status = subprocess.run(["dvc", "queue", "status"], cwd=ws, env=env, capture_output=True, text=True).stdout
            out[f"jobs_{jobs}_all_succeeded"] = "Failed" not in status
            print(f"  {jobs} worker(s): {out[f'jobs_{jobs}_wall_s']} s", flush=True)
    out["parallel_over_sequential"] = round(out["jobs_2_wall_s"] / out["jobs_1_wall_s"], 3)
    return out


def _logged_dicts(log: Path) -> list[dict]:
    """The dicts TRL printed to a stage's log: one per logging step, and the summary when `train()` ends."""
    import ast

    return [ast.literal_eval(line) for line in log.read_text().splitlines() if line.startswith("{'")]


def _trainer_summary(log: Path) -> dict:
    """The figures TRL prints when `train()` ends ({'train_runtime': ..., 'train_samples_per_second': ...})."""
    summaries = [d for d in _logged_dicts(log) if "train_runtime" in d]
    if not summaries:
        raise RuntimeError(f"{log}: no trainer summary")
    return {k: float(v) for k, v in summaries[-1].items()}


def _completion_lengths(log: Path) -> list[float]:
    """The mean completion length of each logged RL step (TRL's `completions/mean_length`)."""
    return [float(d["completions/mean_length"]) for d in _logged_dicts(log) if "completions/mean_length" in d]


def bench_processes(ws: Path, processes: tuple[int, ...] = (1, 2)) -> dict:
    """Training throughput of one reward stage and one RL (policy) stage at 1 and at 2 processes (DDP, gloo).

    Seed 0, iteration 1 of the workspace's default run, each stage run as DVC would (cold: no warm server), with
    params.yaml's sizes; throughput is TRL's own (samples/s over `train_runtime`, tokens/s = num_tokens over it).
    """
    stages = {
        "reward": ["stages/reward.py", "--seed", "0", "--track", "irl", "--k", "1",
                   "--pairs", "data/seed_0/irl/iter_1/pairs.jsonl", "--sft", "models/seed_0/sft/policy",
                   "--previous", "models/seed_0/sft", "--iterate", "out/iter_1", "--metrics", "out/reward.json"],
        "policy": ["stages/policy.py", "--seed", "0", "--track", "irl", "--k", "1", "--iterate", "out/iter_1",
                   "--previous", "models/seed_0/sft", "--sft", "models/seed_0/sft/policy", "--demos", "data/task/train.jsonl",
                   "--rollouts", "data/seed_0/irl/iter_1/rollouts.jsonl", "--metrics", "out/policy.json"],
    }  # fmt: skip
    results: dict = {"cores": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-processes-") as scratch:
        repo = scratch_copy(Path(scratch))
        shutil.copytree(REPO_ROOT / "presets", repo / "presets")
        for rel in ("data/task", "data/seed_0/irl/iter_1", "models/seed_0/sft"):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).symlink_to(ws / rel)
        env = {
            **os.environ,
            "DEMO2REWARD_WARM": "0",
            "PYTHONPATH": "src",
            "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
        }
        params = yaml.safe_load((repo / "params.yaml").read_text())
        for n in processes:
            params["distributed"]["num_processes"] = n
            (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
            shutil.rmtree(repo / "out", ignore_errors=True)
            for name, argv in stages.items():
                print(f"{name} at {n} process(es)", flush=True)
                t0 = time.perf_counter()
                subprocess.run([sys.executable, *argv], cwd=repo, env=env, check=True)
                wall = time.perf_counter() - t0
                summary = _trainer_summary(repo / "logs" / f"{name}.log")
                row = {"wall_s": round(wall, 1), "train_runtime_s": summary["train_runtime"],
                       "samples_per_s": summary["train_samples_per_second"]}  # fmt: skip
                if "num_tokens" in summary:
                    row["tokens_per_s"] = round(summary["num_tokens"] / summary["train_runtime"], 1)
                if lengths := _completion_lengths(repo / "logs" / f"{name}.log"):  # RL: the completions it sampled
                    row["completion_tokens_per_s"] = round(summary["train_samples_per_second"] * statistics.mean(lengths), 1)
                results[f"{name}_{n}_processes"] = row
        for name in stages:
            one, two = results[f"{name}_1_processes"], results[f"{name}_2_processes"]
            results[f"{name}_samples_per_s_2_over_1"] = round(two["samples_per_s"] / one["samples_per_s"], 3)
    return results


def bench_judge(pairs: int = 500) -> dict:
    """500 pairwise judgments (1,000 calls) against a local OpenAI-compatible server, then the fully cached rerun.

    The server is the tests' deterministic one (tests/test_judge.py), on 127.0.0.1: this times our client side
    (concurrency, cache, parsing), not a model.
    """
    sys.path.insert(0, str(REPO_ROOT))
    from demo2reward.evaluation.judge import JudgeConfig, PairwiseJudge
    from tests.test_judge import KEY_ENV, MODEL, SECRET, running_server

    os.environ[KEY_ENV] = SECRET
    questions = [f"question {i}?" for i in range(pairs)]
    answers = [f"answer {i} " + "detail " * (i % 3) for i in range(pairs)]
    references = [f"reference {i} " + "detail " * ((i + 1) % 3) for i in range(pairs)]
    with running_server() as srv, tempfile.TemporaryDirectory() as tmp:
        config = JudgeConfig(model=MODEL, base_url=srv.base_url, api_key_env=KEY_ENV, cache_path=Path(tmp) / "judge.sqlite")
        first = timed(lambda: PairwiseJudge(config).win_rates(questions, answers, references))
        requests = srv.chat_requests
        cached = timed(lambda: PairwiseJudge(config).win_rates(questions, answers, references))
        assert srv.chat_requests == requests, "the cached rerun sent requests"
    return {
        "pairs": pairs,
        "calls": 2 * pairs,
        "requests": requests,
        "first_run_s": round(first, 3),
        "cached_rerun_s": round(cached, 4),
    }


ENGLISH = ("the of and to in is that for it with as was on be by this are at from or an have not but they which you one "
           "all were can there their what so if about would will more when no up out into has some")  # fmt: skip


def demonstrations_file(path: Path, rows: int, seed: int = 0) -> Path:
    """`rows` prompt/completion demonstrations of about 1 KB (UltraChat's first turns are ~0.4 KB + ~1 KB)."""
    rng = random.Random(seed)
    words = re.findall(r"\w+", ENGLISH)

    def text(n: int) -> str:
        return " ".join(rng.choice(words) for _ in range(n))

    with path.open("w") as f:
        for i in range(rows):
            row = {"prompt": f"Question {i}: {text(rng.randint(20, 120))}?", "completion": text(rng.randint(60, 250)) + "."}
            f.write(json.dumps(row) + "\n")
    return path


def bench_prepare(rows: int, model: Path, repeats: int = 2) -> dict:
    """`prepare` of the demos task on a `rows`-row JSONL, as a process of its own (no warm server): wall time and
    peak RSS (the kernel's accounting of the finished process), median of `repeats` runs."""
    import resource

    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-prepare-") as scratch:
        root = Path(scratch)
        demos = demonstrations_file(root / "demos.jsonl", rows)
        ws = root / "ws"
        for name in ("dvc.yaml", "stages", "src", ".dvcignore", "data/raw"):
            (ws / name).parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if (REPO_ROOT / name).is_dir() else shutil.copy)(REPO_ROOT / name, ws / name)
        raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
        raw["task"].update(name="demos", demos={**raw["task"]["demos"], "path": str(demos)})
        raw["model"]["name_or_path"] = str(model)
        raw["oracle_tracks"] = []
        for section in ("sft", "reward", "spin"):
            raw[section]["max_length"] = 512
        (ws / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
        env = {**os.environ, "DEMO2REWARD_WARM": "0", "PYTHONPATH": "src", "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'm.db'}"}
        cmd = [sys.executable, "stages/prepare.py", "--data", "data/task", "--model", "models/init", "--metrics", "m.json"]
        for _ in range(repeats):
            shutil.rmtree(ws / "data" / "task", ignore_errors=True)
            shutil.rmtree(ws / "models", ignore_errors=True)
            start = time.perf_counter()
            subprocess.run(cmd, cwd=ws, env=env, check=True, capture_output=True)
            wall = time.perf_counter() - start
            peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far
            runs.append((wall, peak_mb))
        counts = json.loads((ws / "m.json").read_text())
        file_mb = round(demos.stat().st_size / 1e6, 1)
    return {
        "rows": rows,
        "file_mb": file_mb,
        "wall_s": round(statistics.median(w for w, _ in runs), 1),
        "wall_s_runs": [round(w, 1) for w, _ in runs],
        "peak_rss_mb": round(max(m for _, m in runs)),
        "train": counts["train"],
        "heldout": counts["heldout"],
        "length_check_sample": counts.get("length_check_sample", counts["train"]),
        "tokenizer": model.name,
    }


def print_table(results: dict) -> None:
    overhead = results.get("trainer_overhead", {})
    if overhead:
        print(f"\n{'stage':<8} {'bare_s':>8} {'wrapper_s':>10} {'ratio':>7}")
        for name, r in overhead.items():
            print(f"{name:<8} {r['bare_s']:>8.2f} {r['wrapper_s']:>10.2f} {r['ratio']:>7.2f}")
    if "noop_repro_s" in results:
        print(f"\nno-op dvc repro: {results['noop_repro_s']:.2f}s (median of 3)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workspace", type=Path, default=REPO_ROOT, help="a workspace after `dvc repro pairs@1` (default: the repo)")
    ap.add_argument("--n", type=int, default=512, help="demonstrations, pairs and prompts to train on (default 512)")
    ap.add_argument("--policy-steps", type=int, default=20, help="RLOO steps per policy run (default 20)")
    ap.add_argument("--repeats", type=int, default=2, help="bare/wrapper pairs per trainer; medians are reported (default 2)")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the untimed warm-up run")
    ap.add_argument("--skip-trainers", action="store_true", help="do not time the trainers (e.g. only --noop)")
    ap.add_argument("--noop", type=Path, metavar="DIR", help="also time a no-op `dvc repro` in DIR (already reproduced)")
    ap.add_argument(
        "--judge", action="store_true", help="time 500 pairwise judgments against a local server, and the cached rerun"
    )
    ap.add_argument("--pipeline", action="store_true", help="time a full default `dvc repro` in a scratch clone")
    ap.add_argument("--seeds", type=int, nargs="+", help="with --pipeline: the training seeds (default: params.yaml)")
    ap.add_argument("--in-place", action="store_true", help="with --pipeline: run `dvc repro` in --workspace itself")
    ap.add_argument("--noop-targets", nargs="*", default=[], metavar="STAGE", help="stages to repro in DIR (default: all)")
    ap.add_argument("--stage-overhead", type=Path, metavar="DIR", help="time a tiny stage end to end in DIR (reproduced)")
    ap.add_argument("--parallel-queue", action="store_true", help="two queued one-seed experiments: 1 worker vs 2")
    ap.add_argument("--processes", action="store_true", help="reward and RL training throughput at 1 vs 2 processes")
    ap.add_argument("--prepare-rows", type=int, metavar="N", help="time `prepare` of the demos task on an N-row JSONL")
    ap.add_argument("--model", type=Path, default=REPO_ROOT / ".cache" / "smollm2-135m-instruct", help="its base (tokenizer)")
    args = ap.parse_args()
    if args.n < 1 or args.policy_steps < 1 or args.repeats < 1:
        ap.error("--n, --policy-steps and --repeats must be at least 1")

    ws = args.workspace.resolve()
    params = load_params(ws / "params.yaml")
    set_threads_and_seed(2, params.seed)

    results: dict = {}
    if not args.skip_trainers:
        check_workspace(ws)
        results["trainer_overhead"] = bench_trainers(ws, params, args.n, args.policy_steps, args.repeats, args.warmup)
    if args.noop is not None:
        print(f"no-op dvc repro in {args.noop}", flush=True)
        results["noop_repro_s"] = bench_noop_repro(args.noop.resolve(), args.noop_targets)
    if args.stage_overhead is not None:
        results["stage_overhead"] = bench_stage_overhead(args.stage_overhead.resolve())
    if args.parallel_queue:
        results["parallel_queue"] = bench_parallel_queue()
        print(json.dumps(results["parallel_queue"], indent=2))
    if args.processes:
        results["processes"] = bench_processes(ws)
        print(json.dumps(results["processes"], indent=2))
    if args.prepare_rows:
        results["prepare_rows"] = bench_prepare(args.prepare_rows, args.model.resolve(), args.repeats)
        print(json.dumps(results["prepare_rows"], indent=2))
    if args.judge:
        results["judge"] = bench_judge()
        print(json.dumps(results["judge"], indent=2))
    if args.pipeline:
        if args.in_place:
            print(f"dvc repro in {ws}", flush=True)
            timing = bench_pipeline(ws, args.seeds, fresh=False)
        else:
            print("full dvc repro in a scratch clone (about 10 minutes per seed)", flush=True)
            with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as scratch:
                timing = bench_pipeline(scratch_copy(Path(scratch)), args.seeds)
        results[f"pipeline_{len(timing['seeds'])}_seeds"] = timing
        print(json.dumps(timing, indent=2))
    if not results:
        ap.error(
            "nothing to do: --skip-trainers without --noop, --judge, --pipeline, --stage-overhead, --parallel-queue, "
            "--processes, --prepare-rows"
        )

    out = ws / "metrics/bench.json"
    merged = read_json(out) if out.exists() else {}
    merged.update(results)
    write_json(out, merged)
    print_table(results)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
