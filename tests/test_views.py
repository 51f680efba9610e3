"""What a person looks at renders: DVC's plots page offline (vega inlined), checked in a headless browser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.browser import browser_page, distinct_colours, keep_for_docs
from tests.conftest import ROOT


def test_dvc_plots_render_offline(tmp_path):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    out = tmp_path / "plots"
    subprocess.run(["dvc", "plots", "show", "-o", str(out)], cwd=ROOT, env=env, check=True, capture_output=True)
    assert "<script src=" not in (out / "index.html").read_text(), "the page still loads scripts from the network"
    plots = [next(iter(p)) if isinstance(p, dict) else p for p in yaml.safe_load((ROOT / "dvc.yaml").read_text())["plots"]]
    data, images = [p for p in plots if p.endswith(".json")], [p for p in plots if p.endswith(".png")]
    with browser_page(height=1800, offline=True) as page:
        failed = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto((out / "index.html").as_uri())
        page.locator("canvas.marks").nth(len(data) - 1).wait_for()  # vega drew every data plot
        assert page.locator("canvas.marks").count() == len(data) == 4
        loaded = page.eval_on_selector_all('img[src^="static/"]', "els => els.filter(e => e.naturalWidth > 0).length")
        assert loaded == len(images) == 3
        assert not failed, f"requests failed offline: {failed}"
        shot = tmp_path / "plots.png"
        page.screenshot(path=shot, full_page=True)
    assert distinct_colours(shot) > 200
    keep_for_docs(shot, "dvc-plots-offline.png")
