"""The whole workflow in JupyterLab with our extension, as a reviewer clicks through it.

Notebook 01 (without its headless-only cells) runs and shows the review panel at
1500 px; the Reviewer starts empty (the server runs as root) and Approve waits for a
name; the Mapping, Sample and Plan tabs read (tables per target table, header rows that
stay, one line per cell, scrolling inside the table); the Code tab is highlighted and
copies; a chat revision typed over two lines (Shift+Enter stays in the chat) changes
the plan; Approve inserts the approved cell below, badged and read-only; it runs and
shows the summary; the editor marks %%transform cells and completes their flags; the
Transformations side panel lists the entry and opens its detail in the main area;
revoking needs a reason, and the notebook shows the revocation (badge, panel, the
cell's error); approving again replaces the approved cell; a revocation from the CLI
shows when the cell is selected; then a replay fails with "approval required".
"""

from __future__ import annotations

import getpass
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
    box_metrics,
    notebook_cells,
    open_notebook,
    open_tab,
    prepare_examples,
    review_panel,
    reviewer_field,
    run_all,
    transform_prompt,
    transform_ran_again,
    wait_kernel_idle,
)

from dataeng_magics.state.audit import AuditLog
from dataeng_magics.state.store import Store
from dataeng_magics.widgets.review import REVIEWER_NEEDED
from dataeng_magics.workflow import RERUN_TRANSFORM

pytestmark = pytest.mark.browser

REVISION = ["CURRENCY: trim, upper, default 'USD'", "SIDE: map B=BUY, S=SELL"]
REASON = "new mapping from the client"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterServer]:
    with jupyter_server(tmp_path_factory.mktemp("lab")) as server:
        prepare_examples(server)
        yield server


@pytest.fixture(scope="module")
def page(browser: Any, lab: JupyterServer) -> Iterator[Any]:
    browser.grant_permissions(["clipboard-read", "clipboard-write"], origin=lab.url)
    page = browser.new_page()
    yield page
    page.close()


def store(lab: JupyterServer) -> Store:
    return Store(lab.home / "store.sqlite")


def tab_html(page: Any, text: str) -> Any:
    """The HTML widget of the open tab that shows ``text``."""
    return review_panel(page).locator(".widget-html-content").filter(has_text=text).first


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


def test_reviewer_starts_empty_and_approve_waits_for_a_name(page: Any, shots: Any) -> None:
    """The server runs as root, which names no person: the field is to be filled."""
    field = reviewer_field(page)
    assert field.input_value() == ""
    assert field.get_attribute("placeholder") == "your name (required to approve)"
    button = review_panel(page).locator("button", has_text="Approve")
    assert button.is_disabled()
    assert button.get_attribute("title") == REVIEWER_NEEDED
    look = button.evaluate(
        "b => { const s = getComputedStyle(b); return [s.opacity, s.cursor, s.filter]; }"
    )
    assert float(look[0]) <= 0.5 and look[1] == "not-allowed" and "grayscale" in look[2]
    button.scroll_into_view_if_needed()
    shots(page, "approve-disabled-without-a-reviewer")


def test_mapping_tab_one_table_per_target_table(page: Any, shots: Any) -> None:
    open_tab(page, "Mapping")
    mapping = tab_html(page, "target columns in")
    mapping.wait_for()
    headings = mapping.locator("div[style*='font-weight:600']").all_inner_texts()
    assert headings[:2] == ["TRADES (14 columns)", "COUNTERPARTIES (5 columns)"]
    heads = mapping.locator("table").first.locator("th").all_inner_texts()
    assert heads[0] == "Column" and "Table" not in heads
    first_column = mapping.locator("table").first.locator("tbody tr td:first-child")
    assert "TRADES" not in first_column.all_inner_texts()  # the name is the heading
    sources = mapping.locator("table").nth(2).locator("tbody tr")
    options = {
        row.locator("td").nth(0).inner_text(): row.locator("td").nth(3).inner_text()
        for row in sources.all()
    }
    assert options["trades"].startswith("delimiter ','") and options["counterparties"] == ""
    # at 1500 px the mapping's tables fit: no column hidden, nothing to scroll to
    for box in mapping.locator(".dem-table").all():
        metrics = box_metrics(box)
        assert metrics["scrollWidth"] <= metrics["clientWidth"] + 1, metrics
    shots(page, "mapping-tab")


