from demo2reward import tracking
from demo2reward.evaluation import compare


def test_tracking_uri_is_absolute_at_the_repo_root(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "stages").mkdir()
    monkeypatch.chdir(tmp_path / "stages")
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"


def test_queued_experiments_log_to_the_parent_repository(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "main"))
    assert tracking.tracking_uri() == f"sqlite:///{(tmp_path / 'main').resolve()}/mlflow.db"


def test_env_overrides_tracking_uri(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"


def test_pipeline_name_prefers_the_experiment_name(monkeypatch):
    assert tracking.pipeline_name("abcd1234").endswith("-abcd1234")
    monkeypatch.setenv("DVC_EXP_NAME", "beta-sweep")
    assert tracking.pipeline_name("abcd1234") == "beta-sweep"


def test_stage_runs_nest_under_one_parent(tmp_path):
    from mlflow.tracking import MlflowClient

    for stage in ("sft", "evaluate@1"):
        with tracking.stage_run(stage, "exp", "d1", {"sft": {"lr": 1e-3}}) as run:
            run.log_metrics({"loss": 0.5})
            run.log_pipeline_metrics({"win_rate_vs_demos": 0.25}, step=1)
    client = MlflowClient()
    exp = client.get_experiment_by_name("exp")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and {c.info.run_name for c in children} == {"sft", "evaluate@1"}
    assert all(c.data.tags["mlflow.parentRunId"] == parents[0].info.run_id for c in children)
    assert children[0].data.params["sft.lr"] == "0.001" and "stage_seconds" in children[0].data.metrics
    history = client.get_metric_history(parents[0].info.run_id, "win_rate_vs_demos")
    assert [m.step for m in history] == [1, 1]


def test_compare_lists_every_track_from_mlflow(monkeypatch, capsys):
    for name, acc, win in (("exp-a", 0.8, 0.3), ("exp-b", 0.6, 0.1)):
        monkeypatch.setenv("DVC_EXP_NAME", name)
        with tracking.stage_run("evaluate@1", "cmp", "d", {}) as run:
            run.log_pipeline_metrics({"reward_accuracy": acc - 0.1, "win_rate_vs_demos": 0.0}, step=0)
            run.log_pipeline_metrics({"reward_accuracy": acc, "win_rate_vs_demos": win}, step=1)
            run.log_pipeline_metrics({"reward_accuracy": 0.55, "win_rate_vs_demos": 0.2}, step=1, prefix="spin/")
    rows = {(r["run"], r["track"]): r for r in compare.compare_runs("cmp")}
    assert rows["exp-a", "irl"]["reward_accuracy"] == 0.8 and rows["exp-b", "irl"]["win_rate_vs_demos"] == 0.1  # final
    assert rows["exp-a", "spin"]["reward_accuracy"] == 0.55
    monkeypatch.setattr(compare, "compare_experiments", lambda root: [])
    compare.main(["--experiment", "cmp"])
    out = capsys.readouterr().out
    assert "exp-a" in out and "0.800" in out and "spin" in out and "win_rate_vs_demos" in out


def test_compare_reads_dvc_experiments(monkeypatch):
    """The shape `dvc exp show --json` prints (DVC 3): the workspace, its baseline and experiments under it."""
    import json
    import subprocess

    def summary(acc):
        return {"metrics": {"metrics/summary.json": {"data": {"irl_acc": acc, "reward_recovery_ratio": 0.5,
                                                              "spin_acc": 0.4}}}}  # fmt: skip

    shown = [
        {"rev": "workspace", "name": None, "data": summary(0.8)},
        {"rev": "abc123", "name": "main", "data": summary(0.8),
         "experiments": [{"revs": [{"rev": "def456", "name": "beta-0.3", "data": summary(0.7)}]}]},
    ]  # fmt: skip
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, json.dumps(shown), ""))
    rows = {(r["run"], r["track"]): r for r in compare.compare_experiments(".")}
    assert rows["beta-0.3", "irl"]["reward_accuracy"] == 0.7 and rows["beta-0.3", "irl"]["recovery"] == 0.5
    assert rows["workspace", "spin"]["reward_accuracy"] == 0.4 and ("main", "irl") in rows


def test_one_parent_even_when_a_commit_lands_mid_run(monkeypatch):
    """The parent is found by the process that runs the pipeline, not by the git revision."""
    from mlflow.tracking import MlflowClient

    for rev in ("aaaa111", "bbbb222"):  # a commit between two stages of one run
        monkeypatch.setattr(tracking, "_git_rev", lambda rev=rev: rev)
        with tracking.stage_run(f"stage-{rev}", "mid", "d", {}):
            pass
    exp = MlflowClient().get_experiment_by_name("mid")
    runs = MlflowClient().search_runs([exp.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(runs) == 3
    assert parents[0].info.status == "FINISHED" and exp.tags["mlflow.experimentKind"] == "custom_model_development"


def _open_stage(uri: str, name: str) -> None:
    import os

    os.environ["MLFLOW_TRACKING_URI"] = uri
    with tracking.stage_run(name, "race", name) as run:
        run.log_metrics({"x": 1.0})


def test_parallel_stages_can_both_create_a_fresh_store(tmp_path):
    """`dvc queue start -j 2`: two stages opened a new SQLite store at once and one died in MLflow's migrations."""
    import multiprocessing

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'fresh.db'}"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_open_stage, args=(uri, f"stage{i}")) for i in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    exp = MlflowClient(uri).get_experiment_by_name("race")
    names = {r.info.run_name for r in MlflowClient(uri).search_runs([exp.experiment_id])}
    assert {"stage0", "stage1", "stage2"} <= names


def test_progress_line_counts_stages_and_estimates_the_rest(monkeypatch):
    import time

    monkeypatch.setattr(time, "time", lambda: 1000.0)
    assert tracking.Progress(10, 40, 1000.0 - 125).line() == "[10/40, 2:05, ETA 6:15]"
    assert tracking.Progress(3, None, 1000.0 - 7).line() == "[3, 0:07]"
    assert tracking.Progress(1, 1, 1000.0 - 3700).line() == "[1/1, 1:01:40, ETA 0:00]"


def test_stage_runs_know_their_place_in_the_pipeline(tmp_path, monkeypatch):
    monkeypatch.setenv("DVC_STAGE", "a")
    monkeypatch.setattr(tracking, "_count_stages", lambda: 3)
    seen = []
    for stage in ("a", "b"):
        with tracking.stage_run(stage, "exp", "d1") as run:
            seen.append((run.progress.index, run.progress.total))
    assert seen == [(1, 3), (2, 3)]


def test_process_identity_survives_a_clock_adjustment(monkeypatch):
    """psutil's create_time() moves when the wall clock is adjusted; one `dvc exp run` then got three MLflow parents."""
    import os
    import time

    import psutil

    key = tracking._process_key(os.getpid())
    assert tracking._alive(key)
    monkeypatch.setattr(psutil.Process, "create_time", lambda self: time.time() + 25.0)
    assert tracking._process_key(os.getpid()) == key and tracking._alive(key)
    assert tracking.pipeline_key() == tracking.pipeline_key()
