"""The review panels of ``%%transform``: review a draft to approval, or use an approval.

The panels hold no workflow logic: every button calls one ``TransformSession`` method
and renders what it returns, so the notebook, the CLI and papermill share one set of
rules (what may be approved, what a run records). Errors the user can fix
(``DataEngMagicsError``) show as one line in the status bar, never as a traceback.

Fabric notebooks do not support the ``Output`` widget and ``jslink``, so results are
HTML widgets whose value is replaced. Each panel holds a ``PanelFrame``: keys typed in
the panel stay in it, and when the reviewer comes back to it, it re-reads its entry, so
a revocation made elsewhere shows before anyone clicks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from dataeng_magics.config import NOT_A_PERSON, current_user
from dataeng_magics.display import evidence_details, summary_table
from dataeng_magics.errors import DataEngMagicsError
from dataeng_magics.run.evidence import failures_in_words
from dataeng_magics.widgets import _render as render
from dataeng_magics.widgets.chat import ChatWidget, Message
from dataeng_magics.widgets.code import CodeView
from dataeng_magics.widgets.frame import PANEL_CLASS, PanelFrame
from dataeng_magics.widgets.insert import CellInserter, Result
from dataeng_magics.widgets.report import text_report, when
from dataeng_magics.workflow import (
    RERUN_TRANSFORM,
    approval_blocker,
    before_after,
    preview_engine_ready,
    start_preview_engine,
)

if TYPE_CHECKING:
    from dataeng_magics.plan.model import ColumnPlan, Plan, Unresolved
    from dataeng_magics.run.executors.base import JobStatus
    from dataeng_magics.state.store import Entry
    from dataeng_magics.workflow import Preview, RunSummary, TransformSession

__all__ = ["MATERIALISE_NOTE", "ApprovedPanel", "ReviewPanel"]

MATERIALISE_NOTE = (
    "Run `%transform materialise` in a cell to insert this code as a cell below "
    "(the JupyterLab extension inserts it automatically)."
)
SAMPLE_ROWS = 10
PREVIEW_ROWS = 10
TABS = ("Mapping", "Sample", "Plan", "Preview", "Code", "Chat")
PREVIEW_RUNNING = "running… (the first preview starts local Spark, about 10 s)"
INSERTED = {
    "inserted": "The approved code is inserted as a cell below (read-only until unlocked).",
    "exists": "The approved cell is already in this notebook.",
    "replaced": "The approved code replaces the earlier approved cell below (read-only).",
}
ANYWAY_NEEDED = (
    "The preview failed {n} check(s): fix the plan (Chat tab), or type why you approve "
    "anyway (recorded in the audit log)."
)
REVIEWER_NEEDED = "Type your name in Reviewer first: an approval records who approved it."
SPARK_STARTING = "Starting local Spark for the preview (about 10 s); you can read on."
#: Seconds local Spark usually takes to start: the progress bar's pace, not a limit.
SPARK_START_SECONDS = 10.0
PREVIEW_INTRO = (
    "Runs the plan on the sample rows with local Spark and applies the mapping's checks "
    "(the first preview starts Spark, about 10 s)."
)


def _with_text(bundle: Any, text: str) -> Any:
    """The widget's own MIME bundle, with our report as its ``text/plain`` fallback."""
    if isinstance(bundle, tuple):  # (data, metadata), as anywidget returns it
        data, metadata = bundle
        return {**data, "text/plain": text}, metadata
    return {**(bundle or {}), "text/plain": text}


@contextmanager
def _running(view: Any, button: Any, text: str) -> Iterator[None]:
    """Show ``text`` and disable ``button`` while Spark works; if an error escapes,
    leave a short note rather than a "running…" that never ends."""
    button.disabled = True
    view.value = render.note(text)
    try:
        yield
    except BaseException:
        view.value = render.status_html("Did not finish.", error=True)
        raise
    finally:
        button.disabled = False


def default_reviewer(given: str | None = None) -> str:
    """The Reviewer field's first value: the name given (``--reviewer``, the ``reviewer``
    setting), else the Jupyter user; empty, to be typed in, where that is no person's
    name (``root``, a container's user, unknown)."""
    if given and given.strip():
        return given.strip()
    user = current_user()
    return "" if user in NOT_A_PERSON else user