def test_sample_tab_scrolls_inside_its_tables(page: Any, shots: Any) -> None:
    open_tab(page, "Sample")
    sample = tab_html(page, "sample rows")
    sample.wait_for()
    assert "trades (csv): first 10 of" in sample.inner_text()
    box = sample.locator(".dem-table").first
    metrics = box_metrics(box)
    assert metrics["scrollWidth"] > metrics["clientWidth"]  # wide: it scrolls sideways...
    output = page.locator(f"{TRANSFORM_CELL} .jp-OutputArea-output").filter(
        has=page.locator(".widget-tab")
    )
    whole = box_metrics(output)
    assert whole["scrollWidth"] <= whole["clientWidth"] + 1  # ...inside itself, not the tab
    # one line per cell, the full value on hover
    heights = box.locator("tbody td").evaluate_all(
        "tds => tds.map(t => t.clientHeight / parseFloat(getComputedStyle(t).lineHeight))"
    )
    assert max(heights) < 2, heights  # padding and one line of text: never two
    cell = box.locator("tbody tr").first.locator("td").nth(1)
    assert cell.get_attribute("title") == cell.inner_text()
    # the header row stays in view while the rows scroll under it
    box.evaluate("e => { e.style.maxHeight = '120px'; e.scrollTop = 90; }")
    top = box.evaluate(
        "e => e.querySelector('th').getBoundingClientRect().top - e.getBoundingClientRect().top"
    )
    assert abs(top) <= 1, top
    shots(page, "sample-tab-scrolled")
    box.evaluate("e => { e.style.maxHeight = ''; e.scrollTop = 0; }")
    open_tab(page, "Plan")
    plan = tab_html(page, "TABLE TRADES")
    assert "CURRENCY (string) [required]" in plan.inner_text()
    shots(page, "plan-tab")


def test_code_tab_is_highlighted_read_only_and_copies(
    page: Any, lab: JupyterServer, shots: Any
) -> None:
    open_tab(page, "Code")
    code = review_panel(page).locator(".dem-code")
    code.wait_for()
    assert (
        code.locator(".dem-code-note")
        .inner_text()
        .startswith("Compiled from the draft (not approved yet)")
    )
    keyword = code.locator(".dem-code-pre .kn").first  # `from`/`import`
    name = code.locator(".dem-code-pre .n").first
    colour = "e => getComputedStyle(e).color"
    assert keyword.evaluate(colour) != name.evaluate(colour)  # highlighted
    assert code.locator("textarea, [contenteditable]").count() == 0  # read-only
    code.locator(".dem-code-copy").click()
    assert code.locator(".dem-code-copy").inner_text() == "Copied"
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == store(lab).list()[0].code
    shots(page, "code-tab")


def test_keys_typed_in_the_panel_stay_in_the_panel(
    page: Any, lab: JupyterServer, shots: Any
) -> None:
    """Shift+Enter in the chat is a new line and Enter sends; in the Reviewer field
    Shift+Enter does nothing: neither re-runs the %%transform cell."""
    prompt, cells = transform_prompt(page), len(notebook_cells(page))
    field = reviewer_field(page)
    field.click()
    page.keyboard.press("Shift+Enter")
    assert not transform_ran_again(page, lab, prompt, cells)

    open_tab(page, "Chat")
    panel = review_panel(page)
    before = store(lab).list()[0]
    chat = panel.locator(".dem-chat-input")
    replies = panel.locator(".dem-chat-planner").count()  # the draft's account of the notes
    chat.click()
    page.keyboard.type(REVISION[0])
    page.keyboard.press("Shift+Enter")
    page.keyboard.type(REVISION[1])
    assert chat.input_value() == "\n".join(REVISION)  # Shift+Enter: a new line
    assert not transform_ran_again(page, lab, prompt, cells)
    shots(page, "chat-two-lines")
    page.keyboard.press("Enter")
    reply = panel.locator(".dem-chat-planner").nth(replies)
    reply.wait_for(timeout=60_000)
    assert chat.input_value() == ""
    sent = panel.locator(".dem-chat-user").last.locator(".dem-chat-text").inner_text()
    assert sent == "\n".join(REVISION)
    added = panel.locator(".dem-chat-add").all_inner_texts()
    assert any("CURRENCY" in line and "'USD'" in line for line in added), added
    assert any(line.startswith("+  SIDE") for line in added), added
    assert not transform_ran_again(page, lab, prompt, cells)
    shots(page, "chat-revision")
    open_tab(page, "Plan")
    plan = tab_html(page, "Last revision")
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
    assert badge.get_attribute("data-status") == "approved"
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
    summary = cell.locator(".jp-OutputArea-output").filter(has_text="SUCCEEDED on local")
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
        for name in ("client", "key", "status", "by", "approved_at", "runs", "last_outcome")
    }
    entry = store(lab).list()[0]
    assert field["client"] == "NORTHWIND" and field["key"] == entry.key[:12]
    assert field["status"].lower() == "approved" and field["by"] == "approved by alice"
    assert field["approved_at"] == f"{entry.approved_at:%Y-%m-%d %H:%M} UTC"
    assert field["runs"] == "1" and field["last_outcome"] == "succeeded"
    # filter by client
    panel.locator(".dem-TransformationsPanel-filter").select_option("NORTHWIND")
    panel.locator(".dem-EntryRow").first.wait_for()
    assert panel.locator(".dem-EntryRow").count() == 1
    shots(page, "side-panel-list")


