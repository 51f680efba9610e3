"""The judges against a real OpenAI-compatible HTTP server on 127.0.0.1: no client mocks, no network."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from demo2reward.evaluation.judge import (
    PAIRWISE_TEMPLATE_NAME,
    CachedChat,
    ChatRequest,
    JudgeConfig,
    JudgeError,
    PairwiseJudge,
    SingleAnswerGrader,
    cache_key,
    chat_cache_key,
    parse_rating,
    parse_verdict,
)

KEY_ENV = "D2R_TEST_JUDGE_KEY"
SECRET = "sk-test-SECRET-4f1c2a9be07d"
MODEL = "judge-test"
_RESPONSE = re.compile(r"\[Response ([AB])\]\n(.*?)\n\[End of Response \1\]", re.DOTALL)


def _default_grade(messages: list[dict]) -> str:
    """A rating that depends on the prompt only: 1 + (length of the user message mod 10)."""
    return f"Fine answer.\n\nRating: [[{1 + len(messages[-1]['content']) % 10}]]"


class FakeOpenAI(ThreadingHTTPServer):
    """POST /v1/chat/completions and GET /v1/models, judging deterministically.

    A pairwise prompt (one with [Response A] and [Response B]) gets a verdict: the longer response wins (ties
    say "A"); `mode` "always_a" is a judge with pure position bias, "garbage" one that never answers with a
    letter. Any other prompt is a grading prompt: the answer is `grade(messages)` (`_default_grade` unless set;
    "garbage" mode answers without a rating), and the request body is kept in `graded`.
    The first `fail_first` chat requests get 429, 500, 429, ... (with `Retry-After-Ms` when `retry_after_ms`).
    """

    daemon_threads = True
    request_queue_size = 128  # socketserver's default backlog of 5 drops SYNs from 8+ concurrent connects: a 1 s stall

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.lock = threading.Lock()
        self.chat_requests = 0
        self.model_requests = 0
        self.mode = "longer"
        self.fail_first = 0
        self.retry_after_ms: int | None = None
        self.delay_s = 0.0
        self.seen: list[tuple[str, str]] = []
        self.graded: list[dict] = []
        self.grade: Callable[[list[dict]], str] = _default_grade

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def verdict(self, a: str, b: str) -> str:
        if self.mode == "always_a":
            return "A"
        if self.mode == "garbage":
            return "Both responses have merit."
        return "B" if len(b) > len(a) else "A"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real endpoint behind the client's connection pool
    disable_nagle_algorithm = True  # headers and body go out in two writes: Nagle + delayed ACK would add 40 ms to each
    server: FakeOpenAI

    def log_message(self, *args) -> None:
        pass

    def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if token == SECRET:
            return True
        # Like real servers, echo what was sent: the judge must scrub it from whatever it raises.
        self._send(401, {"error": {"message": f"Incorrect API key provided: {token}", "type": "invalid_request_error"}})
        return False

    def do_GET(self) -> None:
        with self.server.lock:
            self.server.model_requests += 1
        if self.path.rstrip("/") != "/v1/models":
            return self._send(404, {"error": {"message": "not found"}})
        if self._authorized():
            self._send(200, {"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0, "owned_by": "test"}]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        srv = self.server
        with srv.lock:
            srv.chat_requests += 1
            n = srv.chat_requests
        if n <= srv.fail_first:
            status = 429 if n % 2 else 500
            headers = {"retry-after-ms": str(srv.retry_after_ms)} if srv.retry_after_ms is not None else {}
            return self._send(status, {"error": {"message": f"synthetic {status}", "type": "test"}}, headers)
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": {"message": "not found"}})
        if not self._authorized():
            return None
        prompt = body["messages"][-1]["content"]
        found = dict(_RESPONSE.findall(prompt))
        if {"A", "B"} <= found.keys():
            with srv.lock:
                srv.seen.append((found["A"], found["B"]))
            answer = srv.verdict(found["A"], found["B"])
            completion_tokens = 1
        else:
            with srv.lock:
                srv.graded.append(body)
            answer = "I cannot rate this." if srv.mode == "garbage" else srv.grade(body["messages"])
            completion_tokens = len(answer.split())
        time.sleep(srv.delay_s)
        prompt_tokens = sum(len(m["content"].split()) for m in body["messages"])
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        self._send(
            200,
            {
                "id": f"chatcmpl-{n}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": usage,
            },
        )


@contextlib.contextmanager
def running_server() -> Iterator[FakeOpenAI]:
    """A FakeOpenAI serving on a background thread for the duration of the block (other test modules reuse it)."""
    srv = FakeOpenAI()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join()


def judge_config_for(srv: FakeOpenAI, cache_path, monkeypatch) -> JudgeConfig:
    """A JudgeConfig pointing at `srv`, with its key exported."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    return JudgeConfig(
        model=MODEL,
        base_url=srv.base_url,
        api_key_env=KEY_ENV,
        max_concurrency=8,
        max_retries=3,
        timeout_s=5,
        cache_path=cache_path,
    )


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with running_server() as srv:
        yield srv


