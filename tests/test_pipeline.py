"""End to end: `dvc repro` of the whole pipeline at micro sizes in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, copy_repo, wait_for_dvc_queue

pytestmark = pytest.mark.slow

EVAL_KEYS = (
    "win_rate_vs_demos",
    "true_reward_mean",
    "true_reward_mean_sampled",
    "reward_accuracy",
    "reward_accuracy_policy_pairs",
    "kl_to_sft",
    "response_length_mean",
)


def _run(args, cwd, env, check=True):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = tmp_path_factory.mktemp("repo")
    from tests.conftest import merged_params

    copy_repo(ws, merged_params(yaml.safe_load((ROOT / "tests" / "micro_params.yaml").read_text())))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DVC_EXP_NAME", None)
    _run(["git", "init", "-q"], ws, env)
    _run(["git", "add", "-A"], ws, env)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], ws, env)
    repro = _run(["dvc", "repro"], ws, env)
    return ws, env, repro


SEEDS, K = (0, 1), 2
TRACKS = ("irl", "irl_guarded", "spin", "oracle")


def test_every_metrics_file_is_written(workspace):
    ws, _, _ = workspace
    for seed in SEEDS:
        for name in ("sft", *(f"{t}_{k}" for t in TRACKS for k in range(1, K + 1))):
            m = json.loads((ws / "metrics" / "eval" / f"seed_{seed}" / f"{name}.json").read_text())
            keys = EVAL_KEYS if not name.startswith("oracle") else tuple(k for k in EVAL_KEYS if "reward_accuracy" not in k)
            for key in keys:
                assert isinstance(m[key], float), (seed, name, key)
            assert 0 <= m["win_rate_vs_demos"] <= 1 and m["seed"] == seed
        assert "proxy_reward_mean" in json.loads((ws / f"metrics/eval/seed_{seed}/irl_1.json").read_text())
        for track in ("irl", "irl_guarded"):
            pools = []
            for k in range(1, K + 1):
                pairs = json.loads((ws / f"metrics/pairs/seed_{seed}/{track}_{k}.json").read_text())
                assert pairs["pairs"] + pairs["identical_dropped"] == pairs["rollouts"] > 0
                pools.append(pairs["pool"])
            assert pools[1] > pools[0]  # pairs accumulate by default
            assert (ws / f"models/seed_{seed}/{track}/iter_{K}/policy/config.json").exists()  # save_pretrained layout
        gate = json.loads((ws / f"metrics/train/seed_{seed}/policy_irl_guarded_2.json").read_text())
        assert gate["gate_accepted"] in (0.0, 1.0)
    # The two seeds are different runs, not copies.
    assert (ws / "metrics/eval/seed_0/irl_2.json").read_text() != (ws / "metrics/eval/seed_1/irl_2.json").read_text()


def test_report_has_every_row_and_figure_over_two_seeds(workspace):
    ws, _, _ = workspace
    report = (ws / "metrics/report.md").read_text()
    assert "(mean over 2 seeds)" in report
    for label in ("IRL", "IRL + guards", "SPIN", "Oracle (r*)"):
        final_rows = (f"| {label} final (k={K}) |", f"| {label} final = best (k={K}) |")
        assert any(row in report for row in final_rows), label
        assert all(f"| {label} k={k} |" in report for k in range(1, K + 1))
    for claim in ("| IRL > SPIN | win_rate_vs_demos |", "| SPIN > SFT | true_reward_mean |", "| IRL > SPIN | reward_accuracy |"):
        assert claim in report
    guards = report.split("## Collapse guards")[1].split("## Every iteration")[0]
    assert all(f"| {label} | {seed} |" in guards for label in ("IRL", "IRL + guards") for seed in SEEDS)
    for png in ("curves.png", "overoptimisation.png", "guards.png"):
        assert (ws / "metrics/plots" / png).read_bytes()[:4] == b"\x89PNG"
    for track in TRACKS:
        curve = json.loads((ws / f"metrics/curves/{track}.json").read_text())
        assert [p["iteration"] for p in curve] == list(range(K + 1))
    summary = json.loads((ws / "metrics/summary.json").read_text())
    assert summary["seeds"] == 2 and {"irl_acc", "irl_win", "spin_win", "sft_true"} <= set(summary)
    assert "irl_minus_spin_win_rate_vs_demos" in json.loads((ws / "metrics/summary_detail.json").read_text())


DVC_SAYS = ("Running stage ", "> ", "Updating lock file", "Generating lock file", "Use `dvc push`", "To track the changes",
            "\tgit add", "To enable auto staging", "\tdvc config core.autostage", "WARNING: ")  # fmt: skip


def test_the_console_is_one_line_per_stage(workspace):
    """Beyond DVC's own lines, each stage prints one line with its key figures and [i/N, elapsed, ETA]."""
    import re

    _, _, repro = workspace
    lines = (repro.stdout + repro.stderr).splitlines()
    ours = [line for line in lines if line.strip() and not line.startswith(DVC_SAYS)]
    assert max(map(len, ours)) <= 200  # DVC's own lines echo commands (up to 340 characters) and `git add` hints
    ran = [line.removeprefix("Running stage '").removesuffix("':") for line in lines if line.startswith("Running stage ")]
    assert len(ours) == len(ran), "\n".join(ours[:40])
    assert [line.split(":")[0] for line in ours] == ran
    assert ran[0] == "check_params" and ours[0].endswith("is valid")  # it runs before MLflow: no progress
    progress = [re.search(r"\[(\d+)/(\d+), [\d:]+, ETA [\d:]+\]$", line) for line in ours[1:]]
    assert all(progress), [line for line, p in zip(ours[1:], progress, strict=True) if not p][:5]
    assert {int(p[2]) for p in progress} == {len(ran) - 1} and [int(p[1]) for p in progress] == list(range(1, len(ran)))