def _short(digest: str) -> str:
    return digest[:16]


def _gone(entry: Entry) -> str:
    """Why an approval the panel showed is no longer there, and what to do."""
    if entry.status == "revoked":
        why = f"was revoked by {entry.revoked_by}: {entry.reason or 'no reason given'}"
    else:
        why = f"is gone: the plan is {entry.status} now"
    return f"The approval {why}. Nothing ran. {RERUN_TRANSFORM}"


class _Panel(widgets.VBox):
    """What both panels share: the Output dir field and Run, the one-line status, the
    cell inserter and the text fallback. A subclass names who acts (``_actor``), where a
    run's summary shows (``_run_view``) and what else a finished run updates (``_ran``)."""

    _entry: Entry
    _run_view: widgets.HTML

    def __init__(
        self, session: TransformSession, *, on_run: Callable[[RunSummary], object] | None
    ) -> None:
        super().__init__()
        self.add_class(PANEL_CLASS)
        self.session = session
        self._on_run = on_run
        self.output_dir = widgets.Text(
            value=session.request.output_dir or "",
            description="Output dir",
            placeholder="where the run writes its tables",
            layout=widgets.Layout(width="420px"),
        )
        self.run_button = widgets.Button(description="Run", icon="play")
        self.run_button.on_click(lambda _: self.run())
        self.status = widgets.HTML()
        self.run_bar = widgets.FloatProgress(
            value=0, min=0, max=1, bar_style="info", layout=widgets.Layout(width="240px")
        )
        self.run_label = widgets.HTML()
        self.run_progress = widgets.HBox(
            [self.run_bar, self.run_label], layout=widgets.Layout(display="none")
        )
        self.inserter = CellInserter(on_result=self._inserted)
        self.frame = PanelFrame(on_interact=self.recheck)

    @property
    def entry(self) -> Entry:
        """The stored entry as of the last action."""
        return self._entry

    def refresh(self) -> Entry:
        """Re-read the stored entry and show it."""
        raise NotImplementedError

    def recheck(self) -> Entry:
        """Re-read the stored entry and show it if it changed elsewhere (revoked from the
        side panel, the CLI or another kernel); cheap, so it runs before every action."""
        stored, shown = self.session.entry(), self._entry
        if stored is None or (stored.status, stored.updated_at, stored.plan_sha256) == (
            shown.status, shown.updated_at, shown.plan_sha256
        ):  # fmt: skip
            return shown
        entry = self.refresh()
        if shown.status == "approved" and entry.status != "approved":
            self._say(_gone(entry), error=True)  # not the "Approved by ..." of before
        return entry

    def run(self, output_dir: str | None = None) -> RunSummary | None:
        """Run the approved code (default output: the Output dir field)."""
        if output_dir is not None:
            self.output_dir.value = output_dir
        shown = self._entry.status
        if shown == "approved" and self.recheck().status != "approved":
            return None  # recheck said by whom and why, rather than the CLI's hint
        self.run_bar.value, self.run_label.value = 0, render.note("starting…")
        self.run_progress.layout.display = None
        try:
            with _running(self._run_view, self.run_button, "running…"):
                summary = self.session.run(
                    output_dir=self._output_dir(), actor=self._actor(), progress=self._progress
                )
        except DataEngMagicsError as exc:
            self._run_view.value = ""
            self._say(str(exc), error=True)
            return None
        finally:
            self.run_button.disabled = self._entry.status != "approved"
            self.run_progress.layout.display = "none"
        self._run_view.value = summary_table(summary) + evidence_details(summary)
        self._ran(summary)
        self._say(f"Run {summary.outcome.replace('_', ' ')}.", error=not summary.report.passed)
        if self._on_run is not None:
            self._on_run(summary)
        return summary

    def _progress(self, status: JobStatus) -> None:
        """The run's progress on the panel's bar (neutral: a run going on is no error)."""
        if status.progress is not None:
            self.run_bar.value = status.progress
        self.run_label.value = render.note(status.to_text())

    def _actor(self) -> str | None:
        raise NotImplementedError

    def _ran(self, summary: RunSummary) -> None:
        raise NotImplementedError

    def _output_dir(self) -> str | None:
        return self.output_dir.value.strip() or None

    def _say(self, text: str, *, error: bool = False) -> None:
        self.status.value = render.status_html(text, error=error)

    def _inserted(self, result: Result) -> None:
        self._say(INSERTED[result])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _with_text(
            super()._repr_mimebundle_(**kwargs), text_report(self.session, self.entry)
        )


