"""Plain and rich renderings shared by the CLI and the notebook.

Every object here renders as readable text (terminals, papermill logs, nbconvert) and
as HTML where a front end shows it; run summaries and errors also carry a JSON bundle so
an executed notebook keeps a machine-readable record of what ran and how it failed.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dataeng_magics.errors import DataEngMagicsError
    from dataeng_magics.workflow import Outdated, RunSummary

SUMMARY_MIME = "application/vnd.dataeng-magics.run-summary+json"
ERROR_MIME = "application/vnd.dataeng-magics.error+json"
#: Diff lines shown per outdated entry; ``cache show KEY --code`` has the whole code.
DIFF_LINES = 12


def error_bundle(exc: DataEngMagicsError) -> dict[str, Any]:
    """A failed cell's error as data: type, exit code and structured fields. It has no
    text form (the one-line message shows once, as the cell's error), so front ends
    render nothing for it; ``dataeng-magics replay`` reads it for the exit code."""
    return {ERROR_MIME: exc.to_dict()}


def text_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "(none)"
    cells = [["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


@dataclass
class Table:
    """Rows that show as a text table or an HTML table."""

    rows: list[dict[str, Any]]
    columns: list[str]
    title: str = ""
    empty: str = "(none)"  # said instead of an empty table: what matched nothing

    def __repr__(self) -> str:
        if not self.rows:
            return self.empty
        body = text_table(self.rows, self.columns)
        return f"{self.title}\n{body}" if self.title else body

    def _repr_html_(self) -> str:
        if not self.rows:
            return f"<p>{html.escape(self.empty)}</p>"
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape('' if r.get(c) is None else str(r.get(c)))}</td>"
                for c in self.columns
            )
            + "</tr>"
            for r in self.rows
        )
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return (
            f"<table class='dem-table'>{caption}<thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>"
        )


@dataclass
class Text:
    """Preformatted text (pseudocode, code) that stays readable everywhere."""

    text: str

    def __repr__(self) -> str:
        return self.text

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.text)}</pre>"


def _nothing(what: str, **filters: str | None) -> str:
    """What an empty listing says: "no audit records for client X and key K"."""
    given = [f"{name} {value}" for name, value in filters.items() if value]
    return f"no {what} for {' and '.join(given)}" if given else f"no {what} yet"


def entries_table(
    entries: Sequence[Any], client: str | None = None, run_states: dict[str, str] | None = None
) -> Table:
    """Store entries as the CLI and ``%transform list`` show them (``client``: the
    filter they were listed with, named when nothing matched); a run going on, or one
    interrupted since the last that finished, shows as the last outcome."""
    states = run_states or {}
    rows = [
        {
            "client": e.client,
            "key": e.key[:16],
            "status": e.status,
            "reviewer": e.reviewer,
            "approved_at": e.approved_at and f"{e.approved_at:%Y-%m-%d %H:%M}",
            "runs": e.runs,
            "last_outcome": states.get(e.key, e.last_outcome),
        }
        for e in entries
    ]
    columns = ["client", "key", "status", "reviewer", "approved_at", "runs", "last_outcome"]
    return Table(rows, columns, "Cached transformations", _nothing("cached plans", client=client))


def audit_table(events: Sequence[Any], client: str | None = None, key: str | None = None) -> Table:
    """Audit events as the CLI and ``%transform audit`` show them (old logs' event
    "invalidation" is shown as recorded: the chain forbids rewriting it)."""
    rows = [
        {
            "seq": e.seq,
            "time": f"{e.time:%Y-%m-%d %H:%M:%S}",
            "event": e.event,
            "actor": e.actor,
            "client": e.client,
            "key": (e.key or "")[:16],
            "code": (e.code_sha256 or "")[:12],
        }
        for e in events
    ]
    columns = ["seq", "time", "event", "actor", "client", "key", "code"]
    return Table(rows, columns, "Audit log", _nothing("audit records", client=client, key=key))


def outdated_report(items: Sequence[Outdated]) -> Text:
    """Approved entries the current compiler would compile differently, with the change."""
    if not items:
        return Text("No approved entry is outdated: the current compiler writes their code.")
    lines = [
        f"{len(items)} approved entr{'y is' if len(items) == 1 else 'ies are'} outdated: the "
        "current compiler writes different code for the approved plan. Each keeps replaying "
        "its approved code until a reviewer re-drafts and approves it.",
    ]
    for item in items:
        e = item.entry
        lines += ["", f"{e.client}  key {e.key[:16]}  approved by {e.reviewer}: {item.change}"]
        shown = [line for line in item.diff if line[:3] not in ("---", "+++")]
        lines += [f"  {line}" for line in shown[:DIFF_LINES]]
        if len(shown) > DIFF_LINES:
            lines.append(f"  ... {len(shown) - DIFF_LINES} more line(s)")
    return Text("\n".join(lines))


class EvidenceView:
    """A run's evidence record: text, and HTML tables (no JavaScript, all escaped)."""

    def __init__(self, evidence: dict[str, Any], closing: Any = None) -> None:
        self.evidence, self.closing = evidence, closing

    def __repr__(self) -> str:
        from dataeng_magics.run.evidence import to_text

        return to_text(self.evidence, self.closing)

    def _repr_html_(self) -> str:
        from dataeng_magics.run.evidence import to_html_fragment

        return f"<div class='dem-evidence'>{to_html_fragment(self.evidence, self.closing)}</div>"


def evidence_details(summary: RunSummary) -> str:
    """A run's evidence as a folded HTML section (no JavaScript: ``<details>``)."""
    if not summary.evidence:
        return ""
    view = EvidenceView(summary.evidence, summary.closing)
    return f"<details><summary>Evidence</summary>{view._repr_html_()}</details>"


def output_link(path: str) -> str:
    """A clickable output path: relative to the working folder where it lies under it
    (JupyterLab opens such links in its file browser), a ``file:`` URI for another local
    path, plain text for a remote one (``abfss://``, ``s3://``)."""
    import os
    from pathlib import Path

    text = html.escape(path)
    if "://" in path:
        return f"<code>{text}</code>"
    local = Path(os.path.normpath(Path.cwd() / path))  # not resolved: the published link
    folder = "/" if path.endswith("/") else ""
    try:
        href = local.relative_to(Path.cwd()).as_posix() + folder
    except ValueError:
        href = local.as_uri() + folder
    return f"<a href='{html.escape(href)}' target='_blank' title='{text}'><code>{text}</code></a>"


def summary_table(summary: RunSummary) -> str:
    """The run per target table, from its evidence record (the report where a run has
    none): rows read, dropped per filter, quarantined, written, the checks with their
    counts, and the output folder as a link."""
    record = summary.evidence.get("validation") or summary.report.to_dict()
    published = summary.evidence.get("published", summary.outcome == "succeeded")
    base = summary.output_dir.rstrip("/")
    head = ("table", "rows read", "dropped", "quarantined", "written", "checks", "output")
    rows = []
    for table in record.get("tables", []):
        dropped = table.get("dropped") or {}
        checks = table.get("checks", [])
        failed = [c for c in checks if c.get("failed")]
        lines = [f"{len(checks) - len(failed)} passed"] + [
            f"<span style='color:{'#cf222e' if c.get('severity') == 'error' else '#9a6700'}'>"
            f"{html.escape(_check_words(c))}</span>"
            for c in failed
        ]
        folder = f"{base}/{table.get('table')}/"
        output = output_link(folder) if published else "not published: previous output kept"
        cells = [
            html.escape(str(table.get("table"))),
            str(table.get("rows_read", "")),
            "<br>".join(f"{html.escape(k)}: {v}" for k, v in dropped.items()) or "0",
            str(table.get("quarantined", 0)),
            str(table.get("rows_written", "")),
            "<br>".join(lines),
            output,
        ]
        rows.append("".join(f"<td style='{TD}'>{c}</td>" for c in cells))
    header = "".join(f"<th style='{TD};font-weight:600'>{h}</th>" for h in head)
    body = "".join(f"<tr>{r}</tr>" for r in rows)
    color = "#1a7f37" if summary.outcome == "succeeded" else "#cf222e"
    verdict = (
        f"<div style='color:{color};font-weight:600;margin:4px 0'>"
        f"{html.escape(summary.outcome.replace('_', ' ').upper())} on "
        f"{html.escape(summary.platform)} in {summary.seconds:.1f}s</div>"
    )
    evidence = ""
    if summary.run_id and summary.evidence:
        page = f"{base}/_evidence/{summary.run_id}.html"
        evidence = f"<div style='margin:4px 0'>evidence: {output_link(page)}</div>"
    return (
        f"<div class='dem-run-summary'>{verdict}<table style='border-collapse:collapse;"
        f"font-size:12px'><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table>"
        f"{evidence}</div>"
    )


#: A run summary's cell style.
TD = "text-align:left;vertical-align:top;padding:2px 8px;border-bottom:1px solid #8884"


def _check_words(check: dict[str, Any]) -> str:
    label = check.get("name") or check.get("kind", "")
    where = f"{check.get('column')} " if check.get("column") else ""
    return f"{where}[{label}]: {check.get('failed')} row(s)"


class SummaryView:
    """A run summary as the notebook records it: text, HTML and a JSON record."""

    def __init__(self, summary: RunSummary, note: str = "") -> None:
        self.summary = summary
        self.note = note

    def _repr_mimebundle_(self, **_: Any) -> dict[str, Any]:
        text = self.summary.to_text()
        if self.note:
            text = f"{self.note}\n{text}"
        return {
            "text/plain": text,
            "text/html": (f"<div>{html.escape(self.note)}</div>" if self.note else "")
            + summary_table(self.summary)
            + evidence_details(self.summary),
            SUMMARY_MIME: json.loads(json.dumps(self.summary.to_dict(), default=str)),
        }
