"""The review panels, driven from Python the way a reviewer drives them in a notebook."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import ipywidgets
import pytest
from IPython.core.formatters import DisplayFormatter
from openpyxl import load_workbook

from dataeng_magics import display
from dataeng_magics.state.store import Entry
from dataeng_magics.widgets import ApprovedPanel, ChatWidget, ReviewPanel, text_report
from dataeng_magics.widgets import _render as render
from dataeng_magics.widgets._render import ADDED, MARKED, REMOVED
from dataeng_magics.widgets.code import CodeView
from dataeng_magics.widgets.review import MATERIALISE_NOTE, REVIEWER_NEEDED
from dataeng_magics.workflow import (
    RERUN_TRANSFORM,
    RunSummary,
    TransformRequest,
    TransformSession,
    revoke,
)

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
STATIC = Path(__file__).resolve().parent.parent / "dataeng_magics/widgets/static"
CHAT_JS = STATIC / "chat.js"


def make_session(mapping: Path) -> TransformSession:
    session = TransformSession(TransformRequest(client="NORTHWIND", mapping=mapping))
    session.draft()
    return session


def set_cell(mapping: Path, ref: str, value: str) -> None:
    book = load_workbook(mapping)
    book["Mapping"][ref] = value
    book.save(mapping)


def html_values(widget: Any) -> Iterator[str]:
    """The markup of every HTML widget inside ``widget``: what the front end renders."""
    if isinstance(widget, ipywidgets.HTML):
        yield widget.value
    if isinstance(widget, CodeView):
        yield widget.html
    for child in getattr(widget, "children", ()):
        yield from html_values(child)


def front_end_message(widget: Any, content: dict[str, Any]) -> None:
    """Deliver a custom message from the widget's JS, as the comm delivers it."""
    widget._handle_msg(
        {"content": {"data": {"method": "custom", "content": content}}, "buffers": []}
    )


def js_message(chat: ChatWidget, text: str) -> None:
    """Deliver what chat.js sends on Send."""
    front_end_message(chat, {"type": "user", "text": text})


def stored(session: TransformSession) -> Entry:
    entry = session.entry()
    assert entry is not None
    return entry


def events(session: TransformSession, kind: str) -> list[Any]:
    return [e for e in session.audit.events(key=session.key) if e.event == kind]


@pytest.fixture
def unresolved(example: Path) -> Path:
    """The example client with DESK's rule replaced by one no planner understands."""
    set_cell(example, "F9", "frobnicate")
    return example


# --- review to approval -----------------------------------------------------------


def test_review_from_unresolved_draft_to_approval(unresolved: Path) -> None:
    session = make_session(unresolved)
    approved: list[Entry] = []
    panel = ReviewPanel(session, reviewer="nobody", on_approved=approved.append)

    # the unresolved rule blocks approval, and every tab says why
    assert panel.approve_button.disabled
    assert "TRADES.DESK" in panel.approve_button.tooltip
    assert "frobnicate" in panel.approve_button.tooltip
    desk_row = next(r for r in panel.mapping_html.value.split("<tr") if "DESK" in r)
    assert MARKED in desk_row and "frobnicate" in desk_row
    assert "UNRESOLVED" in panel.plan_html.value
    assert "Resolve the 1 unresolved step(s) first" in panel.code_view.note
    assert panel.code_view.code == "" and panel.code_view.html == ""
    assert "unresolved step(s)" in panel.preview_html.value
    assert panel.preview_button.disabled
    assert panel.refresh_preview() is None  # says so instead of starting Spark
    assert panel.run_button.disabled
    assert panel.tabs.titles == ("Mapping", "Sample", "Plan", "Preview", "Code", "Chat")
    assert "COLUMN: rule" in panel.chat.messages[0]["text"]

    # a click anyway is refused by the workflow and reported as one line
    panel.approve_button.click()
    assert panel.entry.status == "draft" and stored(session).status == "draft"
    assert "cannot approve" in panel.status.value and "Traceback" not in panel.status.value
    assert approved == []

    # a revision through the front end's message path
    js_message(panel.chat, "DESK: first 4 characters, then upper")
    assert not panel.unresolved
    assert not panel.approve_button.disabled
    plan_view = panel.plan_html.value
    assert "Last revision" in plan_view
    assert f"<span style='{ADDED}'>+  DESK" in plan_view and "substring 1, 4" in plan_view
    assert f"<span style='{REMOVED}'>-  DESK" in plan_view
    assert "UNRESOLVED" not in panel.entry.pseudocode
    user, planner = panel.chat.messages[-2:]
    assert user == {"role": "user", "text": "DESK: first 4 characters, then upper"}
    assert planner["role"] == "planner" and any("DESK" in c for c in planner["changes"])
    assert not panel.chat.busy
    # the compiled code is shown now, said to be the draft's, and highlighted once the
    # Code tab is opened (not before: the panel's first paint does not wait for it)
    assert panel.code_view.code == panel.entry.code and panel.code_view.html == ""
    assert "Compiled from the draft (not approved yet)" in panel.code_view.note
    panel.tabs.selected_index = panel.tabs.titles.index("Code")
    assert '<span class="n">spark</span>' in panel.code_view.html
    assert "Runs the plan on the sample rows" in panel.preview_html.value

    # and one through chat.send, the same path from Python
    panel.chat.send("SIDE: map B=BUY, S=SELL")
    last_revision = panel.plan_html.value.split("Last revision")[1]
    assert "+  SIDE" in last_revision and "DESK" not in last_revision
    assert len(events(session, "revision")) == 2
    assert stored(session).conversation[-1]["role"] == "planner"

    # approve as the reviewer named in the footer
    panel.reviewer.value = "alice"
    panel.approve_button.click()
    entry = session.entry()
    assert entry is not None and entry.status == "approved" and entry.reviewer == "alice"
    (approval,) = events(session, "approval")
    assert approval.actor == "alice" and approval.code_sha256 == entry.code_sha256
    assert [e.key for e in approved] == [entry.key] and approved[0].status == "approved"
    assert panel.entry.status == "approved"

    # the footer switches to the approved state; the Code tab holds the materialised cell
    assert panel.approve_button.disabled and not panel.run_button.disabled
    assert panel.approved_html in panel.footer.children
    assert panel._review_row not in panel.footer.children
    assert "alice" in panel.approved_html.value
    assert entry.code_sha256[:16] in panel.approved_html.value
    assert panel.code_view.code.startswith("%%transform_run") and entry.key in panel.code_view.code
    assert entry.code in panel.code_view.code and 'class="kn">import</span>' in panel.code_view.html
    assert "Approved by alice" in panel.code_view.note and MATERIALISE_NOTE in panel.code_view.note
    assert "%transform materialise" in MATERIALISE_NOTE


