"""End to end: `dvc repro` of the whole pipeline at micro sizes in a temporary copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

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
    for name in ("dvc.yaml", "stages", "src", ".dvc", ".dvcignore"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, ws / name)
    shutil.rmtree(ws / ".dvc" / "tmp", ignore_errors=True)
    shutil.rmtree(ws / ".dvc" / "cache", ignore_errors=True)
    from tests.conftest import merged_params

    micro = merged_params(yaml.safe_load((ROOT / "tests" / "micro_params.yaml").read_text()))
    (ws / "params.yaml").write_text(yaml.safe_dump(micro, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("DVC_EXP_NAME", None)
    _run(["git", "init", "-q"], ws, env)
    _run(["git", "add", "-A"], ws, env)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"], ws, env)
    repro = _run(["dvc", "repro"], ws, env)
    return ws, env, repro


def test_every_metrics_file_is_written(workspace):
    ws, _, _ = workspace
    for name in ("sft", "irl_1", "irl_2", "spin_1", "spin_2", "oracle_1", "oracle_2"):
        m = json.loads((ws / "metrics" / "eval" / f"{name}.json").read_text())
        keys = EVAL_KEYS if not name.startswith("oracle") else tuple(k for k in EVAL_KEYS if "reward_accuracy" not in k)
        for key in keys:
            assert isinstance(m[key], float), (name, key)
        assert 0 <= m["win_rate_vs_demos"] <= 1
    assert "proxy_reward_mean" in json.loads((ws / "metrics/eval/irl_1.json").read_text())
    for k in (1, 2):
        pairs = json.loads((ws / f"metrics/pairs/iter_{k}.json").read_text())
        assert pairs["pairs"] + pairs["identical_dropped"] == pairs["rollouts"] > 0
    assert (
        json.loads((ws / "metrics/pairs/iter_2.json").read_text())["pool"]
        > json.loads((ws / "metrics/pairs/iter_1.json").read_text())["pool"]
    )  # pairs accumulate by default
    report = (ws / "metrics/report.md").read_text()
    assert "| IRL k=2 |" in report and "| SPIN k=2 |" in report
    assert (ws / "metrics/plots/curves.png").stat().st_size > 0
    assert (ws / "models/iter_2/policy/config.json").exists()  # save_pretrained layout


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
        "sft",
        "rollout@1",
        "pairs@2",
        "reward@2",
        "policy@2",
        "oracle@2",
        "spin@2",
        "report",
    } <= stages
    steps = [m.step for m in client.get_metric_history(parent.info.run_id, "win_rate_vs_demos")]
    assert sorted(steps) == [0, 1, 2]
    gate = [m.step for m in client.get_metric_history(parent.info.run_id, "gate_accepted")]
    assert sorted(gate) == [1, 2]  # the micro params switch the guards on
    rm = next(r for r in runs if r.info.run_name == "reward@1")
    assert {"train_loss", "val_accuracy", "val_loss"} <= set(rm.data.metrics)
    assert rm.data.params["reward.init"] == "sft"


def test_noop_repro_and_dvc_tooling(workspace):
    ws, env, _ = workspace
    assert "up to date" in _run(["dvc", "status"], ws, env).stdout
    dag = _run(["dvc", "dag", "--md"], ws, env).stdout
    assert "policy@2" in dag and "rollout@1" in dag
    shown = json.loads(_run(["dvc", "metrics", "show", "--json"], ws, env).stdout)
    assert "metrics/eval/irl_2.json" in json.dumps(shown)


def test_adding_an_iteration_reruns_only_that_iteration(workspace):
    ws, env, _ = workspace
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["iterations"]["3"] = {"prev": 2}
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = set(json.loads(_run(["dvc", "status", "--json"], ws, env).stdout))
    # `report` reruns too, once the new evaluations change metrics/eval/; status cannot know that yet.
    # mtbench and leaderboard grade the final iterate, so a new K concerns them (they are no-ops when disabled).
    assert {name.split(":")[-1] for name in changed} == {
        "rollout@3", "pairs@3", "reward@3", "policy@3", "evaluate@3", "oracle@3", "evaluate_oracle@3",
        "spin@3", "evaluate_spin@3", "mtbench", "leaderboard",
    }  # fmt: skip


def test_malformed_demonstrations_fail_clearly_and_write_nothing(workspace, tmp_path):
    ws, env, _ = workspace
    bad = tmp_path / "demos.jsonl"
    bad.write_text('{"prompt": [], "completion": []}\n{"prompt": []}\n')
    out = tmp_path / "sft_out"
    proc = _run(
        [
            sys.executable,
            "stages/sft.py",
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


def test_invalid_params_stop_before_any_compute(workspace, tmp_path):
    ws, env, _ = workspace
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["policy"]["beta"] = -1
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump(params))
    code = (
        f"import sys; sys.argv=['x']; from demo2reward.stage import stage\nwith stage('sft', (), {str(bad)!r}): print('computed')"
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
    params["iterations"] = {"1": {"prev": 0}, "2": {"prev": 1}}
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
    params["iterations"] = {"1": {"prev": 0}, "2": {"prev": 1}}
    params["leaderboard"] = {"enabled": True, "include_path": str(tasks), "tasks": [["toy_mc", 1, "acc"]], "batch_size": 4}
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "hf")}
    _run([sys.executable, "stages/leaderboard.py", "--models", "models", "--metrics", "metrics/leaderboard.json"], ws, offline)
    scores = json.loads((ws / "metrics/leaderboard.json").read_text())
    assert scores["enabled"] is True and scores["lm_eval_version"]
    for policy in ("sft", "irl", "spin"):
        assert 0 <= scores[policy]["toy_mc"] <= 1 and scores[policy]["average"] == scores[policy]["toy_mc"]
