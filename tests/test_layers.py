"""The package's layers: core -> models -> tasks -> loop -> evaluation, each importing only the ones below it.

Every import of demo2reward counts, at module level and inside functions alike (tests/test_code_deps.py walks them
the same way). MLflow mirroring (`tracking`) sits beside core and knows nothing of the evaluation: the report
hands it what to log.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "src" / "demo2reward"
LAYERS = ("core", "models", "tasks", "loop", "evaluation")


def imported_packages(path: Path) -> set[str]:
    """The demo2reward subpackages and top-level modules `path` imports (e.g. `tasks`, `tracking`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "demo2reward" and len(parts) > 1:
                found.add(parts[1])
    return found


@pytest.mark.parametrize("layer", LAYERS)
def test_no_import_runs_back_up(layer):
    above = set(LAYERS[LAYERS.index(layer) + 1 :])
    offenders = {
        path.relative_to(ROOT).as_posix(): sorted(imported_packages(path) & above) for path in (PACKAGE / layer).rglob("*.py")
    }
    assert not {k: v for k, v in offenders.items() if v}, f"{layer}/ imports a layer above it"


def test_core_and_models_know_no_task_loop_or_evaluation():
    for layer in ("core", "models"):
        for path in (PACKAGE / layer).rglob("*.py"):
            assert not imported_packages(path) & {"tasks", "loop", "evaluation", "export"}, path


def test_tracking_imports_nothing_from_the_evaluation():
    assert imported_packages(PACKAGE / "tracking.py") <= {"core"}


def test_no_private_name_is_imported_across_modules():
    """`from x import _name` couples two modules through what one of them calls private (exchange did so)."""
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("demo2reward"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.relative_to(ROOT)} imports {private} from {node.module}"


def test_no_module_holds_state_that_a_stage_sets():
    """What a stage may do with models (remote code, vLLM) is passed down as a `Runtime`, never set on a module."""
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.Global)], f"{path.relative_to(ROOT)} rebinds a global"
    assert not (PACKAGE / "core" / "backend.py").exists() and not (PACKAGE / "core" / "consent.py").exists()
