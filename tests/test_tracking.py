from demo2reward import tracking


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


def test_compare_lists_reward_accuracy_against_win_rate(monkeypatch, capsys):
    for name, acc, win in (("exp-a", 0.8, 0.3), ("exp-b", 0.6, 0.1)):
        monkeypatch.setenv("DVC_EXP_NAME", name)
        with tracking.stage_run("evaluate@1", "cmp", "d", {}) as run:
            run.log_pipeline_metrics({"reward_accuracy": acc - 0.1, "win_rate_vs_demos": 0.0}, step=0)
            run.log_pipeline_metrics({"reward_accuracy": acc, "win_rate_vs_demos": win}, step=1)
    rows = {r["run"]: r for r in tracking.compare_runs("cmp")}
    assert rows["exp-a"]["reward_accuracy"] == 0.8 and rows["exp-b"]["win_rate_vs_demos"] == 0.1  # the final step
    tracking.main(["--experiment", "cmp"])
    out = capsys.readouterr().out
    assert "exp-a" in out and "0.800" in out and "win_rate_vs_demos" in out