@pytest.fixture
def config(server, tmp_path, monkeypatch) -> JudgeConfig:
    return judge_config_for(server, tmp_path / "judge.sqlite", monkeypatch)


def _pairs(n: int) -> tuple[list[str], list[str], list[str]]:
    """Even i: the answer is longer (wins); odd i: the reference is longer (answer loses)."""
    questions = [f"question {i}?" for i in range(n)]
    answers = [f"answer {i} " + ("with a lot more detail " if i % 2 == 0 else "") for i in range(n)]
    references = [f"reference {i} " + ("with a lot more detail " if i % 2 == 1 else "") for i in range(n)]
    return questions, answers, references


def _expected(n: int) -> list[float]:
    return [1.0 if i % 2 == 0 else 0.0 for i in range(n)]


@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("A", "A"),
        (" b\n", "B"),
        ("**A**", "A"),
        ("[[B]]", "B"),
        ("A.", "A"),
        ('"B"', "B"),
        ("Response A", "A"),
        ("Verdict: B", "B"),
        ("", None),
        (None, None),
        ("AB", None),
        ("A or B", None),
        ("Both are fine.", None),
        ("C", None),
        ("Assistant A gives a clearer answer, so it wins.\n\n[[A]]", "A"),  # FastChat's format
        ("Both are close. [[C]]", "C"),  # a tie the judge gave
        ("At first [[A]] seemed right, but my final verdict: [[B]]", "B"),
        ('{"winner": "B", "reason": "more accurate"}', "B"),
        ("Assistant A is better than Assistant B.", "A"),
        ("Response B.", "B"),
        ("Assistant A and Assistant B are both fine.", None),
    ],
)
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_both_orders_give_win_loss(server, config):
    questions, answers, references = _pairs(6)
    scores, usage = PairwiseJudge(config).win_rates(questions, answers, references)
    assert scores == _expected(6)
    assert server.chat_requests == 12 and usage["requests"] == 12 and usage["cache_hits"] == 0
    # Every pair went out once with the answer in slot A and once in slot B.
    for a, r in zip(answers, references, strict=True):
        assert (a, r) in server.seen and (r, a) in server.seen
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] == 12
    assert usage["cost_usd"] == pytest.approx((usage["prompt_tokens"] * 2.5 + 12 * 10.0) / 1e6)
    assert usage["ties"] == usage["position_inconsistent"] == usage["unparsed"] == 0


def test_position_bias_cancels(server, config):
    server.mode = "always_a"
    questions, answers, references = _pairs(6)
    scores, usage = PairwiseJudge(config).win_rates(questions, answers, references)
    assert scores == [0.5] * 6
    assert usage["position_inconsistent"] == usage["ties"] == 6


