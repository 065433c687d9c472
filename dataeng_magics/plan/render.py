"""The plan as a reviewer reads it: pseudocode, one line per target column, and the
diff of two plans as +/- pseudocode lines."""

from __future__ import annotations

import difflib
import json

from dataeng_magics.plan.checks import check_name
from dataeng_magics.plan.model import (
    ColumnPlan,
    Concat,
    Constant,
    Default,
    DigitsOnly,
    Divide,
    Lookup,
    Lower,
    MapValues,
    Multiply,
    ParseDate,
    Plan,
    Round,
    Sql,
    Step,
    Substring,
    Trim,
    Unresolved,
    Upper,
)


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def describe_step(step: Step) -> str:
    """One step as the words a reviewer would use."""
    match step:
        case Trim() | Upper() | Lower():
            return step.op
        case ParseDate(pattern=p, output_pattern=o):
            return f"parse date {p}" + (f" as {o}" if o else "")
        case Multiply(by=n):
            return f"multiply by {n}"
        case Divide(by=n):
            return f"divide by {n}"
        case Round(digits=d):
            return f"round to {d}"
        case Default(value=v):
            return f"default {_lit(v)} if null"
        case Constant(value=v):
            return f"constant {_lit(v)}"
        case MapValues(pairs=pairs, otherwise=other):
            text = "map " + ", ".join(f"{_lit(a)}={_lit(b)}" for a, b in pairs)
            return text + (f", else {_lit(other)}" if other is not None else "")
        case Concat(columns=cols, separator=sep):
            return f"concat {', '.join(_q(c) for c in cols)} with {_lit(sep)}"
        case Substring(start=s, length=n):
            return f"substring {s}, {n}"
        case DigitsOnly():
            return "digits only"
        case Lookup(column=c, source=src, key=k):
            return f"lookup {_q(c)} from {src} on {_q(k)}"
        case Sql(expression=e):
            return f"sql: {e}"
        case Unresolved(text=t, reason=r):
            return f"?? UNRESOLVED {_q(t)} ({r})"
    raise TypeError(f"unknown step {step!r}")  # pragma: no cover


def column_steps(column: ColumnPlan) -> str:
    """A column's steps in order, as a reviewer reads them ("copy" when there are none)."""
    return ", then ".join(describe_step(s) for s in column.steps) or "copy"


def column_line(column: ColumnPlan) -> str:
    """``NAME (type) [required] <- "Source Column": steps``; a column computed from no
    source column (a constant) says ``<- (no source)``."""
    origin = _q(column.source_column) if column.source_column else "(no source)"
    flag = " [required]" if column.required else ""
    return f"{column.name} ({column.type}){flag} <- {origin}: {column_steps(column)}"


def render_pseudocode(plan: Plan) -> str:
    """The plan as a reviewer reads it: one line per target column."""
    lines = [f"# client {plan.client}"]
    if plan.notes:
        lines.extend(f"# note: {line}" for line in plan.notes.splitlines() if line.strip())
    for table in plan.tables:
        read = plan.sources[table.source]
        lines.append("")
        lines.append(f"TABLE {table.name}  FROM {table.source} ({read.format})")
        for f in table.filters:
            suffix = f"    -- {f.description}" if f.description else ""
            lines.append(f"  KEEP ROWS WHERE {f.condition}{suffix}")
        lookups = sorted(
            {(s.source, s.key) for c in table.columns for s in c.steps if isinstance(s, Lookup)}
        )
        for source, key in lookups:
            lines.append(f"  LEFT JOIN {source} ON {_q(key)}")
        for column in table.columns:
            lines.append(f"  {column_line(column)}")
        for check in table.checks:
            lines.append(f"  CHECK {check_name(check)}  ON FAILURE {check.action}")
    return "\n".join(lines) + "\n"


def plan_diff(before: Plan, after: Plan) -> list[str]:
    """What a revision changed, as +/- pseudocode lines (empty when nothing changed)."""
    old = render_pseudocode(before).splitlines()
    new = render_pseudocode(after).splitlines()
    lines = [
        line
        for line in difflib.unified_diff(old, new, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    notes = _removed_steps(before, after)
    return [f"{line}    -- removed: {notes[line[1:]]}" if line[1:] in notes else line
            for line in lines]  # fmt: skip


def _removed_steps(before: Plan, after: Plan) -> dict[str, str]:
    """The new pseudocode line of each column that lost steps -> the steps it lost, so
    a diff says "removed" rather than leave a reviewer to spot a missing phrase."""
    old = {(t.name, c.name): c for t in before.tables for c in t.columns}
    notes = {}
    for table in after.tables:
        for column in table.columns:
            was = old.get((table.name, column.name))
            lost = [s for s in was.steps if s not in column.steps] if was else []
            if lost:
                notes[f"  {column_line(column)}"] = ", ".join(describe_step(s) for s in lost)
    return notes
