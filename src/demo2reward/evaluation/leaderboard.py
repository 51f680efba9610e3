"""Open LLM Leaderboard v1 (the six benchmarks SPIN reports) through EleutherAI's lm-evaluation-harness.

The leaderboard gives every benchmark its own few-shot count, while `lm_eval.simple_evaluate` takes one `num_fewshot` for
all tasks it runs; so the tasks are grouped by few-shot count and the harness runs once per group, reusing one loaded model.
Tasks are loaded up front, one by one, so that a benchmark whose data set cannot be reached (no internet on our machines)
is named in a short error instead of surfacing as a deep `datasets` stack trace halfway through a long run.
"""

from __future__ import annotations

import functools
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from demo2reward.core.hub import hub_offline, offline_requested

LeaderboardTask = tuple[str, int, str]

# (task, num_fewshot, metric) as the v1 leaderboard scored them; metric keys are lm-eval's "<metric>,<filter>".
# Task names, metrics and filters checked against lm-eval 0.4.13's task YAMLs (arc/, hellaswag/, mmlu/default/,
# truthfulqa/, winogrande/, gsm8k/gsm8k.yaml).
LEADERBOARD_V1: list[LeaderboardTask] = [
    ("arc_challenge", 25, "acc_norm,none"),
    ("hellaswag", 10, "acc_norm,none"),
    ("mmlu", 5, "acc,none"),
    ("truthfulqa_mc2", 0, "acc,none"),
    ("winogrande", 5, "acc,none"),
    ("gsm8k", 5, "exact_match,strict-match"),
]

# lm-eval's own defaults (evaluator.simple_evaluate), passed explicitly so a run is reproducible even if they change.
RANDOM_SEED = 0
NUMPY_SEED = 1234
TORCH_SEED = 1234
FEWSHOT_SEED = 1234


class DatasetUnavailableError(RuntimeError):
    """A benchmark's data set could not be loaded (hub unreachable, offline mode, or missing local files)."""

    def __init__(self, task: str, cause: BaseException) -> None:
        self.task = task
        super().__init__(
            f"lm-eval task {task!r} needs a data set that could not be loaded: {type(cause).__name__}: {cause}. "
            "No hub download is possible here: pre-populate the datasets cache and point HF_DATASETS_CACHE at it "
            "(with HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 so the hub is not retried), or define a local task "
            "(`dataset_path: json` with `dataset_kwargs: {data_files: ...}`) in a folder passed as include_path."
        )


def _unreachable_errors() -> tuple[type[BaseException], ...]:
    """Exceptions `datasets.load_dataset` raises for an unreachable or missing data set.

    Offline mode and no network give builtin ConnectionError (an OSError); missing repos or files give
    DatasetNotFoundError / DataFilesNotFoundError and LocalEntryNotFoundError (FileNotFoundError, also OSError);
    HfHubHTTPError is an OSError too. Raw transport failures escape as the HTTP client's errors: huggingface_hub 2
    ships its own httpx fork, reached through `huggingface_hub.utils.httpx`. Anything else (a bad YAML, a bug) is left
    to propagate with its full trace.
    """
    from datasets.exceptions import DatasetsError

    errors: tuple[type[BaseException], ...] = (OSError, DatasetsError)
    try:
        from huggingface_hub.utils import httpx

        errors += (httpx.HTTPError,)
    except (ImportError, AttributeError):
        pass
    return errors


@functools.cache
def _task_manager(include_paths: tuple[str, ...]) -> Any:
    """lm-eval's task index, built once per process and folder set: indexing its ~15k YAMLs takes ~4 s each time.

    The manager is stateless after indexing (each `load` builds fresh Task objects), so sharing it is safe.
    """
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=list(include_paths) or None)


def _metric_key(metric: str) -> str:
    """lm-eval keys results as "<metric>,<filter>"; a bare metric means the unfiltered ("none") one."""
    return metric if "," in metric else f"{metric},none"


