"""The Transformations side panel shows a run in progress as "running" and one whose
lease lapsed as "interrupted", a badge beside the entry (from the store's run leases)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_servers import JupyterServer, jupyter_server
from test_store import make_entry

from dataeng_magics.state.store import Store

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    with jupyter_server(tmp_path_factory.mktemp("lab")) as server:
        yield server


def test_side_panel_badges_running_and_interrupted_runs(
    browser: Any, lab: JupyterServer, shots: Any
) -> None:
    store = Store(Path(lab.home) / "store.sqlite")
    for n, client in enumerate(("RUNNING", "INTERRUPTED", "IDLE")):
        store.put(make_entry(str(n + 1) * 64, client=client))
    store.start_lease("a" * 32, "1" * 64, "alice", 600)  # this process: alive, in time
    store.start_lease("b" * 32, "2" * 64, "alice", -1)  # expired: the run was left
    page = browser.new_page()
    try:
        page.goto(lab.page("lab"))
        page.locator(".jp-SideBar .lm-TabBar-tab[title='Transformations']").click()
        panel = page.locator(".dem-TransformationsPanel")

        def row(client: str) -> Any:
            return panel.locator(f".dem-EntryRow[data-client='{client}']")

        row("IDLE").wait_for(timeout=60_000)
        badge = "[data-field='run_state']"
        assert row("RUNNING").locator(badge).inner_text().strip().lower() == "running"
        assert row("INTERRUPTED").locator(badge).inner_text().strip().lower() == "interrupted"
        assert row("IDLE").locator(badge).count() == 0
        shots(page, "side-panel-run-states")
        row("INTERRUPTED").click()  # the detail's heading shows it too
        heading = page.locator(".jp-MainAreaWidget .dem-Detail-title")
        assert heading.locator(badge).inner_text().strip().lower() == "interrupted"
    finally:
        page.close()