def test_equal_responses_and_unparsable_answers_tie(server, config):
    scores, usage = PairwiseJudge(config).win_rates(["q?"], ["same answer"], ["same answer"])
    assert scores == [0.5] and usage["requests"] == 1  # both orders are one and the same call
    server.mode = "garbage"
    questions, answers, references = _pairs(4)
    with pytest.raises(JudgeError, match=r"8 of 8 judge replies held no A/B verdict .* one of them: "):
        PairwiseJudge(config).win_rates(questions, answers, references)


def test_retries_recover_from_429_and_500(server, config):
    """No Retry-After: the client's own exponential backoff (0.5 s first step) recovers."""
    server.fail_first = 4
    questions, answers, references = _pairs(5)
    scores, usage = PairwiseJudge(config).win_rates(questions, answers, references)
    assert scores == _expected(5)
    assert usage["requests"] == 10 and usage["retries"] == 4
    assert server.chat_requests == usage["requests"] + usage["retries"]


def test_exhausted_retries_raise_one_clear_error_and_keep_progress(server, config):
    questions, answers, references = _pairs(4)
    judge = PairwiseJudge(config)
    judge.win_rates(questions[:2], answers[:2], references[:2])  # 4 verdicts cached
    server.fail_first = 10**6
    server.retry_after_ms = 1  # server-directed backoff keeps this test fast
    with pytest.raises(JudgeError, match=r"failed after 3 retries.*HTTP (429|500)") as err:
        judge.win_rates(questions, answers, references)
    assert SECRET not in str(err.value)
    server.fail_first = 0
    scores, usage = judge.win_rates(questions, answers, references)
    assert scores == _expected(4) and usage["cache_hits"] == 4 and usage["requests"] == 4


def test_rerun_is_served_from_cache(server, config, monkeypatch):
    questions, answers, references = _pairs(8)
    first, _ = PairwiseJudge(config).win_rates(questions[:5], answers[:5], references[:5])
    # A resumed run (new judge, same cache file) only sends what is missing.
    scores, usage = PairwiseJudge(config).win_rates(questions, answers, references)
    assert scores[:5] == first and scores == _expected(8)
    assert usage["cache_hits"] == 10 and usage["requests"] == 6 and server.chat_requests == 16
    scores, usage = PairwiseJudge(config).win_rates(questions, answers, references)
    assert scores == _expected(8)
    assert server.chat_requests == 16 and usage["requests"] == 0 and usage["cache_hits"] == 16 and usage["cost_usd"] == 0
    monkeypatch.delenv(KEY_ENV)  # nothing to send, so no key needed: a finished evaluation can be recomputed offline
    assert PairwiseJudge(config).win_rates(questions, answers, references)[0] == scores


_CHILD = """
import json, sys
from demo2reward.evaluation.judge import JudgeConfig, PairwiseJudge
cfg, pairs = json.load(open(sys.argv[1]))
PairwiseJudge(JudgeConfig(**cfg)).win_rates(*pairs)
"""


def _rows(path) -> int:
    """Committed verdicts in the cache file; 0 while the child has not created it (or its table) yet."""
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path, timeout=5)) as db:
        try:
            return db.execute("SELECT count(*) FROM judgments").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def test_killed_run_resumes_from_what_was_committed(server, config, tmp_path):
    """SIGKILL mid-run: every verdict committed before the kill is reused, only the rest is sent again."""
    server.delay_s = 0.01
    pairs = _pairs(60)
    job = tmp_path / "job.json"
    cfg = {**vars(config), "cache_path": str(config.cache_path), "max_concurrency": 2}
    job.write_text(json.dumps([cfg, pairs]))
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(job)], env=os.environ.copy())
    try:
        deadline = time.monotonic() + 30
        rows = 0
        while rows < 20 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
            rows = _rows(config.cache_path)
        assert child.poll() is None, "the child finished before it could be killed"
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    committed = _rows(config.cache_path)
    assert 20 <= committed < 120
    server.delay_s = 0
    sent_before = server.chat_requests
    scores, usage = PairwiseJudge(config).win_rates(*pairs)
    assert scores == _expected(60)
    assert usage["cache_hits"] == committed and usage["requests"] == 120 - committed
    assert server.chat_requests - sent_before == 120 - committed


