"""The generic task (`task.name: demos`) on small files of every kind a user may hold, and gold rewards of any task."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import numpy as np
import pytest

from demo2reward.core.params import ParamsError, TaskParams, parse_params
from demo2reward.core.stage import StageError
from demo2reward.tasks.base import read_task_info
from demo2reward.tasks.gold import GoldRewardError, load_gold_reward, source_of
from demo2reward.tasks.prepare import make_task, write_task
from demo2reward.tasks.sources import TaskDataError
from tests.test_real_tasks import msg, write_jsonl, write_parquet


def demos(**options) -> TaskParams:
    return TaskParams(name="demos", demos=options)


def rows_of(task: TaskParams):
    return make_task(task, 0).rows()


def qa(i: int) -> dict:
    return {"prompt": f"question {i}?", "completion": f"answer {i}."}


def prompts(rows: list[dict]) -> set[str]:
    return {r["prompt"][-1]["content"] for r in rows}


# ------------------------------------------------------------------------------------------------- formats


def test_standard_prompt_completion_jsonl_with_a_seeded_heldout_fraction(tmp_path):
    path = write_jsonl(tmp_path / "demos.jsonl", [qa(i) for i in range(20)])
    rows = rows_of(demos(path=path, heldout_fraction=0.25))
    assert len(rows.train) == 15 and len(rows.heldout) == 5
    assert rows.train[0] == {"prompt": [msg("user", rows.train[0]["prompt"][0]["content"])],
                             "completion": [msg("assistant", rows.train[0]["completion"][0]["content"])]}  # fmt: skip
    # The held-out rows are the user's own rows, none of them a training prompt.
    assert prompts(rows.heldout) | prompts(rows.train) == {f"question {i}?" for i in range(20)}
    assert not prompts(rows.heldout) & prompts(rows.train)
    assert rows_of(demos(path=path, heldout_fraction=0.25)).heldout == rows.heldout  # seeded
    assert rows.heldout_prefs == [] and "task.demos.prefs_path: null" in rows.absent["heldout_prefs"]
    assert rows.sources["train"]["sha256"] and rows.sources["heldout"]["heldout_fraction"] == 0.25


def test_conversational_prompt_completion_in_parquet(tmp_path):
    rows = [{"prompt": [msg("system", "Be brief."), msg("user", f"q{i}")], "completion": [msg("assistant", f" a{i} ")]}
            for i in range(10)]  # fmt: skip
    got = rows_of(demos(path=write_parquet(tmp_path / "d.parquet", rows), heldout_fraction=0.2, seed=None))
    assert got.train[0] == {"prompt": [msg("system", "Be brief."), msg("user", "q0")], "completion": [msg("assistant", "a0")]}
    assert len(got.heldout) == 2


def test_messages_take_the_last_assistant_turn_as_the_completion(tmp_path):
    dialogue = [msg("user", "hi"), msg("assistant", "hello"), msg("user", "and now?"), msg("assistant", "now this")]
    path = write_jsonl(tmp_path / "m.jsonl", [{"messages": [{**m, "content": f"{m['content']} {i}"} for m in dialogue]}
                                             for i in range(10)])  # fmt: skip
    got = rows_of(demos(path=path, seed=None))
    assert got.train[0]["prompt"] == [msg("user", "hi 0"), msg("assistant", "hello 0"), msg("user", "and now? 0")]
    assert got.train[0]["completion"] == [msg("assistant", "now this 0")]


def test_other_column_names_are_mapped_by_params_in_a_csv(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("id,question,answer\n" + "".join(f'{i},"Q {i}, please",007 {i}\n' for i in range(10)))
    got = rows_of(demos(path=str(path), columns={"prompt": "question", "completion": "answer"}, seed=None))
    assert got.train[0] == {"prompt": [msg("user", "Q 0, please")], "completion": [msg("assistant", "007 0")]}  # text
    with pytest.raises(TaskDataError, match=r"d\.csv: no column 'prompt' or 'completion' .*has: answer, id, question.*"
                                            r"task\.demos\.columns\.prompt"):  # fmt: skip
        rows_of(demos(path=str(path)))


def test_heldout_from_a_named_split_or_a_named_file(tmp_path):
    folder = tmp_path / "dd"
    splits = {"train": [qa(i) for i in range(8)], "validation": [qa(100 + i) for i in range(3)]}
    datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()}).save_to_disk(str(folder))
    got = rows_of(demos(path=str(folder), heldout_split="validation"))
    assert len(got.train) == 8 and prompts(got.heldout) == {f"question {100 + i}?" for i in range(3)}
    held = write_jsonl(tmp_path / "held.jsonl", [qa(200), qa(3)])  # question 3 is also a training prompt
    got = rows_of(demos(path=str(folder), heldout_path=held))
    assert prompts(got.heldout) == {"question 200?"} and got.dropped["heldout_prompt_in_train"] == 1


def test_preference_pairs_in_both_formats_and_identical_ones_skipped(tmp_path):
    path = write_jsonl(tmp_path / "demos.jsonl", [qa(i) for i in range(10)])
    pairs = [{"prompt": "which?", "chosen": "good", "rejected": "bad"},
             {"chosen": [msg("user", "dialogue?"), msg("assistant", "yes")],
              "rejected": [msg("user", "dialogue?"), msg("assistant", "no")]},
             {"prompt": "same?", "chosen": "x", "rejected": "x"}]  # fmt: skip
    got = rows_of(demos(path=path, prefs_path=write_jsonl(tmp_path / "p.jsonl", pairs), seed=None))
    assert got.heldout_prefs[0] == {"prompt": [msg("user", "which?")], "chosen": [msg("assistant", "good")],
                                    "rejected": [msg("assistant", "bad")]}  # fmt: skip
    assert got.heldout_prefs[1]["prompt"] == [msg("user", "dialogue?")] and len(got.heldout_prefs) == 2
    assert got.dropped["prefs_identical"] == 1 and "heldout_prefs" not in got.absent


# -------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("row", "says"),
    [
        ({"prompt": "q", "completion": "   "}, r"line 3: task\.demos\.columns\.completion \('completion'\): empty answer"),
        ({"prompt": "", "completion": "a"}, r"line 3: task\.demos\.columns\.prompt \('prompt'\): empty prompt"),
        ({"prompt": "q"}, r"line 3: task\.demos\.columns\.completion \('completion'\): missing"),
        ({"prompt": 3, "completion": "a"}, r"line 3: task\.demos\.columns\.prompt \('prompt'\): int, expected a string"),
        ({"prompt": [msg("user", "q")], "completion": [msg("user", "a")]}, r"line 3: .*must end with the assistant's message"),
    ],
)
def test_a_bad_row_fails_naming_the_file_the_line_and_the_param(tmp_path, row, says):
    path = write_jsonl(tmp_path / "bad.jsonl", [qa(0), qa(1), row, qa(3)])
    with pytest.raises(TaskDataError, match=rf"bad\.jsonl: {says}"):
        rows_of(demos(path=path, heldout_fraction=0.25, seed=None))


def test_empty_files_non_utf8_bytes_and_missing_files_fail_in_one_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(TaskDataError, match=r"empty\.jsonl: empty: no rows \(set by task\.demos\.path\)"):
        rows_of(demos(path=str(empty)))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps(qa(0)).encode() + b"\n" + '{"prompt": "caf\xe9", "completion": "x"}\n'.encode("latin-1"))
    with pytest.raises(TaskDataError, match=r"latin\.jsonl:2: not UTF-8 text"):
        rows_of(demos(path=str(latin)))
    with pytest.raises(TaskDataError, match=r"nowhere\.jsonl: not found \(set by task\.demos\.path\)"):
        rows_of(demos(path=str(tmp_path / "nowhere.jsonl")))
    csv = tmp_path / "latin.csv"
    csv.write_bytes(b"prompt,completion\nq,a\n" + "q2,caf\xe9\n".encode("latin-1"))
    with pytest.raises(TaskDataError, match=r"latin\.csv:3: not UTF-8 text"):
        rows_of(demos(path=str(csv)))


def test_demos_params_are_checked_before_compute(tmp_path):
    with pytest.raises(ParamsError, match=r"task\.demos: held-out rows come from one source; set one of heldout_split"):
        parse_params({"task": {"demos": {"heldout_split": "test", "heldout_fraction": 0.2}}})
    with pytest.raises(ParamsError, match=r"n_human_pairs: name human_prefs_path"):
        parse_params({"task": {"demos": {"n_human_pairs": 5}}})
    with pytest.raises(ParamsError, match=r"task\.demos\.format"):
        parse_params({"task": {"demos": {"format": "sharegpt"}}})


def test_relative_paths_are_read_from_the_repository_root(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "data" / "raw").mkdir(parents=True)
    write_jsonl(tmp_path / "data" / "raw" / "d.jsonl", [qa(i) for i in range(10)])
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    assert len(rows_of(demos(path="data/raw/d.jsonl")).train) == 9


# -------------------------------------------------------------------------------------------- gold rewards


GOLD = """
import math

