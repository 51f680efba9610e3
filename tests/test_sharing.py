"""Beyond one workspace: a shared DVC remote and an MLflow tracking server, on a micro pipeline (one seed, K = 1).

A real `mlflow server` runs on 127.0.0.1 with a SQLite backend; the DVC remote is a local folder, which DVC treats
exactly as it treats S3 or SSH (docs/pipeline.md shows those).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, copy_repo, merged_params, wait_for_dvc_queue

pytestmark = pytest.mark.slow
# The README's `dvc exp show` recipe: what changed (no dependency hashes), and always the recovery ratio.
README_EXP_SHOW = ["--only-changed", "--drop", "models|params.yaml|\\w+/", "--keep", "reward_recovery_ratio"]


def _run(args, cwd, env, check=True):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    venv_bin = Path(sys.executable).parent
    store = ["--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--default-artifact-root", str(root / "artifacts")]
    cmd = [str(venv_bin / "mlflow"), "server", *store, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.5)
    else:
        os.killpg(proc.pid, signal.SIGTERM)
        pytest.fail("mlflow server did not come up")
    yield url
    os.killpg(proc.pid, signal.SIGTERM)  # the server spawns helpers: stop the whole group
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def repo(tmp_path_factory, mlflow_server):
    """A one-seed, K = 1 micro pipeline, reproduced with its runs on the MLflow server."""
    ws = tmp_path_factory.mktemp("shared") / "repo"
    ws.mkdir()
    params = merged_params(yaml.safe_load((ROOT / "tests" / "micro_params.yaml").read_text()))
    params.update(seeds=[0], irl_tracks=["irl"], iterations=[{"k": 1, "prev": "../sft"}])
    copy_repo(ws, params)
    (ws / ".gitignore").write_text((ROOT / ".gitignore").read_text())
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.update(MLFLOW_TRACKING_URI=mlflow_server)
    env.pop("DVC_EXP_NAME", None)
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init"],
    ):
        _run(cmd, ws, env)
    _run(["dvc", "repro"], ws, env)
    return ws, env


def _rest(url: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        return json.loads(r.read())


def test_runs_land_on_the_tracking_server(repo, mlflow_server):
    exp = json.loads(
        urllib.request.urlopen(f"{mlflow_server}/api/2.0/mlflow/experiments/get-by-name?experiment_name=demo2reward").read()
    )
    exp_id = exp["experiment"]["experiment_id"]
    runs = _rest(mlflow_server, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id], "max_results": 1000})["runs"]
    tags = [{t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs]
    parents = [r for r, t in zip(runs, tags, strict=True) if t.get("demo2reward.role") == "pipeline"]
    children = [t for t in tags if t.get("demo2reward.role") == "stage"]
    assert len(parents) == 1 and parents[0]["info"]["status"] == "FINISHED"
    names = {t["mlflow.runName"] for t in children}
    assert {"prepare", "sft@0", "policy@0-irl-from0", "report"} <= names
    assert len(children) == len(names)  # exactly one child run per stage
    assert all(t["mlflow.parentRunId"] == parents[0]["info"]["run_id"] for t in children)


def test_a_shared_dvc_remote_round_trip(repo, tmp_path):
    ws, env = repo
    remote = tmp_path / "remote"
    _run(["dvc", "remote", "add", "-d", "shared", str(remote)], ws, env)
    _run(["git", "add", "-A"], ws, env)
    _run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "results"], ws, env)
    _run(["dvc", "push"], ws, env)
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(ws), str(clone)], ws, env)
    _run(["dvc", "pull"], clone, env)
    assert "up to date" in _run(["dvc", "status"], clone, env).stdout
    repro = _run(["dvc", "repro"], clone, env)
    assert "Running stage" not in repro.stdout  # nothing reruns: the pulled outputs are the results
    shown = [json.loads(_run(["dvc", "metrics", "show", "--json"], d, env).stdout) for d in (ws, clone)]
    assert shown[0][""] == shown[1][""] and "metrics/summary.json" in shown[0][""]["data"]


@pytest.fixture(scope="module")
def two_experiments(repo):
    """An ablation beside the first run, as the README's recipe makes one: a reward-model learning rate that moves
    IRL's reward accuracy even at micro sizes (the KL coefficient moved nothing there)."""
    ws, env = repo
    _run(["dvc", "exp", "run", "--temp", "-n", "rm-lr-0.01", "-S", "reward.learning_rate=0.01"], ws, env)
    return ws, env


def test_dvc_exp_show_fits_a_screen(two_experiments):
    ws, env = two_experiments
    table = _run(["dvc", "exp", "show", "--no-pager", *README_EXP_SHOW], ws, {**env, "COLUMNS": "200"}).stdout
    assert (
        "dvc exp show --only-changed --drop 'models|params.yaml|\\w+/' --keep reward_recovery_ratio"
        in (ROOT / "README.md").read_text()
    )
    lines = table.splitlines()
    assert max(map(len, lines)) <= 200, table
    header = lines[1]
    assert "reward.learning_rate" in header, table
    end = header.index("reward_recovery_ratio") + len("reward_recovery_ratio")  # metrics are right-aligned
    rows = [line for line in lines if "rm-lr-0.01" in line or line.lstrip().startswith(("workspace", "main", "master"))]
    assert len(rows) >= 2, table
    for row in rows:
        float(row[:end].split()[-1])  # every experiment shows its recovery ratio, not "-" or "…"