def test_a_request_the_planner_does_not_understand_changes_nothing(unresolved: Path) -> None:
    session = make_session(unresolved)
    panel = ReviewPanel(session)
    before = panel.entry.plan_sha256
    panel.chat.send("please make it nicer")
    assert panel.entry.plan_sha256 == before
    assert "Not understood" in panel.chat.messages[-1]["text"]
    assert "The plan did not change" in panel.status.value
    assert "The plan did not change" in panel.plan_html.value
    assert panel.approve_button.disabled
    panel.chat.send("   ")  # blank input is ignored, as the front end ignores it
    assert panel.chat.messages[-1]["role"] == "planner"


def test_the_chat_starts_with_the_drafts_conversation(unresolved: Path) -> None:
    session = make_session(unresolved)
    session.revise("DESK: upper")
    panel = ReviewPanel(session)
    roles = [m["role"] for m in panel.chat.messages]
    assert roles == ["system", "user", "planner"]
    assert panel.chat.messages[1]["text"] == "DESK: upper"
    assert panel.chat.messages[2]["changes"]


def test_reject_requires_a_reason(example: Path) -> None:
    session = make_session(example)
    panel = ReviewPanel(session, reviewer="bob")
    panel.reject_button.click()
    assert "needs a reason" in panel.status.value
    assert stored(session).status == "draft"
    assert events(session, "rejection") == []

    panel.reason.value = "wrong desk codes"
    panel.reject_button.click()
    entry = session.entry()
    assert entry is not None and entry.status == "rejected" and entry.reason == "wrong desk codes"
    (rejection,) = events(session, "rejection")
    assert rejection.actor == "bob" and rejection.details["reason"] == "wrong desk codes"
    assert panel.approve_button.disabled and panel.reject_button.disabled
    assert "rejected by bob" in panel.approved_html.value
    assert panel.approve() is None  # the workflow refuses; the panel says why
    assert "rejected" in panel.status.value


def test_refresh_shows_changes_made_outside_the_panel(unresolved: Path) -> None:
    session = make_session(unresolved)
    panel = ReviewPanel(session, reviewer="hal")
    session.revise("DESK: upper")  # e.g. `%transform revise ...` or the CLI
    assert panel.approve_button.disabled
    assert panel.refresh().plan_sha256 == stored(session).plan_sha256
    assert not panel.approve_button.disabled and not panel.unresolved
    session.approve("gina")
    assert panel.refresh().status == "approved" and "gina" in panel.approved_html.value


def as_user(monkeypatch: pytest.MonkeyPatch, hub: str | None, os_user: str) -> None:
    """Who the process runs as: JupyterHub's user (None: not under a hub), the OS user."""
    if hub is None:
        monkeypatch.delenv("JUPYTERHUB_USER", raising=False)
    else:
        monkeypatch.setenv("JUPYTERHUB_USER", hub)
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):  # what getpass reads first
        monkeypatch.setenv(name, os_user)


