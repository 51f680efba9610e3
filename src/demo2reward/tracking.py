"""MLflow mirroring: one parent run per pipeline run, one child run per executed stage.

The files under `metrics/` are the source of truth (a cached DVC stage does not run, so it logs
nothing); MLflow mirrors them so that runs can be compared in the UI.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from demo2reward.core.artifacts import repo_root

PIPELINE_TAG = "demo2reward.pipeline"
ROLE_TAG = "demo2reward.role"


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else an absolute SQLite store at the repository root."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{repo_root() / 'mlflow.db'}"


def _git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "nogit"


def pipeline_name(params_digest: str) -> str:
    """DVC_EXP_NAME during `dvc exp run`, else the git revision plus a hash of the params."""
    return os.environ.get("DVC_EXP_NAME") or f"{_git_rev()}-{params_digest}"


def pipeline_key() -> str:
    """Identity of the pipeline run this stage belongs to: the `dvc` process that launched it (pid and start time).

    Every stage of one `dvc repro` shares it, and a commit landing mid-run does not change it (a name built
    from the git revision did, and split the run over two parents). Outside DVC, the stage's own process.
    """
    import psutil

    caller = os.environ.get("DEMO2REWARD_CALLER_PID")  # in the warm server: the stage script's waiting process
    me = psutil.Process(int(caller)) if caller else psutil.Process()
    owner = me
    with contextlib.suppress(psutil.Error):
        for parent in me.parents():
            argv = parent.cmdline()[:2]
            if any(Path(a).name == "dvc" for a in argv):
                owner = parent
                break
    return f"{os.environ.get('DVC_EXP_NAME', '')}:{_process_key(owner.pid)}"


KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
OWNER_TAG = "demo2reward.owner"  # pid-start time of the process that runs a stage's child run


def _process_key(pid: int) -> str:
    """`pid-start`: a process's identity, where a pid alone may have been reused.

    On Linux `start` is the kernel's start time in clock ticks since boot. psutil's `create_time()` adds the boot
    time, which it derives from the wall clock: when the clock was adjusted, the same live `dvc` process got three
    different keys in one `dvc exp run` (seen here) and its stages split over three MLflow parent runs.
    """
    import psutil

    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return f"{pid}-{stat.rpartition(')')[2].split()[19]}"  # field 22 (starttime); the name may hold spaces
    except (OSError, IndexError):
        return f"{pid}-{int(psutil.Process(pid).create_time() * 1000)}"


def _alive(process_key: str) -> bool:
    """Whether the process `pid-start time` still runs (a pid alone may have been reused)."""
    import psutil

    pid, _, started = process_key.rpartition(":")[2].partition("-")
    try:
        return _process_key(int(pid)) == f"{pid}-{started}"
    except (ValueError, psutil.Error):  # a gone process: no /proc entry, and psutil's fallback raises
        return False


def close_orphans(client, exp_id: str) -> int:
    """Close the runs that a killed stage or an interrupted `dvc repro` left RUNNING, whose process is gone: a child
    run as KILLED; a pipeline run as FINISHED, or FAILED if one of its stages failed or was killed."""
    closed = 0
    running = client.search_runs([exp_id], filter_string="attributes.status = 'RUNNING'", max_results=5000)
    for run in sorted(running, key=lambda r: r.data.tags.get(ROLE_TAG) != "stage"):  # children first
        tags = run.data.tags
        owner = tags.get(OWNER_TAG) if tags.get(ROLE_TAG) == "stage" else tags.get(PIPELINE_TAG)
        if not owner or _alive(owner):
            continue
        if tags.get(ROLE_TAG) == "stage":
            status = "KILLED"
        else:
            children = client.search_runs([exp_id], filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
            status = "FAILED" if any(c.info.status in ("FAILED", "KILLED") for c in children) else "FINISHED"
        client.set_terminated(run.info.run_id, status=status)
        closed += 1
    return closed


def flatten(d: Mapping, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and v == v}


STAGES_TAG = "demo2reward.stages_total"
STARTED_TAG = "demo2reward.stages_started"  # a count on the pipeline run: listing its child runs grew with each stage


class Progress:
    """Where a stage stands in its pipeline run: the i-th stage run of N in the DVC graph, and the run's clock."""

    def __init__(self, index: int, total: int | None, pipeline_started: float):
        self.index, self.total, self.pipeline_started = index, total, pipeline_started

    def line(self) -> str:
        """`[i/N, elapsed m:ss, ETA m:ss]`: the ETA assumes the remaining stages take the mean so far (and all run)."""
        elapsed = time.time() - self.pipeline_started
        if not self.total or self.index > self.total:
            return f"[{self.index}, {_clock(elapsed)}]"
        eta = elapsed / self.index * (self.total - self.index)
        return f"[{self.index}/{self.total}, {_clock(elapsed)}, ETA {_clock(eta)}]"


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _count_stages() -> int | None:
    """How many stages of the DVC graph in the working directory log to MLflow: all but `check_params`, which
    validates params before any of this is imported. About 0.7 s, once per pipeline run."""
    try:
        from dvc.repo import Repo

        with Repo(".") as repo:
            return sum(stage.addressing != "check_params" for stage in repo.index.stages)
    except Exception:  # a progress figure is never worth failing a stage for
        return None


