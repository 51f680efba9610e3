"""LLM-as-judge over any OpenAI-compatible endpoint: cached on disk, bounded, retried, costed.

`CachedChat` is the one way this project talks to a judge model: every chat completion's raw answer is
committed to a SQLite cache as soon as it arrives, so a rerun, or a run resumed after a crash or a
rate-limit abort, sends no request for what it already has. Two judges are built on it:

* `PairwiseJudge`: each (question, answer, reference) pair is judged twice, once in each order, so that
  a judge that favours the first (or second) slot cannot move the score: only a verdict that survives the
  swap counts as a win or a loss, anything else is a tie.
* `SingleAnswerGrader`: a 1-10 rating per prompt, parsed as FastChat's llm_judge does (MT-Bench).

The API key is read from the environment at call time and is never stored on these objects, so it cannot
end up in a repr, a params file, MLflow or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import openai

from demo2reward.core.params import EvaluateParams

log = logging.getLogger(__name__)

PAIRWISE_TEMPLATE_NAME = "pairwise-v1"
# Bump PAIRWISE_TEMPLATE_NAME with any edit: the name and the text are both in the cache key, but the
# name is what a reader of MLflow sees.
PAIRWISE_TEMPLATE = """\
You are an impartial judge. Compare two responses to the same question and decide which one is better: \
more helpful, correct, relevant and clear. Do not let the order of the responses, their length or their \
style sway you.

[Question]
{question}

[Response A]
{response_a}
[End of Response A]

[Response B]
{response_b}
[End of Response B]

Which response is better? Answer with exactly one letter: A or B."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# "A", "b", "**A**", "[[B]]", "A.", "Response A", "Verdict: B"; a sentence is not a verdict.
_VERDICT = re.compile(r"(?:(?:response|answer|verdict|winner|final answer)\s*:?\s*)?([AB])", re.IGNORECASE)
_STRIP = " \t\r\n*_`'\"[](){}<>.,:;!"
# FastChat llm_judge/common.py `one_score_pattern` and `one_score_pattern_backup`, tried in that order with re.search.
RATING_PATTERN = re.compile(r"\[\[(\d+\.?\d*)\]\]")
RATING_PATTERN_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
UNPARSED_RATING = -1.0
CHAT_KEY_VERSION = "chat-v1"  # namespaces CachedChat keys away from the pairwise ones in the shared table