def _load_tasks(manager: Any, name: str) -> tuple[Any, dict[str, Any]]:
    """Build one task or group, naming it in the error if its data set cannot be reached.

    Returns the object to hand to `simple_evaluate` (Task objects pass through `TaskManager.load` unchanged, so the data
    set is loaded once) and its leaf tasks by name.
    """
    if name not in manager.all_tasks:
        raise ValueError(f"lm-eval knows no task or group {name!r}; a local task's folder must be passed as include_path")
    try:
        loaded = manager.load([name])
    except _unreachable_errors() as e:
        raise DatasetUnavailableError(name, e) from None
    leaves = loaded["tasks"]
    if name in loaded["groups"]:
        return loaded["groups"][name], leaves
    if name in leaves:
        return leaves[name], leaves
    return list(leaves.values()), leaves  # a tag: expands to its member tasks


def _check_metric(name: str, leaves: dict[str, Any], metric: str) -> None:
    """Refuse a metric or filter the task does not report before hours of evaluation, not after."""
    base, filt = metric.split(",", 1)
    for leaf, task in leaves.items():
        filters = [f["name"] for f in task.config.filter_list or []] or ["none"]
        if base not in task.aggregation() or filt not in filters:
            raise ValueError(
                f"{name}: lm-eval task {leaf!r} reports metrics {sorted(task.aggregation())} under filters {filters}, "
                f"not {metric!r}"
            )


def _score(results: dict[str, Any], leaves: list[str], metric: str) -> float:
    """A task's score; a group's (or tag's) is the unweighted mean over its leaf tasks.

    Leaderboard v1 reported MMLU as the plain mean of the 57 subjects' accuracies, whereas lm-eval's `mmlu` group weights
    subjects by size; the plain mean keeps our numbers comparable to the ones SPIN quotes.
    """
    table = results["results"]
    missing = [n for n in leaves if metric not in table.get(n, {})]
    if missing:
        raise KeyError(f"lm-eval reported no {metric!r} for {missing}; it has {sorted(table.get(missing[0], {}))}")
    return math.fsum(float(table[n][metric]) for n in leaves) / len(leaves)


def run_leaderboard(
    model_path: str | Path,
    tasks: Sequence[LeaderboardTask] = LEADERBOARD_V1,
    batch_size: int | str = 1,
    limit: int | float | None = None,
    include_path: str | Path | Sequence[str | Path] | None = None,
    device: str | None = None,
    dtype: str = "float32",
) -> dict[str, float | str]:
    """Score a local `save_pretrained` folder on `tasks`: {task: score in [0, 1], ..., "average", "lm_eval_version"}.

    `tasks` holds (lm-eval task or group, num_fewshot, metric); the metric is lm-eval's "<metric>,<filter>" key, a bare
    name meaning the unfiltered one. `limit` caps documents per (leaf) task, for smoke runs only. `include_path` adds
    folders of task YAMLs (e.g. local copies of the benchmarks). Seeds are fixed (lm-eval's defaults, stated
    explicitly), stderr bootstrapping is off (it dominates run time for MMLU's 57 subjects and is not reported).
    """
    if not tasks:
        raise ValueError("no tasks to run")
    names = [t for t, _, _ in tasks]
    if len(set(names)) != len(names):
        raise ValueError(f"each task may appear once, got {names}")
    model_path = Path(model_path)
    if not (model_path / "config.json").is_file():
        raise FileNotFoundError(f"{model_path} is not a save_pretrained folder (no config.json)")

    paths = [include_path] if isinstance(include_path, str | os.PathLike) else include_path
    manager = _task_manager(tuple(str(Path(p).resolve()) for p in paths or ()))
    with hub_offline(offline_requested()):
        return _run(manager, model_path, tasks, batch_size, limit, device, dtype)


