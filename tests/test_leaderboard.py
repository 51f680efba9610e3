"""The Open LLM Leaderboard v1 runner, offline: local lm-eval tasks on a tiny local model, and a clear error for hub tasks."""

import re
import time
from pathlib import Path

import datasets.config
import huggingface_hub.constants
import pytest

from demo2reward.evaluation import leaderboard
from demo2reward.evaluation.leaderboard import LEADERBOARD_V1, DatasetUnavailableError, run_leaderboard
from tests.test_policy import _save

FIXTURES = Path(__file__).parent / "fixtures" / "lm_eval"
# Two few-shot counts, one shared by two tasks; a multiple-choice task, a group (scored like `mmlu`) and a generation
# task with a filtered metric (scored like `gsm8k`).
TOY = [("toy_mc", 2, "acc_norm"), ("toy_group", 1, "acc"), ("toy_gen", 2, "exact_match,strict-match")]


def _render(dest: Path, fixtures: Path) -> Path:
    """The fixture YAMLs with absolute data paths: `datasets` resolves data_files against the cwd, not the YAML."""
    dest.mkdir(parents=True)
    for src in FIXTURES.glob("*.yaml"):
        (dest / src.name).write_text(src.read_text().replace("__FIXTURES__", str(fixtures)))
    return dest


@pytest.fixture(scope="module")
def datasets_cache(tmp_path_factory):
    """Keep the json builder's cache (and any cached hub data set) of the developer's ~/.cache out of these tests."""
    with pytest.MonkeyPatch.context() as mp:
        cache = tmp_path_factory.mktemp("hf_datasets")
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
        yield cache


@pytest.fixture(scope="module")
def task_dir(tmp_path_factory) -> Path:
    return _render(tmp_path_factory.mktemp("lm_eval_tasks") / "tasks", FIXTURES.resolve())


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _save(tmp_path_factory.mktemp("lb_model") / "m", 0)


@pytest.fixture(scope="module")
def toy_run(model, task_dir, datasets_cache):
    """One run over TOY, recording the few-shot count of each `simple_evaluate` call."""
    import lm_eval.evaluator

    calls: list[int] = []
    real = lm_eval.evaluator.simple_evaluate

    def spy(*args, **kwargs):
        calls.append(kwargs["num_fewshot"])
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lm_eval.evaluator, "simple_evaluate", spy)
        out = run_leaderboard(model, TOY, batch_size=4, include_path=task_dir, device="cpu")
    return out, calls


def test_scores_average_and_version(toy_run):
    import lm_eval

    out, calls = toy_run
    scores = [out[name] for name, _, _ in TOY]
    assert list(out) == ["toy_mc", "toy_group", "toy_gen", "average", "lm_eval_version"]
    assert all(isinstance(s, float) and 0.0 <= s <= 1.0 for s in scores)
    assert out["average"] == pytest.approx(sum(scores) / len(scores))
    assert out["lm_eval_version"] == lm_eval.__version__
    assert sorted(calls) == [1, 2]  # one harness call per distinct few-shot count, not per task


def test_group_scores_the_plain_mean_of_its_members_and_runs_are_deterministic(toy_run, model, task_dir):
    """Leaderboard v1 averaged MMLU's subjects unweighted; toy_group's members differ in size, so weighting would show."""
    members = run_leaderboard(model, [("toy_sub_a", 1, "acc"), ("toy_sub_b", 1, "acc")], batch_size=4, include_path=task_dir)
    assert toy_run[0]["toy_group"] == pytest.approx((members["toy_sub_a"] + members["toy_sub_b"]) / 2)


def test_leaderboard_v1_names_tasks_and_metrics_the_installed_lm_eval_has(task_dir):
    """Task names, metrics and filters as the installed harness's YAMLs spell them (a bump of lm-eval could rename)."""
    index = leaderboard._task_manager((str(task_dir.resolve()),)).task_index
    assert [(n, k) for n, k, _ in LEADERBOARD_V1] == [
        ("arc_challenge", 25),
        ("hellaswag", 10),
        ("mmlu", 5),
        ("truthfulqa_mc2", 0),
        ("winogrande", 5),
        ("gsm8k", 5),
    ]
    for name, _, key in LEADERBOARD_V1:
        path = index[name].yaml_path
        text = path.read_text()
        if include := re.search(r"^include: (\S+)", text, re.M):
            text += (path.parent / include.group(1)).read_text()
        metric, filt = key.split(",")
        assert re.search(rf"metric: {metric}\b", text), (name, metric)
        assert filt == "none" or f'name: "{filt}"' in text, (name, filt)


def test_hub_task_offline_fails_fast_with_one_clear_error(model, task_dir, datasets_cache, monkeypatch):
    """HF_*_OFFLINE set after import is honoured: no retries against an unreachable hub, and no chained trace."""
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    flags = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    leaderboard._task_manager((str(task_dir.resolve()),))  # the task index, built once, is not what is timed
    start = time.monotonic()
    with pytest.raises(DatasetUnavailableError) as err:
        run_leaderboard(model, [("toy_mc", 2, "acc"), ("arc_challenge", 25, "acc_norm")], batch_size=1, include_path=task_dir)
    assert time.monotonic() - start < 5
    assert err.value.task == "arc_challenge" and isinstance(err.value, RuntimeError)
    msg = str(err.value)
    assert "'arc_challenge'" in msg and "allenai/ai2_arc" in msg and "HF_DATASETS_CACHE" in msg and "include_path" in msg
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert flags == (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)  # restored


def test_local_task_with_missing_data_file_is_the_same_clear_error(model, task_dir, datasets_cache):
    with pytest.raises(DatasetUnavailableError, match=r"'toy_missing' needs a data set .*absent_t") as err:
        run_leaderboard(model, [("toy_missing", 0, "acc")], batch_size=1, include_path=task_dir)
    assert err.value.__cause__ is None


def test_bad_arguments_fail_before_any_work(tmp_path, model, task_dir, datasets_cache):
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        run_leaderboard(tmp_path, TOY, batch_size=1)
    with pytest.raises(ValueError, match="once"):
        run_leaderboard(model, [*TOY, TOY[0]], batch_size=1)
    with pytest.raises(
        ValueError, match=r"reports metrics \['acc', 'acc_norm'\] under filters \['none'\], not 'exact_match,none'"
    ):
        run_leaderboard(model, [("toy_mc", 0, "exact_match")], batch_size=1, include_path=task_dir)
    with pytest.raises(ValueError, match=r"toy_gen.*under filters \['strict-match'\]"):
        run_leaderboard(model, [("toy_gen", 0, "exact_match")], batch_size=1, include_path=task_dir)
    with pytest.raises(ValueError, match="no task or group 'toy_nope'"):
        run_leaderboard(model, [("toy_nope", 0, "acc")], batch_size=1, include_path=task_dir)