def test_cache_key_covers_model_template_and_order():
    base = cache_key(MODEL, "q", "x", "y")
    assert len({base, cache_key("other", "q", "x", "y"), cache_key(MODEL, "q", "y", "x"), cache_key(MODEL, "q2", "x", "y")}) == 4
    assert PAIRWISE_TEMPLATE_NAME == "pairwise-v1"


def test_missing_key_fails_before_any_request(server, config, monkeypatch):
    for value in (None, ""):
        if value is None:
            monkeypatch.delenv(KEY_ENV)
        else:
            monkeypatch.setenv(KEY_ENV, value)
        judge = PairwiseJudge(config)
        with pytest.raises(JudgeError, match=f"{KEY_ENV} is not set or empty"):
            judge.preflight()
        with pytest.raises(JudgeError, match=f"{KEY_ENV} is not set or empty"):
            judge.win_rates(*_pairs(3))
    assert server.chat_requests == server.model_requests == 0


def test_preflight(server, config, tmp_path):
    PairwiseJudge(config).preflight()
    assert server.model_requests == 1 and server.chat_requests == 0
    wrong_model = JudgeConfig(**{**vars(config), "model": "gpt-nope"})
    with pytest.raises(JudgeError, match="'gpt-nope' is not served"):
        PairwiseJudge(wrong_model).preflight()
    PairwiseJudge(wrong_model).preflight(check_model=False)

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = JudgeConfig(**{**vars(config), "base_url": f"http://127.0.0.1:{port}/v1"})
    with pytest.raises(JudgeError, match="unreachable"):
        PairwiseJudge(down).preflight()


def test_key_never_leaks(server, config, monkeypatch):
    judge = PairwiseJudge(config)
    _, usage = judge.win_rates(*_pairs(2))
    assert SECRET not in repr(config) and SECRET not in repr(judge) and SECRET not in json.dumps(usage)
    # The server echoes a refused key in its 401 body; the raised message must not carry it.
    monkeypatch.setenv(KEY_ENV, SECRET + "-revoked")
    for call in (judge.preflight, lambda: judge.win_rates(["new?"], ["a"], ["b"])):
        with pytest.raises(JudgeError) as err:
            call()
        assert "401" in str(err.value) and SECRET not in str(err.value)
        assert err.value.__cause__ is None and err.value.__context__ is None  # the client's error text is not chained
    with pytest.raises(ValueError, match="NAME of an environment variable") as err:
        JudgeConfig(api_key_env=SECRET)
    assert SECRET not in str(err.value)


def test_500_pairs(server, config, capsys):
    questions, answers, references = _pairs(500)
    t0 = time.perf_counter()
    scores, usage = PairwiseJudge(config).win_rates(questions, answers, references)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    cached, again = PairwiseJudge(config).win_rates(questions, answers, references)
    rerun = time.perf_counter() - t0
    with capsys.disabled():
        print(
            f"\n500 pairs / {usage['requests']} requests, concurrency {config.max_concurrency}: "
            f"first run {first:.2f} s, cached rerun {rerun:.3f} s ({again['cache_hits']} cache hits)"
        )
    assert scores == cached == _expected(500)
    assert usage["requests"] == 1000 and server.chat_requests == 1000
    assert again["requests"] == 0 and again["cache_hits"] == 1000