def test_mlflow_has_one_parent_with_a_child_per_stage(workspace):
    ws, _, _ = workspace
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    exp = client.get_experiment_by_name("demo2reward")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    stages = {r.info.run_name for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert {
        "prepare",
        "pretrain",
        "sft@1",
        "rollout@0-irl-from0",
        "pairs@1-irl_guarded-from1",
        "reward@0-irl-from1",
        "policy@1-irl_guarded-from1",
        "oracle@0-oracle-from1",
        "spin@1-spin-from1",
        "evaluate_spin@1-spin-from1",
        "evaluate_oracle@0-oracle-from1",
        "report",
    } <= stages
    steps = [m.step for m in client.get_metric_history(parent.info.run_id, "win_rate_vs_demos")]
    assert sorted(steps) == [0, 1, 2]  # seed means: SFT at 0, then IRL per iteration
    gate = [m.step for m in client.get_metric_history(parent.info.run_id, "irl_guarded/seed_1/gate_accepted")]
    assert sorted(gate) == [1, 2]
    rm = next(r for r in runs if r.info.run_name == "reward@0-irl-from0")
    assert {"train_loss", "val_accuracy", "val_loss"} <= set(rm.data.metrics)
    assert rm.data.params["reward.init"] == "sft" and rm.data.params["seed"] == "0"


def test_noop_repro_and_dvc_tooling(workspace):
    ws, env, _ = workspace
    assert "up to date" in _run(["dvc", "status"], ws, env).stdout
    dag = _run(["dvc", "dag", "--md"], ws, env).stdout
    assert "policy@1-irl_guarded-from1" in dag and "rollout@0-irl-from0" in dag
    # Only the headline summary is a DVC metric, so `dvc metrics show` and `dvc exp show` stay readable.
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], ws, env).stdout)
    assert list(shown[""]["data"]) == ["metrics/summary.json"]


ENV_WATCH = """
import os, threading
_put, _unset = os.putenv, os.unsetenv
def _check(key):
    others = sorted(t.name for t in threading.enumerate() if t.name not in ("MainThread", "tqdm_monitor"))
    if others:
        with open(os.environ["ENV_WATCH_LOG"], "a") as f:
            f.write(f"{key!r} changed while {others} ran\\n")
os.putenv = lambda k, v: (_check(k), _put(k, v))[1]
os.unsetenv = lambda k: (_check(k), _unset(k))[1]
"""


