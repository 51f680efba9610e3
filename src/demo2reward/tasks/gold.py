"""Gold rewards: a programmatic true reward of (prompt, answer), on any task (`task.gold_reward`).

With one, a task has what the synthetic world has: the true reward of every policy (`true_reward_*`), the gold
win rate against the demonstrations (`win_rate_vs_demos`), the oracle track (RL on the gold reward itself, the
upper bound) and the recovery ratio. The synthetic world's r* is one built-in among others; a user's is any
function, named `module:function` (imported with the repository root on the path) or `path/to/file.py:function`:

    def gold(prompts: list[str], completions: list[str]) -> list[float]: ...

`prompts` are the text of each prompt's last user message and `completions` the answers' text. A scorer that
raises, returns a NaN or infinity, or returns the wrong number of scores fails the stage with one line naming
`task.gold_reward`; `prepare` calls it on the held-out demonstrations first, so a broken scorer fails before any
training. Its file's SHA-256 is recorded in task.json and checked wherever it scores: results never mix two
versions of a scorer.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from demo2reward.core.artifacts import repo_root
from demo2reward.core.conversation import prompt_text
from demo2reward.core.stage import StageError

Scorer = Callable[[list[str], list[str]], Sequence[float]]
KEY = "task.gold_reward"


class GoldRewardError(StageError):
    """The gold reward cannot be loaded, or returned something other than one finite float per answer."""


class GoldReward:
    """A scorer of (prompt, answer) pairs, checked on every call; `diagnostics` are its per-answer counts, if any."""

    def __init__(self, spec: str, scorer: Scorer, diagnostics: Callable | None = None):
        self.spec, self.scorer, self._diagnostics = spec, scorer, diagnostics

    def __call__(self, prompts: Sequence[list[dict] | str], answers: Sequence[str]) -> np.ndarray:
        """One float per answer; `prompts` may be conversational (their last user message is scored)."""
        texts, answers = [prompt_text(p) for p in prompts], list(answers)
        if not answers:
            return np.zeros(0)
        try:
            scores = self.scorer(texts, answers)
        except Exception as err:
            raise GoldRewardError(
                f"{KEY}: {self.spec} raised {type(err).__name__}: {err} (scoring {len(answers)} answers)"
            ) from None
        return self._checked(scores, texts, answers)

    def _checked(self, scores, prompts: list[str], answers: list[str]) -> np.ndarray:
        try:
            values = list(scores)
        except TypeError:
            raise GoldRewardError(f"{KEY}: {self.spec} returned {type(scores).__name__}, expected a list of floats") from None
        if len(values) != len(answers):
            raise GoldRewardError(f"{KEY}: {self.spec} returned {len(values)} scores for {len(answers)} answers")
        out = np.empty(len(values))
        for i, v in enumerate(values):
            try:
                out[i] = float(v)
            except (TypeError, ValueError):
                raise GoldRewardError(
                    f"{KEY}: {self.spec} returned {type(v).__name__} {str(v)[:40]!r} for answer {i}, expected a float"
                ) from None
            if not math.isfinite(out[i]):
                raise GoldRewardError(
                    f"{KEY}: {self.spec} returned {out[i]} for answer {i} of {len(values)} "
                    f"(prompt {prompts[i][:60]!r}, answer {answers[i][:60]!r})"
                )
        return out

    def diagnostics(self, prompts: Sequence[list[dict] | str], answers: Sequence[str]) -> dict[str, np.ndarray]:
        """Per-answer counts the scorer explains itself with (the synthetic world's fillers, repeats, length)."""
        if self._diagnostics is None:
            return {}
        rows = [self._diagnostics(prompt_text(x), y) for x, y in zip(prompts, answers, strict=True)]
        return {key: np.array([r[key] for r in rows]) for key in (rows[0] if rows else {})}


def win_rate(scores: np.ndarray, reference_scores: np.ndarray) -> float:
    """Fraction of prompts where the answer beats the reference; a tie counts half."""
    return float(np.mean((scores > reference_scores) + 0.5 * (scores == reference_scores)))


def wins(scores: np.ndarray, reference_scores: np.ndarray) -> np.ndarray:
    """Per prompt: 1, ½ or 0."""
    return (scores > reference_scores) + 0.5 * (scores == reference_scores)


# -------------------------------------------------------------------------------------------------- loading


def _synthetic(task_dir: Path) -> GoldReward:
    from demo2reward.tasks.synthetic import World

    world_file = task_dir / "world.json"
    if not world_file.exists():
        raise GoldRewardError(f"{KEY}: synthetic needs the embedded task's world ({world_file} is missing)")
    world = World.load(world_file)

    def true_reward(posts: list[str], responses: list[str]) -> list[float]:
        return [world.true_reward(x, y) for x, y in zip(posts, responses, strict=True)]

    return GoldReward("synthetic", true_reward, world.diagnostics)


BUILT_IN: dict[str, Callable[[Path], GoldReward]] = {"synthetic": _synthetic}  # the names of core.params.GOLD_REWARDS


def _function(spec: str) -> Scorer:
    """The function `spec` names: module:function (imported with the repository root on sys.path) or file.py:function."""
    module_name, _, name = spec.rpartition(":")
    root = repo_root()
    if module_name.endswith(".py"):
        path = Path(module_name) if Path(module_name).is_absolute() else root / module_name
        if not path.is_file():
            raise GoldRewardError(f"{KEY}: {spec}: {path} does not exist")
        unique = "demo2reward_gold_" + hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
        loader = importlib.util.spec_from_file_location(unique, path)
        module = importlib.util.module_from_spec(loader)
        try:
            loader.loader.exec_module(module)
        except Exception as err:
            raise GoldRewardError(f"{KEY}: {spec}: importing {path} raised {type(err).__name__}: {err}") from None
    else:
        added = str(root) not in sys.path
        if added:
            sys.path.insert(0, str(root))
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            raise GoldRewardError(
                f"{KEY}: {spec}: cannot import {err.name!r} (looked in the repository root {root} and the installed packages)"
            ) from None
        except Exception as err:
            raise GoldRewardError(f"{KEY}: {spec}: importing {module_name} raised {type(err).__name__}: {err}") from None
        finally:
            if added:
                sys.path.remove(str(root))
    function = getattr(module, name, None)
    if not callable(function):
        raise GoldRewardError(f"{KEY}: {spec}: {module_name} has no function {name!r}")
    return function


def source_of(spec: str) -> dict | None:
    """A user scorer's file and its SHA-256 (None for a built-in, whose code is a dependency of every stage using it)."""
    if spec in BUILT_IN:
        return None
    path = inspect.getsourcefile(_function(spec))
    if path is None:
        return None
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    try:
        shown = Path(path).resolve().relative_to(repo_root()).as_posix()
    except ValueError:
        shown = str(Path(path).resolve())
    return {"file": shown, "sha256": digest}


def load_gold_reward(spec: str, task_dir: str | Path, recorded_source: dict | None = None) -> GoldReward:
    """The gold reward `spec` names. With `recorded_source` (what `prepare` saw), a scorer whose file has changed since
    fails: results would mix two versions of it."""
    if spec in BUILT_IN:
        return BUILT_IN[spec](Path(task_dir))
    scorer = _function(spec)
    if recorded_source is not None and (now := source_of(spec)) != recorded_source:
        raise GoldRewardError(
            f"{KEY}: {spec}: {recorded_source['file']} changed since `prepare` scored with it (sha256 "
            f"{recorded_source['sha256'][:12]} then, {now['sha256'][:12] if now else 'none'} now); rerun the pipeline "
            "from prepare (`dvc repro -f prepare`, then `dvc repro`)"
        )
    return GoldReward(spec, scorer)