class ReviewPanel(_Panel):
    """Mapping, sample, plan, preview, code and chat tabs, and the approval controls.

    Shown when no approved plan matches the inputs. Uses the session's current draft
    (``session.draft()`` makes one if there is none).
    """

    def __init__(
        self,
        session: TransformSession,
        *,
        reviewer: str | None = None,
        on_approved: Callable[[Entry], object] | None = None,
        on_run: Callable[[RunSummary], object] | None = None,
        auto_preview: bool = False,
    ) -> None:
        super().__init__(session, on_run=on_run)
        self._on_approved = on_approved
        self._auto_preview = auto_preview
        self._preview_lock = threading.Lock()  # one preview (or Spark start) at a time
        self._preview_generation = 0  # bumped by each plan change: older results are stale
        self._entry = session.draft(actor=reviewer or current_user())
        self._plan = session.plan_of(self._entry)
        self._last_revision: tuple[list[str], str] | None = None

        self.mapping_html = widgets.HTML()
        self.sample_html = widgets.HTML(
            render.samples_html(session.samples, session.schemas, SAMPLE_ROWS)
        )
        self.plan_html = widgets.HTML()
        self.preview_button = widgets.Button(description="Run preview", icon="play")
        self.preview_button.on_click(lambda _: self.refresh_preview())
        self.preview_html = widgets.HTML()
        self.code_view = CodeView()
        self.chat = ChatWidget(self._first_messages(), on_user=self.revise)
        self.tabs = widgets.Tab(
            children=[
                self.mapping_html,
                self.sample_html,
                self.plan_html,
                widgets.VBox([self.preview_button, self.preview_html]),
                self.code_view,
                self.chat,
            ],
            titles=TABS,
            selected_index=TABS.index("Plan"),
        )
        self.tabs.observe(self._tab_selected, names="selected_index")

        self.reviewer = widgets.Text(
            value=default_reviewer(reviewer),
            description="Reviewer",
            placeholder="your name (required to approve)",
            layout=widgets.Layout(width="260px"),
        )
        self.reviewer.observe(lambda _: self._show_approve(), names="value")
        self.approve_button = widgets.Button(
            description="Approve", button_style="success", icon="check"
        )
        self.approve_button.on_click(lambda _: self.approve())
        self.anyway = widgets.Text(
            placeholder="why approve although checks fail (audited)",
            layout=widgets.Layout(width="300px", display="none"),
        )
        self.anyway.observe(lambda _: self._show_approve(), names="value")
        self.reason = widgets.Text(
            placeholder="reason (required to reject)", layout=widgets.Layout(width="260px")
        )
        self.reject_button = widgets.Button(
            description="Reject", button_style="danger", icon="times"
        )
        self.reject_button.on_click(lambda _: self.reject())
        self.approved_html = widgets.HTML()
        self.run_html = self._run_view = widgets.HTML()
        self._review_row = widgets.HBox(
            [self.reviewer, self.anyway, self.approve_button, self.reason, self.reject_button]
        )
        self._run_row = widgets.HBox([self.output_dir, self.run_button])
        self.footer = widgets.VBox()
        self.banner_html = widgets.HTML()
        self.restart_button = widgets.Button(
            description="Start again from the workbook",
            icon="undo",
            tooltip="Draft anew from the mapping; the revisions above no longer apply.",
            layout=widgets.Layout(width="auto"),
        )
        self.restart_button.on_click(lambda _: self.start_again())
        self.banner = widgets.HBox([self.banner_html, self.restart_button])
        self.spark_bar = widgets.FloatProgress(
            value=0, min=0, max=1, bar_style="info", layout=widgets.Layout(width="240px")
        )
        self.spark_progress = widgets.HBox(
            [self.spark_bar, widgets.HTML(render.note(SPARK_STARTING))],
            layout=widgets.Layout(display="none"),
        )
        self.spark_progress.add_class("dem-spark-progress")

        self.children = (
            self.banner, self.spark_progress, self.tabs, self.footer, self.run_progress,
            self.run_html,
            self.status, self.inserter, self.frame,
        )  # fmt: skip
        self._show_entry(self._entry)
        if auto_preview:
            self.schedule_preview()

    # -- read-only state ---------------------------------------------------------------

    @property
    def plan(self) -> Plan:
        return self._plan

    @property
    def unresolved(self) -> list[tuple[str, ColumnPlan, Unresolved]]:
        return self._plan.unresolved()

    # -- actions (the buttons call these) ----------------------------------------------

    def refresh(self) -> Entry:
        """Re-read the stored entry (changed elsewhere: a ``%transform`` command, the CLI)."""
        entry = self.session.entry()
        if entry is not None:
            self._show_entry(entry)
        return self._entry

    def revise(self, text: str) -> Entry | None:
        """Ask the planner to change the plan; the chat shows the request and its answer."""
        text = text.strip()
        if not text:
            self._say("Type a change first, e.g. 'COLUMN: rule'.", error=True)
            return None
        self.chat.add_message("user", text)
        self.chat.busy = True
        try:
            entry, revision = self.session.revise(text, actor=self._actor())
        except DataEngMagicsError as exc:
            self.chat.add_message("system", str(exc))
            self._say(str(exc), error=True)
            return None
        finally:
            self.chat.busy = False
        changes = [str(line) for line in entry.conversation[-1].get("changes", [])]
        self._last_revision = (changes, revision.reply)
        self._show_entry(entry)
        if changes and self._auto_preview:
            self.schedule_preview()
        self.chat.add_message("planner", revision.reply, changes)
        if changes:
            self._say(f"Plan revised: {len(changes)} line(s) changed; see the Plan tab.")
        else:
            self._say(f"The plan did not change. {revision.reply}")
        return entry

    def start_again(self) -> Entry | None:
        """Draft anew from the workbook (the reopened plan's revisions no longer apply)."""
        try:
            entry = self.session.draft(force=True, actor=self._actor())
        except DataEngMagicsError as exc:
            self._say(str(exc), error=True)
            return None
        self._last_revision = None
        self._show_entry(entry)
        self.chat.messages = self._first_messages()
        if self._auto_preview:
            self.schedule_preview()
        self._say("Started again from the workbook's draft.")
        return entry

    def approve(self, reviewer: str | None = None) -> Entry | None:
        """Approve the current plan as ``reviewer`` (default: the Reviewer field)."""
        if reviewer is not None:
            self.reviewer.value = reviewer
        try:
            entry = self.session.approve(
                self.reviewer.value.strip(), despite=self.anyway.value.strip() or None
            ).entry
        except DataEngMagicsError as exc:
            self._say(str(exc), error=True)
            return None
        self._show_entry(entry)
        self._say(f"Approved by {entry.reviewer}.")
        cell = self.session.materialised_cell(entry, self._output_dir())
        self.inserter.request(cell, entry.key, entry.code_sha256)  # the lab extension's cue
        if self._on_approved is not None:
            self._on_approved(entry)
        return entry

    def reject(self, reason: str | None = None) -> Entry | None:
        """Reject the current plan; ``reason`` (default: the reason field) is required."""
        if reason is not None:
            self.reason.value = reason
        try:
            entry = self.session.reject(self.reviewer.value.strip(), self.reason.value.strip())
        except DataEngMagicsError as exc:
            self._say(str(exc), error=True)
            return None
        self._show_entry(entry)
        self._say(f"Rejected by {entry.reviewer}: {entry.reason}")
        return entry

    def refresh_preview(self) -> Preview | None:
        """Apply the current plan to the samples on local Spark and show the result."""
        self._preview_generation += 1
        return self._preview(self._preview_generation)

    def schedule_preview(self) -> threading.Thread:
        """Preview the current plan in the background: Spark starts first if it has to
        (a progress bar says so), and a plan changed meanwhile makes this preview stale,
        so only the newest plan's preview is ever shown."""
        self._preview_generation += 1
        thread = threading.Thread(
            target=self._background_preview, args=(self._preview_generation,), daemon=True,
            name="dataeng-magics-preview",
        )  # fmt: skip
        thread.start()
        return thread

    def _background_preview(self, generation: int) -> None:
        """A thread's preview: whatever goes wrong is one line in the panel, never a
        traceback in the notebook (no cell is running to show it in)."""
        try:
            self._preview(generation)
        except Exception as exc:
            from dataeng_magics.redact import redact
            from dataeng_magics.run.executors.base import first_line

            why = redact(first_line(exc))
            self.preview_html.value = render.status_html(f"The preview stopped: {why}", error=True)

    def _preview(self, generation: int) -> Preview | None:
        with self._preview_lock:
            if generation != self._preview_generation:
                return None  # a newer plan is waiting: this one is cancelled
            if self.unresolved:
                self.preview_html.value = self._preview_blocked()
                with suppress(DataEngMagicsError):  # ready for the revision that resolves it
                    self._start_spark()
                return None
            plan, code = self._plan, self._entry.code  # compiled already: see preview()
            try:
                self._start_spark()
                with _running(self.preview_html, self.preview_button, PREVIEW_RUNNING):
                    preview = self.session.preview(plan, rows=PREVIEW_ROWS, code=code)
            except DataEngMagicsError as exc:
                self.preview_html.value = render.status_html(str(exc), error=True)
                self._say(str(exc), error=True)
                return None
            if generation != self._preview_generation:
                return None  # the plan changed while Spark worked: its preview follows
            traced = before_after(preview, plan, self.session.samples)
            self.preview_html.value = render.preview_html(preview, plan, PREVIEW_ROWS, traced)
            if not preview.report.passed:
                self.chat.add_message(
                    "system", f"The preview failed checks: {render.failures_text(preview.report)}"
                )
                self._entry = self.session.entry() or self._entry  # the failure is recorded
                self._show_approve()
            return preview

    def _start_spark(self) -> None:
        """Start local Spark, with a progress bar paced on its usual start-up time."""
        if preview_engine_ready():
            return
        self.spark_progress.layout.display = None
        done = threading.Event()

        def tick() -> None:
            started = time.monotonic()
            while not done.wait(0.25):  # approaches the end, never reaches it early
                elapsed = time.monotonic() - started
                self.spark_bar.value = 1 - 0.5 ** (2 * elapsed / SPARK_START_SECONDS)

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            start_preview_engine()
        finally:
            done.set()
            ticker.join()
            self.spark_bar.value = 1
            self.spark_progress.layout.display = "none"

    # -- rendering ---------------------------------------------------------------------

    def _actor(self) -> str | None:
        return self.reviewer.value.strip() or current_user()

    def _ran(self, summary: RunSummary) -> None:
        self._entry = self.session.entry() or self._entry
        if not summary.report.passed:
            failed = "; ".join(failures_in_words(summary.evidence))
            self.chat.add_message("system", f"The run failed checks: {failed}")

    def _inserted(self, result: Result) -> None:
        self._say(f"Approved by {self._entry.reviewer}. {INSERTED[result]}")

    def _first_messages(self) -> list[Message]:
        intro = "Ask for changes here, one per line. " + (
            "The offline planner understands the rule vocabulary: "
            f"'COLUMN: rule' (e.g. '{self._example_column()}: trim, then upper'), "
            "'filter: condition' (or 'filter TABLE: condition' with several tables) "
            "and 'drop filters'."
            if self.session.planner.name == "offline"
            else "Write in plain English; the planner changes the plan, never the code."
        )
        messages: list[Message] = [{"role": "system", "text": intro}]
        for turn in self._entry.conversation:
            role = turn.get("role")
            message: Message = {
                "role": role if role in ("user", "planner") else "system",
                "text": str(turn.get("text", "")),
            }
            if turn.get("changes"):
                message["changes"] = [str(line) for line in turn["changes"]]
            messages.append(message)
        failures = self.session.last_failures(self._entry.key)
        if failures:  # the last run's (here, the CLI's or a replay's): answer with a revision
            messages.append({"role": "system", "text": "The last run's checks: " +
                             "; ".join(failures)})  # fmt: skip
        return messages

    def _example_column(self) -> str:
        for table in self._plan.tables:
            for column in table.columns:
                return column.name
        return "COLUMN"

    def _plan_view(self) -> str:
        return render.plan_html(self._entry.pseudocode, len(self.unresolved), self._last_revision)

    def _preview_blocked(self) -> str:
        return render.note(
            f"The plan has {len(self.unresolved)} unresolved step(s); resolve them (Chat tab) "
            "before previewing.",
            render.MARKED,
        )

    def _show_entry(self, entry: Entry) -> None:
        """Render every tab and the footer for ``entry``."""
        changed = entry.plan_sha256 != self._entry.plan_sha256 or not self.mapping_html.value
        self._entry = entry
        self._plan = self.session.plan_of(entry)
        unresolved = self.unresolved
        self.mapping_html.value = render.mapping_html(self.session.mapping, self._plan)
        self.plan_html.value = self._plan_view()
        if unresolved:
            self.preview_html.value = self._preview_blocked()
        elif changed:
            self.preview_html.value = render.note(PREVIEW_INTRO)
        self.preview_button.disabled = bool(unresolved)
        self._show_footer(entry)
        reopened = self.session.reopened(entry)
        self.banner.layout.display = None if reopened else "none"
        if reopened:
            self.banner_html.value = render.note(reopened["text"], render.MARKED)

    def _tab_selected(self, change: dict[str, Any]) -> None:
        self.code_view.active = change["new"] == TABS.index("Code")

    def _show_approve(self) -> None:
        """Approve is enabled for a draft with no unresolved step and a reviewer's name;
        otherwise its tooltip says what is missing (what a click would be told)."""
        blocker = approval_blocker(self._plan)
        status = self._entry.status
        failed = self.session.failed_preview(self._entry) if status == "draft" else []
        self.anyway.layout.display = None if failed else "none"
        self.approve_button.description = "Approve anyway" if failed else "Approve"
        self.approve_button.button_style = "warning" if failed else "success"
        if blocker is not None:
            why: str | None = str(blocker)
        elif status != "draft":
            why = f"The plan is {status}."
        elif not self.reviewer.value.strip():
            why = REVIEWER_NEEDED
        elif failed and not self.anyway.value.strip():
            why = ANYWAY_NEEDED.format(n=len(failed))
        else:
            why = None
        self.approve_button.disabled = why is not None
        self.approve_button.tooltip = why or "Approve this plan and its compiled code."

    def _show_footer(self, entry: Entry) -> None:
        """The Code tab and the footer follow the status: Approve/Reject while a draft;
        who approved it, the materialised cell and Run once approved."""
        unresolved = self.unresolved
        approved = entry.status == "approved"
        self._show_approve()
        self.reject_button.disabled = entry.status != "draft"
        self.reject_button.tooltip = "Reject this plan (a reason is required)."
        self.run_button.disabled = not approved
        self.run_button.tooltip = "Run the approved code." if approved else "Approve first."

        if approved:
            cell = self.session.materialised_cell(entry, self._output_dir())
            self.code_view.show(cell, f"Approved by {entry.reviewer}. {MATERIALISE_NOTE}")
            self.approved_html.value = render.status_html(
                f"✔ Approved by {entry.reviewer} at {when(entry.approved_at)}; "
                f"code sha256 {_short(entry.code_sha256)}"
            )
            self.footer.children = (self.approved_html, self._run_row)
        else:
            self.code_view.show(entry.code, render.code_note(entry.status, len(unresolved)))
            if entry.status in ("rejected", "revoked"):
                who = entry.reviewer if entry.status == "rejected" else entry.revoked_by
                self.approved_html.value = render.status_html(
                    f"The plan was {entry.status} by {who}: {entry.reason or 'no reason given'}. "
                    "A revision that changes the plan (Chat tab) makes a new draft."
                )
                self.footer.children = (self.approved_html, self._review_row)
            else:
                self.footer.children = (self._review_row, self._run_row)