def test_no_library_thread_runs_while_the_environment_is_rewritten(workspace, tmp_path):
    # accelerate clears and restores os.environ whenever a Trainer is built; a thread calling getenv meanwhile
    # (MLflow's and huggingface_hub's telemetry did) can segfault the stage. Watch every setenv of one RL stage.
    ws, env, _ = workspace
    (tmp_path / "sitecustomize.py").write_text(ENV_WATCH)
    log = tmp_path / "watch.log"
    run_env = {
        **env,
        "DEMO2REWARD_WARM": "0",
        "PYTHONPATH": f"src{os.pathsep}{tmp_path}",
        "ENV_WATCH_LOG": str(log),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    args = [
        "--seed",
        "0",
        "--k",
        "1",
        "--iterate",
        str(tmp_path / "iter_1"),
        "--previous",
        "models/seed_0/sft",
        "--sft",
        "models/seed_0/sft/policy",
        "--demos",
        "data/task/train.jsonl",
        "--task",
        "data/task",
        "--metrics",
        str(tmp_path / "oracle.json"),
    ]
    _run([sys.executable, "stages/oracle.py", *args], ws, run_env)
    assert (tmp_path / "oracle.json").exists()
    assert not log.exists(), log.read_text()[:2000]


TRAINING_STAGES = ("pretrain", "sft@0", "reward@0-irl-from0", "policy@0-irl-from0", "spin@0-spin-from0", "oracle@0-oracle-from0")


def test_training_stages_run_as_two_processes_and_agree_with_one(workspace, tmp_path):
    """distributed.num_processes: 2 on the CPU: every training stage runs under `accelerate launch` (DDP, gloo).

    Tolerance, against the one-process run of the same seed and iteration: the supervised trainers see the same
    global batches (per device x 2 ranks), so their losses agree within 1% (rank 0 logs its half of each batch) and
    the RM's validation accuracy within 0.02. RL samples its completions per rank, so the RL iterates are held to the
    evaluation's scale at micro sizes (16 prompts, 2 steps): true reward within 1.0, win rate within 0.25.
    """
    ws, env, _ = workspace
    repo = tmp_path / "repo"
    repo.mkdir()
    copy_repo(repo, extra=("presets",))
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params.update(seeds=[0], iterations=params["iterations"][:1])
    params["distributed"] = {"num_processes": 2, "config_file": "presets/accelerate/multi_gpu.yaml"}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], repo, env)
    _run(["dvc", "repro"], repo, env)

    for name in TRAINING_STAGES:  # rank 1 ran (its own log), rank 0 wrote
        assert (repo / "logs" / f"{name}.rank1.log").exists(), name
    assert not list((repo / ".tmp").glob("*")), "a rank left scratch behind"

    def metrics(root: Path, rel: str) -> dict:
        return json.loads((root / "metrics" / rel).read_text())

    for rel in ("train/pretrain.json", "train/seed_0/sft.json", "train/seed_0/reward_irl_1.json", "train/seed_0/spin_1.json"):
        one, two = metrics(ws, rel), metrics(repo, rel)
        assert two["train_loss"] == pytest.approx(one["train_loss"], rel=0.01), rel
    assert metrics(repo, "train/seed_0/reward_irl_1.json")["val_accuracy"] == pytest.approx(
        metrics(ws, "train/seed_0/reward_irl_1.json")["val_accuracy"], abs=0.02
    )
    assert metrics(repo, "eval/seed_0/sft.json") == metrics(ws, "eval/seed_0/sft.json")
    for name in ("irl_1", "irl_guarded_1", "spin_1", "oracle_1"):  # the evaluation loaded every 2-process model
        one, two = metrics(ws, f"eval/seed_0/{name}.json"), metrics(repo, f"eval/seed_0/{name}.json")
        assert set(one) == set(two)
        assert abs(two["true_reward_mean"] - one["true_reward_mean"]) <= 1.0, name
        assert abs(two["win_rate_vs_demos"] - one["win_rate_vs_demos"]) <= 0.25, name

    # One MLflow child run per stage: the other ranks log nothing.
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{repo / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("demo2reward").experiment_id], max_results=1000)
    assert len([r for r in runs if "mlflow.parentRunId" not in r.data.tags]) == 1
    children = sorted(r.info.run_name for r in runs if "mlflow.parentRunId" in r.data.tags)
    stages = _run(["dvc", "stage", "list", "--name-only"], repo, env).stdout.split()
    assert children == sorted(s for s in stages if s != "check_params")


def test_adding_an_iteration_reruns_only_that_iteration(workspace):
    ws, env, _ = workspace
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["iterations"].append({"k": 3, "prev": "iter_2"})
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = set(json.loads(_run(["dvc", "status", "--json"], ws, env).stdout))
    # mtbench and leaderboard grade the final iterate, and the report reads iterations 1..K, so a new K
    # concerns them too (the benchmarks are no-ops when disabled).
    irl = [
        f"{stage}@{s}-{t}-from2"
        for stage in ("rollout", "pairs", "reward", "policy", "evaluate")
        for s in SEEDS
        for t in TRACKS[:2]
    ]
    others = [f"{stage}@{s}-{stage}-from2" for stage in ("oracle", "spin") for s in SEEDS]
    others += [f"evaluate_{t}@{s}-{t}-from2" for s in SEEDS for t in ("spin", "oracle")]
    assert {name.split(":")[-1] for name in changed} == {*irl, *others, "check_params", "mtbench", "leaderboard", "report"}
    params["iterations"].pop()
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_adding_a_seed_reruns_only_that_seed(workspace):
    ws, env, _ = workspace
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["seeds"].append(7)
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = {name.split(":")[-1] for name in json.loads(_run(["dvc", "status", "--json"], ws, env).stdout)}
    params["seeds"].pop()
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert {name for name in changed if name.startswith(("sft@", "evaluate_sft@"))} == {"sft@7", "evaluate_sft@7"}
    assert all(name.split("@")[1].startswith("7") for name in changed if "-from" in name)
    assert len([name for name in changed if "-from" in name]) == K * (5 * 2 + 4)
    assert {name for name in changed if "@" not in name} == {"check_params", "mtbench", "leaderboard", "report"}