@pytest.mark.parametrize(
    ("given", "hub", "os_user", "shown"),
    [
        (None, "jane", "root", "jane"),  # the JupyterHub user
        (None, None, "ola", "ola"),  # else the OS user
        ("Carol Reviewer", "jane", "ola", "Carol Reviewer"),  # --reviewer / the setting
        (None, None, "root", ""),  # no person's name: typed in before approving
        (None, None, "jovyan", ""),
    ],
)
def test_reviewer_defaults_to_a_persons_name(
    example: Path,
    monkeypatch: pytest.MonkeyPatch,
    given: str | None,
    hub: str | None,
    os_user: str,
    shown: str,
) -> None:
    as_user(monkeypatch, hub, os_user)
    session = make_session(example)
    panel = ReviewPanel(session, reviewer=given)
    assert panel.reviewer.value == shown
    assert panel.approve_button.disabled is (shown == "")
    if shown:
        return
    assert panel.approve_button.tooltip == REVIEWER_NEEDED
    panel.approve_button.click()  # a click anyway: refused, and nothing recorded
    assert stored(session).status == "draft" and events(session, "approval") == []
    panel.reviewer.value = "  "
    assert panel.approve_button.disabled
    panel.reviewer.value = "Ida"  # typing a name is what enables it
    assert not panel.approve_button.disabled
    assert panel.approve_button.tooltip == "Approve this plan and its compiled code."
    panel.approve_button.click()
    assert stored(session).reviewer == "Ida"


def test_run_before_approval_is_one_line_error(example: Path) -> None:
    session = make_session(example)
    panel = ReviewPanel(session)
    assert panel.run_button.disabled
    assert panel.run("unused") is None
    assert "approval required" in panel.status.value
    assert "\n" not in panel.status.value