class ApprovedPanel(_Panel):
    """Shown when an approved plan already matches: who approved it, its runs, and
    Run / Materialise / Re-draft. Re-draft replaces this panel's content with a
    ``ReviewPanel`` for a fresh draft."""

    def __init__(
        self,
        session: TransformSession,
        entry: Entry,
        *,
        on_materialise: Callable[[str], object] | None = None,
        on_redraft: Callable[[Entry], object] | None = None,
        on_run: Callable[[RunSummary], object] | None = None,
        reviewer: str | None = None,
        on_approved: Callable[[Entry], object] | None = None,
    ) -> None:
        super().__init__(session, on_run=on_run)
        self._entry = entry
        self._on_materialise = on_materialise
        self._on_redraft = on_redraft
        self._on_approved = on_approved
        self._reviewer = reviewer
        self.review_panel: ReviewPanel | None = None

        self.info_html = widgets.HTML()
        self.plan_html = widgets.HTML()
        self.run_button.button_style = "primary"
        self.run_button.tooltip = "Run the approved code."
        self.materialise_button = widgets.Button(
            description="Materialise",
            icon="file-code-o",
            tooltip="Show the approved code as a notebook cell.",
        )
        self.materialise_button.on_click(lambda _: self.materialise())
        self.redraft_button = widgets.Button(
            description="Re-draft",
            icon="refresh",
            tooltip="Draft a new plan; it replaces this approval and must be approved again.",
        )
        self.redraft_button.on_click(lambda _: self.redraft())
        self.result_html = self._run_view = widgets.HTML()
        self.children: tuple[Any, ...] = (
            self.info_html,
            self.plan_html,
            widgets.HBox(
                [self.output_dir, self.run_button, self.materialise_button, self.redraft_button]
            ),
            self.run_progress,
            self.result_html,
            self.status,
            self.inserter,
            self.frame,
        )
        self._show()

    @property
    def entry(self) -> Entry:
        """The approved entry (or, after a re-draft, the review panel's entry)."""
        return self.review_panel.entry if self.review_panel is not None else self._entry

    def refresh(self) -> Entry:
        """Re-read the stored entry (runs recorded elsewhere, a re-draft's approval)."""
        if self.review_panel is not None:
            return self.review_panel.refresh()
        self._entry = self.session.entry() or self._entry
        self._show()
        return self._entry

    def materialise(self, output_dir: str | None = None) -> str | None:
        """The approved code as a notebook cell; ``on_materialise`` receives its text."""
        if output_dir is not None:
            self.output_dir.value = output_dir
        if self.recheck().status != "approved":
            self._say(_gone(self._entry), error=True)
            return None
        try:
            cell = self.session.materialised_cell(self._entry, self._output_dir())
        except DataEngMagicsError as exc:
            self._say(str(exc), error=True)
            return None
        self.result_html.value = render.materialised_html(cell, MATERIALISE_NOTE)
        self._say("Materialised.")
        self.inserter.request(cell, self._entry.key, self._entry.code_sha256)
        if self._on_materialise is not None:
            self._on_materialise(cell)
        return cell

    def redraft(self) -> ReviewPanel | None:
        """Draft anew (replacing this approval) and show a review panel for it."""
        try:
            entry = self.session.draft(force=True, actor=self._reviewer)
            panel = ReviewPanel(
                self.session,
                reviewer=self._reviewer,
                on_approved=self._on_approved,
                on_run=self._on_run,
            )
        except DataEngMagicsError as exc:
            self._say(str(exc), error=True)
            return None
        self.review_panel = panel
        self.children = (panel,)
        if self._on_redraft is not None:
            self._on_redraft(entry)
        return panel

    def _actor(self) -> str | None:
        return self._reviewer

    def _ran(self, summary: RunSummary) -> None:
        self.refresh()

    def _show(self) -> None:
        entry = self._entry
        approved = entry.status == "approved"
        last = f"{when(entry.last_run_at)} ({entry.last_outcome})" if entry.runs else "never"
        fields: list[tuple[str, object]] = [("status", entry.status)]
        if entry.status == "revoked":
            fields += [("revoked by", entry.revoked_by), ("reason", entry.reason)]
        fields += [
            ("approved by", entry.reviewer),
            ("approved at", when(entry.approved_at)),
            ("runs", entry.runs),
            ("last run", last),
            ("key", entry.key),
            ("code sha256", entry.code_sha256),
        ]
        title = (
            f"✔ Approved plan for client {entry.client}"
            if approved
            else f"✘ No longer approved: the plan for client {entry.client} is {entry.status}"
        )
        self.info_html.value = render.Html(
            render.heading(title)
            + ("" if approved else render.note(_gone(entry), render.REMOVED))
            + render.fields_html(fields)
        )
        self.run_button.disabled = self.materialise_button.disabled = not approved
        if not approved:
            self.run_button.tooltip = self.materialise_button.tooltip = RERUN_TRANSFORM
        self.plan_html.value = (
            "<details><summary>Plan</summary>"
            + render.pseudocode_html(entry.pseudocode)
            + "</details>"
        )