def _would_run(ws, env, params_change=None, file_change=None) -> set[str]:
    """The stages `dvc repro` would run after an edit (downstream ones included), the edit undone after."""
    saved = {}
    if params_change:
        saved["params.yaml"] = (ws / "params.yaml").read_text()
        params = yaml.safe_load(saved["params.yaml"])
        params_change(params)
        (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if file_change:
        path, old, new = file_change
        saved[path] = (ws / path).read_text()
        assert old in saved[path]
        (ws / path).write_text(saved[path].replace(old, new, 1))
    try:
        changed = {name.split(":")[-1] for name in json.loads(_run(["dvc", "status", "--json"], ws, env).stdout)}
    finally:
        for path, text in saved.items():
            (ws / path).write_text(text)
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(ws)) as repo:  # DVC's graph points from a stage to the stages it depends on
        graph = repo.index.graph
        by_name = {st.name: st for st in graph}
        # check_params reruns on every edit of params.yaml, but its output is constant: nothing reruns after it.
        rerun = changed - {"check_params"}
        return changed | {d.name for name in rerun for d in nx.ancestors(graph, by_name[name])}


def test_a_spin_ablation_reruns_only_spin(workspace):
    ws, env, _ = workspace
    rerun = _would_run(ws, env, params_change=lambda p: p["spin"].update(beta=0.5))
    spin = {f"spin@{s}-spin-from{j}" for s in SEEDS for j in range(K)}
    spin |= {f"evaluate_spin@{s}-spin-from{j}" for s in SEEDS for j in range(K)}
    # check_params validates every edit; the benchmarks read the whole models/ folder (and are off by default).
    assert rerun == spin | {"check_params", "mtbench", "leaderboard", "report"}


def test_an_irl_only_knob_reruns_no_baseline(workspace):
    ws, env, _ = workspace
    rerun = _would_run(ws, env, params_change=lambda p: p["reward"].update(learning_rate=0.002))
    assert {f"reward@{s}-{t}-from0" for s in SEEDS for t in TRACKS[:2]} <= rerun
    assert not {name for name in rerun if name.startswith(("spin@", "oracle@", "evaluate_spin@", "evaluate_oracle@", "sft@"))}
    assert not {name for name in rerun if name.startswith(("rollout@", "pairs@")) and name.endswith("-from0")}


def test_editing_the_rl_update_marks_every_policy_stage_and_nothing_upstream(workspace):
    ws, env, _ = workspace
    path = "src/demo2reward/loop/rl.py"
    text = (ws / path).read_text()
    edited = text.replace(
        "    model = load_policy(start, runtime.trust_remote_code)\n",
        "    model = load_policy(start, runtime.trust_remote_code)  # edited\n",
        1,
    )
    assert edited != text
    (ws / path).write_text(edited)
    try:
        changed = {name.split(":")[-1] for name in json.loads(_run(["dvc", "status", "--json"], ws, env).stdout)}
    finally:
        (ws / path).write_text(text)
    policy = {f"policy@{s}-{t}-from{j}" for s in SEEDS for t in TRACKS[:2] for j in range(K)}
    oracle = {f"oracle@{s}-oracle-from{j}" for s in SEEDS for j in range(K)}  # the same RL update, on r*
    assert changed == policy | oracle


