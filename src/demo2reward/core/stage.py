"""What every stage script shares: validated params, threads, seeding, clean errors and an MLflow child run.

A stage script parses its paths, enters `stage(...)`, which validates params.yaml before anything heavy is
imported, and then calls one function of the library; `run.record(...)` writes its metrics file and mirrors it.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from demo2reward.core import distributed
from demo2reward.core.artifacts import DataFileError, clean_scratch, write_json
from demo2reward.core.params import Params, ParamsError, load_params
from demo2reward.core.runtime import Runtime


class StageError(RuntimeError):
    """A stage cannot run with what it was given (missing input, unreachable service, ...)."""


def resolve_threads(threads: int | str) -> int:
    """`threads: auto`: the usable cores divided by the stage processes running now (this one included)."""
    if threads != "auto":
        return int(threads)
    import psutil

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if distributed.launched():  # a rank: the cores are its launch's, shared by its ranks
        return max(1, cores // distributed.local_world_size())
    running = 0
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info["cmdline"] or []
        running += any(a.endswith(".py") and Path(a).parent.name == "stages" for a in argv[1:2])
    return max(1, cores // max(1, running))


def set_threads_and_seed(threads: int, seed: int) -> None:
    """What transformers.set_seed does, without its import chain (peft, torch.distributed: ~5 s per stage)."""
    import numpy as np

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    random.seed(seed)
    np.random.seed(seed)
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(seed)


class NoRun:
    """The MLflow run of a rank other than 0: rank 0 logs for the stage."""

    progress = None

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class Recorder:
    """The stage's handle: `record` writes a metrics file (the source of truth) and mirrors it to MLflow; `runtime` is
    what the stage may do with models (remote code, vLLM), for the library functions it calls."""

    def __init__(self, run, runtime: Runtime):
        self.run = run
        self.runtime = runtime
        self.recorded: dict[str, float] = {}

    def record(
        self,
        metrics: Mapping[str, float],
        path: str | Path | None = None,
        *,
        step: int | None = None,
        prefix: str = "",
    ) -> Mapping[str, float]:
        """Write `metrics` to `path`, log them on the stage's run and, with `step`, on the pipeline run under `prefix`.

        Timings (`*_runtime_s`) go to MLflow only: the metrics files are outputs, and must be byte-reproducible.
        """
        self.recorded.update(metrics)
        if path is not None:
            write_json(path, {k: v for k, v in metrics.items() if not k.endswith("_runtime_s")})
        self.run.log_metrics(metrics)
        if step is not None:
            self.run.log_pipeline_metrics(metrics, step=step, prefix=prefix)
        return metrics

    def headline(self) -> str:
        """A few of the recorded figures, for the stage's console line."""
        shown = [f"{k} {v:.3g}" for k, v in self.recorded.items() if k in HEADLINE and isinstance(v, int | float)]
        return f" ({', '.join(shown)})" if shown else ""

    def __getattr__(self, name):
        return getattr(self.run, name)


def _process_started() -> float:
    """When this stage's process started (the waiting script's, when it runs in the warm server)."""
    if started := os.environ.get("DEMO2REWARD_STARTED"):
        return float(started)
    import psutil

    return psutil.Process().create_time()


def _check_vllm() -> None:
    """Fail here, before any compute, where vLLM cannot run (the stage's `Runtime` then routes generation to it)."""
    import importlib.util

    import torch

    if importlib.util.find_spec("vllm") is None:
        raise StageError("vllm.enabled is true but vLLM is not installed (pip install vllm), or set vllm.enabled: false")
    if not torch.cuda.is_available():
        raise StageError("vllm.enabled is true but this machine has no GPU; set vllm.enabled: false")


