"""Real-task loaders on small fixture files written in the exact upstream schemas (no hub access needed)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import datasets
import huggingface_hub.constants
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from demo2reward.core.artifacts import read_jsonl
from demo2reward.core.params import TLDR_PREFS_PREPROCESSED_ID, ParamsError, TaskParams, parse_params
from demo2reward.tasks.prepare import make_task, write_task
from demo2reward.tasks.sources import TaskDataError
from demo2reward.tasks.tldr import tldr_prompt


def tldr_task(**options) -> TaskParams:
    return TaskParams(name="tldr", tldr=options)


def ultrachat_task(**options) -> TaskParams:
    return TaskParams(name="ultrachat", ultrachat=options)


def task_rows(task: TaskParams) -> dict[str, list[dict]]:
    """The tables of a task, by name."""
    rows = make_task(task, 0).rows()
    return {"train": rows.train, "heldout": rows.heldout, "heldout_prefs": rows.heldout_prefs, "human_prefs": rows.human_prefs}


def write_task_files(task: TaskParams, out: Path) -> dict[str, int]:
    out.mkdir(parents=True)
    made = make_task(task, 0)
    return write_task(made, made.rows(), None, out)


# --------------------------------------------------------------------------- fixtures in the upstream schemas


def tldr_demo(i: int, post: str | None = None) -> dict:
    """A vwxyzjn/summarize_from_feedback_tldr_3_filtered row."""
    return {
        "id": f"t3_{i}",
        "subreddit": "relationships",
        "title": f"Title {i}",
        "post": post if post is not None else f"Post body {i}.\nSecond line.",
        "summary": f" summary {i}",
    }


def comparison(i: int, choice: int, batch: str = "batch5") -> dict:
    """An openai/summarize_from_feedback `comparisons` row (info/summaries/choice/worker/batch/split/extra)."""
    return {
        "info": {
            "id": f"t3_c{i}",
            "post": f"Compared post {i}",
            "title": f"Compared title {i}",
            "subreddit": "AskReddit",
            "site": None,
            "article": None,
        },
        "summaries": [
            {"text": f" first summary {i}", "policy": "sup2", "note": None},
            {"text": f" second summary {i}", "policy": "ref", "note": None},
        ],
        "choice": choice,
        "worker": "w1",
        "batch": batch,
        "split": "valid1",
        "extra": {"confidence": 7},
    }


def cnndm_comparison(i: int) -> dict:
    row = comparison(i, 0, batch="cnndm0")
    row["info"] = {"id": f"dm{i}", "post": None, "title": None, "subreddit": None, "site": "dailymail", "article": "An article."}
    return row


def preprocessed_comparison(i: int, choice: int) -> dict:
    """A vwxyzjn/summarize_from_feedback_oai_preprocessing_* row: the raw columns plus query/chosen/rejected."""
    row = comparison(i, choice)
    info = row["info"]
    chosen, rejected = row["summaries"][choice]["text"], row["summaries"][1 - choice]["text"]
    query = tldr_prompt(info["subreddit"], info["title"], info["post"])
    return {
        **row,
        "query": query,
        "query_token": [1, 2, 3],
        "chosen": f"{chosen}<|endoftext|>",
        "rejected": f"{rejected}<|endoftext|>",
        "chosen_token_len": 4,
        "rejected_token_len": 4,
        "query_chosen": query + chosen + "<|endoftext|>",
        "query_rejected": query + rejected + "<|endoftext|>",
    }


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def ultrachat(i: int) -> dict:
    """A HuggingFaceH4/ultrachat_200k row with a two-exchange dialogue."""
    messages = [
        msg("user", f"question {i}"),
        msg("assistant", f" answer {i}"),
        msg("user", f"follow-up {i}"),
        msg("assistant", f"final {i}"),
    ]
    return {"prompt": f"question {i}", "prompt_id": f"id{i}", "messages": messages}


def ultrafeedback(prompt: str, i: int) -> dict:
    """A HuggingFaceH4/ultrafeedback_binarized test_prefs row."""
    chosen = [msg("user", prompt), msg("assistant", f"good {i}")]
    return {
        "prompt": prompt,
        "prompt_id": f"uf{i}",
        "chosen": chosen,
        "rejected": [msg("user", prompt), msg("assistant", f"bad {i}")],
        "messages": chosen,
        "score_chosen": 8.0,
        "score_rejected": 3.0,
    }


def write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def write_parquet(path: Path, rows: list[dict]) -> str:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


@pytest.fixture
def tldr_files(tmp_path) -> dict[str, str]:
    return {
        "demos_path": write_jsonl(tmp_path / "train.jsonl", [tldr_demo(i) for i in range(6)]),
        "heldout_path": write_parquet(tmp_path / "validation.parquet", [tldr_demo(100 + i) for i in range(4)]),
        "prefs_path": write_jsonl(
            tmp_path / "comparisons.jsonl", [comparison(0, 0), comparison(1, 1), cnndm_comparison(2), comparison(3, 1)]
        ),
    }


def ultrachat_local_copies(root: Path, n_train: int, n_test: int, n_prefs: int) -> dict[str, str]:
    """ultrachat_200k as a save_to_disk DatasetDict and ultrafeedback_binarized test_prefs as parquet."""
    demos = root / "ultrachat_200k"
    datasets.DatasetDict(
        {
            "train_sft": datasets.Dataset.from_list([ultrachat(i) for i in range(n_train)]),
            "test_sft": datasets.Dataset.from_list([ultrachat(100 + i) for i in range(n_test)]),
        }
    ).save_to_disk(str(demos))
    prefs = [ultrafeedback(f"pref prompt {i}", i) for i in range(n_prefs)]
    return {"demos_path": str(demos), "prefs_path": write_parquet(root / "test_prefs.parquet", prefs)}


@pytest.fixture
def ultrachat_files(tmp_path) -> dict[str, str]:
    return ultrachat_local_copies(tmp_path, n_train=5, n_test=3, n_prefs=3)


# ------------------------------------------------------------------------------------------------------ TL;DR


def test_tldr_prompt_is_the_upstream_format_exactly():
    expected = "SUBREDDIT: r/relationships\n\nTITLE: My title\n\nPOST: Line one.\nLine two.\n\nTL;DR:"
    assert tldr_prompt("relationships", "My title", "Line one.\nLine two.") == expected


def test_tldr_demos_and_comparisons_keep_the_human_choice(tldr_files):
    rows = task_rows(tldr_task(**tldr_files, seed=None))

    assert len(rows["train"]) == 6 and len(rows["heldout"]) == 4
    first = rows["train"][0]
    assert first == {
        "prompt": [msg("user", "SUBREDDIT: r/relationships\n\nTITLE: Title 0\n\nPOST: Post body 0.\nSecond line.\n\nTL;DR:")],
        "completion": [msg("assistant", "summary 0")],  # the leading space of the upstream summary is stripped
    }
    assert rows["heldout"][0]["prompt"][0]["content"].startswith("SUBREDDIT: r/relationships\n\nTITLE: Title 100\n\n")

    prefs = rows["heldout_prefs"]
    assert len(prefs) == 3  # the CNN/DM row is not a Reddit post and is skipped
    by_post = {p["prompt"][0]["content"].split("POST: ")[1].split("\n")[0]: p for p in prefs}
    choice0, choice1 = by_post["Compared post 0"], by_post["Compared post 1"]
    assert choice0["chosen"] == [msg("assistant", "first summary 0")] and choice0["rejected"] == [
        msg("assistant", "second summary 0")
    ]
    assert choice1["chosen"] == [msg("assistant", "second summary 1")] and choice1["rejected"] == [
        msg("assistant", "first summary 1")
    ]
    assert choice0["prompt"] == [msg("user", tldr_prompt("AskReddit", "Compared title 0", "Compared post 0"))]


def test_tldr_preprocessed_comparisons_from_parquet(tmp_path, tldr_files):
    prefs = write_parquet(tmp_path / "oai_pre.parquet", [preprocessed_comparison(0, 0), preprocessed_comparison(1, 1)])
    config = tldr_task(**{**tldr_files, "prefs_path": prefs}, prefs_id=TLDR_PREFS_PREPROCESSED_ID, prefs_config=None, seed=None)
    pairs = task_rows(config)["heldout_prefs"]
    assert [p["chosen"][0]["content"] for p in pairs] == ["first summary 0", "second summary 1"]  # EOS marker removed
    assert [p["rejected"][0]["content"] for p in pairs] == ["second summary 0", "first summary 1"]
    assert pairs[0]["prompt"][0]["content"] == tldr_prompt("AskReddit", "Compared title 0", "Compared post 0")


# -------------------------------------------------------------------------------------------------- UltraChat


def test_ultrachat_first_turn_vs_all_turns(ultrachat_files):
    first = task_rows(ultrachat_task(**ultrachat_files, turns="first_turn", seed=None))
    every = task_rows(ultrachat_task(**ultrachat_files, turns="all_turns", seed=None))

    assert first["train"][0] == {"prompt": [msg("user", "question 0")], "completion": [msg("assistant", "answer 0")]}
    assert every["train"][0] == {
        "prompt": [msg("user", "question 0"), msg("assistant", " answer 0"), msg("user", "follow-up 0")],
        "completion": [msg("assistant", "final 0")],
    }
    # One multi-split save_to_disk folder serves both the train_sft and the test_sft split.
    assert len(first["train"]) == 5 and first["heldout"][0]["prompt"] == [msg("user", "question 100")]
    assert first["heldout_prefs"][0] == {
        "prompt": [msg("user", "pref prompt 0")],
        "chosen": [msg("assistant", "good 0")],
        "rejected": [msg("assistant", "bad 0")],
    }


def test_heldout_prompts_that_occur_in_train_are_dropped(tmp_path, ultrachat_files):
    overlap = [ultrafeedback("question 1", 0), ultrafeedback("fresh prompt", 1)]
    prefs = write_jsonl(tmp_path / "prefs.jsonl", overlap)
    pairs = task_rows(ultrachat_task(**{**ultrachat_files, "prefs_path": prefs}))["heldout_prefs"]
    assert [p["prompt"][0]["content"] for p in pairs] == ["fresh prompt"]
    kept = task_rows(ultrachat_task(**{**ultrachat_files, "prefs_path": prefs}, drop_train_overlap=False))
    assert len(kept["heldout_prefs"]) == 2


def test_hub_snapshot_folder_and_single_save_to_disk_dataset(tmp_path, ultrachat_files):
    snapshot = tmp_path / "snapshot"
    (snapshot / "data").mkdir(parents=True)
    write_parquet(snapshot / "data" / "test_prefs-00000-of-00001.parquet", [ultrafeedback(f"snap {i}", i) for i in range(2)])
    single = tmp_path / "single_prefs"
    datasets.Dataset.from_list([ultrafeedback("disk", 0)]).save_to_disk(str(single))

    cache = str(tmp_path / "cache")
    from_snapshot = task_rows(ultrachat_task(**{**ultrachat_files, "prefs_path": str(snapshot)}, cache_dir=cache))
    from_single = task_rows(ultrachat_task(**{**ultrachat_files, "prefs_path": str(single)}))
    assert sorted(p["prompt"][0]["content"] for p in from_snapshot["heldout_prefs"]) == ["snap 0", "snap 1"]
    assert from_single["heldout_prefs"][0]["prompt"] == [msg("user", "disk")]


# ------------------------------------------------------------------------------------------- sizes and limits


def test_sizes_sample_reproducibly_and_fail_loudly_when_too_few(tldr_files):
    config = tldr_task(**tldr_files, n_train=3, n_heldout=2, n_heldout_pairs=2, seed=1)
    rows = task_rows(config)
    assert [len(rows[k]) for k in ("train", "heldout", "heldout_prefs")] == [3, 2, 2]
    assert task_rows(config) == rows  # same seed, same rows
    assert (
        task_rows(tldr_task(**tldr_files, n_train=3, seed=None))["train"]
        == task_rows(tldr_task(**tldr_files, seed=None))["train"][:3]
    )  # seed=None takes the first rows in file order

    with pytest.raises(TaskDataError, match=r"task\.tldr\.n_heldout_pairs=4 but only 3 of 4 rows pass"):
        task_rows(tldr_task(**tldr_files, n_heldout_pairs=4))


def test_length_limits_filter_rows_instead_of_truncating(tmp_path, tldr_files):
    demos = [tldr_demo(0, post="short"), tldr_demo(1, post="x" * 500), tldr_demo(2, post="short too")]
    path = write_jsonl(tmp_path / "mixed.jsonl", demos)
    rows = task_rows(tldr_task(**{**tldr_files, "demos_path": path}, max_prompt_chars=200, seed=None))
    assert [r["completion"][0]["content"] for r in rows["train"]] == ["summary 0", "summary 2"]
    assert all(len(r["prompt"][0]["content"]) <= 200 for r in rows["train"] + rows["heldout"])

    short = task_rows(tldr_task(**tldr_files, max_response_chars=len("second summary 0")))
    assert all(len(p["chosen"][0]["content"]) <= 16 and len(p["rejected"][0]["content"]) <= 16 for p in short["heldout_prefs"])


def test_config_rejects_bad_values_by_key():
    with pytest.raises(ParamsError, match=r"task\.tldr\.n_train: Input should be greater than or equal to 1"):
        parse_params({"task": {"tldr": {"n_train": 0}}})
    with pytest.raises(ParamsError, match=r"task\.ultrachat\.turns"):
        parse_params({"task": {"ultrachat": {"turns": "every"}}})
    with pytest.raises(ParamsError, match=r"task\.tldr\.n_trian: unknown key"):
        parse_params({"task": {"tldr": {"n_trian": 3}}})


# ------------------------------------------------------------------------------------------------------- errors


def _assert_clean(err: pytest.ExceptionInfo) -> None:
    """`raise ... from None`: no datasets/huggingface_hub traceback chained under our message."""
    assert err.value.__cause__ is None and (err.value.__context__ is None or err.value.__suppress_context__)


def test_unreachable_hub_fails_fast_with_one_clear_error(tmp_path):
    """No local path: the hub id is tried. Offline mode makes it fail at once (online it retries ~25 s first)."""
    flags = (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)
    start = time.monotonic()
    with pytest.raises(TaskDataError) as err:
        task_rows(ultrachat_task(offline=True, cache_dir=str(tmp_path / "cache")))
    assert time.monotonic() - start < 5
    assert "cannot reach HuggingFaceH4/ultrachat_200k on the hub" in str(err.value)
    assert "set task.ultrachat.demos_path to a local jsonl/parquet/save_to_disk copy" in str(err.value)
    _assert_clean(err)
    assert flags == (datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE)  # restored


def test_hf_hub_offline_env_set_after_import_is_honoured(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(TaskDataError, match=r"cannot reach .*tldr_3_filtered .*set task\.tldr\.demos_path") as err:
        task_rows(tldr_task(cache_dir=str(tmp_path / "cache")))
    assert time.monotonic() - start < 5
    _assert_clean(err)


@pytest.mark.parametrize(
    ("drop", "n", "key"),
    [("heldout_path", {}, "heldout_path"), ("prefs_path", {}, "prefs_path"), ("prefs_path", {"n_human_pairs": 2}, "prefs_path")],
)
def test_local_demos_never_pair_with_the_hubs_other_tables(tldr_files, drop, n, key):
    """A local copy of the demonstrations with a table left to the hub is refused before anything loads: the user's
    run would be evaluated on someone else's data without a word. n_heldout_pairs: 0 runs without pairs instead."""
    local = {k: v for k, v in tldr_files.items() if k != drop}
    with pytest.raises(ParamsError, match=rf"task\.tldr: .*{key}: demos_path is a local copy, so the .* hub without a word"):
        parse_params({"task": {"name": "tldr", "tldr": {**local, **n}}})
    without_pairs = {k: v for k, v in tldr_files.items() if k != "prefs_path"}
    rows = make_task(tldr_task(**without_pairs, n_heldout_pairs=0), 0).rows()
    assert rows.heldout_prefs == [] and "n_heldout_pairs: 0" in rows.absent["heldout_prefs"]
    with pytest.raises(ParamsError, match=r"human_prefs_path: demos_path is a local copy"):
        parse_params({"task": {"name": "tldr", "tldr": {**tldr_files, "n_human_pairs": 2}}})