def test_malformed_demonstrations_fail_clearly_and_write_nothing(workspace, tmp_path):
    ws, env, _ = workspace
    bad = tmp_path / "demos.jsonl"
    ok = {"prompt": [{"role": "user", "content": "a"}], "completion": [{"role": "assistant", "content": "b"}]}
    bad.write_text(json.dumps(ok) + "\n" + json.dumps({"prompt": ok["prompt"]}) + "\n")
    out = tmp_path / "sft_out"
    proc = _run(
        [
            sys.executable,
            "stages/sft.py",
            "--seed",
            "0",
            "--pool",
            str(tmp_path / "pool.jsonl"),
            "--init",
            "models/pretrain",
            "--demos",
            str(bad),
            "--out",
            str(out),
            "--metrics",
            str(tmp_path / "m.json"),
        ],
        ws,
        env,
        check=False,
    )
    assert proc.returncode != 0
    assert f"{bad}:2: missing column(s) completion" in proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda p: p.update(foo=1), "foo: unknown key"),
        (lambda p: p.update(polciy={"beta": 0.5}), "polciy: unknown key"),
        (lambda p: p["iterations"].append({"k": 4, "prev": "iter_3"}), "iterations: item 3 must be {k: 3, prev: iter_2}"),
    ],
    ids=["unknown-key", "misspelt-section", "iterations-gap"],
)
def test_params_typos_fail_dvc_repro_fast_with_one_line(workspace, edit, says):
    ws, env, _ = workspace
    saved = (ws / "params.yaml").read_text()
    params = yaml.safe_load(saved)
    edit(params)
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        start = time.monotonic()
        proc = _run(["dvc", "repro"], ws, env, check=False)
        elapsed = time.monotonic() - start
    finally:
        (ws / "params.yaml").write_text(saved)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.startswith("check_params:")]
    assert len(lines) == 1 and says in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and "Running stage 'prepare'" not in proc.stdout
    assert elapsed < 6, elapsed  # about 2 s here; torch is never imported
    _run(["dvc", "repro", "check_params"], ws, env)


def test_empty_rollouts_fail_in_the_pairs_stage_with_the_file(workspace, tmp_path):
    ws, env, _ = workspace
    empty = tmp_path / "rollouts.jsonl"
    empty.write_text("")
    args = ["--seed", "0", "--track", "irl", "--k", "1", "--rollouts", str(empty), "--previous", "data/seed_0/sft"]
    proc = _run(
        [sys.executable, "stages/pairs.py", *args, "--out", str(tmp_path / "p.jsonl"), "--metrics", str(tmp_path / "m.json")],
        ws,
        env,
        check=False,
    )
    assert proc.returncode == 2 and f"{empty}: empty: no rows" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "p.jsonl").exists()


def _cache_file(ws: Path, out: str, name: str) -> Path:
    """The DVC cache file of `name` inside the tracked folder `out`."""
    lock = yaml.safe_load((ws / "dvc.lock").read_text())
    md5 = next(o["md5"] for st in lock["stages"].values() for o in st.get("outs", []) if o["path"] == out)
    listing = json.loads((ws / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).read_text())
    file_md5 = next(e["md5"] for e in listing if e["relpath"] == name)
    return ws / ".dvc/cache/files/md5" / file_md5[:2] / file_md5[2:]


def test_a_corrupt_cached_model_fails_loudly_and_nothing_poisoned_comes_back(workspace):
    ws, env, _ = workspace
    out, stage = "models/seed_0/irl/iter_1/policy", "evaluate@0-irl-from0"
    metrics = ws / "metrics/eval/seed_0/irl_1.json"
    clean = metrics.read_text()
    cached = _cache_file(ws, out, "model.safetensors")
    good = cached.read_bytes()
    cached.chmod(0o644)
    bad = bytearray(good)
    bad[-100] ^= 0xFF  # one byte of the weights
    cached.write_bytes(bytes(bad))
    try:
        (ws / out / "model.safetensors").unlink()
        _run(["dvc", "checkout", out], ws, env)  # DVC restores the corrupt copy without a word
        proc = _run(["dvc", "repro", "-f", "-s", stage], ws, env, check=False)
        assert proc.returncode != 0
        errors = [line for line in proc.stderr.splitlines() if "manifest.json" in line]
        assert len(errors) == 1 and "model.safetensors differs" in errors[0] and out in errors[0], proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        cached.write_bytes(good)
        (ws / out / "model.safetensors").unlink()
        _run(["dvc", "checkout", out], ws, env)
    _run(["dvc", "repro"], ws, env)
    assert metrics.read_text() == clean  # no poisoned metrics from the run-cache