def _terminate(signum, frame) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def stage(
    name: str,
    sections: tuple[str, ...] = (),
    seed: int | None = None,
    params_path: str | Path = "params.yaml",
    torch: bool = True,
) -> Iterator[tuple[Params, Recorder]]:
    """Validate params before any compute, then run the stage body inside its MLflow child run.

    `seed` is the training seed of a per-seed stage (one of `params.seeds`); shared stages use `params.seed`.
    `torch=False` (pairs, report) seeds Python and NumPy only, and never imports torch. A stage that lists the
    `distributed` section trains: with `distributed.num_processes > 1` it reruns itself under `accelerate launch`,
    and only rank 0 logs to MLflow and prints its line (`core.distributed`).

    Expected failures (bad params, malformed data) print one line naming the key or the file and exit 2;
    nothing is written, since outputs are only moved into place when a stage finishes.
    """
    name = os.environ.get("DVC_STAGE", name)  # the child run is named as DVC names the stage
    try:
        params = load_params(params_path)
    except ParamsError as err:
        print(f"{name}: {err}", file=sys.stderr)
        sys.exit(2)
    # `kill` (SIGTERM) unwinds like Ctrl-C: scratch folders are removed and the MLflow run is marked failed.
    signal.signal(signal.SIGTERM, _terminate)
    clean_scratch()  # what killed stages left behind
    if seed is not None and seed not in params.seeds:
        print(f"{name}: seed {seed} is not in params seeds {params.seeds}", file=sys.stderr)
        sys.exit(2)
    seed = params.seed if seed is None else seed
    try:
        if "vllm" in sections and params.vllm.enabled:
            _check_vllm()
        if "distributed" in sections and params.distributed.num_processes > 1 and not distributed.launched():
            sys.exit(distributed.launch(params.distributed.num_processes, params.distributed.config_file, sys.argv))
    except (StageError, distributed.LaunchError) as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        sys.exit(2)
    if torch:
        set_threads_and_seed(resolve_threads(params.threads), seed)
        distributed.bind_device()
    else:
        import numpy as np

        random.seed(seed)
        np.random.seed(seed)

    if os.environ.get(VERBOSE) != "1":
        import logging

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
    from demo2reward.tracking import stage_run

    logged = {s: getattr(params, s).model_dump(mode="json") for s in sections}
    logged["seed"] = seed
    main = distributed.is_main_process()
    try:
        pipeline = params.model_dump(mode="json")
        with (
            stage_run(name, params.tracking.experiment, params.digest(), logged, _process_started(), pipeline)
            if main
            else contextlib.nullcontext(NoRun()) as run,
            _quiet_console(name if main else f"{name}.rank{distributed.rank()}"),
        ):
            recorder = Recorder(run, Runtime.of(params, sections))
            yield params, recorder
        progress = f" {run.progress.line()}" if run.progress else ""
        if main:
            print(f"{name}: done in {time.time() - _process_started():.1f} s{recorder.headline()}{progress}", file=sys.stderr)
    except (DataFileError, StageError) as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        sys.exit(2)


VERBOSE = "DEMO2REWARD_VERBOSE"  # 1: the libraries' full console output, as without this module
HEADLINE = ("train_loss", "val_accuracy", "pairs", "pool", "rollouts", "true_reward_mean", "win_rate_vs_demos", "reward_accuracy")


@contextlib.contextmanager
def _quiet_console(name: str) -> Iterator[None]:
    """One line per stage on the console; the trainers' per-step logs go to logs/<stage>.log.

    TRL prints a dict of figures every few steps and transformers a progress bar per model load and a table per
    missing weight, which buried one seed's run in 800 lines. `DEMO2REWARD_VERBOSE=1` keeps all of it.
    """
    if os.environ.get(VERBOSE) == "1":
        yield
        return
    import warnings

    warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*`noload` loader strategy.*")
    with contextlib.suppress(ImportError):
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    with contextlib.suppress(ImportError):
        import datasets

        datasets.disable_progress_bars()  # "Tokenizing train dataset" and the like, per trainer
    log = Path("logs") / f"{name.replace('/', '_')}.log"
    log.parent.mkdir(exist_ok=True)
    # Progress bars (tqdm writes to sys.stderr) and TRL's per-step dicts (stdout) go to the log; a failure's
    # traceback is printed after this block, on the console, with a pointer to the log.
    with log.open("w") as f:
        try:
            with contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                yield
        except BaseException as err:
            # An expected failure (bad input, a refused run) is its own one line; anything else points at the log.
            expected = isinstance(err, DataFileError | StageError) or (isinstance(err, SystemExit) and err.code in (0, None))
            if not expected:
                print(f"{name}: failed; its output is in {log}", file=sys.stderr)
            raise
