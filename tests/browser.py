"""A headless browser for the tests that check what a person sees: the MLflow UI and DVC's plots page.

Playwright drives Debian's `chromium` (CI installs it in `.ci/run`; Playwright's own browser download needs a CDN
that this project cannot assume). Without a Chromium on PATH these tests skip, unless DEMO2REWARD_REQUIRE_BROWSER=1
(set by CI), where a missing browser fails them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def chromium() -> str:
    for name in NAMES:
        if path := shutil.which(name):
            return path
    if os.environ.get("DEMO2REWARD_REQUIRE_BROWSER") == "1":
        pytest.fail(f"no headless browser on PATH (looked for {', '.join(NAMES)}); CI installs Debian's chromium")
    pytest.skip("no Chromium on PATH (apt-get install chromium)")


@contextlib.contextmanager
def browser_page(width: int = 1400, height: int = 1000, offline: bool = False) -> Iterator:
    """A fresh page; `offline` cuts the network (file:// pages still load)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": width, "height": height}, offline=offline)
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def distinct_colours(png: Path) -> int:
    """How many colours a screenshot has: a blank or unstyled page has a handful, a rendered chart hundreds."""
    from PIL import Image

    with Image.open(png) as im:
        return len(im.convert("RGB").getcolors(maxcolors=1 << 20) or [])


def keep_for_docs(png: Path, name: str) -> None:
    """The README's pictures come from these test runs: DEMO2REWARD_DOCS_IMG=docs/img pytest -k ui."""
    if docs := os.environ.get("DEMO2REWARD_DOCS_IMG"):
        shutil.copy(png, Path(docs) / name)