def test_killed_stages_leave_nothing_and_a_rerun_is_byte_identical(workspace):
    """SIGTERM and SIGKILL in the middle of a policy update, then resume; forced reruns reproduce every hash."""
    import signal

    ws, env, _ = workspace
    lock = (ws / "dvc.lock").read_text()
    stage = "policy@0-irl-from0"
    for sig in (signal.SIGTERM, signal.SIGKILL):
        proc = subprocess.Popen(
            ["dvc", "repro", "-f", "-s", stage], cwd=ws, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((ws / ".tmp").glob("*-policy-*")):
            time.sleep(0.2)
        assert list((ws / ".tmp").glob("*-policy-*")), "the stage never started writing"
        stage_pids = [  # this workspace's only: a pipeline running beside the tests must not be killed (one was)
            int(p)
            for p in _run(["pgrep", "-f", "stages/policy.py"], ws, env).stdout.split()
            if Path(f"/proc/{p}/cwd").resolve() == ws.resolve()
        ]
        for pid in stage_pids:
            os.kill(pid, sig)
        proc.wait(timeout=120)
        assert not list(ws.glob("models/**/.tmp-*")) and not list(ws.glob("models/**/*-policy-*"))
    _run(["dvc", "repro"], ws, env)  # resume: the killed stage reruns, and a later stage cleans up after SIGKILL
    assert not list((ws / ".tmp").iterdir())
    for name in ("prepare", "pretrain", "sft@0", "rollout@0-irl-from0", "reward@0-irl-from0", "spin@0-spin-from0"):
        _run(["dvc", "repro", "-f", "-s", name], ws, env)
    _run(["dvc", "repro"], ws, env)
    assert (ws / "dvc.lock").read_text() == lock
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    exp = client.get_experiment_by_name("demo2reward")
    assert not client.search_runs([exp.experiment_id], filter_string="attributes.status = 'RUNNING'")


def test_invalid_params_stop_before_any_compute(workspace, tmp_path):
    ws, env, _ = workspace
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["policy"]["beta"] = -1
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    code = (
        "import sys; sys.argv=['x']; from demo2reward.core.stage import stage\n"
        f"with stage('sft', (), params_path={str(bad)!r}): print('computed')"
    )
    proc = _run([sys.executable, "-c", code], ws, env, check=False)
    assert proc.returncode != 0 and "policy.beta" in proc.stderr and "computed" not in proc.stdout


def test_mtbench_stage_grades_the_final_policies_with_a_local_judge(workspace, tmp_path):
    from tests.test_judge import KEY_ENV, MODEL, SECRET, running_server
    from tests.test_mtbench import (
        JUDGE_PROMPTS,
        JUDGE_PROMPTS_FILE,
        QUESTION_FILE,
        QUESTIONS,
        REFERENCE_FILE,
        REFERENCES,
        _judge_by_tag,
        _write_jsonl,
    )

    ws, env, _ = workspace
    data = tmp_path / "llm_judge_data"
    _write_jsonl(data / QUESTION_FILE, QUESTIONS)
    _write_jsonl(data / JUDGE_PROMPTS_FILE, JUDGE_PROMPTS)
    _write_jsonl(data / REFERENCE_FILE, REFERENCES)
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["mtbench"] = {"enabled": True, "data_dir": str(data), "max_new_tokens": 4, "batch_size": 4}
    with running_server() as srv:
        srv.grade = _judge_by_tag
        params["evaluate"]["llm"] = {
            **params["evaluate"]["llm"],
            "model": MODEL,
            "base_url": srv.base_url,
            "api_key_env": KEY_ENV,
        }
        (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        cmd = [
            sys.executable,
            "stages/mtbench.py",
            "--models",
            "models",
            "--out",
            "data/mtbench",
            "--metrics",
            "metrics/mtbench.json",
        ]
        _run(cmd, ws, {**env, KEY_ENV: SECRET})
        # Identical answers of different policies share one cached judgment, so at most 3 policies x 2 turns.
        assert 0 < srv.chat_requests <= 3 * 2 * len(QUESTIONS)
    scores = json.loads((ws / "metrics/mtbench.json").read_text())
    assert scores["enabled"] is True and set(scores) == {"enabled", "sft", "irl", "spin"}
    for policy in ("sft", "irl", "spin"):
        assert scores[policy]["graded"] + scores[policy]["unparsed"] == 2 * len(QUESTIONS)
        assert scores[policy]["graded"] == 0 or 1 <= scores[policy]["overall"] <= 10
    assert SECRET not in (ws / "metrics/mtbench.json").read_text()
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("demo2reward").experiment_id], max_results=1000)
    mtbench_run = next(r for r in runs if r.info.run_name == "mtbench")
    assert "mtbench/irl/overall" in mtbench_run.data.metrics
    assert all(
        SECRET not in json.dumps([r.data.params, r.data.tags, r.data.metrics]) for r in runs
    )  # the key never reaches MLflow
    assert (ws / "data/mtbench/model_answer/irl.jsonl").exists()


