"""HTML fragments for the review panel, as plain functions of workflow objects.

Everything shown comes from a client's workbook, a client's data or a planner's answer,
so every value is escaped here, in one place. ``Html`` marks the few strings that are
already safe markup (built by these functions from escaped parts); anything else
passed to ``table`` is escaped. Styles are inline because notebook front ends (Fabric,
VS Code, nbconvert) drop or scope ``<style>`` blocks differently.
"""

from __future__ import annotations

import html
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from dataeng_magics.plan.render import column_steps
from dataeng_magics.redact import public_path  # source paths may carry SAS tokens

if TYPE_CHECKING:
    from dataeng_magics.mapping.model import Mapping, SourceSpec
    from dataeng_magics.plan.model import Plan
    from dataeng_magics.run.validate import ValidationReport
    from dataeng_magics.sources.sampling import Sample
    from dataeng_magics.workflow import Preview

MARKED = "background:rgba(207,34,46,0.15)"
ADDED = "color:#1a7f37"
REMOVED = "color:#cf222e"
MUTED = "opacity:0.65"
PRE = "margin:0;padding:6px 8px;white-space:pre;overflow:auto;font-size:12px;line-height:1.45"


class Html(str):
    """Markup that is already safe: produced here from escaped parts."""

    __slots__ = ()


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _is_null(value: Any) -> bool:
    if value is None:
        return True
    import pandas as pd  # only ever called with sample or preview frames, so already loaded

    return bool(pd.api.types.is_scalar(value) and pd.isna(value))


def cell(value: object) -> str:
    if isinstance(value, Html):
        return value
    if _is_null(value):
        return f"<span style='{MUTED}'>null</span>"
    return esc(str(value).replace("\r\n", "\n").replace("\n", "↵"))  # one line


def _title(value: object) -> str:
    """The full value, shown on hover over a cell cut to one line."""
    if isinstance(value, Html) or _is_null(value):
        return ""
    text = str(value)
    return f" title='{esc(text)}'" if text else ""


def _div(text: str, style: str) -> Html:
    return Html(f"<div style='margin:4px 0;{style}'>{esc(text)}</div>")


def note(text: str, style: str = MUTED) -> Html:
    return _div(text, style)


def heading(text: str) -> Html:
    return Html(f"<div style='font-weight:600;margin:10px 0 4px'>{esc(text)}</div>")


def pre(text: str, style: str = "") -> Html:
    return Html(f"<pre style='{PRE};{style}'>{esc(text)}</pre>")


#: Table cells: one line each, cut at CELL_WIDTH with the full value on hover, so a wide
#: table stays readable and scrolls sideways inside its own box, never the whole tab.
CELL_WIDTH = "20em"
_BORDER = "border-bottom:1px solid rgba(128,128,128,0.25)"
_TH = (
    f"text-align:left;padding:3px 6px;{_BORDER};vertical-align:bottom;white-space:nowrap;"
    "position:sticky;top:0;z-index:1;background:var(--jp-layout-color1,#fff);line-height:1.4"
)
_TD = (
    f"text-align:left;padding:3px 6px;{_BORDER};vertical-align:top;white-space:pre;"
    f"overflow:hidden;text-overflow:ellipsis;max-width:{CELL_WIDTH};line-height:1.4"
)
#: The table's own scroll box: both directions, so the header row can stick to its top.
TABLE_BOX = "overflow:auto;max-height:460px;max-width:100%"