def entry_detail(page: Any, status: str) -> Any:
    main = ".jp-MainAreaWidget .dem-EntryDetail"
    detail = page.locator(f"{main} .dem-Detail[data-status='{status}']")
    detail.wait_for()
    return detail


def test_side_panel_detail_opens_readable_in_the_main_area(
    page: Any, lab: JupyterServer, shots: Any
) -> None:
    page.locator(".dem-EntryRow[data-client='NORTHWIND']").click()
    detail = entry_detail(page, "approved")
    assert detail.evaluate("e => e.getBoundingClientRect().width") > 900
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
    assert tab.inner_text().startswith("NORTHWIND")
    # hashes on one line each, whole
    entry = store(lab).list()[0]
    hashes = detail.locator("code.dem-Hash")
    assert hashes.all_inner_texts()[:1] == [entry.key]
    assert entry.code_sha256 in hashes.all_inner_texts()
    assert hashes.evaluate_all("cs => cs.map(c => c.getClientRects().length)") == [1] * 3
    # the pseudocode is all there: nothing cut at the bottom
    pseudocode = detail.locator(".dem-Detail-pseudocode")
    assert "default 'USD' if null" in pseudocode.inner_text()
    metrics = box_metrics(pseudocode)
    assert metrics["scrollHeight"] <= metrics["clientHeight"] + 1, metrics
    assert "spark.read" in detail.locator(".dem-Detail-code").inner_text()
    # the audit history says what each revision asked and changed, and who acted
    audit = detail.locator(".dem-AuditTable")
    assert audit.locator("th").all_inner_texts() == ["#", "Time", "Event", "By", "What"]
    events = audit.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.event)")
    assert events[0] == "draft" and "revision" in events and "approval" in events
    revision = audit.locator("tbody tr[data-event='revision']")
    assert revision.locator(".dem-Revision-request").inner_text() == "asked: " + "\n".join(REVISION)
    diff = revision.locator(".dem-Revision-diff .dem-mod-added").all_inner_texts()
    assert any(line.startswith("+  CURRENCY") for line in diff), diff
    assert any(line.startswith("+  SIDE") for line in diff), diff
    actors = set(audit.locator("tbody tr td:nth-child(4)").all_inner_texts())
    assert actors == {"alice", getpass.getuser()}  # the reviewer, and the Jupyter user
    revision.scroll_into_view_if_needed()
    shots(page, "entry-detail-in-the-main-area")


def test_revoking_needs_a_reason_and_the_notebook_shows_it(
    page: Any, lab: JupyterServer, shots: Any
) -> None:
    detail = entry_detail(page, "approved")
    revoke = detail.locator(".dem-Detail-revoke")
    assert revoke.inner_text() == "Revoke…"
    revoke.click()
    dialog = page.locator(".jp-Dialog")
    assert "Revoke the approved plan of client NORTHWIND" in dialog.inner_text()
    dialog.locator("button", has_text="Revoke").click()  # no reason: asked again
    error = page.locator(".jp-Dialog .dem-RevokeBody-error")
    error.wait_for()
    assert "needs a reason" in error.inner_text()
    assert store(lab).list()[0].status == "approved"
    shots(page, "revoke-needs-a-reason")
    page.locator(".jp-Dialog .dem-RevokeBody-reason").fill(REASON)
    page.locator(".jp-Dialog button", has_text="Revoke").click()
    detail = entry_detail(page, "revoked")
    rows = detail.locator(".dem-AuditTable tbody tr[data-event='revocation']")
    assert REASON in rows.inner_text()
    assert detail.locator(".dem-Detail-revoke").is_disabled()
    entry = store(lab).list()[0]
    assert entry.status == "revoked" and entry.reason == REASON
    event = list(AuditLog(lab.home / "audit.jsonl").events(key=entry.key))[-1]
    assert event.event == "revocation" and event.actor == entry.revoked_by
    assert event.details == {"reason": REASON, "approved_by": "alice"}
    shots(page, "entry-revoked")

    # back in the notebook: the badge says so at once (this page revoked it)
    page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=NOTEBOOK).click()
    badge = page.locator(f"{APPROVED_CELL} .dem-ApprovedBadge[data-status='revoked']")
    badge.wait_for(timeout=10_000)
    text = badge.inner_text()
    assert f"Revoked by {entry.revoked_by}: {REASON}" in text
    assert "re-run the %%transform cell above" in text
    # and the review panel as soon as the reviewer comes back to it
    panel = review_panel(page)
    panel.hover()
    said = panel.locator(".widget-html-content").filter(has_text="revoked by")
    said.first.wait_for(timeout=10_000)  # the footer, and the status line under it
    assert all(REASON in text for text in said.all_inner_texts())
    run = panel.get_by_role("button", name="Run", exact=True)  # only visible ones
    assert all(button.is_disabled() for button in run.all())
    badge.scroll_into_view_if_needed()
    shots(page, "notebook-shows-the-revocation")


