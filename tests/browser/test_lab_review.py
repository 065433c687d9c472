"""Review panel, round two, in JupyterLab at 1500 px: what a reviewer sees before approving.

Notebook 01 runs in a fresh kernel: local Spark starts in the background under a
progress bar and the preview shows by itself, with each target column's source value
beside its result; the Sample tab profiles each column (spaces made visible); the notes
say what the offline planner applied and what is context only; a revision that drops
a workbook step says so, "add" keeps the rest, and the preview follows each revision;
a date pattern that does not fit the sample is flagged with one that does; after a
revocation the cell reopens the plan with its revisions and a banner, and "Start again
from the workbook" is a deliberate click.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_servers import JupyterServer, jupyter_server
from pages import (
    NOTEBOOK,
    TRANSFORM_CELL,
    open_notebook,
    open_tab,
    prepare_examples,
    review_panel,
    run_all,
    wait_kernel_idle,
)

from dataeng_magics.state.store import Store

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    with jupyter_server(tmp_path_factory.mktemp("lab-review")) as server:
        prepare_examples(server)
        yield server


@pytest.fixture(scope="module")
def page(browser: Any, lab: JupyterServer) -> Iterator[Any]:
    page = browser.new_page()
    yield page
    page.close()


def html(page: Any, text: str) -> Any:
    return review_panel(page).locator(".widget-html-content").filter(has_text=text).first


def ask(page: Any, text: str) -> str:
    """Send ``text`` in the Chat tab; the planner's reply."""
    open_tab(page, "Chat")
    panel = review_panel(page)
    replies = panel.locator(".dem-chat-planner")
    count = replies.count()
    panel.locator(".dem-chat-input").fill(text)
    panel.locator(".dem-chat-input").press("Enter")
    replies.nth(count).wait_for(timeout=60_000)
    return str(replies.nth(count).inner_text())


def test_spark_starts_under_a_progress_bar_and_the_preview_shows_by_itself(
    page: Any, lab: JupyterServer, shots: Any
) -> None:
    open_notebook(page, lab, f"lab/tree/example_notebooks/{NOTEBOOK}?reset")
    run_all(page, lab)
    panel = review_panel(page)
    panel.locator(".lm-TabBar-tab", has_text="Chat").wait_for()
    bar = panel.locator(".dem-spark-progress .widget-hprogress")
    bar.wait_for(state="visible", timeout=30_000)  # a fresh kernel: Spark is starting
    assert "Starting local Spark for the preview" in panel.inner_text()
    shots(page, "spark-starting")
    open_tab(page, "Preview")
    preview = html(page, "Plan applied to the sample rows")
    preview.wait_for(timeout=180_000)  # nobody clicked Run preview
    assert bar.is_hidden()
    shots(page, "preview-by-itself")


def test_preview_shows_before_and_after_per_target_column(page: Any, shots: Any) -> None:
    preview = html(page, "Before → after, per target column")
    text = preview.inner_text()
    assert "TRADES: source value → result, rows matched by TRADE_ID = 'Trade ID'" in text
    rows = preview.locator(".dem-before-after table").first.locator("tbody tr")
    desk = rows.filter(has_text="DESK").first.locator("td")
    assert desk.nth(1).inner_text() == "substring 1, 4, then upper"
    assert all("→" in cell for cell in desk.all_inner_texts()[3:])
    trader = rows.filter(has_text="TRADER").first.locator("td").nth(3).inner_text()
    assert " + " in trader and "→" in trader  # both names read, then the concatenation
    preview.locator(".dem-before-after").scroll_into_view_if_needed()
    shots(page, "before-after")


