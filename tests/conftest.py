from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def deep_merge(base: dict, overrides: dict) -> dict:
    """`overrides` merged into `base` in place, section by section; lists and scalars are replaced."""
    for k, v in overrides.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = v
    return base


def wait_for_dvc_queue(ws: Path, env: dict, timeout_s: float = 900) -> str:
    """Poll `dvc queue status` until nothing is queued or running; return its last output."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = subprocess.run(["dvc", "queue", "status"], cwd=ws, env=env, capture_output=True, text=True).stdout
        if not any(word in status for word in ("Queued", "Running")) or time.monotonic() > deadline:
            return status
        time.sleep(3)


WORKSPACE = ("dvc.yaml", "stages", "src", ".dvc", ".dvcignore", "data/raw")  # what a pipeline run needs of the repo


def copy_repo(ws: Path, params: dict | None = None, extra: tuple[str, ...] = ()) -> Path:
    """The pipeline's files in `ws` (no DVC cache or temp files) and, if given, `params` as its params.yaml."""
    for name in (*WORKSPACE, *extra):
        src, dst = ROOT / name, ws / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)  # data/raw may already hold the test's own files
        else:
            shutil.copy(src, dst)
    shutil.rmtree(ws / ".dvc" / "tmp", ignore_errors=True)
    shutil.rmtree(ws / ".dvc" / "cache", ignore_errors=True)
    (ws / ".dvc" / "config.local").unlink(missing_ok=True)
    if params is not None:
        (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return ws


def merged_params(overrides: dict | None = None) -> dict:
    """The repository's params.yaml with `overrides` merged in (DVC needs every section present)."""
    return deep_merge(yaml.safe_load((ROOT / "params.yaml").read_text()), overrides or {})


@pytest.fixture
def micro_params() -> dict:
    return merged_params(yaml.safe_load((ROOT / "tests" / "micro_params.yaml").read_text()))


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch):
    """No test writes into the developer's mlflow.db."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