def _default_cache_path() -> Path:
    """Outside the repository on purpose: a queued `dvc exp run` works in a temp copy that a repo-relative cache dies with."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "demo2reward" / "judge.sqlite"


class JudgeError(RuntimeError):
    """The judge cannot run or finish: no key, unreachable endpoint, or requests that failed after every retry."""


@dataclass
class JudgeConfig:
    """Where the judge lives and what it may spend; safe to log as-is (it holds the key's variable name, not the key)."""

    model: str = field(default="gpt-4o", metadata={"help": "Judge model name sent to the endpoint; part of the cache key."})
    base_url: str | None = field(
        default=None,
        metadata={"help": "OpenAI-compatible base URL, e.g. http://localhost:8000/v1; None = OpenAI (or $OPENAI_BASE_URL)."},
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY",
        metadata={"help": "NAME of the environment variable holding the API key; the key itself never goes in config."},
    )
    max_concurrency: int = field(default=8, metadata={"help": "Most requests in flight at once (retries included)."})
    max_retries: int = field(
        default=5, metadata={"help": "Retries per request on 408/409/429/5xx, timeouts and connection errors (client backoff)."}
    )
    timeout_s: float = field(default=60.0, metadata={"help": "Per-attempt request timeout in seconds."})
    price_per_1m_input: float = field(default=2.5, metadata={"help": "USD per 1M prompt tokens (gpt-4o list price)."})
    price_per_1m_output: float = field(default=10.0, metadata={"help": "USD per 1M completion tokens (gpt-4o list price)."})
    cache_path: str | Path | None = field(
        default_factory=_default_cache_path,
        metadata={"help": "SQLite file of past verdicts; None keeps them in memory only (nothing survives the process)."},
    )
    temperature: float | None = field(
        default=0.0, metadata={"help": "Sampling temperature; None omits it (models that reject it)."}
    )
    max_tokens: int | None = field(
        default=8, metadata={"help": "Completion token cap; the verdict is one letter. None omits it (reasoning models)."}
    )
    grading_max_tokens: int | None = field(
        default=2048,
        metadata={
            "help": "Completion token cap of single-answer grading (MT-Bench), whose rating comes after an explanation; "
            "FastChat uses 2048. None omits it."
        },
    )

    def __post_init__(self) -> None:
        # The value is not echoed: someone who pasted the key here must not see it again in a traceback.
        if not _ENV_NAME.fullmatch(self.api_key_env or ""):
            raise ValueError("api_key_env must be the NAME of an environment variable (e.g. OPENAI_API_KEY), not the key itself")
        if self.max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")
        for name in ("max_tokens", "grading_max_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")


_BRACKETED = re.compile(r"\[\[([ABC])\]\]")  # FastChat's pairwise judges end with [[A]], [[B]] or [[C]] (a tie)
_NAMED_BETTER = re.compile(
    r"\b(?:assistant|response|answer|output)\s+([AB])\b"
    r"(?=[^.\n]{0,40}\b(?:is|was)\s+(?:better|more|the better|superior|preferred))",
    re.IGNORECASE,
)
_NAMED = re.compile(r"\b(?:assistant|response|answer|output)\s+([AB])\b", re.IGNORECASE)
UNPARSED_TOLERANCE = 0.05  # more unparsed verdicts than this fraction fail the evaluation


def parse_verdict(text: str | None) -> str | None:
    """'A' or 'B' (or 'C', a tie the judge gave) from a judge's answer, else None (no verdict).

    The formats judges use: a bare letter with markup ("**A**", "Verdict: B"); FastChat's "[[A]]" / "[[B]]" / "[[C]]"
    after an explanation (the last one counts); JSON such as {"winner": "A"}; and prose that names one response only
    ("Assistant A is better", "Response B").
    """
    text = (text or "").strip()
    if m := _VERDICT.fullmatch(text.strip(_STRIP)):
        return m.group(1).upper()
    if brackets := _BRACKETED.findall(text):
        return brackets[-1]
    with contextlib.suppress(ValueError, AttributeError):
        obj = json.loads(text)
        for key in ("winner", "verdict", "better", "choice", "answer"):
            value = str(obj.get(key, "")).strip(_STRIP).upper()
            if value in ("A", "B"):
                return value
    if better := {m.upper() for m in _NAMED_BETTER.findall(text)}:
        return better.pop() if len(better) == 1 else None
    named = {m.upper() for m in _NAMED.findall(text)}
    return named.pop() if len(named) == 1 else None


def check_parsed(unparsed: int, total: int, texts: Sequence[str | None], what: str) -> None:
    """Fail when more than UNPARSED_TOLERANCE of the judge's replies held no verdict: the numbers would otherwise
    be ties (or missing ratings) that the judge never gave. Cached replies stay cached for the rerun."""
    if total and unparsed > UNPARSED_TOLERANCE * total:
        sample = next((t for t in texts if t), "")
        raise JudgeError(
            f"{unparsed} of {total} judge replies held no {what} (more than {UNPARSED_TOLERANCE:.0%}); one of them: "
            f"{sample[:160]!r}. Use a judge model that follows the prompt (evaluate.llm.model)"
        )


def parse_rating(text: str | None) -> float:
    """The judge's 1-10 rating as FastChat reads it ("[[7]]", else "[7]"), or -1.0 when it gave none.

    Like FastChat, the first match wins and the value is not range-checked. float() instead of FastChat's
    ast.literal_eval gives the same number for every rating literal_eval accepts and does not crash on "[[07]]".
    """
    text = text or ""
    m = RATING_PATTERN.search(text) or RATING_PATTERN_BACKUP.search(text)
    return float(m.group(1)) if m else UNPARSED_RATING


def _first_wins(verdict: str | None, slot: str) -> float:
    """1 if the verdict names the slot that holds the first response, 0 if the other slot, 0.5 for a tie."""
    return 0.5 if verdict in (None, "C") else float(verdict == slot)


def cache_key(model: str, question: str, first: str, second: str) -> str:
    """sha256 over everything that determines one call's prompt and judge; JSON keeps the fields unambiguous."""
    payload = json.dumps([model, PAIRWISE_TEMPLATE_NAME, PAIRWISE_TEMPLATE, question, first, second], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def chat_cache_key(model: str, system: str | None, user: str) -> str:
    """sha256 over the judge model and the exact messages of one `CachedChat` call (sampling settings are not in it)."""
    payload = json.dumps([CHAT_KEY_VERSION, model, system, user], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion: an optional system message, one user message, and a label kept with the cached answer."""

    user: str
    system: str | None = None
    label: str = "chat"

    def messages(self) -> list[dict[str, str]]:
        head = [] if self.system is None else [{"role": "system", "content": self.system}]
        return [*head, {"role": "user", "content": self.user}]


class _Cache:
    """One row per judge call: the raw answer (parsed on read, so a better parser needs no new requests) and its tokens."""

    def __init__(self, path: str | Path | None):
        if path is None:
            target = ":memory:"
        else:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            target = str(path)
        self.conn = sqlite3.connect(target, timeout=30)
        # WAL: a commit is durable against a killed process, and a second process can read while this one writes.
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS judgments (key TEXT PRIMARY KEY, model TEXT NOT NULL, template TEXT NOT NULL,"
            " raw TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, created REAL NOT NULL)"
        )
        self.conn.commit()

    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            chunk = list(keys[i : i + 500])
            marks = ",".join("?" * len(chunk))
            found.update(self.conn.execute(f"SELECT key, raw FROM judgments WHERE key IN ({marks})", chunk).fetchall())
        return found

    def put(
        self, key: str, model: str, raw: str, prompt_tokens: int, completion_tokens: int, template: str = PAIRWISE_TEMPLATE_NAME
    ) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, model, template, raw, prompt_tokens, completion_tokens, time.time()),
        )
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def _scrub(text: str, secret: str | None) -> str:
    """Servers echo keys back in 401 bodies; nothing we raise may carry one."""
    return text.replace(secret, "***") if secret else text


def _describe(err: BaseException, secret: str | None) -> str:
    if isinstance(err, openai.APIStatusError):
        what = f"HTTP {err.status_code}: {err.message}"
    elif isinstance(err, openai.APITimeoutError):
        what = "request timed out"
    elif isinstance(err, openai.APIConnectionError):
        what = f"connection failed ({type(err.__cause__).__name__ if err.__cause__ else 'no response'})"
    else:
        what = f"{type(err).__name__}: {err}"
    return _scrub(what, secret)[:500]


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _transient(err: BaseException) -> bool:
    """What the client retries (openai/_base_client.py `_should_retry`), so the message can say it was retried."""
    if isinstance(err, openai.APIStatusError):
        return err.status_code in (408, 409, 429) or err.status_code >= 500
    return isinstance(err, openai.APIConnectionError)


class CachedChat:
    """Chat completions from one OpenAI-compatible endpoint, each answer cached on disk the moment it arrives.

    Concurrency is asyncio (AsyncOpenAI) under a semaphore rather than a thread pool: the work is
    waiting on the network, so one thread drives hundreds of requests over one connection pool, a
    client-side backoff sleep holds a semaphore slot but no thread (so a 429 storm slows us down instead
    of piling on), and the SQLite writes all happen on that one thread, needing no locks.

    Retries are the client's own: openai's `max_retries` retries 408/409/429/5xx, timeouts and
    connection errors with exponential backoff (0.5 s doubling to 8 s, minus up to 25 % jitter) and
    honours the server's `Retry-After`/`Retry-After-Ms` up to 2 minutes (openai/_base_client.py).
    """

    def __init__(self, config: JudgeConfig | None = None):
        self.config = config or JudgeConfig()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.config!r})"

    def _api_key(self) -> str:
        key = os.environ.get(self.config.api_key_env, "").strip()
        if not key:
            raise JudgeError(
                f"judge API key missing: environment variable {self.config.api_key_env} is not set or empty "
                f"(endpoint {self._endpoint()}); export it before running the judge"
            )
        return key

    def _endpoint(self) -> str:
        return self.config.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"

    def _client_kwargs(self, key: str) -> dict:
        return {
            "api_key": key,
            "base_url": self.config.base_url,
            "max_retries": self.config.max_retries,
            "timeout": self.config.timeout_s,
        }

    def preflight(self, check_model: bool = True) -> None:
        """Fail fast, with one message, before any generation: no key, endpoint down, key refused, or model not served.

        `models.list()` costs no tokens and exercises the key; `check_model=False` skips the last check for
        proxies whose list names base models rather than deployments.
        """
        key = self._api_key()
        endpoint = self._endpoint()
        failure: str | None = None
        try:
            with openai.OpenAI(
                **{**self._client_kwargs(key), "max_retries": 1, "timeout": min(self.config.timeout_s, 10.0)}
            ) as client:
                served = [m.id for m in client.models.list().data]
        except openai.AuthenticationError as err:
            failure = f"judge endpoint {endpoint} refused the key in {self.config.api_key_env}: {_describe(err, key)}"
        except openai.APIError as err:
            failure = f"judge endpoint {endpoint} unreachable or failing: {_describe(err, key)}"
        if failure:
            # Raised outside the except block: the client's error (whose text may echo the key) is not even __context__.
            raise JudgeError(failure)
        if check_model and served and self.config.model not in served:
            shown = ", ".join(sorted(served)[:10]) + (" ..." if len(served) > 10 else "")
            raise JudgeError(f"judge model {self.config.model!r} is not served by {endpoint} (it lists: {shown})")

    def complete(
        self, requests: Sequence[ChatRequest], *, max_tokens: int | Literal["config"] | None = "config"
    ) -> tuple[list[str], dict[str, float]]:
        """The judge model's answer text to each request ("" if it sent none), and this run's usage.

        Cache key: judge model + system message + user message (`chat_cache_key`); identical requests are sent
        once. `max_tokens` is `config.max_tokens` unless given (None omits it). Usage: calls, cache_hits, requests, retries,
        prompt_tokens, completion_tokens, cost_usd (requests sent now only). The key is only needed when
        something is not cached yet. A blocking wrapper around `acomplete`.
        """
        if _loop_running():
            raise JudgeError("complete() called inside a running event loop; await acomplete() instead")
        return asyncio.run(self.acomplete(requests, max_tokens=max_tokens))

    async def acomplete(
        self, requests: Sequence[ChatRequest], *, max_tokens: int | Literal["config"] | None = "config"
    ) -> tuple[list[str], dict[str, float]]:
        model = self.config.model
        calls = [(chat_cache_key(model, r.system, r.user), r.messages(), r.label) for r in requests]
        texts, usage = await self._cached_calls(
            calls, max_tokens=self.config.max_tokens if max_tokens == "config" else max_tokens
        )
        usage["cost_usd"] = self._cost(usage)
        return texts, usage

    def _cost(self, usage: dict) -> float:
        return (
            usage["prompt_tokens"] * self.config.price_per_1m_input + usage["completion_tokens"] * self.config.price_per_1m_output
        ) / 1e6

    async def _cached_calls(
        self, calls: Sequence[tuple[str, list[dict], str]], *, max_tokens: int | None
    ) -> tuple[list[str], dict[str, float]]:
        """Answer text per (cache key, messages, label) call, in order: from the cache, else requested and cached."""
        usage: dict[str, float] = {
            "calls": len(calls),
            "cache_hits": 0,
            "requests": 0,
            "retries": 0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
        }
        cache = _Cache(self.config.cache_path)
        try:
            raw = cache.get_many([k for k, _, _ in calls])
            todo = {k: (m, label) for k, m, label in calls if k not in raw}  # dict: identical calls are sent once
            usage["cache_hits"] = len(calls) - len(todo)
            if todo:
                await self._send(todo, raw, cache, usage, max_tokens)
        finally:
            cache.close()
        return [raw[k] for k, _, _ in calls], usage

    async def _send(
        self, todo: dict[str, tuple[list[dict], str]], raw: dict[str, str], cache: _Cache, usage: dict, max_tokens: int | None
    ) -> None:
        """Send every call in `todo`, caching each answer as it lands; after the first hard failure start nothing new."""
        key = self._api_key()
        cfg = self.config
        extra: dict = {}
        if cfg.temperature is not None:
            extra["temperature"] = cfg.temperature
        if max_tokens is not None:
            extra["max_tokens"] = max_tokens
        gate = asyncio.Semaphore(cfg.max_concurrency)
        failures: list[BaseException] = []

        async def call(client: openai.AsyncOpenAI, k: str, messages: list[dict], label: str) -> None:
            async with gate:
                if failures:
                    return
                usage["requests"] += 1
                try:
                    response = await client.chat.completions.with_raw_response.create(model=cfg.model, messages=messages, **extra)
                    completion = response.parse()
                except openai.APIError as err:
                    failures.append(err)
                    return
                usage["retries"] += response.retries_taken
                text = (completion.choices[0].message.content if completion.choices else None) or ""
                pt = completion.usage.prompt_tokens if completion.usage else 0
                ct = completion.usage.completion_tokens if completion.usage else 0
                usage["prompt_tokens"] += pt
                usage["completion_tokens"] += ct
                cache.put(k, cfg.model, text, pt, ct, template=label)
                raw[k] = text

        # TaskGroup, not gather: an unexpected exception cancels the siblings before the client closes under them.
        async with openai.AsyncOpenAI(**self._client_kwargs(key)) as client, asyncio.TaskGroup() as tasks:
            for k, (messages, label) in todo.items():
                tasks.create_task(call(client, k, messages, label))
        if failures:
            done = sum(k in raw for k in todo)
            retried = f" after {cfg.max_retries} retries" if _transient(failures[0]) else ""
            raise JudgeError(
                f"{len(failures)} judge request(s) to {self._endpoint()} failed{retried} "
                f"({done} of {len(todo)} new judgments were cached; rerun to resume): {_describe(failures[0], key)}"
            )


class PairwiseJudge(CachedChat):
    """Win rate of answers against references, as judged by an LLM in both orders (see `CachedChat` for the transport)."""

    def win_rates(
        self, questions: Sequence[str], answers: Sequence[str], references: Sequence[str]
    ) -> tuple[list[float], dict[str, float]]:
        """Per-pair score that `answers[i]` beats `references[i]` (1, 0.5 or 0), and this run's usage.

        Usage (all numbers, for `StageRun.log_metrics(usage, prefix="judge/")`): pairs, calls (2 per pair),
        cache_hits (calls answered without a request, identical calls within the run included), requests,
        retries (extra HTTP attempts by the client), prompt_tokens, completion_tokens, cost_usd (requests sent
        now only), unparsed (calls without an A/B verdict), position_inconsistent (A/B verdicts that flipped
        with the order), ties. The key is only needed when something is not cached yet.
        A blocking wrapper around `awin_rates`; call that one from code that already runs an event loop.
        """
        if _loop_running():
            raise JudgeError("win_rates() called inside a running event loop; await awin_rates() instead")
        return asyncio.run(self.awin_rates(questions, answers, references))

    async def awin_rates(
        self, questions: Sequence[str], answers: Sequence[str], references: Sequence[str]
    ) -> tuple[list[float], dict[str, float]]:
        if not len(questions) == len(answers) == len(references):
            raise ValueError(f"lengths differ: {len(questions)} questions, {len(answers)} answers, {len(references)} references")
        model = self.config.model
        # Call 2i puts the answer in slot A, call 2i+1 puts it in slot B. The key predates CachedChat's and stays
        # as it was, so that verdicts cached by earlier runs are still found.
        calls = [
            (
                cache_key(model, q, first, second),
                [{"role": "user", "content": PAIRWISE_TEMPLATE.format(question=q, response_a=first, response_b=second)}],
                PAIRWISE_TEMPLATE_NAME,
            )
            for q, a, r in zip(questions, answers, references, strict=True)
            for first, second in ((a, r), (r, a))
        ]
        texts, calls_usage = await self._cached_calls(calls, max_tokens=self.config.max_tokens)
        usage = {"pairs": len(questions), **calls_usage}

        verdicts = [parse_verdict(t) for t in texts]
        scores, inconsistent = [], 0
        for i in range(len(questions)):
            forward = _first_wins(verdicts[2 * i], slot="A")
            swapped = _first_wins(verdicts[2 * i + 1], slot="B")
            scores.append(forward if forward == swapped else 0.5)
            if forward != swapped and 0.5 not in (forward, swapped):
                inconsistent += 1
        usage["unparsed"] = sum(v is None for v in verdicts)
        check_parsed(
            usage["unparsed"], len(verdicts), [t for t, v in zip(texts, verdicts, strict=True) if v is None], "A/B verdict"
        )
        usage["position_inconsistent"] = inconsistent
        usage["ties"] = sum(s == 0.5 for s in scores)
        usage["cost_usd"] = self._cost(usage)
        log.info(
            "judged %d pairs with %s: %d requests, %d cache hits, %d retries, $%.4f",
            len(questions),
            model,
            usage["requests"],
            usage["cache_hits"],
            usage["retries"],
            usage["cost_usd"],
        )
        return scores, usage


class SingleAnswerGrader(CachedChat):
    """A 1-10 rating per grading prompt (FastChat's single-answer grading), on the same cached, retried transport.

    The caller fills the prompts (see `demo2reward.evaluation.mtbench`); this class sends each as system + user message
    at `config.temperature` with `config.grading_max_tokens`, and parses the answer with `parse_rating`.
    Unparsable answers rate -1.0, as in FastChat, and are left to the caller to exclude. No retry on an
    unparsable answer: at temperature 0 the same request would most likely get the same answer (and FastChat
    does not retry either).
    """

    def grade(self, requests: Sequence[ChatRequest]) -> tuple[list[float], list[str], dict[str, float]]:
        """Ratings (-1.0 = unparsable), the judge's raw answers, and usage (`complete`'s, plus graded and unparsed)."""
        if _loop_running():
            raise JudgeError("grade() called inside a running event loop; await agrade() instead")
        return asyncio.run(self.agrade(requests))

    async def agrade(self, requests: Sequence[ChatRequest]) -> tuple[list[float], list[str], dict[str, float]]:
        texts, usage = await self.acomplete(requests, max_tokens=self.config.grading_max_tokens)
        ratings = [parse_rating(t) for t in texts]
        usage["unparsed"] = sum(r == UNPARSED_RATING for r in ratings)
        usage["graded"] = len(ratings) - usage["unparsed"]
        if ratings and usage["graded"] == 0:  # FastChat leaves a few unrated answers out; none rated is no score
            check_parsed(usage["unparsed"], len(ratings), texts, "[[rating]]")
        log.info(
            "graded %d answers with %s: %d unparsed, %d requests, %d cache hits, %d retries, $%.4f",
            len(ratings),
            self.config.model,
            usage["unparsed"],
            usage["requests"],
            usage["cache_hits"],
            usage["retries"],
            usage["cost_usd"],
        )
        return ratings, texts, usage


def judge_config(p: EvaluateParams, root: Path, **overrides):
    """The LLM judge's config from `evaluate.llm`; the cache lives under the repository root."""
    c = p.llm
    return JudgeConfig(
        model=c.model,
        base_url=c.base_url,
        api_key_env=c.api_key_env,
        max_concurrency=c.max_concurrency,
        max_retries=c.max_retries,
        timeout_s=c.timeout_s,
        price_per_1m_input=c.price_per_1m_input,
        price_per_1m_output=c.price_per_1m_output,
        cache_path=root / c.cache,
        **overrides,
    )