def test_sample_tab_profiles_each_column(page: Any, shots: Any) -> None:
    open_tab(page, "Sample")
    profile = review_panel(page).locator(".dem-profile").first
    profile.wait_for()
    assert "Column profile (100 sample rows)" in profile.inner_text()
    heads = profile.locator("th").all_inner_texts()
    assert heads[:4] == ["Column", "Type", "Null %", "Distinct"]
    rows = {
        cells[0]: cells
        for cells in profile.locator("tbody tr").evaluate_all(
            "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
        )
    }
    assert "'␣EUR'" in rows["Ccy"][8] and "'eur'" in rows["Ccy"][8]  # spaces made visible
    assert rows["Qty"][4:6] == ["476", "246878"]  # min and max of numbers
    assert rows["Settle Date"][2] == "4%"
    profile.scroll_into_view_if_needed()
    shots(page, "column-profile")


def test_the_notes_say_what_was_applied_and_what_is_context(page: Any, shots: Any) -> None:
    open_tab(page, "Chat")
    first = review_panel(page).locator(".dem-chat-planner").first.inner_text()
    assert "Kept as notes, context for an LLM planner only" in first
    assert "Amounts arrive in thousands" in first
    shots(page, "notes-context")


def test_a_revision_that_drops_a_step_says_so_and_add_keeps_the_rest(
    page: Any, lab: JupyterServer, shots: Any
) -> None:
    reply = ask(page, "COUNTRY: trim, upper")
    assert "removed default 'XX' if null" in reply and "COUNTRY: add RULE" in reply
    removed = review_panel(page).locator(".dem-chat-add").last.inner_text()
    assert removed.endswith("-- removed: default 'XX' if null")
    shots(page, "revision-says-removed")
    wait_kernel_idle(lab)
    reply = ask(page, "COUNTRY: add default 'XX'")
    assert "removed" not in reply
    open_tab(page, "Preview")  # the preview follows the revision by itself
    html(page, "Plan applied to the sample rows").wait_for(timeout=120_000)
    traced = html(page, "Before → after").inner_text()
    assert "trim, then upper, then default 'XX' if null" in traced
    shots(page, "preview-after-revision")


def test_a_date_pattern_that_does_not_fit_the_sample_is_flagged(page: Any, shots: Any) -> None:
    reply = ask(page, "SETTLE_DATE: parse date MM/DD/YYYY")
    assert "sample values of SETTLE_DATE do not parse as MM/DD/YYYY" in reply
    assert "DD.MM.YYYY fits" in reply
    shots(page, "date-pattern-warning")


def test_a_revoked_plan_reopens_and_start_again_is_explicit(
    page: Any, lab: JupyterServer, shots: Any
) -> None:
    wait_kernel_idle(lab)
    ask(page, "SETTLE_DATE: parse date DD.MM.YYYY")
    store = Store(lab.home / "store.sqlite")
    entry = store.list()[0]
    result = subprocess.run(
        [sys.executable, "-m", "dataeng_magics", "cache", "revoke", entry.key,
         "--reason", "client sent v5"],
        env=lab.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    page.locator(TRANSFORM_CELL).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")
    banner = html(page, "The plan is reopened")
    banner.wait_for(timeout=60_000)
    assert "client sent v5" in banner.inner_text() and "Revoked by" in banner.inner_text()
    plan = html(page, "TABLE TRADES").inner_text()
    assert "COUNTRY (string) <- \"Country\": trim, then upper, then default 'XX'" in plan
    open_tab(page, "Chat")
    texts = review_panel(page).locator(".dem-chat-user").all_inner_texts()
    assert any("COUNTRY: trim, upper" in t for t in texts)  # the history, kept
    shots(page, "reopened-banner")
    restart = review_panel(page).get_by_role("button", name="Start again from the workbook")
    restart.click()
    html(page, "Started again from the workbook's draft").wait_for(timeout=60_000)
    assert restart.is_hidden()
    assert store.list()[0].status == "draft"
    plan = html(page, "TABLE TRADES").inner_text()
    assert "COUNTRY (string) <- \"Country\": upper, then default 'XX' if null" in plan
    shots(page, "started-again")