@pytest.mark.parametrize(
    ("key", "drop", "writer", "missing"),
    [
        ("demos_path", "summary", write_jsonl, "summary"),
        ("prefs_path", "choice", write_parquet, "choice"),
    ],
)
def test_missing_column_names_the_file_and_the_column(tmp_path, tldr_files, key, drop, writer, missing):
    rows = [tldr_demo(0)] if key == "demos_path" else [comparison(0, 0)]
    bad = writer(
        tmp_path / f"bad{'.jsonl' if writer is write_jsonl else '.parquet'}",
        [{k: v for k, v in r.items() if k != drop} for r in rows],
    )
    with pytest.raises(TaskDataError) as err:
        task_rows(tldr_task(**{**tldr_files, key: bad}))
    assert bad in str(err.value) and f"missing column(s) {missing}" in str(err.value)
    _assert_clean(err)


def test_missing_column_in_a_save_to_disk_folder(tmp_path, ultrachat_files):
    folder = tmp_path / "no_messages"
    datasets.DatasetDict({"train_sft": datasets.Dataset.from_list([{"prompt": "q", "prompt_id": "1"}])}).save_to_disk(str(folder))
    with pytest.raises(TaskDataError, match=rf"{folder}: missing column\(s\) messages"):
        task_rows(ultrachat_task(**{**ultrachat_files, "demos_path": str(folder)}))


