"""Failing checks before approval, and the run's summary, in JupyterLab at 1500 px.

A wrong date pattern makes the preview fail: it lists the source values beside the null
they became and highlights those cells; Approve turns into "Approve anyway", enabled
only once a reason is typed (recorded in the audit log); the run then shows its progress
on a neutral bar and its summary as a table per target table with links to the output.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from jupyter_servers import JupyterServer, jupyter_server
from pages import NOTEBOOK, open_notebook, open_tab, prepare_examples, review_panel, run_all

from dataeng_magics.state.audit import AuditLog

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    with jupyter_server(tmp_path_factory.mktemp("lab-checks")) as server:
        prepare_examples(server)
        yield server


@pytest.fixture(scope="module")
def page(browser: Any, lab: JupyterServer) -> Iterator[Any]:
    page = browser.new_page()
    yield page
    page.close()


def test_failing_values_approve_anyway_and_the_run_summary(
    page: Any, lab: JupyterServer, shots: Any
) -> None:
    open_notebook(page, lab, f"lab/tree/example_notebooks/{NOTEBOOK}?reset")
    run_all(page, lab)
    panel = review_panel(page)
    open_tab(page, "Chat")
    panel.locator(".dem-chat-input").fill("SETTLE_DATE: parse date MM/DD/YYYY")
    panel.locator(".dem-chat-input").press("Enter")
    open_tab(page, "Preview")
    failing = panel.locator(".dem-failing")
    failing.wait_for(timeout=180_000)  # the preview follows the revision by itself
    assert "TRADES.SETTLE_DATE: conversion failed" in failing.inner_text()
    lines = failing.locator("pre").inner_text().splitlines()
    assert len(lines) == 10
    assert all(line.startswith("SETTLE_DATE '") for line in lines)
    assert all(line.endswith("→ null (parse date MM/DD/YYYY)") for line in lines)
    marked = panel.locator("tr[title='conversion failed: SETTLE_DATE']")
    assert marked.count() == 10  # each preview row, its SETTLE_DATE cell highlighted
    shots(page, "failing-values")

    button = panel.get_by_role("button", name="Approve anyway")
    assert button.is_disabled()
    reviewer = panel.locator(".widget-text").filter(has_text="Reviewer").locator("input")
    reviewer.fill("alice")
    reviewer.press("Tab")
    reason = panel.get_by_placeholder("why approve although checks fail (audited)")
    reason.fill("the settlement feed is fixed upstream")
    reason.press("Tab")
    page.wait_for_function(
        "() => [...document.querySelectorAll('button')].some("
        "b => b.textContent.includes('Approve anyway') && !b.disabled)",
        timeout=10_000,
    )
    shots(page, "approve-anyway-with-reason")
    button.click()
    run = panel.locator("button[title='Run the approved code.']")
    run.wait_for(timeout=60_000)
    [approval] = [e for e in AuditLog(lab.home / "audit.jsonl").events() if e.event == "approval"]
    assert approval.details["despite"] == "the settlement feed is fixed upstream"

    run.click()
    summary = panel.locator(".dem-run-summary")
    summary.wait_for(timeout=180_000)
    rows = summary.locator("tbody tr").all_inner_texts()
    assert [r.split("\t")[0] for r in rows] == ["TRADES", "COUNTERPARTIES"]
    assert "VALIDATION FAILED" in summary.inner_text()  # approved anyway, the check still fails
    assert "SETTLE_DATE [conversion]" in rows[0]
    assert "not published: previous output kept" in rows[0]
    evidence = summary.locator("a[href^='out/northwind/_evidence/']")  # the file browser's
    assert evidence.inner_text().endswith(".html")
    # no progress line left on the error background
    assert panel.locator("[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    summary.scroll_into_view_if_needed()
    shots(page, "run-summary-table")
