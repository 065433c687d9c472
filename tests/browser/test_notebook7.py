"""The same notebook in Notebook 7 (``/notebooks/<path>``): the review panel renders;
keys typed in it stay in it (Notebook 7 handles shortcuts before the panel sees the
key, unlike JupyterLab); it approves, and our extension (lab extensions load in
Notebook 7 too) inserts the approved cell below the %%transform cell, whose badge shows
a revocation once the cell is selected. Then, with the extension disabled, the
kernel-side fallback (``%transform materialise``) still inserts it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jupyter_servers import JupyterServer, jupyter_server
from pages import (
    APPROVED_CELL,
    NOTEBOOK,
    TRANSFORM_CELL,
    approve,
    notebook_cells,
    open_notebook,
    open_tab,
    prepare_examples,
    review_panel,
    reviewer_field,
    run_all,
    transform_prompt,
    transform_ran_again,
)

from dataeng_magics.state.store import Store

pytestmark = pytest.mark.browser

PLAIN = "01_without_extension.ipynb"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    with jupyter_server(tmp_path_factory.mktemp("notebook7")) as running:
        prepare_examples(running)
        yield running


@pytest.fixture(scope="module")
def page(browser: Any, server: JupyterServer) -> Iterator[Any]:
    page = browser.new_page()
    yield page
    page.close()


def test_notebook7_renders_the_review_panel(page: Any, server: JupyterServer, shots: Any) -> None:
    open_notebook(page, server, f"notebooks/example_notebooks/{NOTEBOOK}")
    assert page.locator("#main-panel, .jp-NotebookPanel").count() > 0
    assert "/lab" not in page.url  # Notebook 7's own page, not JupyterLab
    run_all(page, server)
    panel = review_panel(page)
    panel.locator(".lm-TabBar-tab", has_text="Chat").wait_for()
    assert panel.locator(".lm-TabBar-tab").all_inner_texts() == [
        "Mapping", "Sample", "Plan", "Preview", "Code", "Chat",
    ]  # fmt: skip
    assert "TABLE TRADES" in panel.inner_text()
    shots(page, "notebook7-review-panel")


def test_notebook7_keys_stay_in_the_panel(page: Any, server: JupyterServer, shots: Any) -> None:
    prompt, cells = transform_prompt(page), len(notebook_cells(page))
    reviewer_field(page).click()
    page.keyboard.press("Shift+Enter")
    page.keyboard.press("Control+Enter")
    assert not transform_ran_again(page, server, prompt, cells)
    open_tab(page, "Chat")
    chat = review_panel(page).locator(".dem-chat-input")
    replies = review_panel(page).locator(".dem-chat-planner").count()  # the notes' account
    chat.click()
    page.keyboard.type("DESK: upper")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("SIDE: map B=BUY, S=SELL")
    assert chat.input_value() == "DESK: upper\nSIDE: map B=BUY, S=SELL"
    assert not transform_ran_again(page, server, prompt, cells)
    shots(page, "notebook7-chat-two-lines")
    page.keyboard.press("Enter")
    review_panel(page).locator(".dem-chat-planner").nth(replies).wait_for(timeout=60_000)
    assert chat.input_value() == ""
    assert not transform_ran_again(page, server, prompt, cells)


def test_notebook7_approves(page: Any, server: JupyterServer, shots: Any) -> None:
    approve(page, "bob")
    cell = page.locator(APPROVED_CELL)
    cell.wait_for(timeout=30_000)
    assert "Approved transformation" in cell.locator(".dem-ApprovedBadge").inner_text()
    classes = notebook_cells(page)
    where = next(i for i, c in enumerate(classes) if "dem-materialised" in c)
    previous = page.locator(".jp-Notebook .jp-Cell").nth(where - 1)
    assert previous.locator(".dem-cm-transform-line").count() == 1
    entry = Store(server.home / "store.sqlite").list()[0]
    assert entry.status == "approved" and entry.reviewer == "bob"
    cell.locator(".dem-ApprovedBadge").scroll_into_view_if_needed()
    shots(page, "notebook7-approved")


def test_without_the_extension_the_kernel_inserts_the_cell(
    browser: Any, server: JupyterServer, shots: Any
) -> None:
    """Plain Notebook 7: nothing listens to the panel, whose note points to
    ``%transform materialise``; that inserts the cell from the kernel (set_next_input)."""
    (server.root / "example_notebooks" / PLAIN).write_bytes(
        (server.root / "example_notebooks" / NOTEBOOK).read_bytes()
    )
    labconfig = Path(server.env["JUPYTER_CONFIG_DIR"]) / "labconfig"
    labconfig.mkdir(exist_ok=True)
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"dataeng-magics": True}})
    )
    page = browser.new_page()
    try:
        open_notebook(page, server, f"notebooks/example_notebooks/{PLAIN}")
        run_all(page, server)  # the plan is approved now: the approved panel shows
        panel = page.locator(".jp-OutputArea-output").filter(has_text="Approved plan for client")
        materialise = panel.locator("button", has_text="Materialise")
        materialise.wait_for(timeout=120_000)  # a busy machine: the kernel may start late
        materialise.click()
        note = panel.locator(".widget-html-content").filter(has_text="%transform materialise")
        note.wait_for()
        time.sleep(1)
        assert page.locator(".dem-ApprovedBadge").count() == 0
        assert not any("%%transform_run" in text for text in cell_sources(page))
        shots(page, "notebook7-plain-materialise-note")

        last = page.locator(".jp-Notebook .jp-Cell").last
        last.locator(".jp-InputArea-editor").click()
        page.keyboard.press("Escape")
        page.keyboard.press("b")
        page.keyboard.press("Enter")
        page.keyboard.type("%transform materialise")
        page.keyboard.press("Control+Enter")
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-Notebook .jp-Cell .cm-content')]"
            ".some(e => e.textContent.startsWith('%%transform_run'))"
        )
        sources = cell_sources(page)
        at = sources.index("%transform materialise")
        assert sources[at + 1].startswith("%%transform_run --client NORTHWIND")
        assert page.locator(".dem-ApprovedBadge").count() == 0
        page.locator(".jp-Notebook .jp-Cell").nth(at).evaluate("e => e.scrollIntoView()")
        shots(page, "notebook7-plain-kernel-inserted")
    finally:
        (labconfig / "page_config.json").unlink()
        page.close()


def cell_sources(page: Any) -> list[str]:
    """The first line of each code cell's editor, in order."""
    return list(
        page.eval_on_selector_all(
            ".jp-Notebook .jp-Cell",
            "cells => cells.map(c => (c.querySelector('.cm-line') || {}).textContent || '')",
        )
    )


def test_notebook7_badge_shows_a_revocation(page: Any, server: JupyterServer, shots: Any) -> None:
    """Back on the first page (the extension loaded): a revocation made elsewhere shows
    on the approved cell once it is selected."""
    key = Store(server.home / "store.sqlite").list()[0].key
    path = f"dataeng-magics/entries/{key}/revoke"
    assert server.request("POST", path, {"reason": "wrong desk codes"})[0] == 200
    page.locator(TRANSFORM_CELL).locator(".jp-InputPrompt").click()
    page.locator(APPROVED_CELL).locator(".jp-InputPrompt").click()  # select it
    badge = page.locator(f"{APPROVED_CELL} .dem-ApprovedBadge[data-status='revoked']")
    badge.wait_for()
    assert "wrong desk codes" in badge.inner_text()
    badge.scroll_into_view_if_needed()
    shots(page, "notebook7-revoked")