def test_bad_local_paths_and_values_are_named(tmp_path, tldr_files):
    with pytest.raises(TaskDataError, match=r"nowhere\.jsonl: not found \(set by task\.tldr\.demos_path\)"):
        task_rows(tldr_task(**{**tldr_files, "demos_path": str(tmp_path / "nowhere.jsonl")}))
    wrong = write_jsonl(tmp_path / "wrong.jsonl", [{**comparison(0, 0), "choice": 2}])
    with pytest.raises(TaskDataError, match=r"wrong\.jsonl: line 1: .*choice 0 or 1"):
        task_rows(tldr_task(**{**tldr_files, "prefs_path": wrong}))


def test_write_task_files_uses_the_synthetic_task_names(tmp_path, tldr_files):
    rows = task_rows(tldr_task(**tldr_files))
    counts = write_task_files(tldr_task(**tldr_files), tmp_path / "task")
    assert counts == {"train": 6, "heldout": 4, "heldout_pairs": 3, "human_pairs": 0, "pretrain": 0}
    assert (
        read_jsonl(tmp_path / "task" / "heldout_prefs.jsonl", required=("prompt", "chosen", "rejected")) == rows["heldout_prefs"]
    )
    info = json.loads((tmp_path / "task" / "task.json").read_text())
    assert info["name"] == "tldr" and info["gold_reward"] is None and info["tables"]["heldout_prefs"] == 3
    assert "no gold reward" in info["absent"]["gold_reward"]