def test_leaderboard_stage_scores_the_final_policies_on_a_local_task(workspace, tmp_path):
    from tests.test_leaderboard import FIXTURES, _render

    ws, env, _ = workspace
    tasks = _render(tmp_path / "tasks", FIXTURES)
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["leaderboard"] = {"enabled": True, "include_path": str(tasks), "tasks": [["toy_mc", 1, "acc"]], "batch_size": 4}
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    _run([sys.executable, "stages/leaderboard.py", "--models", "models", "--metrics", "metrics/leaderboard.json"], ws, offline)
    scores = json.loads((ws / "metrics/leaderboard.json").read_text())
    assert scores["enabled"] is True and scores["lm_eval_version"]
    for policy in ("sft", "irl", "spin"):
        assert 0 <= scores[policy]["toy_mc"] <= 1 and scores[policy]["average"] == scores[policy]["toy_mc"]


def test_queued_experiments_keep_their_mlflow_runs(workspace):
    """`dvc exp run --queue` runs in .dvc/tmp/exps/...; both experiments' parent runs must land in our mlflow.db."""
    ws, env, _ = workspace
    from tests.conftest import merged_params

    micro = merged_params(yaml.safe_load((ROOT / "tests" / "micro_params.yaml").read_text()))
    (ws / "params.yaml").write_text(yaml.safe_dump(micro, sort_keys=False))
    _run(["git", "add", "-A"], ws, env)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "reproduced"], ws, env)
    # Cheap changes: each experiment reruns one (disabled) benchmark stage; the rest comes from the run-cache.
    names = {"q-mtbench": "mtbench.batch_size=4", "q-leaderboard": "leaderboard.batch_size=4"}
    for name, change in names.items():
        _run(["dvc", "exp", "run", "--queue", "-n", name, "-S", change], ws, env)
    _run(["dvc", "queue", "start", "-j", "1"], ws, env)
    status = wait_for_dvc_queue(ws, env, timeout_s=600)
    assert "Success" in status and "Failed" not in status, status
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{ws / 'mlflow.db'}")
    exp = client.get_experiment_by_name("demo2reward")
    for name in names:
        found = client.search_runs(
            [exp.experiment_id], filter_string=f"attributes.run_name = '{name}' AND tags.`demo2reward.role` = 'pipeline'"
        )
        assert len(found) == 1, name
        children = client.search_runs([exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{found[0].info.run_id}'")
        assert {r.info.run_name for r in children} & {"mtbench", "leaderboard"}
    shown = _run(["dvc", "exp", "show", "--json"], ws, env).stdout
    assert all(name in shown for name in names)


def test_adaptive_k_stops_and_carries_the_stopping_iterate_forward(workspace):
    """loop.stop: once RM k's held-out accuracy on iteration k's pairs is below the threshold, policy k-1 is final:
    policy k and every later iterate carry it and its RM forward (bit for bit, no training), and the report says so."""
    ws, env, _ = workspace
    train = ws / "metrics" / "train"
    fresh = {
        (s, t): json.loads((train / f"seed_{s}" / f"reward_{t}_1.json").read_text())["val_accuracy_fresh"]
        for s in SEEDS
        for t in TRACKS[:2]
    }
    assert fresh[0, "irl"] < 1, "the micro RM separates its fresh held-out pairs perfectly; no threshold can fire"
    threshold = (fresh[0, "irl"] + 1) / 2  # fires at k = 1 for seed 0's IRL at least
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["loop"] = {"stop": "indistinguishable", "stop_accuracy": threshold}
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repro = _run(["dvc", "repro"], ws, env)
    ran = {line.split("'")[1] for line in repro.stdout.splitlines() if line.startswith("Running stage")}
    upstream = (
        "spin@",
        "oracle@",
        "sft@",
        *(f"{stage}@{s}-{t}-from0" for stage in ("rollout", "pairs", "reward") for s in SEEDS for t in TRACKS[:2]),
    )
    assert not {name for name in ran if name.startswith(upstream)}
    assert all(f"policy@{s}-{t}-from{j}" in ran for s in SEEDS for t in TRACKS[:2] for j in range(K))

    def weights(folder: Path) -> bytes:
        return (folder / "model.safetensors").read_bytes()

    report = (ws / "metrics" / "report.md").read_text()
    assert "## Adaptive K" in report
    stopped = 0
    for (s, t), accuracy in fresh.items():
        models = ws / "models" / f"seed_{s}"
        policy_1 = json.loads((train / f"seed_{s}" / f"policy_{t}_1.json").read_text())
        if accuracy < threshold:
            stopped += 1
            assert policy_1["stopped"] == 1 and policy_1["k_stop"] == 0
            assert json.loads((models / t / "iter_1" / "policy" / "STOPPED.json").read_text()) == {"k_stop": 0}
            for k in (1, 2):
                assert weights(models / t / f"iter_{k}" / "policy") == weights(models / "sft" / "policy")
            assert weights(models / t / "iter_2" / "reward") == weights(models / t / "iter_1" / "reward")
            assert json.loads((train / f"seed_{s}" / f"reward_{t}_2.json").read_text())["carried_forward"] == 1
            assert f"| {'IRL' if t == 'irl' else 'IRL + guards'} | {s} | 0 |" in report
        else:
            assert policy_1["stopped"] == 0 and policy_1["fresh_accuracy"] == accuracy
            assert weights(models / t / "iter_1" / "policy") != weights(models / "sft" / "policy")
    assert stopped >= 1


def test_hybrid_and_prefs_only_tracks_fit_on_the_human_pairs(workspace, tmp_path):
    """reward.human_pairs: the hybrid RM fits on the demonstration pairs plus N human pairs (each repeated
    human_weight times), the prefs_only RM on the N pairs alone, once (later iterations carry it); IRL's RMs and every
    baseline stay as they were; the report compares their recovery; a lone N is not a sweep."""
    ws, env, _ = workspace
    from tests.conftest import merged_params

    def weights(folder: Path) -> bytes:
        return (folder / "model.safetensors").read_bytes()

    irl_rms = {s: weights(ws / "models" / f"seed_{s}" / "irl" / "iter_1" / "reward") for s in SEEDS}
    micro = merged_params(yaml.safe_load((ROOT / "tests" / "micro_params.yaml").read_text()))
    micro["irl_tracks"] = ["irl", "hybrid", "prefs_only"]
    micro["reward"] |= {"human_pairs": 20, "human_weight": 2}
    (ws / "params.yaml").write_text(yaml.safe_dump(micro, sort_keys=False))
    repro = _run(["dvc", "repro"], ws, env)
    ran = {line.split("'")[1] for line in repro.stdout.splitlines() if line.startswith("Running stage")}
    assert not {name for name in ran if name.startswith(("prepare", "pretrain", "sft@", "spin@", "oracle@"))}
    assert all(weights(ws / "models" / f"seed_{s}" / "irl" / "iter_1" / "reward") == irl_rms[s] for s in SEEDS)
    train = ws / "metrics" / "train"
    for s in SEEDS:
        pool = len((ws / "data" / f"seed_{s}" / "hybrid" / "iter_1" / "pairs.jsonl").read_text().splitlines())
        hybrid = json.loads((train / f"seed_{s}" / "reward_hybrid_1.json").read_text())
        assert hybrid["pairs_human"] == 20
        extra = hybrid["pairs_train"] + hybrid["pairs_val"] - pool - 20  # the human pairs' second copies in training
        assert 20 - hybrid["pairs_val"] <= extra <= 20
        prefs = json.loads((train / f"seed_{s}" / "reward_prefs_only_1.json").read_text())
        assert prefs["pairs_human"] == 20 and prefs["human_repeats"] == round(pool / 20)  # a demo-pair fit's steps
        assert prefs["pairs_train"] == (20 - prefs["pairs_val"]) * prefs["human_repeats"]
        assert "val_accuracy_fresh" not in prefs
        assert json.loads((train / f"seed_{s}" / "reward_prefs_only_2.json").read_text())["carried_forward"] == 1
        models = ws / "models" / f"seed_{s}" / "prefs_only"
        assert weights(models / "iter_2" / "reward") == weights(models / "iter_1" / "reward")
        assert weights(models / "iter_1" / "policy") != weights(ws / "models" / f"seed_{s}" / "sft" / "policy")
    detail = json.loads((ws / "metrics" / "summary_detail.json").read_text())
    report = (ws / "metrics" / "report.md").read_text()
    for track in ("irl", "hybrid", "prefs_only"):
        assert f"{track}_gain_true_reward_mean" in detail
    if any(k.startswith("reward_recovery_ratio_prefs_only_seed") for k in detail):  # seeds where the oracle gained
        assert "## Human preference labels: 20 pairs" in report and "| IRL + human prefs |" in report
    alone = _run(["demo2reward-exchange", "--out", str(tmp_path / "exchange")], ws, env, check=False)
    assert alone.returncode != 0 and "demo2reward-exchange:" in alone.stderr and "Traceback" not in alone.stderr
