"""Every stage depends on the code it runs: an edit anywhere in a stage's import closure makes `dvc status` see it.

The closure is walked from each stage's script through every `import` of demo2reward (module level and inside
functions alike), and each module must lie under one of the stage's declared deps.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import ROOT

SRC = ROOT / "src"
# Modules that cannot change any output, exempt by name: MLflow mirroring of the metrics files.
EXEMPT = {SRC / "demo2reward" / "tracking.py"}


def _module_file(name: str) -> Path | None:
    base = SRC.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


@cache
def _imports(path: Path) -> frozenset[Path]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] == "demo2reward" and (f := _module_file(name)):
                found.add(f)
    return frozenset(found)


def closure(script: Path) -> set[Path]:
    """The modules `script` may run; an exempt module's own imports serve its mirroring only, so the walk stops there."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        for f in _imports(todo.pop()):
            if f not in seen:
                seen.add(f)
                if f not in EXEMPT:
                    todo.append(f)
    return seen


def _stages() -> list[tuple[str, Path, list[Path]]]:
    from dvc.repo import Repo

    out = []
    with Repo(str(ROOT)) as repo:
        for st in repo.index.stages:
            script = next((w for w in st.cmd.split() if w.startswith("stages/") and w.endswith(".py")), None)
            if script:
                out.append((st.addressing, ROOT / script, [Path(d.fs_path).resolve() for d in st.deps]))
    return out


STAGES = _stages()


def test_every_stage_runs_a_script():
    assert len({s.name for _, s, _ in STAGES}) >= 13


def test_package_inits_hold_no_code():
    """`__init__.py` files are imported by every stage but exempt from the deps, so they may hold a docstring only."""
    for init in SRC.rglob("__init__.py"):
        body = ast.parse(init.read_text()).body
        assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), init


@pytest.mark.parametrize(("name", "script", "deps"), STAGES, ids=[s[0] for s in STAGES])
def test_stage_depends_on_every_module_it_runs(name, script, deps):
    def covered(f: Path) -> bool:
        return any(f == d or d in f.parents for d in deps)

    assert covered(script.resolve()), f"{name}: its script {script.name} is not a dep"
    missing = sorted(
        str(f.relative_to(ROOT)) for f in closure(script) if f.name != "__init__.py" and f not in EXEMPT and not covered(f)
    )
    assert not missing, f"{name} runs modules it does not depend on: {missing}"


def test_lock_holds_only_the_pipelines_stages():
    """DVC keeps a renamed or removed stage's entry in dvc.lock; nothing reads it again, but DVC parses it on every
    `dvc repro` and re-parses and rewrites the whole file after each stage it runs, so a stale entry is paid for on
    every run (0.13 ms per line per stage, bench/benchmark.py)."""
    import yaml

    live = {name for name, _, _ in STAGES}
    locked = set(yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"])
    assert not locked - live, f"dvc.lock holds stages that dvc.yaml no longer has: {sorted(locked - live)[:5]}"