def _run(
    manager: Any,
    model_path: Path,
    tasks: Sequence[LeaderboardTask],
    batch_size: int | str,
    limit: int | float | None,
    device: str | None,
    dtype: str,
) -> dict[str, float | str]:
    """The body of `run_leaderboard`, inside the offline switch."""
    import lm_eval
    import torch
    from lm_eval.api.registry import get_model
    from lm_eval.evaluator import simple_evaluate

    names = [t for t, _, _ in tasks]
    metrics = {t: _metric_key(m) for t, _, m in tasks}
    built = {name: _load_tasks(manager, name) for name in names}  # every data set first: fail before the model loads
    for name in names:
        _check_metric(name, built[name][1], metrics[name])

    # HFLM's own default device is "cuda" even on a CPU-only machine, so resolve it here.
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    lm = get_model("hf").create_from_arg_obj(
        {"pretrained": str(model_path), "dtype": dtype}, {"batch_size": batch_size, "device": device}
    )

    by_shots: dict[int, list[str]] = defaultdict(list)
    for name, shots, _ in tasks:
        by_shots[shots].append(name)
    scores: dict[str, float] = {}
    for shots, group in sorted(by_shots.items()):
        objs = []
        for name in group:
            obj, leaves = built[name]
            objs.extend(obj if isinstance(obj, list) else [obj])
            for task in leaves.values():
                # simple_evaluate leaves num_fewshot alone where a YAML pins 0 (truthfulqa_mc2 does); set it ourselves.
                task.set_config(key="num_fewshot", value=shots)
        results = simple_evaluate(
            model=lm,
            tasks=objs,
            num_fewshot=shots,
            limit=limit,
            task_manager=manager,
            bootstrap_iters=0,
            log_samples=False,
            random_seed=RANDOM_SEED,
            numpy_random_seed=NUMPY_SEED,
            torch_random_seed=TORCH_SEED,
            fewshot_random_seed=FEWSHOT_SEED,
        )
        if results is None:  # only on non-zero ranks of a distributed launch, which this is not written for
            raise RuntimeError("lm-eval returned no results (not rank 0?)")
        for name in group:
            leaves = list(built[name][1])
            used = {results["n-shot"].get(leaf) for leaf in leaves}
            if used != {shots}:
                raise RuntimeError(f"{name}: asked for {shots}-shot, lm-eval ran {sorted(used, key=str)}")
            scores[name] = _score(results, leaves, metrics[name])

    out: dict[str, float | str] = {name: scores[name] for name in names}
    out["average"] = math.fsum(scores.values()) / len(scores)
    out["lm_eval_version"] = lm_eval.__version__
    return out


def leaderboard_stage(params, models: Path, metrics_path: Path) -> dict[str, dict[str, float]]:
    """The `leaderboard` stage: score SFT and the final IRL/SPIN iterates of the first seed (`leaderboard.policies`)
    and write the scores to `metrics_path`; `{"enabled": false}` when disabled."""
    from demo2reward.core.artifacts import write_json
    from demo2reward.core.iterates import final_policies
    from demo2reward.core.stage import StageError

    p = params.leaderboard
    if not p.enabled:
        write_json(metrics_path, {"enabled": False})
        return {}
    where = final_policies(models, params.seeds[0], params.K)  # benchmarks grade the first seed
    tasks = [tuple(t) for t in p.tasks] if p.tasks else LEADERBOARD_V1
    results = {}
    try:
        for name in p.policies:
            results[name] = run_leaderboard(
                where[name], tasks, batch_size=p.batch_size, limit=p.limit, include_path=p.include_path
            )
    except DatasetUnavailableError as err:
        raise StageError(str(err)) from None
    version = next(iter(results.values()))["lm_eval_version"]
    scores = {name: {k: v for k, v in r.items() if k != "lm_eval_version"} for name, r in results.items()}
    write_json(metrics_path, {"enabled": True, "lm_eval_version": version, **scores})
    return scores
