from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def merged_params(overrides: dict | None = None) -> dict:
    """The repository's params.yaml with `overrides` merged in (DVC needs every section present)."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text())

    def merge(a: dict, b: dict) -> None:
        for k, v in b.items():
            if isinstance(v, dict) and isinstance(a.get(k), dict):
                merge(a[k], v)
            else:
                a[k] = v

    merge(base, overrides or {})
    return base


@pytest.fixture
def micro_params() -> dict:
    return merged_params(yaml.safe_load((ROOT / "tests" / "micro_params.yaml").read_text()))


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch):
    """No test writes into the developer's mlflow.db."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