def length(prompts, completions):
    return [float(len(c)) for c in completions]

def raises(prompts, completions):
    raise ZeroDivisionError("no score for you")

def nan(prompts, completions):
    return [math.nan if i == len(completions) - 1 else 1.0 for i in range(len(completions))]

def short(prompts, completions):
    return [1.0] * (len(completions) - 1)

def words(prompts, completions):
    return ["high"] * len(completions)
"""


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A repository root holding my_gold.py; each test imports its own (a stage is a process of its own)."""
    import sys

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "my_gold.py").write_text(GOLD)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_gold", raising=False)
    yield tmp_path
    sys.modules.pop("my_gold", None)


def test_a_gold_reward_by_module_or_file_scores_every_answer(repo):
    for spec in ("my_gold:length", "my_gold.py:length", f"{repo / 'my_gold.py'}:length"):
        gold = load_gold_reward(spec, repo)
        assert list(gold([[msg("user", "q")], "p"], ["ab", "abcd"])) == [2.0, 4.0]
    assert source_of("my_gold:length")["file"] == "my_gold.py" and source_of("synthetic") is None


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("raises", r"task\.gold_reward: my_gold:raises raised ZeroDivisionError: no score for you \(scoring 3 answers\)"),
        ("nan", r"task\.gold_reward: my_gold:nan returned nan for answer 2 of 3"),
        ("short", r"task\.gold_reward: my_gold:short returned 2 scores for 3 answers"),
        ("words", r"task\.gold_reward: my_gold:words returned str 'high' for answer 0, expected a float"),
        ("missing", r"task\.gold_reward: my_gold:missing: my_gold has no function 'missing'"),
    ],
)
def test_a_broken_gold_reward_fails_in_one_line(repo, name, says):
    with pytest.raises(GoldRewardError, match=says) as err:
        load_gold_reward(f"my_gold:{name}", repo)(["p"] * 3, ["a", "b", "c"])
    assert isinstance(err.value, StageError) and "\n" not in str(err.value)
    with pytest.raises(GoldRewardError, match=r"cannot import 'no_such_module'"):
        load_gold_reward("no_such_module:f", repo)