@pytest.mark.parametrize(
    ("text", "rating"),
    [
        ("Short explanation.\n\nRating: [[7]]", 7.0),
        ("[[8.5]]", 8.5),
        ("Rating: [[10]]", 10.0),
        ("I give it [6].", 6.0),  # FastChat's backup pattern
        ("[9] on style, but overall [[4]]", 4.0),  # the double-bracket pattern is tried first, anywhere
        ("[[3]] ... [[9]]", 3.0),  # first match
        ("[[07]]", 7.0),  # FastChat's ast.literal_eval would raise here
        ("Rating: 7/10", -1.0),
        ("[[ 7 ]]", -1.0),
        ("", -1.0),
        (None, -1.0),
    ],
)
def test_parse_rating(text, rating):
    assert parse_rating(text) == rating


def _grading(n: int, system: str | None = "You are a helpful assistant.") -> list[ChatRequest]:
    return [ChatRequest(user=f"[Question]\nq{i}?\n\n[Answer]\n{'x' * i}", system=system, label="single-v1") for i in range(n)]


def test_grader_sends_system_prompt_rates_and_caches(server, config):
    grader = SingleAnswerGrader(config)
    requests = _grading(6)
    ratings, texts, usage = grader.grade(requests)
    assert ratings == [float(1 + len(r.user) % 10) for r in requests]
    assert all("Rating: [[" in t for t in texts)
    assert usage["requests"] == 6 and usage["graded"] == 6 and usage["unparsed"] == 0 and usage["cache_hits"] == 0
    assert usage["completion_tokens"] > 0 and usage["cost_usd"] > 0
    body = server.graded[0]
    assert body["messages"][0] == {"role": "system", "content": "You are a helpful assistant."}
    assert body["messages"][1]["role"] == "user" and len(body["messages"]) == 2
    assert body["temperature"] == 0 and body["max_tokens"] == 2048  # grading_max_tokens, not the pairwise 8
    # Rerun: nothing sent, and no key needed.
    again = SingleAnswerGrader(config).grade(requests)
    assert again[:2] == (ratings, texts) and again[2]["requests"] == 0 and again[2]["cache_hits"] == 6
    assert server.chat_requests == 6


def test_grader_counts_unparsable_and_shares_the_cache_file(server, config):
    server.mode = "garbage"
    with pytest.raises(JudgeError, match=r"3 of 3 judge replies held no \[\[rating\]\]"):
        SingleAnswerGrader(config).grade(_grading(3, system=None))
    assert all(len(b["messages"]) == 1 for b in server.graded)  # no system prompt, no system message
    server.mode = "longer"
    PairwiseJudge(config).win_rates(*_pairs(1))
    with contextlib.closing(sqlite3.connect(config.cache_path)) as db:
        labels = sorted(r[0] for r in db.execute("SELECT template FROM judgments"))
    assert labels == [PAIRWISE_TEMPLATE_NAME] * 2 + ["single-v1"] * 3


def test_chat_cache_key_covers_model_system_and_user():
    base = chat_cache_key(MODEL, "sys", "user")
    variants = {
        chat_cache_key("other", "sys", "user"),
        chat_cache_key(MODEL, None, "user"),
        chat_cache_key(MODEL, "sys", "user2"),
    }
    assert base not in variants and len(variants) == 3
    assert base != cache_key(MODEL, "sys", "user", "")


def test_generic_completion_dedupes_and_keeps_the_key_out(server, config, monkeypatch):
    chat = CachedChat(config)
    texts, usage = chat.complete([ChatRequest("same"), ChatRequest("same"), ChatRequest("other")], max_tokens=None)
    assert texts[0] == texts[1] and usage["calls"] == 3 and usage["requests"] == 2 and usage["cache_hits"] == 1
    assert "max_tokens" not in server.graded[0]  # None omits it
    monkeypatch.setenv(KEY_ENV, SECRET + "-revoked")
    with pytest.raises(JudgeError) as err:
        SingleAnswerGrader(config).grade([ChatRequest("new")])
    assert "401" in str(err.value) and SECRET not in str(err.value) and SECRET not in repr(chat)