def test_hostile_mapping_and_sample_text_is_escaped(example: Path) -> None:
    hostile = "<img src=x onerror=alert(1)>"
    set_cell(example, "B9", hostile)  # DESK's target column name
    trades = example.parent / "trades.csv"
    with trades.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    rows[1][rows[0].index("Trader First")] = "<script>alert(2)</script>"
    with trades.open("w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows(rows)

    panel = ReviewPanel(make_session(example))
    markup = list(html_values(panel))
    assert not any("<img" in value or "<script" in value for value in markup)
    escaped = [value for value in markup if "&lt;img src=x onerror=alert(1)&gt;" in value]
    assert panel.mapping_html.value in escaped and panel.plan_html.value in escaped
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in panel.sample_html.value
    assert "innerHTML" not in CHAT_JS.read_text()  # chat text is set with textContent only


def test_sample_tab_shows_rows_and_inferred_types(example: Path) -> None:
    session = make_session(example)
    panel = ReviewPanel(session)
    value = panel.sample_html.value
    for name, schema in session.schemas.items():
        assert f"{name} (" in value
        for column, type_name in schema.items():
            assert f"{column}<br><span" in value and type_name in value
    first_trade = str(session.samples["trades"].frame.iloc[0]["Trade ID"]).strip()
    assert first_trade in value


# --- the tabs' HTML ---------------------------------------------------------------


class _Tables(HTMLParser):
    """Headings and tables of a tab's markup, as text: what a reviewer reads."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[Any] = []  # heading texts and tables (lists of rows of cells)
        self.cells: list[dict[str, str | None]] = []  # each cell's attributes, in order
        self._text: list[str] | None = None
        self._heading = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.parts.append([])
        elif tag == "tr":
            self.parts[-1].append([])
        elif tag in ("td", "th"):
            self.cells.append({"tag": tag, **dict(attrs)})
            self._text = []
        elif tag == "div" and "font-weight:600" in (dict(attrs).get("style") or ""):
            self._heading, self._text = True, []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._text is not None:
            self.parts[-1][-1].append("".join(self._text))
            self._text = None
        elif tag == "div" and self._heading and self._text is not None:
            self.parts.append("".join(self._text))
            self._heading, self._text = False, None

    def handle_data(self, data: str) -> None:
        if self._text is not None:
            self._text.append(data)


def parse_tables(markup: str) -> _Tables:
    parser = _Tables()
    parser.feed(markup)
    return parser


def test_tables_keep_their_header_and_show_one_line_per_cell() -> None:
    long = "a very long value " * 10
    markup = render.table(["Name", "Note"], [[long, None], ["line 1\nline 2", 3]])
    parsed = parse_tables(markup)
    assert parsed.parts == [[["Name", "Note"], [long, "null"], ["line 1↵line 2", "3"]]]
    heads = [c for c in parsed.cells if c["tag"] == "th"]
    cells = [c for c in parsed.cells if c["tag"] == "td"]
    for head in heads:  # the header row stays visible while the rows scroll
        assert "position:sticky;top:0" in (head["style"] or "")
    for cell in cells:
        style = cell["style"] or ""
        assert "white-space:pre" in style and "text-overflow:ellipsis" in style
        assert f"max-width:{render.CELL_WIDTH}" in style
    # the full value on hover; none for a null
    assert [c.get("title") for c in cells] == [long, None, "line 1\nline 2", "3"]
    # scrolls inside its own box, never wider than the tab
    assert markup.startswith(f"<div class='dem-table' style='{render.TABLE_BOX}'>")
    assert "overflow:auto" in render.TABLE_BOX and "max-width:100%" in render.TABLE_BOX


def test_mapping_tab_groups_columns_per_table_and_shows_each_formats_options(
    example: Path,
) -> None:
    session = make_session(example)
    parsed = parse_tables(render.mapping_html(session.mapping, session.plan_of(stored(session))))
    headings = [part for part in parsed.parts if isinstance(part, str)]
    tables = [part for part in parsed.parts if isinstance(part, list)]
    counts = {name: len(cols) for name, cols in session.mapping.tables().items()}
    assert headings == [f"{name} ({n} columns)" for name, n in counts.items()] + [
        "Sources",
        "Filters",
    ]
    for table, n in zip(tables, counts.values(), strict=False):
        assert table[0][0] == "Column" and "Table" not in table[0]  # the name is the heading
        assert len(table) == n + 1
        assert not {name for name in counts} & {row[0] for row in table[1:]}
    trades = {row[0]: row for row in tables[0][1:]}
    assert trades["TRADE_ID"][4] == "trades.Trade ID"  # source and column in one cell
    sources = {row[0]: row for row in tables[len(counts)][1:]}
    assert tables[len(counts)][0] == ["Source", "Format", "Path", "Read options"]
    assert sources["trades"][1:2] == ["csv"] and "delimiter ','" in sources["trades"][3]
    assert sources["counterparties"][1:2] == ["parquet"] and sources["counterparties"][3] == ""


def test_code_tab_is_highlighted_escaped_and_says_where_it_comes_from() -> None:
    html = render.highlight_python("x = '<b>'  # note\nimport os")
    assert '<span class="n">x</span>' in html and '<span class="kn">import</span>' in html
    assert "<span class=\"s1\">'&lt;b&gt;'</span>" in html and "<b>" not in html
    assert '<span class="c1"># note</span>' in html
    assert "Compiled from the draft (not approved yet)" in render.code_note("draft", 0)
    assert "Read-only" in render.code_note("draft", 0)
    assert "Compiled from the revoked plan" in render.code_note("revoked", 0)
    assert render.code_note("draft", 2).startswith("Resolve the 2 unresolved step(s) first")


def test_code_view_highlights_only_while_shown() -> None:
    view = CodeView()
    view.show("spark.range(1)", "compiled")
    assert (view.code, view.html, view.note) == ("spark.range(1)", "", "compiled")
    view.active = True  # its tab is selected
    highlighted = view.html
    assert '<span class="n">spark</span>' in highlighted
    view.show("spark.range(1)", "approved")  # the same code: not highlighted again
    assert view.html is highlighted and view.note == "approved"
    view.show("spark.range(2)", "revised")  # shown: highlighted at once
    assert '<span class="mi">2</span>' in view.html
    view.active = False
    view.show("spark.range(3)", "revised again")  # hidden: plain until shown again
    assert view.html == ""
    view.show("", "resolve first")
    assert (view.code, view.html, view.note) == ("", "", "resolve first")


# --- text fallback ----------------------------------------------------------------


def test_text_fallback_where_widgets_cannot_render(unresolved: Path) -> None:
    session = make_session(unresolved)
    panel = ReviewPanel(session)
    bundle = panel._repr_mimebundle_()
    assert bundle[WIDGET_MIME]["model_id"] == panel.model_id
    text = bundle["text/plain"]
    assert text == text_report(session, panel.entry)
    assert panel.entry.pseudocode.strip() in text
    assert "client NORTHWIND" in text and session.key in text
    assert "status: draft" in text and "unresolved steps: 1" in text and "frobnicate" in text

    data, _ = DisplayFormatter().format(panel)  # what plain IPython and nbconvert keep
    assert data["text/plain"] == text


def test_text_report_of_an_approved_entry(example: Path) -> None:
    session = make_session(example)
    entry = session.approve("carol").entry
    text = text_report(session, entry)
    assert "status: approved by carol at" in text
    assert entry.code_sha256 in text and "runs: 0" in text and "unresolved steps: 0" in text


# --- the approved panel -----------------------------------------------------------


def record_run(session: TransformSession) -> None:
    """A finished run as the store records it (the real run is in the Spark test)."""
    now = datetime.now(UTC)
    session.store.record_run(
        session.key, outcome="succeeded", started_at=now, finished_at=now, platform="local"
    )


def test_approved_panel_shows_runs_materialises_and_redrafts(example: Path) -> None:
    session = make_session(example)
    session.approve("dave")
    record_run(session)
    record_run(session)
    entry = session.approved_entry()
    assert entry is not None
    cells: list[str] = []
    redrafts: list[Entry] = []
    panel = ApprovedPanel(
        session, entry, on_materialise=cells.append, on_redraft=redrafts.append, reviewer="erin"
    )
    info = panel.info_html.value
    assert "dave" in info and "succeeded" in info and entry.code_sha256 in info
    assert "<td>2</td>" in info  # runs
    record_run(session)
    assert panel.refresh().runs == 3 and "<td>3</td>" in panel.info_html.value
    text = panel._repr_mimebundle_()["text/plain"]
    assert "approved by dave" in text and "runs: 3; last run" in text and "(succeeded)" in text

    panel.materialise_button.click()
    assert len(cells) == 1 and cells[0].startswith("%%transform_run")
    assert entry.code in cells[0]
    assert MATERIALISE_NOTE in panel.result_html.value

    panel.redraft_button.click()
    assert isinstance(panel.review_panel, ReviewPanel)
    assert panel.children == (panel.review_panel,)
    assert [e.status for e in redrafts] == ["draft"]
    assert stored(session).status == "draft"
    assert session.approved_entry() is None
    assert events(session, "draft")[-1].actor == "erin"
    assert panel.entry.status == "draft"
    assert "status: draft" in panel._repr_mimebundle_()["text/plain"]


def test_a_revocation_made_elsewhere_shows_when_the_reviewer_comes_back(
    example: Path, tmp_path: Path
) -> None:
    session = make_session(example)
    session.approve("dave")
    entry = session.approved_entry()
    assert entry is not None
    panel = ApprovedPanel(session, entry)
    assert "dem-panel" in panel._dom_classes and panel.frame in panel.children
    assert not panel.run_button.disabled
    revoke(session.settings, entry.key, "carol", "mapping v5")  # the side panel, the CLI

    front_end_message(panel.frame, {"type": "something else"})
    assert "✔ Approved plan" in panel.info_html.value  # only a return to the panel re-reads
    front_end_message(panel.frame, {"type": "interact"})  # pointer or focus back in the panel
    info = panel.info_html.value
    assert "No longer approved" in info and "carol" in info and "mapping v5" in info
    assert RERUN_TRANSFORM in info
    assert panel.run_button.disabled and panel.materialise_button.disabled
    assert panel.run_button.tooltip == RERUN_TRANSFORM


def test_a_revoked_plan_reopens_with_its_revisions_a_banner_and_start_again(
    example: Path,
) -> None:
    session = make_session(example)
    panel = ReviewPanel(session, reviewer="dave")
    assert panel.banner.layout.display == "none"
    panel.chat.send("DESK: first 3 characters, upper")
    panel.approve()
    revoke(session.settings, panel.entry.key, "carol", "mapping v5")
    again = ReviewPanel(session, reviewer="dave")  # re-running the cell
    assert again.entry.status == "draft" and "substring 1, 3" in again.plan_html.value
    assert again.banner.layout.display is None
    banner = again.banner_html.value
    assert "Revoked by carol at" in banner and "mapping v5" in banner
    texts = [m["text"] for m in again.chat.messages]
    assert "DESK: first 3 characters, upper" in texts and "Approved by dave." in texts
    again.restart_button.click()
    assert again.banner.layout.display == "none" and "substring 1, 4" in again.plan_html.value
    assert again.chat.messages[-1]["text"].startswith("Started again from the workbook")
    assert "Started again" in again.status.value


def test_run_and_materialise_recheck_the_approval_first(example: Path, tmp_path: Path) -> None:
    session = make_session(example)
    review = ReviewPanel(session, reviewer="dave")
    entry = review.approve()
    assert entry is not None and not review.run_button.disabled
    approved = ApprovedPanel(session, entry)
    revoke(session.settings, entry.key, "carol", "mapping v5")

    # the buttons still look enabled (nobody came back yet); a click re-reads first
    for panel in (review, approved):
        assert panel.run(str(tmp_path / "out")) is None
        said = panel.status.value
        assert "The approval was revoked by carol: mapping v5. Nothing ran." in said
        assert "Re-run the %%transform cell above" in said and "dataeng-magics" not in said
        assert panel.run_button.disabled
    asked = approved.inserter.materialise
    assert approved.materialise() is None and approved.inserter.materialise == asked
    assert "revoked by carol" in approved.status.value
    assert "revoked by carol" in review.approved_html.value  # the footer shows it too
    assert stored(session).runs == 0 and not (tmp_path / "out").exists()


# --- the chat widget --------------------------------------------------------------


def test_chat_widget_protocol() -> None:
    chat = ChatWidget([{"role": "system", "text": "hello"}])
    chat.send("a question")  # with no handler, the text just joins the conversation
    assert chat.messages[-1] == {"role": "user", "text": "a question"}
    heard: list[str] = []
    chat.on_user(heard.append)
    js_message(chat, "  via the front end  ")
    chat._handle_msg(
        {"content": {"data": {"method": "custom", "content": {"type": "x"}}}, "buffers": []}
    )
    assert heard == ["via the front end"]
    chat.busy = True
    chat.send("ignored while busy")
    assert heard == ["via the front end"]
    chat.focus()  # ipywidgets' own custom messages still go through Widget.send
    with pytest.raises(ValueError, match="role"):
        chat.add_message("assistant", "no")
    assert 'model.send({ type: "user", text })' in CHAT_JS.read_text()
    assert chat._esm.strip() and chat._css.strip()


def test_importing_the_package_loads_no_widget_library() -> None:
    code = (
        "import sys, dataeng_magics.widgets as w; from dataeng_magics.widgets import text_report; "
        "print(sorted(m for m in ('ipywidgets', 'anywidget', 'pyspark') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- preview and run on local Spark -----------------------------------------------


@pytest.mark.spark
def test_preview_and_run_on_local_spark(example: Path, tmp_path: Path, spark: Any) -> None:
    session = make_session(example)
    runs: list[RunSummary] = []
    panel = ReviewPanel(session, reviewer="frank", on_run=runs.append)
    shown: list[str] = []
    panel.preview_html.observe(lambda change: shown.append(change["new"]), names="value")
    panel.preview_button.click()
    assert "running…" in shown[0]  # what the reviewer sees while Spark works
    preview = panel.preview_html.value
    assert "checks passed" in preview and "failed" not in preview.split("checks passed")[0]
    assert "TRADES: first" in preview and "COUNTERPARTIES: first" in preview
    assert "NORTHWIND-OMS" in preview  # SOURCE_SYSTEM's constant, computed by Spark
    assert "TRADE_ID<br><span" in preview and not panel.preview_button.disabled
    # before -> after: each column's source value beside its result, rows matched by key
    assert "Before → after, per target column" in preview
    assert "TRADES: source value → result, rows matched by TRADE_ID = &#x27;Trade ID&#x27;" in (
        preview
    )
    assert "&#x27;EQTY-NYC&#x27; → EQTY" in preview  # DESK: first 4 characters, upper
    assert "&#x27;Maria&#x27; + &#x27;Wei&#x27; → Maria Wei" in preview  # TRADER's concat
    assert "— → NORTHWIND-OMS" in preview  # a constant reads no source

    panel.approve()
    said: list[str] = []
    panel.run_label.observe(lambda change: said.append(change["new"]), names="value")
    summary = panel.run(str(tmp_path / "out"))
    assert summary is not None and summary.outcome == "succeeded"
    assert runs == [summary]
    # the run's progress on the panel's own (neutral) bar, hidden once done
    assert "running: NORTHWIND/" in said[1] and "succeeded 100%" in said[-1]
    assert panel.run_bar.value == 1 and panel.run_progress.layout.display == "none"
    assert all(render.REMOVED not in text for text in said)
    # the summary: one row per target table from the evidence, output folders as links
    assert "SUCCEEDED on local" in panel.run_html.value
    out = tmp_path / "out"  # the published folders, not the run's staging folder
    trades = summary.evidence["validation"]["tables"][0]
    assert (
        f"<td style='{display.TD}'>TRADES</td><td style='{display.TD}'>{trades['rows_read']}</td>"
    ) in panel.run_html.value
    assert f"href='{(out / 'TRADES').as_uri()}/'" in panel.run_html.value
    assert f"href='{(out / '_evidence' / summary.run_id).as_uri()}.html'" in panel.run_html.value
    assert "<details><summary>Evidence</summary>" in panel.run_html.value
    assert panel.entry.runs == 1

    approved = ApprovedPanel(session, panel.entry, on_run=runs.append)
    assert "<td>1</td>" in approved.info_html.value
    approved.run_button.click()  # no output directory anywhere: one-line error, nothing ran
    assert "no output directory" in approved.status.value and len(runs) == 1
    approved.output_dir.value = str(tmp_path / "out2")
    approved.run_button.click()
    assert len(runs) == 2 and approved.entry.runs == 2
    assert "<td>2</td>" in approved.info_html.value


@pytest.mark.spark
def test_a_failing_preview_turns_approve_into_approve_anyway_with_a_reason(
    example: Path, spark: Any
) -> None:
    session = make_session(example)
    session.revise("SETTLE_DATE: parse date MM/DD/YYYY")  # the data is DD.MM.YYYY
    panel = ReviewPanel(session, reviewer="frank")
    assert panel.approve_button.description == "Approve" and not panel.approve_button.disabled
    assert panel.anyway.layout.display == "none"
    panel.refresh_preview()
    preview = panel.preview_html.value  # the values that failed, beside what they became
    assert "TRADES.SETTLE_DATE: conversion failed" in preview
    failing = preview[preview.index("dem-failing") :].split("</pre>")[0]
    assert len(re.findall(r"SETTLE_DATE &#x27;[^&]+&#x27; → null \(parse date "
                          r"MM/DD/YYYY\)", failing)) == 10  # fmt: skip
    assert "TRADES: first 10 row(s), failing values highlighted" in preview
    highlighted = f"<b style='{render.REMOVED}'><span style='{render.MUTED}'>null</span></b>"
    assert preview.count(highlighted) == 10  # SETTLE_DATE in each row shown
    assert preview.count("title='conversion failed: SETTLE_DATE'") == 10
    button = panel.approve_button
    assert button.description == "Approve anyway" and button.disabled
    assert panel.anyway.layout.display is None
    assert button.tooltip.startswith("The preview failed 1 check(s): fix the plan")
    panel.anyway.value = "fixed upstream"
    assert not button.disabled
    button.click()
    assert panel.entry.status == "approved"
    [record] = events(session, "approval")
    assert record.details["despite"] == "fixed upstream"
    assert panel.anyway.layout.display == "none"  # approved: nothing more to justify


def test_preview_runs_by_itself_and_only_the_newest_plans_is_shown(
    example: Path, spark: Any
) -> None:
    session = make_session(example)
    panel = ReviewPanel(session, reviewer="frank")
    shown: list[str] = []
    panel.preview_html.observe(lambda change: shown.append(change["new"]), names="value")
    with panel._preview_lock:  # Spark busy with an earlier preview
        stale = panel.schedule_preview()
        panel.chat.send("SOURCE_SYSTEM: constant 'OMS-2'")  # the plan changes meanwhile
        newest = panel.schedule_preview()
    stale.join(120)
    newest.join(120)
    previews = [html for html in shown if "checks passed" in html]
    assert len(previews) == 1 and "OMS-2" in previews[0]  # the stale one never showed
    assert panel.spark_progress.layout.display == "none"  # Spark was up: no bar

    auto = ReviewPanel(session, reviewer="frank", auto_preview=True)  # as %%transform makes it
    for thread in threading.enumerate():
        if thread.name == "dataeng-magics-preview":
            thread.join(120)
    assert "OMS-2" in auto.preview_html.value
    auto.chat.send("SOURCE_SYSTEM: constant 'OMS-3'")  # each revision previews again
    for thread in threading.enumerate():
        if thread.name == "dataeng-magics-preview":
            thread.join(120)
    assert "OMS-3" in auto.preview_html.value


def test_background_preview_parses_no_python(
    example: Path, spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel parses each cell the user runs while a preview works: CPython 3.11
    before 3.11.8 fails (``SystemError: AST constructor recursion depth mismatch``) when
    two threads parse at once (gh-106905), so the preview's thread must not parse."""
    import ast

    parsed_in: list[str] = []
    parse = ast.parse

    def recording(*args: Any, **kwargs: Any) -> Any:
        parsed_in.append(threading.current_thread().name)
        return parse(*args, **kwargs)

    panel = ReviewPanel(make_session(example), reviewer="frank")
    monkeypatch.setattr(ast, "parse", recording)
    panel.schedule_preview().join(120)
    assert "checks passed" in panel.preview_html.value  # the preview did run
    assert parsed_in == []


# --- the chat's front end -----------------------------------------------------------

#: Just enough DOM for chat.js's render(): elements, text, attributes and listeners.
FAKE_DOM = """
class El {
  constructor(tag) {
    Object.assign(this, { tag, children: [], attrs: {}, listeners: {}, className: "", own: "" });
    this.classList = { toggle: (name, on) => { this.attrs[`class:${name}`] = on; } };
  }
  append(...nodes) { this.children.push(...nodes); }
  replaceChildren(...nodes) { this.children = nodes; }
  setAttribute(name, value) { this.attrs[name] = value; }
  addEventListener(type, listener) { this.listeners[type] = listener; }
  set textContent(text) { this.own = String(text); }
  get textContent() { return this.own + this.children.map((c) => c.textContent).join(""); }
  set innerHTML(_) { throw new Error("innerHTML used"); }
}
globalThis.document = { createElement: (tag) => new El(tag) };
const { default: widget } = await import(process.argv[2]);
const state = JSON.parse(process.argv[3]);
const handlers = {};
const sent = [];
const model = {
  get: (key) => state[key], on: (event, f) => { handlers[event] = f; }, off: () => {},
  send: (message) => sent.push(message),
};
const root = new El("div");
widget.render({ model, el: root });
const [log, form] = root.children[0].children;
const [input, button] = form.children;
const shown = () => log.children.map((m) => [m.className, m.textContent]);
const out = { first: shown() };
input.value = "  DESK: upper  ";
form.listeners.submit({ preventDefault() {} });
input.value = "";
input.listeners.keydown({ key: "Enter", shiftKey: false, preventDefault() {} });
out.sent = [...sent];
// Shift+Enter is a new line; Enter while an IME composes is not a send
input.value = "two lines";
input.listeners.keydown({ key: "Enter", shiftKey: true, preventDefault() { throw 1; } });
input.listeners.keydown({ key: "Enter", isComposing: true, preventDefault() { throw 1; } });
out.sentAfterShiftEnter = sent.length;
// no key typed in the chat reaches the notebook: Lumino skips it, nobody above hears it
const box = root.children[0];
let stopped = 0;
box.listeners.keydown({ key: "Enter", shiftKey: true, stopPropagation() { stopped++; } });
out.keys = [box.attrs["data-lm-suppress-shortcuts"], stopped];
state.busy = true;
handlers["change:busy"]();
out.busy = [input.disabled, button.disabled, button.textContent];
input.value = "while busy";
form.listeners.submit({ preventDefault() {} });
out.sentWhileBusy = sent.length;
state.messages = [...state.messages, { role: "user", text: "more" }];
handlers["change:messages"]();
out.after = shown().length;
console.log(JSON.stringify(out));
"""


def run_front_end(tmp_path: Path, script: str, *args: str) -> Any:
    """Run ``script`` (a module that prints JSON) with node; what it printed."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    path = tmp_path / "front_end.mjs"
    path.write_text(script, encoding="utf-8")
    result = subprocess.run(
        [node, str(path), *args], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(result.stdout)


def test_chat_front_end_renders_text_and_sends_user_messages(tmp_path: Path) -> None:
    state = {
        "busy": False,
        "messages": [
            {"role": "system", "text": "hello"},
            {"role": "planner", "text": "<img src=x>", "changes": ["+  A", "-  B"]},
            {"role": "x' onclick='alert(1)", "text": "odd role"},
        ],
    }
    out = run_front_end(tmp_path, FAKE_DOM, CHAT_JS.as_uri(), json.dumps(state))
    assert out["first"] == [
        ["dem-chat-msg dem-chat-system", "Notehello"],
        ["dem-chat-msg dem-chat-planner", "Planner<img src=x>+  A-  B"],  # as text, not markup
        ["dem-chat-msg dem-chat-system", "Noteodd role"],  # unknown roles never reach a class
    ]
    assert out["sent"] == [{"type": "user", "text": "DESK: upper"}]  # blank input is not sent
    assert out["sentAfterShiftEnter"] == 1
    assert out["keys"] == ["true", 1]
    assert out["busy"] == [True, True, "Revising…"]
    assert out["sentWhileBusy"] == 1
    assert out["after"] == 4


#: frame.js's world: a panel found on a later animation frame, its listeners, the model.
FRAME_DOM = """
const listeners = {};
const panel = {
  dataset: {}, attrs: {},
  setAttribute(name, value) { this.attrs[name] = value; },
  addEventListener(type, f) { listeners[type] = f; },
  removeEventListener(type) { delete listeners[type]; },
};
let attached = null;
const el = { classList: { add() {} }, closest: (sel) => (sel === ".dem-panel" ? attached : null) };
const frames = [];
globalThis.requestAnimationFrame = (f) => frames.push(f);
globalThis.cancelAnimationFrame = () => {};
const { default: widget } = await import(process.argv[2]);
const sent = [];
const cleanup = widget.render({ model: { send: (m) => sent.push(m) }, el });
const out = { before: panel.attrs["data-lm-suppress-shortcuts"] ?? null, waiting: frames.length };
attached = panel;  // the panel's children are attached now
frames.shift()();
out.attr = panel.attrs["data-lm-suppress-shortcuts"];
let stopped = 0;
listeners.keydown({ key: "Enter", shiftKey: true, stopPropagation() { stopped++; } });
out.stopped = stopped;
listeners.pointerenter();
listeners.focusin();  // right after: one message for both
out.sent = sent;
cleanup();
out.after = Object.keys(listeners);
console.log(JSON.stringify(out));
"""


def test_frame_keeps_keys_in_the_panel_and_reports_returns(tmp_path: Path) -> None:
    out = run_front_end(tmp_path, FRAME_DOM, (STATIC / "frame.js").as_uri())
    assert out["before"] is None and out["waiting"] == 1  # it waits for its panel
    assert out["attr"] == "true"  # Lumino (JupyterLab, Notebook 7) skips its shortcuts
    assert out["stopped"] == 1  # nobody above hears the key
    assert out["sent"] == [{"type": "interact"}]
    assert out["after"] == []  # a removed panel keeps no listener