def test_mlflow_ui_compares_reward_accuracy_with_win_rate(two_experiments, mlflow_server, tmp_path):
    """The README's MLflow recipe, in a browser: two experiments' pipeline runs on the runs view, then compared
    side by side (params and headline metrics) with a scatter of reward accuracy against win rate."""
    from tests.browser import browser_page, distinct_colours, keep_for_docs

    ws, env = two_experiments
    exp = json.loads(
        urllib.request.urlopen(f"{mlflow_server}/api/2.0/mlflow/experiments/get-by-name?experiment_name=demo2reward").read()
    )
    exp_id = exp["experiment"]["experiment_id"]
    compare = Path(sys.executable).parent / "demo2reward-compare"
    link = _run([str(compare), "--ui", mlflow_server], ws, env).stdout.strip()
    with browser_page() as page:
        page.goto(f"{mlflow_server}/#/experiments/{exp_id}/runs?workflowType=machine_learning")
        page.get_by_text("rm-lr-0.01").first.wait_for()  # the runs view (not the GenAI overview) lists the experiment
        assert page.get_by_role("tab", name="Traces").count() == 0 or page.get_by_text("Detect Issues").count() == 0

        page.goto(link)
        page.get_by_text("Comparing 2 Runs").wait_for()
        expected = ["rm-lr-0.01", "reward.learning_rate"]  # the two runs' params side by side (metrics: the scatter below)
        page.wait_for_function(f"{expected}.every(t => document.body.innerText.includes(t))")
        page.get_by_role("tab", name="Scatter Plot").click()
        for box, metric in zip(page.get_by_role("combobox").all(), ("reward_accuracy", "win_rate_vs_demos"), strict=True):
            box.click()
            page.keyboard.type(metric)
            page.get_by_role("option", name=metric, exact=True).click()
        page.locator(".js-plotly-plot").first.wait_for()
        traces = page.evaluate("() => document.querySelector('.js-plotly-plot').data.map(t => [t.x, t.y])")
        plotted = sorted(zip(*traces[0], strict=True))
        runs = _rest(mlflow_server, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp_id], "max_results": 1000})["runs"]
        logged = []
        for r in runs:
            metrics = {m["key"]: m["value"] for m in r["data"].get("metrics", [])}
            if "reward_accuracy" in metrics and "mlflow.parentRunId" not in {t["key"] for t in r["data"]["tags"]}:
                logged.append((metrics["reward_accuracy"], metrics["win_rate_vs_demos"]))
        assert plotted == sorted(logged) and len(plotted) == 2  # one point per experiment, at its logged values
        shot = tmp_path / "mlflow-compare.png"
        page.screenshot(path=shot)
    assert distinct_colours(shot) > 100
    keep_for_docs(shot, "mlflow-compare.png")


def test_two_queued_experiments_run_at_once_against_the_server(two_experiments, mlflow_server):
    """`dvc queue start -j 2`: two experiments at once, both logging to the tracking server; both land intact."""
    ws, env = two_experiments
    names = {"q-lr-0.003": "reward.learning_rate=0.003", "q-lr-0.03": "reward.learning_rate=0.03"}
    for name, change in names.items():
        _run(["dvc", "exp", "run", "--queue", "-n", name, "-S", change], ws, env)
    try:
        _run(["dvc", "queue", "start", "-j", "2"], ws, env)
        status = wait_for_dvc_queue(ws, env)
    finally:
        _run(["dvc", "queue", "stop"], ws, env, check=False)
    assert status.count("Success") >= 2 and "Failed" not in status, status
    exp = json.loads(
        urllib.request.urlopen(f"{mlflow_server}/api/2.0/mlflow/experiments/get-by-name?experiment_name=demo2reward").read()
    )
    runs = _rest(mlflow_server, "/api/2.0/mlflow/runs/search", {"experiment_ids": [exp["experiment"]["experiment_id"]],
                                                                "max_results": 1000})["runs"]  # fmt: skip
    tags = {r["info"]["run_id"]: {t["key"]: t["value"] for t in r["data"].get("tags", [])} for r in runs}
    for name in names:
        parents = [
            r for r in runs if r["info"]["run_name"] == name and tags[r["info"]["run_id"]].get("demo2reward.role") == "pipeline"
        ]
        assert len(parents) == 1 and parents[0]["info"]["status"] == "FINISHED", name
        children = [r for r in runs if tags[r["info"]["run_id"]].get("mlflow.parentRunId") == parents[0]["info"]["run_id"]]
        stages = [r["info"]["run_name"] for r in children]
        assert {"reward@0-irl-from0", "policy@0-irl-from0", "report"} <= set(stages) and len(stages) == len(set(stages))
        assert all(r["info"]["status"] == "FINISHED" for r in children), name
        metrics = {m["key"] for m in parents[0]["data"].get("metrics", [])}
        assert {"reward_accuracy", "win_rate_vs_demos", "summary/reward_recovery_ratio"} <= metrics, name