def test_prepare_scores_the_heldout_demos_first_and_records_the_scorers_hash(repo):
    write_jsonl(repo / "d.jsonl", [qa(i) for i in range(10)])
    task = TaskParams(name="demos", gold_reward="my_gold:length", demos={"path": "d.jsonl"})
    out = repo / "task"
    out.mkdir()
    made = make_task(task, 0)
    write_task(made, made.rows(), task.gold, out)
    info = read_task_info(out)
    assert info.gold_reward == "my_gold:length" and len(info.gold_source["sha256"]) == 64
    assert load_gold_reward(info.gold_reward, out, info.gold_source)(["p"], ["abc"]) == np.array([3.0])
    (repo / "my_gold.py").write_text(GOLD.replace("float(len(c))", "float(len(c)) * 2"))
    with pytest.raises(GoldRewardError, match=r"my_gold\.py changed since `prepare` scored with it"):
        load_gold_reward(info.gold_reward, out, info.gold_source)
    (repo / "my_gold.py").write_text(GOLD)
    broken = TaskParams(name="demos", gold_reward="my_gold:nan", demos={"path": "d.jsonl"})
    (repo / "task2").mkdir()
    with pytest.raises(GoldRewardError, match="returned nan"):  # before any training
        write_task(make_task(broken, 0), make_task(broken, 0).rows(), broken.gold, repo / "task2")


def test_the_built_in_gold_rewards_are_the_ones_the_schema_names():
    from demo2reward.core.params import GOLD_REWARDS
    from demo2reward.tasks.gold import BUILT_IN

    assert set(BUILT_IN) == set(GOLD_REWARDS)


def test_tasks_without_a_gold_reward_refuse_the_oracle_track():
    base = {"model": {"name_or_path": "x/y"}, "task": {"name": "demos", "demos": {"path": "d.jsonl"}}}
    with pytest.raises(ParamsError, match=r"oracle_tracks: the oracle trains on the task's gold reward"):
        parse_params(base)
    assert parse_params({**base, "oracle_tracks": []}).task.gold is None
    with_gold = parse_params({**base, "task": {**base["task"], "gold_reward": "my_gold:length"}})
    assert with_gold.oracle_tracks == ["oracle"] and with_gold.task.gold == "my_gold:length"
    assert Path("d.jsonl").name == "d.jsonl"