def test_the_revoked_cell_says_to_rerun_the_transform_cell(
    page: Any, lab: JupyterServer, shots: Any
) -> None:
    cell = page.locator(APPROVED_CELL)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    error = cell.locator(".jp-OutputArea-output").filter(has_text="approval required")
    error.wait_for(timeout=60_000)
    text = error.inner_text()
    assert RERUN_TRANSFORM in text and REASON in text and "dataeng-magics draft" not in text
    assert store(lab).list()[0].runs == 1  # nothing ran
    error.scroll_into_view_if_needed()
    shots(page, "revoked-cell-error")


def test_approving_again_replaces_the_approved_cell(
    page: Any, lab: JupyterServer, shots: Any
) -> None:
    page.locator(TRANSFORM_CELL).locator(".jp-InputArea-editor").click()
    page.keyboard.press("Control+Enter")  # run it in place: a new draft to review
    panel = review_panel(page)
    panel.locator(".lm-TabBar-tab", has_text="Chat").wait_for(timeout=60_000)
    wait_kernel_idle(lab)
    old = page.locator(f"{APPROVED_CELL} .dem-ApprovedBadge").get_attribute("data-key")
    # the revoked plan reopens with its revisions, and a banner says who revoked it and why
    banner = panel.locator(".widget-html-content").filter(has_text="The plan is reopened")
    banner.wait_for(timeout=30_000)
    assert "Revoked by" in banner.inner_text() and REASON in banner.inner_text()
    assert "default 'USD' if null" in tab_html(page, "TABLE TRADES").inner_text()
    shots(page, "reopened-with-its-revisions")
    open_tab(page, "Chat")  # a change, so the new approval is of new code
    replies = panel.locator(".dem-chat-planner").count()
    panel.locator(".dem-chat-input").fill("DESK: first 3 characters, then upper")
    panel.locator(".dem-chat-input").press("Enter")
    panel.locator(".dem-chat-planner").nth(replies).wait_for(timeout=60_000)
    wait_kernel_idle(lab)
    approve(page, "bob")
    page.locator(f"{APPROVED_CELL} .dem-ApprovedBadge[data-status='approved']").wait_for()
    status = panel.locator(".widget-html-content").filter(has_text="replaces")
    status.wait_for()
    assert page.locator(APPROVED_CELL).count() == 1  # replaced, not stacked
    classes = notebook_cells(page)
    where = next(i for i, c in enumerate(classes) if "dem-materialised" in c)
    previous = page.locator(".jp-Notebook .jp-Cell").nth(where - 1)
    assert previous.locator(".dem-cm-transform-line").count() == 1
    entry = store(lab).list()[0]
    badge = page.locator(f"{APPROVED_CELL} .dem-ApprovedBadge")
    assert badge.get_attribute("data-key") == old == entry.key and entry.reviewer == "bob"
    assert entry.code_sha256[:12] in badge.inner_text()
    badge.scroll_into_view_if_needed()
    shots(page, "approved-cell-replaced")


def test_a_revocation_from_the_cli_shows_when_the_cell_is_selected(
    page: Any, lab: JupyterServer, shots: Any
) -> None:
    key = store(lab).list()[0].key
    result = subprocess.run(
        [sys.executable, "-m", "dataeng_magics", "cache", "revoke", key, "--reason", "audit"],
        env=lab.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    badge = page.locator(f"{APPROVED_CELL} .dem-ApprovedBadge")
    assert badge.get_attribute("data-status") == "approved"  # nobody asked yet
    page.locator(TRANSFORM_CELL).locator(".jp-InputPrompt").click()
    page.locator(APPROVED_CELL).locator(".jp-InputPrompt").click()  # select the cell
    page.locator(f"{APPROVED_CELL} .dem-ApprovedBadge[data-status='revoked']").wait_for()
    assert "Revoked by" in badge.inner_text() and ": audit;" in badge.inner_text()
    shots(page, "cli-revocation-shown")


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
    assert "ApprovalRequired: approval required" in outputs
    assert "(the entry is revoked by" in outputs and "audit)" in outputs
    assert not (examples / "out" / "replay").exists()  # nothing ran
