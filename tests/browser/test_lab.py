"""The whole workflow in JupyterLab with our extension, as a reviewer clicks through it.

Notebook 01 (without its headless-only cells) runs and shows the review panel; the
Sample and Plan tabs read; a chat revision (offline planner) changes the plan; Approve
inserts the approved cell below, badged and read-only; it runs and shows the summary;
the editor marks %%transform cells and completes their flags; the Transformations side
panel lists the entry and revokes it; then a replay fails with "approval required".
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import nbformat
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
    run_all,
    wait_kernel_idle,
)

from dataeng_magics.state.audit import AuditLog
from dataeng_magics.state.store import Store

pytestmark = pytest.mark.browser

REVISION = "CURRENCY: trim, upper, default 'USD'"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    with jupyter_server(tmp_path_factory.mktemp("lab")) as server:
        prepare_examples(server)
        yield server


@pytest.fixture(scope="module")
def page(browser: Any, lab: JupyterServer) -> Iterator[Any]:
    page = browser.new_page()
    yield page
    page.close()


def store(lab: JupyterServer) -> Store:
    return Store(lab.home / "store.sqlite")


def test_run_notebook_shows_review_panel(page: Any, lab: JupyterServer, shots: Any) -> None:
    open_notebook(page, lab, f"lab/tree/example_notebooks/{NOTEBOOK}?reset")
    shots(page, "notebook-opened")
    run_all(page, lab)
    panel = review_panel(page)
    panel.locator(".lm-TabBar-tab", has_text="Chat").wait_for()
    tabs = panel.locator(".lm-TabBar-tab").all_inner_texts()
    assert tabs == ["Mapping", "Sample", "Plan", "Preview", "Code", "Chat"]
    assert "TABLE TRADES" in panel.inner_text()  # the Plan tab is open first
    assert page.locator(APPROVED_CELL).count() == 0
    shots(page, "review-panel")


def test_sample_and_plan_tabs(page: Any, shots: Any) -> None:
    open_tab(page, "Sample")
    panel = review_panel(page)
    sample = panel.locator(".widget-html-content").filter(has_text="sample rows").first
    sample.wait_for()
    text = sample.inner_text()
    assert "trades (csv): first 10 of" in text and "Trade ID" in text
    shots(page, "sample-tab")
    open_tab(page, "Plan")
    plan = panel.locator(".widget-html-content").filter(has_text="TABLE TRADES").first
    assert "CURRENCY (string) [required]" in plan.inner_text()
    shots(page, "plan-tab")


def test_chat_revision_changes_the_plan(page: Any, lab: JupyterServer, shots: Any) -> None:
    open_tab(page, "Chat")
    panel = review_panel(page)
    before = store(lab).list()[0]
    chat = panel.locator(".dem-chat-input")
    chat.fill(REVISION)
    chat.press("Enter")
    reply = panel.locator(".dem-chat-planner").last
    reply.wait_for(timeout=60_000)
    added = panel.locator(".dem-chat-add").all_inner_texts()
    assert any("CURRENCY" in line and "'USD'" in line for line in added), added
    shots(page, "chat-revision")
    open_tab(page, "Plan")
    plan = panel.locator(".widget-html-content").filter(has_text="Last revision").first
    plan.wait_for()
    assert "default 'USD' if null" in plan.inner_text()
    after = store(lab).list()[0]
    assert after.key == before.key and after.plan_sha256 != before.plan_sha256
    shots(page, "plan-after-revision")


def test_approve_inserts_the_approved_cell_below(page: Any, lab: JupyterServer, shots: Any) -> None:
    approve(page, "alice")
    cell = page.locator(APPROVED_CELL)
    cell.wait_for(timeout=30_000)
    badge = cell.locator(".dem-ApprovedBadge")
    assert "Approved transformation" in badge.inner_text()
    assert badge.get_attribute("data-locked") == "true"
    # directly below the %%transform cell
    classes = notebook_cells(page)
    where = next(i for i, c in enumerate(classes) if "dem-materialised" in c)
    transform = page.locator(TRANSFORM_CELL)
    assert transform.count() == 1
    assert "dem-materialised" not in classes[where - 1]
    assert (
        page.locator(".jp-Notebook .jp-Cell")
        .nth(where - 1)
        .locator(".dem-cm-transform-line")
        .count()
        == 1
    )
    # read-only, its guard line marked, and the panel says where the code went
    assert cell.locator(".cm-content").get_attribute("aria-readonly") == "true"
    assert cell.locator(".dem-cm-run-line").inner_text().startswith("%%transform_run --client")
    status = review_panel(page).locator(".widget-html-content").filter(has_text="inserted")
    status.wait_for()
    assert "Approved by alice" in status.inner_text()
    entry = store(lab).list()[0]
    assert entry.status == "approved" and entry.reviewer == "alice"
    assert badge.get_attribute("data-key") == entry.key
    badge.evaluate("e => e.scrollIntoView({block: 'center'})")
    shots(page, "approved-cell-inserted")

    # the saved notebook carries the approval in the cell's metadata
    page.keyboard.press("Control+s")
    time.sleep(1.5)
    nb = nbformat.read(lab.root / "example_notebooks" / NOTEBOOK, as_version=4)
    saved = [c for c in nb.cells if "dataeng_magics" in c.metadata]
    assert len(saved) == 1
    assert saved[0].metadata["dataeng_magics"] == {
        "key": entry.key,
        "code_sha256": entry.code_sha256,
    }
    assert saved[0].metadata["editable"] is False
    assert saved[0].source.startswith("%%transform_run") and entry.code in saved[0].source


def test_unlock_and_lock_the_approved_cell(page: Any, shots: Any) -> None:
    cell = page.locator(APPROVED_CELL)
    cell.locator(".dem-cm-run-line").click()
    page.keyboard.type("edited ")
    assert "edited" not in cell.locator(".cm-content").inner_text()  # locked: typing does nothing
    page.keyboard.press("Escape")
    cell.locator(".jp-InputArea-editor").click(button="right")
    page.locator(".lm-Menu-item", has_text="Unlock Approved Cell for Editing").click()
    dialog = page.locator(".jp-Dialog")
    assert "refuses to run" in dialog.inner_text()
    shots(page, "unlock-dialog")
    dialog.locator("button", has_text="Unlock").click()
    badge = cell.locator(".dem-ApprovedBadge")
    page.wait_for_function(
        "() => document.querySelector('.dem-ApprovedBadge').dataset.locked === 'false'"
    )
    assert "unlocked" in badge.inner_text()
    assert cell.locator(".cm-content").get_attribute("aria-readonly") != "true"
    shots(page, "cell-unlocked")
    badge.locator("button", has_text="Lock").click()
    page.wait_for_function(
        "() => document.querySelector('.dem-ApprovedBadge').dataset.locked === 'true'"
    )
    assert cell.locator(".cm-content").get_attribute("aria-readonly") == "true"


def test_run_the_approved_cell_shows_the_summary(page: Any, lab: JupyterServer, shots: Any) -> None:
    cell = page.locator(APPROVED_CELL)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    summary = cell.locator(".jp-OutputArea-output pre").filter(has_text="SUCCEEDED on local")
    summary.wait_for(timeout=240_000)  # the first run starts local Spark
    assert "rows read" in summary.inner_text()
    wait_kernel_idle(lab)
    entry = store(lab).list()[0]
    assert entry.runs == 1 and entry.last_outcome == "succeeded"
    summary.scroll_into_view_if_needed()
    shots(page, "approved-cell-ran")


def test_editor_marks_transform_cells_and_completes_flags(page: Any, shots: Any) -> None:
    transform = page.locator(TRANSFORM_CELL)
    assert transform.locator(".dem-cm-magic").inner_text() == "%%transform"
    flags = transform.locator(".dem-cm-flag").all_inner_texts()
    assert "".join(flags) == "--client--mapping--output-dir"  # (Python tokens split marks)
    assert transform.locator(".cm-line.dem-cm-notes").count() == 1
    # a scratch cell at the end: type the magic, ask for completions
    last = page.locator(".jp-Notebook .jp-Cell").last
    last.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.keyboard.type("%%transform --client ACME --")
    page.keyboard.press("Tab")
    completer = page.locator(".jp-Completer")
    completer.wait_for()
    labels = set(completer.locator(".jp-Completer-match").all_inner_texts())
    assert {"--mapping", "--source", "--output-dir", "--format", "--replay"} <= labels
    assert "--client" not in labels  # already given
    shots(page, "flag-completion")
    page.keyboard.press("Escape")
    page.keyboard.press("Escape")
    page.keyboard.press("d")
    page.keyboard.press("d")


def open_side_panel(page: Any) -> Any:
    page.locator(".jp-SideBar .lm-TabBar-tab[title='Transformations']").click()
    panel = page.locator(".dem-TransformationsPanel")
    panel.wait_for()
    return panel


def test_side_panel_lists_the_approved_entry(page: Any, lab: JupyterServer, shots: Any) -> None:
    panel = open_side_panel(page)
    row = panel.locator(".dem-EntryRow[data-client='NORTHWIND']")
    row.wait_for()
    field = {
        name: row.locator(f"[data-field='{name}']").inner_text().strip()
        for name in ("client", "key", "status", "reviewer", "approved_at", "runs", "last_outcome")
    }
    entry = store(lab).list()[0]
    assert field["client"] == "NORTHWIND" and field["key"] == entry.key[:12]
    assert field["status"].lower() == "approved" and field["reviewer"] == "alice"
    assert field["approved_at"] == f"{entry.approved_at:%Y-%m-%d %H:%M} UTC"
    assert field["runs"] == "1" and field["last_outcome"] == "succeeded"
    # filter by client
    panel.locator(".dem-TransformationsPanel-filter").select_option("NORTHWIND")
    panel.locator(".dem-EntryRow").first.wait_for()
    assert panel.locator(".dem-EntryRow").count() == 1
    shots(page, "side-panel-list")


def test_side_panel_detail_and_revoke(page: Any, lab: JupyterServer, shots: Any) -> None:
    panel = page.locator(".dem-TransformationsPanel")
    panel.locator(".dem-EntryRow[data-client='NORTHWIND']").click()
    detail = panel.locator(".dem-Detail[data-status='approved']")
    detail.wait_for()
    assert "default 'USD' if null" in detail.locator(".dem-Detail-pseudocode").inner_text()
    assert "spark.read" in detail.locator(".dem-Detail-code").inner_text()
    events = detail.locator(".dem-AuditTable tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.event)"
    )
    assert events[0] == "draft" and "revision" in events and "approval" in events
    shots(page, "side-panel-detail")

    revoke = detail.locator(".dem-Detail-revoke")
    assert revoke.inner_text() == "Revoke…"
    revoke.click()
    dialog = page.locator(".jp-Dialog")
    assert "Revoke the approved plan of client NORTHWIND" in dialog.inner_text()
    dialog.locator(".dem-RevokeBody-reason").fill("new mapping from the client")
    shots(page, "revoke-dialog")
    dialog.locator("button", has_text="Revoke").click()
    panel.locator(".dem-Detail[data-status='revoked']").wait_for()
    assert "Revoked NORTHWIND" in panel.locator(".dem-TransformationsPanel-status").inner_text()
    rows = panel.locator(".dem-AuditTable tbody tr[data-event='revocation']")
    assert "new mapping from the client" in rows.inner_text()
    assert panel.locator(".dem-Detail-revoke").is_disabled()
    shots(page, "side-panel-revoked")
    entry = store(lab).list()[0]
    assert entry.status == "revoked" and entry.reason == "new mapping from the client"
    event = list(AuditLog(lab.home / "audit.jsonl").events(key=entry.key))[-1]
    assert event.event == "revocation" and event.actor == entry.revoked_by
    assert event.details == {"reason": "new mapping from the client", "approved_by": "alice"}


def test_replay_now_requires_approval(page: Any, lab: JupyterServer, shots: Any) -> None:
    # in the notebook: replay mode, then the %%transform cell again
    last = page.locator(".jp-Notebook .jp-Cell").last
    last.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Escape")
    page.keyboard.press("b")
    page.keyboard.press("Enter")
    page.keyboard.type("%transform_config mode=replay")
    page.keyboard.press("Shift+Enter")
    wait_kernel_idle(lab)
    page.locator(TRANSFORM_CELL).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    error = (
        page.locator(TRANSFORM_CELL)
        .locator(".jp-OutputArea-output")
        .filter(has_text="approval required")
    )
    error.wait_for(timeout=60_000)
    assert "ApprovalRequired" in error.inner_text() and "NORTHWIND" in error.inner_text()
    assert page.locator(TRANSFORM_CELL).locator(".widget-tab").count() == 0
    error.scroll_into_view_if_needed()
    shots(page, "replay-approval-required")

    # and the batch replay of notebook 02 (papermill) fails the same way, running nothing
    examples = lab.root / "example_notebooks"
    result = subprocess.run(
        [sys.executable, "-m", "dataeng_magics", "replay", "02_batch_replay.ipynb",
         "--client", "NORTHWIND", "--output-notebooks", str(lab.root / "replayed")],
        cwd=examples, env=lab.env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 3, result.stdout + result.stderr
    executed = nbformat.read(lab.root / "replayed" / "02_batch_replay-NORTHWIND.ipynb", 4)
    outputs = json.dumps([c.get("outputs", []) for c in executed.cells])
    assert "ApprovalRequired: approval required" in outputs and "(the entry is revoked)" in outputs
    assert not (examples / "out" / "replay").exists()  # nothing ran
