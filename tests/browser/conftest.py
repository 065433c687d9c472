"""Real JupyterLab / Notebook 7 in Debian's headless Chromium, driven by Playwright.

Each module is one scenario: its steps are test functions run in order against one
Jupyter server and one page. A failed step skips the steps after it (they would only
fail for the same reason), and leaves a screenshot of the moment it failed.
Screenshots of every step go to ``test-artifacts/browser/<module>/``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[Any]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        page = getattr(item, "funcargs", {}).get("page")
        if page is not None:
            path = artifacts_dir(item.module.__name__) / f"FAILED-{item.name}.png"
            try:
                page.screenshot(path=str(path), full_page=False)
                report.sections.append(("screenshot", str(path)))
            except Exception as exc:  # the page may be gone: keep the real failure
                report.sections.append(("screenshot", f"not taken: {exc}"))
    if report.failed and report.when in ("setup", "call"):
        item.module.__dict__.setdefault("_failed_step", item.name)


def pytest_runtest_setup(item: pytest.Item) -> None:
    failed = getattr(item.module, "_failed_step", None)
    if failed is not None:
        pytest.skip(f"an earlier step of this scenario failed: {failed}")


def artifacts_dir(module: str) -> Path:
    path = ARTIFACTS / module.rsplit(".", 1)[-1]
    path.mkdir(parents=True, exist_ok=True)
    return path


class Shots:
    """Numbered screenshots of one scenario's steps."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        for old in folder.glob("*.png"):
            old.unlink()
        self.count = 0

    def __call__(self, page: Any, name: str) -> Path:
        self.count += 1
        slug = re.sub(r"[^\w-]+", "-", name)
        path = self.folder / f"{self.count:02d}-{slug}.png"
        page.screenshot(path=str(path))
        return path


@pytest.fixture(scope="module")
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(artifacts_dir(request.module.__name__))


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A persistent Chromium context with a fresh profile; never a downloaded browser."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("/usr/bin/chromium is missing: scripts/test.sh installs it")
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1500, "height": 960},  # the width the issue reviews at
        )
        context.set_default_timeout(30_000)
        try:
            yield context
        finally:
            context.close()