def test_human_pairs_come_from_the_training_split_minus_evaluated_prompts(tmp_path, tldr_files):
    """reward.human_pairs' pool: the comparisons' train split (TL;DR) or train_prefs (UltraFeedback), never a row whose
    prompt is evaluated; none is loaded unless n_human_pairs asks, and too few fail with the key."""
    train_split = [comparison(10 + i, i % 2) for i in range(4)] + [comparison(0, 1)]  # post 0 is a held-out pair's
    human = write_jsonl(tmp_path / "comparisons_train.jsonl", train_split)
    assert task_rows(tldr_task(**tldr_files))["human_prefs"] == []
    rows = task_rows(tldr_task(**tldr_files, human_prefs_path=human, n_human_pairs=4, seed=None))
    posts = [p["prompt"][0]["content"].split("POST: ")[1].split("\n")[0] for p in rows["human_prefs"]]
    assert posts == [f"Compared post {10 + i}" for i in range(4)]
    assert rows["human_prefs"][1]["chosen"] == [msg("assistant", "second summary 11")]
    counts = write_task_files(tldr_task(**tldr_files, human_prefs_path=human, n_human_pairs=4, seed=None), tmp_path / "task")
    assert counts["human_pairs"] == 4
    with pytest.raises(
        TaskDataError, match=r"task.tldr.n_human_pairs=5 but only 4 of 5 rows pass the filters \(1 prompt evaluated\)"
    ):
        task_rows(tldr_task(**tldr_files, human_prefs_path=human, n_human_pairs=5))

    uf = ultrachat_local_copies(tmp_path / "uc", n_train=5, n_test=3, n_prefs=3)
    train_prefs = write_parquet(tmp_path / "train_prefs.parquet", [ultrafeedback(f"train prompt {i}", i) for i in range(3)])
    rows = task_rows(ultrachat_task(**uf, human_prefs_path=train_prefs, n_human_pairs=2))
    assert {p["prompt"][0]["content"] for p in rows["human_prefs"]} < {f"train prompt {i}" for i in range(3)}
    assert len(rows["human_prefs"]) == 2 and all(p["chosen"][0]["content"].startswith("good") for p in rows["human_prefs"])
