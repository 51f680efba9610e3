"""evaluate_policy with its extra judges: an LLM judge behind a real local server, and a reward model."""

import json

import pytest

from demo2reward.core.artifacts import read_jsonl
from demo2reward.core.params import EvaluateParams, LLMJudgeParams, TaskParams
from demo2reward.evaluation.judge import JudgeError
from demo2reward.evaluation.metrics import build_judge, evaluate_policy
from demo2reward.tasks.gold import load_gold_reward
from tests.test_guards import _save_rm
from tests.test_judge import KEY_ENV, MODEL, SECRET, server  # noqa: F401 - the fixture
from tests.test_policy import _save
from tests.test_task import build_task


@pytest.fixture
def task(tmp_path):
    build_task(TaskParams(n_train=8, n_heldout=6, n_heldout_pairs=6, n_pretrain=8), 0, tmp_path / "task")
    return tmp_path / "task"


def _evaluate(task, policy, judge):
    return evaluate_policy(
        policy,
        policy,
        read_jsonl(task / "heldout.jsonl"),
        read_jsonl(task / "heldout_prefs.jsonl"),
        load_gold_reward("synthetic", task),
        EvaluateParams(max_new_tokens=4),
        seed=0,
        judge=judge,
    )


def _llm_params(server_) -> EvaluateParams:
    return EvaluateParams(
        judge="llm", llm=LLMJudgeParams(model=MODEL, base_url=server_.base_url, api_key_env=KEY_ENV, cache="j.sqlite")
    )


def test_llm_judge_win_rate_sits_beside_the_gold_one_and_hides_the_key(server, task, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv(KEY_ENV, SECRET)
    policy = _save(tmp_path / "policy", 0)
    judge = build_judge(_llm_params(server), tmp_path)
    metrics, _ = _evaluate(task, policy, judge)
    assert 0 <= metrics["win_rate_vs_demos_llm"] <= 1 and "win_rate_vs_demos" in metrics
    assert metrics["judge_requests"] == server.chat_requests > 0
    assert SECRET not in json.dumps(metrics)
    again, _ = _evaluate(task, policy, build_judge(_llm_params(server), tmp_path))
    assert again["judge_requests"] == 0 and again["win_rate_vs_demos_llm"] == metrics["win_rate_vs_demos_llm"]  # cached


def test_missing_key_fails_before_any_generation(server, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(JudgeError, match=KEY_ENV):
        build_judge(_llm_params(server), tmp_path)
    assert server.chat_requests == 0


def test_reward_model_judge(task, tmp_path):
    policy = _save(tmp_path / "policy", 0)
    rm = _save_rm(tmp_path / "rm", 3)
    metrics, _ = _evaluate(task, policy, build_judge(EvaluateParams(judge="reward_model", judge_reward_model=str(rm)), tmp_path))
    assert 0 <= metrics["win_rate_vs_demos_rm"] <= 1


def test_reward_model_judge_needs_a_path():
    with pytest.raises(ValueError, match="judge_reward_model"):
        EvaluateParams(judge="reward_model")
