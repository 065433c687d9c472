"""The review state as plain text, for places where widgets cannot render.

Plain IPython, nbconvert and papermill keep only ``text/plain``; this is what a reader
of such an output (or of a CI log) sees instead of the panel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dataeng_magics.state.store import Entry
    from dataeng_magics.workflow import TransformSession


def when(value: object) -> str:
    """A stored timestamp as the panels and this report show it."""
    return f"{value:%Y-%m-%d %H:%M} UTC" if value is not None else "never"


def text_report(session: TransformSession, entry: Entry) -> str:
    """Client, key, status, unresolved steps, approval and runs, then the pseudocode."""
    unresolved = session.plan_of(entry).unresolved()
    lines = [
        f"dataeng_magics transform: client {entry.client}",
        f"key: {entry.key}",
        f"mapping: {entry.mapping_file}",
    ]
    if entry.status == "approved":
        lines.append(f"status: approved by {entry.reviewer} at {when(entry.approved_at)}")
        lines.append(f"code sha256: {entry.code_sha256}")
    elif entry.status == "rejected":
        lines.append(f"status: rejected by {entry.reviewer}: {entry.reason}")
    elif entry.status == "revoked":
        lines.append(f"status: revoked by {entry.revoked_by}: {entry.reason or 'no reason given'}")
    else:
        lines.append("status: draft (not approved)")
    lines.append(f"unresolved steps: {len(unresolved)}")
    lines.extend(
        f"  {table}.{column.name}: {step.text!r} ({step.reason})"
        for table, column, step in unresolved
    )
    last = f"; last run {when(entry.last_run_at)} ({entry.last_outcome})" if entry.runs else ""
    lines.append(f"runs: {entry.runs}{last}")
    if entry.status != "approved":
        lines.append(
            "No widgets here: review and approve in a notebook front end, or with "
            "`dataeng-magics revise` / `dataeng-magics approve --reviewer NAME`."
        )
    lines.append("")
    lines.append(entry.pseudocode.rstrip("\n"))
    return "\n".join(lines) + "\n"