class StageRun:
    """What a stage logs: its child run's params and metrics, and per-iteration metrics on the parent."""

    def __init__(self, client, parent_id: str, child_id: str, progress: Progress | None = None):
        self.client, self.parent_id, self.child_id = client, parent_id, child_id
        self.progress = progress

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None, prefix: str = "") -> None:
        import mlflow.entities

        now = int(time.time() * 1000)
        batch = [mlflow.entities.Metric(f"{prefix}{k}", v, now, step or 0) for k, v in _finite(metrics).items()]
        if batch:
            self.client.log_batch(self.child_id, metrics=batch)

    def log_pipeline_metrics(self, metrics: Mapping[str, float], step: int, prefix: str = "") -> None:
        """Per-iteration metrics on the parent run, so the UI plots them against k."""
        import mlflow.entities

        now = int(time.time() * 1000)
        batch = [mlflow.entities.Metric(f"{prefix}{k}", v, now, step) for k, v in _finite(metrics).items()]
        if batch:
            self.client.log_batch(self.parent_id, metrics=batch)


@contextlib.contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """An exclusive lock beside a SQLite store while a stage sets up its runs.

    Two stages opening a new store at once both ran MLflow's schema migrations and one failed ("duplicate column
    name: step", seen with `dvc queue start -j 2`); finding or creating a pipeline's parent run must not race either.
    """
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    lock = Path(uri.removeprefix("sqlite:///") + ".lock")
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _log_params(client, run_id: str, params: Mapping) -> None:
    import mlflow.entities

    flat = [mlflow.entities.Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
    for i in range(0, len(flat), 100):
        client.log_batch(run_id, params=flat[i : i + 100])


@contextlib.contextmanager
def stage_run(
    stage: str,
    experiment: str,
    params_digest: str,
    params: Mapping | None = None,
    started: float | None = None,
    pipeline_params: Mapping | None = None,
) -> Iterator[StageRun]:
    """Open (or find) the pipeline's parent run and a child run for `stage`; log params and timing.

    Timing: `stage_seconds` (the stage's own work), `mlflow_setup_s` (opening the store and the runs) and, given when
    the process `started`, `startup_s` (interpreter, imports and params check before MLflow).
    """
    setup_start = time.time()
    import mlflow
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")
    mlflow.set_tracking_uri(tracking_uri())
    with _store_lock(tracking_uri()):  # one set-up at a time: parallel experiments share the store
        client = MlflowClient()
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(experiment)
        if exp is None or exp.tags.get(KIND_TAG) != KIND:
            client.set_experiment_tag(exp_id, KIND_TAG, KIND)  # MLflow 3 then opens it on the runs, not the GenAI view
        close_orphans(client, exp_id)
        key = pipeline_key()
        found = client.search_runs(
            [exp_id], filter_string=f"tags.`{PIPELINE_TAG}` = '{key}' AND tags.`{ROLE_TAG}` = 'pipeline'", max_results=1
        )
        if found:
            parent = found[0]
            parent_id = parent.info.run_id
            client.update_run(parent_id, status="RUNNING")
        else:
            name = pipeline_name(params_digest)
            tags = {PIPELINE_TAG: key, ROLE_TAG: "pipeline", "params_digest": params_digest}
            if total := _count_stages() if os.environ.get("DVC_STAGE") else None:
                tags[STAGES_TAG] = str(total)
            parent = client.create_run(exp_id, run_name=name, tags=tags)
            parent_id = parent.info.run_id
            if pipeline_params:  # every param the pipeline ran with, so that two ablations differ where they changed
                _log_params(client, parent_id, pipeline_params)
        child = client.create_run(
            exp_id,
            run_name=stage,
            tags={
                "mlflow.parentRunId": parent_id,
                PIPELINE_TAG: key,
                ROLE_TAG: "stage",
                "stage": stage,
                OWNER_TAG: _process_key(os.getpid()),
            },
        )
        # The i-th stage of the pipeline run, counted on the parent under the store lock. Searching its child runs
        # loads every one with its params and metrics: 0.9 s per stage by the end of a 3-seed run.
        index = int(parent.data.tags.get(STARTED_TAG, 0)) + 1
        client.set_tag(parent_id, STARTED_TAG, str(index))
    total = parent.data.tags.get(STAGES_TAG)
    progress = Progress(index, int(total) if total else None, parent.info.start_time / 1000)
    run = StageRun(client, parent_id, child.info.run_id, progress)
    if params:
        _log_params(client, child.info.run_id, params)
    timing = {"mlflow_setup_s": time.time() - setup_start}
    if started is not None:
        timing["startup_s"] = setup_start - started
    start = time.perf_counter()
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    finally:
        run.log_metrics({**timing, "stage_seconds": time.perf_counter() - start})
        client.set_terminated(child.info.run_id, status=status)
        # The pipeline run is RUNNING while one of its stages runs, so it is never left RUNNING after the repro.
        client.set_terminated(parent_id, status=status)


def pipeline_runs(experiment: str, where: str = "", limit: int = 1000) -> tuple[str | None, list]:
    """The experiment's id and its pipeline (parent) runs, newest first, optionally narrowed by `where`."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None, []
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{ROLE_TAG}` = 'pipeline'" + (f" AND {where}" if where else ""),
        order_by=["attributes.start_time DESC"],
        max_results=limit,
    )
    return exp.experiment_id, runs