def table(
    head: Sequence[object],
    rows: Iterable[Sequence[object]],
    *,
    marked: Collection[int] = (),
    titles: dict[int, str] | None = None,
) -> Html:
    """An HTML table whose header row stays visible while it scrolls; rows whose index is
    in ``marked`` are highlighted (``titles``: their hover text)."""
    header = "".join(f"<th style='{_TH}'{_title(h)}>{cell(h)}</th>" for h in head)
    body = []
    for i, row in enumerate(rows):
        style = f" style='{MARKED}'" if i in marked else ""
        title = f" title='{esc(titles[i])}'" if titles and i in titles else ""
        cells = "".join(f"<td style='{_TD}'{_title(v)}>{cell(v)}</td>" for v in row)
        body.append(f"<tr{style}{title}>{cells}</tr>")
    return Html(
        f"<div class='dem-table' style='{TABLE_BOX}'>"
        "<table style='border-collapse:separate;border-spacing:0;font-size:12px'>"
        f"<thead><tr>{header}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def typed_header(name: str, type_name: str) -> Html:
    return Html(f"{esc(name)}<br><span style='{MUTED};font-weight:normal'>{esc(type_name)}</span>")


# --- tabs ---------------------------------------------------------------------------


def mapping_html(mapping: Mapping, plan: Plan) -> Html:
    """The parsed mapping, one table per target table, with each target column's planned
    steps beside its rule; then the sources (with the read options of their format)."""
    columns = {(t.name, c.name): c for t in plan.tables for c in t.columns}
    unresolved = len(plan.unresolved())
    tables = mapping.tables()
    summary = f"{len(mapping.targets)} target columns in {len(tables)} table(s); " + (
        f"{unresolved} unresolved (highlighted)" if unresolved else "every rule resolved"
    )
    head = ["Column", "Type", "Required", "Default", "Source column", "Rule", "Planned steps"]
    parts = [note(summary, MARKED if unresolved else MUTED)]
    for name, targets in tables.items():
        rows: list[list[object]] = []
        marked: set[int] = set()
        titles: dict[int, str] = {}
        for target in targets:
            planned = columns.get((name, target.name))
            if planned is None:
                steps = "(not in the plan)"
            else:
                steps = column_steps(planned)  # the Plan tab's words for the same steps
                if planned.unresolved:
                    marked.add(len(rows))
                    reasons = "; ".join(f"{s.text!r}: {s.reason}" for s in planned.unresolved)
                    titles[len(rows)] = f"unresolved: {reasons}"
            rows.append(
                [
                    target.name,
                    target.type,
                    "yes" if target.required else "",
                    "" if target.default is None else target.default,
                    ".".join(part for part in (target.source, target.source_column) if part),
                    target.rule,
                    steps,
                ]
            )
        parts.append(heading(f"{name} ({len(targets)} columns)"))
        parts.append(table(head, rows, marked=marked, titles=titles))
    parts.append(heading("Sources"))
    parts.append(
        table(
            ["Source", "Format", "Path", "Read options"],
            [
                [name, spec.format, public_path(spec.path), read_options(spec)]
                for name, spec in mapping.sources.items()
            ],
        )
    )
    if mapping.filters:
        parts.append(heading("Filters"))
        parts.append(
            table(
                ["Table", "Keep rows where", "Description"],
                [[f.table, f.condition, f.description or ""] for f in mapping.filters],
            )
        )
    return Html("".join(parts))


def read_options(spec: SourceSpec) -> str:
    """The options that apply to the source's format: a Parquet file has none."""
    if spec.format == "csv":
        return ", ".join(
            [f"delimiter {spec.delimiter!r}", "header" if spec.header else "no header",
             spec.encoding]
        )  # fmt: skip
    if spec.format == "excel" and spec.excel_sheet:
        return f"sheet {spec.excel_sheet!r}"
    return ""


def samples_html(samples: dict[str, Sample], schemas: dict[str, dict[str, str]], rows: int) -> Html:
    """The first rows of each source, with the inferred Spark types under the names."""
    parts = []
    for name, smp in samples.items():
        frame = smp.frame
        shown = min(rows, len(frame))
        parts.append(heading(f"{name} ({smp.format}): first {shown} of {len(frame)} sample rows"))
        types = schemas.get(name, {})
        head = [typed_header(str(c), types.get(str(c), "?")) for c in frame.columns]
        parts.append(table(head, frame.head(rows).itertuples(index=False, name=None)))
        parts.append(profile_html(frame, types))
    return Html("".join(parts) or str(note("No sources.")))


def profile_html(frame: Any, types: dict[str, str]) -> Html:
    """The column profile of one sample: a reviewer sees nulls, ranges and the spellings
    (``'␣EUR'``, ``'eur'``) a rule must handle, without scrolling through rows."""
    from dataeng_magics.sources.profile import profile, shown

    head = ["Column", "Type", "Null %", "Distinct", "Min", "Max", "Top values",
            "Padded", "Spaces/case variants"]  # fmt: skip
    rows = [
        [
            p.column, p.type, f"{p.null_percent:.0f}%", p.distinct,
            "" if p.minimum is None else p.minimum, "" if p.maximum is None else p.maximum,
            ", ".join(f"{shown(v)} ×{n}" for v, n in p.top), p.padded or "",
            "; ".join(" ".join(shown(v) for v in group) for group in p.variants),
        ]
        for p in profile(frame, types)
    ]  # fmt: skip
    summary = f"Column profile ({len(frame)} sample rows)"
    return Html(
        f"<details class='dem-profile' open><summary style='margin:6px 0'>{esc(summary)}"
        f"</summary>{table(head, rows)}</details>"
    )


def pseudocode_html(pseudocode: str) -> Html:
    """The plan, with unresolved lines highlighted."""
    lines = []
    for line in pseudocode.rstrip("\n").splitlines():
        text = esc(line)
        lines.append(f"<span style='{MARKED}'>{text}</span>" if "?? UNRESOLVED" in line else text)
    return Html(f"<pre style='{PRE}'>" + "\n".join(lines) + "</pre>")


def diff_html(changes: Sequence[str]) -> Html:
    lines = []
    for line in changes:
        style = ADDED if line.startswith("+") else REMOVED if line.startswith("-") else ""
        lines.append(f"<span style='{style}'>{esc(line)}</span>")
    return Html(f"<pre style='{PRE}'>" + "\n".join(lines) + "</pre>")


def plan_html(pseudocode: str, unresolved: int, last: tuple[list[str], str] | None) -> Html:
    parts = []
    if unresolved:
        parts.append(
            note(
                f"{unresolved} unresolved step(s) (highlighted): revise them in the Chat tab "
                "before approving.",
                MARKED,
            )
        )
    parts.append(pseudocode_html(pseudocode))
    if last is not None:
        changes, reply = last
        parts.append(heading("Last revision"))
        parts.append(note(reply))
        parts.append(diff_html(changes) if changes else note("The plan did not change."))
    return Html("".join(parts))


def code_note(status: str, unresolved: int) -> str:
    """What the Code tab says above the code: where it comes from, and that it is
    read-only. Until the plan is approved, the code is the draft's."""
    if unresolved:
        return (
            f"Resolve the {unresolved} unresolved step(s) first: the code is compiled from "
            "the plan once every step is resolved."
        )
    where = "the draft (not approved yet)" if status == "draft" else f"the {status} plan"
    return (
        f"Compiled from {where}, deterministically. Read-only: change the plan (Chat tab), "
        "not the code."
    )


def highlight_python(code: str) -> Html:
    """Python as Pygments token spans (Pygments escapes the text); the classes are
    coloured by static/panel.css from the notebook theme's editor colours."""
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import PythonLexer

    spans = highlight(code, PythonLexer(), HtmlFormatter(nowrap=True))
    return Html(f"<pre class='dem-code-pre' style='{PRE}'>{spans}</pre>")


def materialised_html(cell_text: str, instruction: str) -> Html:
    return Html(str(note(instruction, "")) + highlight_python(cell_text))


def report_html(report: ValidationReport) -> Html:
    """A one-line verdict and the per-table check summary."""
    passed, _ = report.counts()
    if report.passed:
        warnings = len(report.warnings)
        verdict = f"✔ {passed} checks passed" + (f", {warnings} warning(s)" if warnings else "")
        style = ADDED
    else:
        verdict = f"✘ {len(report.failures)} check(s) failed, {passed} checks passed"
        style = REMOVED
    return Html(
        f"<div style='{style};font-weight:600;margin:6px 0'>{esc(verdict)}</div>"
        + pre(report.to_text())
    )


BEFORE_AFTER_ROWS = 5


def before_after_html(found: dict[str, Any], rows: int = BEFORE_AFTER_ROWS) -> Html:
    """Per target column: its rule, then each sample row's source value -> result."""
    parts = []
    for name, traced in found.items():
        if isinstance(traced, str):
            parts.append(note(f"{name}: {traced}."))
            continue
        how, columns = traced
        shown = min(rows, len(columns[0].pairs) if columns else 0)
        head = ["Column", "Rule", "Source", *(f"row {i + 1}" for i in range(shown))]
        body = [
            [c.column, c.rule, c.source,
             *(f"{before or '—'} → {'null' if _is_null(after) else after}"
               for before, after in c.pairs[:rows])]
            for c in columns
        ]  # fmt: skip
        parts.append(note(f"{name}: source value → result, {how}"))
        parts.append(table(head, body))
    summary = "Before → after, per target column"
    return Html(
        f"<details class='dem-before-after' open><summary style='margin:10px 0 4px;"
        f"font-weight:600'>{esc(summary)}</summary>{''.join(parts)}</details>"
    )


def preview_html(
    preview: Preview, plan: Plan, rows: int, before_after: dict[str, Any] | None = None
) -> Html:
    parts = [note(f"Plan applied to the sample rows on local Spark in {preview.seconds:.1f}s.")]
    parts.append(report_html(preview.report))
    parts.append(failing_html(preview))
    for name, frame in preview.tables.items():
        try:
            types = {c.name: c.type for c in plan.table(name).columns}
        except KeyError:
            types = {}
        shown = min(rows, len(frame))
        failing = {(row, f.column): f for f in preview.failing if f.table == name for row in f.rows}
        parts.append(
            heading(
                f"{name}: first {shown} row(s)"
                + (", failing values highlighted" if any(r < shown for r, _ in failing) else "")
            )
        )
        head = [typed_header(str(c), types.get(str(c), "")) for c in frame.columns]
        body = [
            [Html(f"<b style='{REMOVED}'>{cell(v)}</b>") if (i, c) in failing else v
             for c, v in zip(frame.columns, values, strict=True)]
            for i, values in enumerate(frame.head(rows).itertuples(index=False, name=None))
        ]  # fmt: skip
        titles = {r: f"{f.check} failed: {f.column}" for (r, _), f in failing.items()}
        parts.append(table(head, body, marked=titles.keys(), titles=titles))
    if before_after:
        parts.append(before_after_html(before_after))
    return Html("".join(parts))


def failing_html(preview: Preview) -> Html:
    """Each failed check's source values beside what they became (up to 10 each)."""
    parts = []
    for failing in preview.failing:
        title = f"{failing.table}.{failing.column}: {failing.check} failed"
        parts.append(note(title, f"{REMOVED};font-weight:600"))
        parts.append(pre("\n".join(failing.lines), MARKED))
    if not parts:
        return Html("")
    return Html(f"<div class='dem-failing'>{''.join(parts)}</div>")


def failures_text(report: ValidationReport) -> str:
    """The failed checks as one chat line, so they can be answered with a revision."""
    return "; ".join(f"{c.table}.{c.column} [{c.kind}]: {c.message}" for c in report.failures)


def status_html(text: str, *, error: bool = False) -> Html:
    """One line: the errors we raise on purpose render as a single line of text."""
    line = " ".join(text.split())
    return _div(f"⚠ {line}", REMOVED) if error else _div(line, "")


def fields_html(fields: Sequence[tuple[str, object]]) -> Html:
    """Label/value pairs, one per line."""
    rows = "".join(
        f"<tr><td style='{MUTED};padding:1px 12px 1px 0'>{esc(k)}</td><td>{cell(v)}</td></tr>"
        for k, v in fields
    )
    return Html(f"<table style='border-collapse:collapse;font-size:12px'>{rows}</table>")
