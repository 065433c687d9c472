"""Plan lint: everything that would make a plan fail to compile or compile to the
wrong thing, found before any code is generated (not the data checks a run counts).

Planners use it to refuse bad drafts and answers; the compiler uses it before it
writes a line; the cache key uses ``used_columns``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from dataeng_magics.compile.safety import TEXT_FORMATS, check_sql, match_column
from dataeng_magics.errors import UnsafePlanError
from dataeng_magics.mapping.model import UNSAFE_TABLE_NAME, normalize_type
from dataeng_magics.plan.checks import check_name
from dataeng_magics.plan.dates import java_date_pattern
from dataeng_magics.plan.model import (
    ROW_CHECKS,
    Between,
    Check,
    ColumnPlan,
    Compare,
    Concat,
    Constant,
    Default,
    Divide,
    Lookup,
    LookupDuplicates,
    Matches,
    Multiply,
    NotNull,
    ParseDate,
    Plan,
    Sql,
    SqlCheck,
    Step,
    TablePlan,
    TotalEquals,
)

#: Names of the helper columns a table's ``select`` carries until its checks are counted
#: (Spark matches names case-insensitively, so a target column may not take one).
HELPER_COLUMN = re.compile(r"_(?:src|miss|chk|lkd|raw)_\d+", re.IGNORECASE)
#: The suffix of the folder a table's quarantined rows go to.
REJECTED_SUFFIX = "__rejected"


@dataclass(frozen=True)
class Problem:
    """One reason a plan cannot compile, located at a table (and column)."""

    table: str
    column: str | None
    message: str
    unsafe: bool = False

    def __str__(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        return f"{where}: {self.message}"


# --- plan checks ------------------------------------------------------------------


def _literal_fits(value: str, type_name: str) -> bool:
    from datetime import date, datetime

    try:
        if type_name.startswith("decimal") or type_name in ("double", "float"):
            Decimal(value)
        elif type_name in ("int", "bigint"):
            int(value)
        elif type_name == "date":
            date.fromisoformat(value)
        elif type_name == "timestamp":
            datetime.fromisoformat(value)
        elif type_name == "boolean":
            return value.strip().lower() in (
                "true",
                "false",
                "t",
                "f",
                "y",
                "n",
                "yes",
                "no",
                "1",
                "0",
            )
    except ValueError:
        return False
    return True


def _column_refs(step: Step) -> list[str]:
    """Source columns of the table's own source a step reads (lookups read another)."""
    if isinstance(step, Concat):
        return list(step.columns)
    if isinstance(step, Lookup):
        return [step.key]
    return []


Schemas = dict[str, dict[str, str]]
#: (message, unsafe): one finding of a step or column check.
Finding = tuple[str, bool]


@dataclass(frozen=True)
class _Scope:
    """What a table's columns are checked against."""

    plan: Plan
    source: str
    columns: dict[str, str]  # the table's source: column -> sample type
    schemas: Schemas
    text_source: bool


def check_plan(plan: Plan, schemas: Schemas) -> list[Problem]:
    """Everything that would make the plan fail to compile or compile to the wrong thing.

    ``schemas`` maps each source to its columns and sample types.
    """
    problems: list[Problem] = []
    seen: set[str] = set()
    for table in plan.tables:
        t = table.name
        problems += [Problem(t, None, m, u) for m, u in _table_findings(table, seen)]
        if table.source not in plan.sources or table.source not in schemas:
            problems.append(Problem(t, None, f"unknown source {table.source!r}"))
            continue
        scope = _Scope(
            plan,
            table.source,
            schemas[table.source],
            schemas,
            plan.sources[table.source].format in TEXT_FORMATS,
        )
        problems += [Problem(t, None, m, u) for m, u in _filter_findings(table, scope)]
        names: set[str] = set()
        for column in table.columns:
            findings = _column_findings(column, names, scope)
            problems += [Problem(t, column.name, m, u) for m, u in findings]
        for check in table.checks:
            findings = _check_findings(check, table, scope)
            problems += [
                Problem(t, None, f"check {check_name(check)!r}: {m}", u) for m, u in findings
            ]
    return problems


def _table_findings(table: TablePlan, seen: set[str]) -> Iterator[Finding]:
    if not table.name.strip() or UNSAFE_TABLE_NAME.search(table.name):
        yield "table name is not allowed (it becomes a folder name)", True
    if table.name.lower().endswith(REJECTED_SUFFIX):
        yield f"table name may not end in {REJECTED_SUFFIX!r} (quarantined rows go there)", False
    if table.name.lower() in seen:
        yield "table appears twice", False
    seen.add(table.name.lower())


def _filter_findings(table: TablePlan, scope: _Scope) -> Iterator[Finding]:
    for f in table.filters:
        try:
            _, refs = check_sql(f.condition, scope.columns, text_source=scope.text_source)
        except UnsafePlanError as exc:
            yield f"filter {f.condition!r}: {exc.message}", True
            continue
        if not refs:
            yield f"filter {f.condition!r} uses no column: it would keep all rows or none", False


def _column_findings(column: ColumnPlan, names: set[str], scope: _Scope) -> Iterator[Finding]:
    c = column.name
    if not c.strip() or any(ord(ch) < 32 for ch in c):
        yield "target column name is empty or has control characters", True
    if c.lower() in names:
        yield "target column appears twice", False
    if HELPER_COLUMN.fullmatch(c):
        yield f"target column name {c!r} is reserved for the compiler's helper columns", False
    names.add(c.lower())
    if normalize_type(column.type) != column.type:
        yield f"unknown target type {column.type!r}", False
    if column.unresolved:
        return  # reported as unresolved, not as a compile problem
    if column.reads_source and column.source_column is not None:
        yield from _source_column_findings(column.source_column, scope)
    elif not column.source_column and not column.produces_value:
        yield "no source column and no rule that produces a value", False
    for step in column.steps:
        check = _STEP_CHECKS.get(type(step))
        if check is not None:
            yield from check(step, scope)
    last = column.steps[-1] if column.steps else None
    value = last.value if isinstance(last, Constant | Default) else None
    if value is not None and column.type != "string" and not _literal_fits(value, column.type):
        yield f"{value!r} is not a valid {column.type}", False


def _source_column_findings(name: str, scope: _Scope) -> Iterator[Finding]:
    if match_column(name, scope.columns) is None:
        close = difflib.get_close_matches(name, list(scope.columns), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        yield f"source column {name!r} is not in {scope.source}{hint}", False


# One small check per step kind that can be wrong in itself; the others cannot.


def _concat_findings(step: Concat, scope: _Scope) -> Iterator[Finding]:
    for ref in step.columns:
        if match_column(ref, scope.columns) is None:
            yield f"column {ref!r} is not in {scope.source}", False


def _lookup_findings(step: Lookup, scope: _Scope) -> Iterator[Finding]:
    if match_column(step.key, scope.columns) is None:
        yield f"column {step.key!r} is not in {scope.source}", False
    other = scope.schemas.get(step.source)
    if other is None or step.source not in scope.plan.sources:
        yield f"lookup source {step.source!r} is unknown", False
        return
    for ref in (step.key, step.column):
        if match_column(ref, other) is None:
            yield f"column {ref!r} is not in {step.source}", False


def _sql_findings(step: Sql, scope: _Scope) -> Iterator[Finding]:
    try:
        check_sql(step.expression, scope.columns, text_source=scope.text_source)
    except UnsafePlanError as exc:
        yield f"sql {step.expression!r}: {exc.message}", True


def _date_findings(step: ParseDate, scope: _Scope) -> Iterator[Finding]:
    try:
        java_date_pattern(step.pattern)
        if step.output_pattern:
            java_date_pattern(step.output_pattern)
    except ValueError as exc:
        yield str(exc), False


def _number_findings(step: Multiply | Divide, scope: _Scope) -> Iterator[Finding]:
    if not re.fullmatch(r"[-+]?[0-9]+(?:\.[0-9]+)?", step.by):
        yield f"{step.by!r} is not a plain decimal number (like 1000 or 0.01)", False
    elif isinstance(step, Divide) and Decimal(step.by) == 0:
        yield "division by zero", False


_STEP_CHECKS: dict[type, Callable[[Any, _Scope], Iterator[Finding]]] = {
    Concat: _concat_findings,
    Lookup: _lookup_findings,
    Sql: _sql_findings,
    ParseDate: _date_findings,
    Multiply: _number_findings,
    Divide: _number_findings,
}


def used_columns(plan: Plan, schemas: Schemas | None = None) -> dict[str, list[str]]:
    """Per source, the columns the plan reads, in first-use order. SQL references are
    resolved against ``schemas`` (the samples) or else the plan's own read schemas."""
    used: dict[str, list[str]] = {name: [] for name in plan.sources}

    def add(source: str, name: str) -> None:
        if source in used and name not in used[source]:
            used[source].append(name)

    for table in plan.tables:
        read = plan.sources.get(table.source)
        cols = (schemas or {}).get(table.source) or (read.columns if read else {})
        text_source = (
            table.source in plan.sources and plan.sources[table.source].format in TEXT_FORMATS
        )
        for f in table.filters:
            for ref in _safe_refs(f.condition, cols, text_source):
                add(table.source, ref)
        for column in table.columns:
            if column.reads_source and column.source_column:
                add(table.source, column.source_column)
            for step in column.steps:
                for ref in _column_refs(step):
                    add(table.source, ref)
                if isinstance(step, Lookup):
                    add(step.source, step.key)
                    add(step.source, step.column)
                if isinstance(step, Sql):
                    for ref in _safe_refs(step.expression, cols, text_source):
                        add(table.source, ref)
    return used


def _safe_refs(sql: str, columns: dict[str, str], text_source: bool) -> list[str]:
    try:
        return check_sql(sql, columns, text_source=text_source)[1]
    except UnsafePlanError:
        return []


# --- data checks ------------------------------------------------------------------


def target_schema(table: TablePlan) -> dict[str, str]:
    """The table's output columns and types: what checks (and ``sql:`` checks) read."""
    return {c.name: c.type for c in table.columns}


def published_tables(plan: Plan) -> tuple[str, ...]:
    """Every table a run writes, in plan order: each target table, then its
    ``__rejected`` rows when a check quarantines. Publishers that move tables by name
    (Delta) publish exactly these, so quarantined rows are never left in staging."""
    names: list[str] = []
    for table in plan.tables:
        names.append(table.name)
        if any(check.action == "quarantine" for check in table.checks):
            names.append(table.name + REJECTED_SUFFIX)
    return tuple(names)


def refused_nulls(table: TablePlan) -> list[str]:
    """The table's columns a published run holds no null in, in column order: a required
    column (a null fails the run) and a ``not null`` check that fails the run or
    quarantines the row. The only columns a written schema may declare NOT NULL; a
    ``warn`` check lets nulls through, so it does not count."""
    schema = target_schema(table)
    refused = {c.name for c in table.columns if c.required}
    for check in table.checks:
        if isinstance(check, NotNull) and check.action in ("fail", "quarantine"):
            refused.update(match_column(c, schema) or c for c in check.columns)
    return [c.name for c in table.columns if c.name in refused]


def java_regex_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a valid Java regex, for the common subset, without a JVM
    (Spark checks the rest on the preview): Python's ``re`` after mapping the Java-only
    spellings (``\\p{Alpha}``, ``(?<name>``) to equivalents."""
    if "(?P" in pattern:
        return "(?P...) is Python syntax; Java writes named groups as (?<name>...)"
    translated = re.sub(r"\\[pP]\{\w+\}", "x", pattern)
    translated = re.sub(r"\(\?<(?=[A-Za-z])", "(?P<", translated)
    try:
        re.compile(translated)
    except re.error as exc:
        return f"invalid regex: {exc}"
    return None


def _check_findings(check: Check, table: TablePlan, scope: _Scope) -> Iterator[Finding]:
    schema = target_schema(table)
    for name in check.columns:
        if match_column(name, schema) is None:
            close = difflib.get_close_matches(name, list(schema), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            yield f"column {name!r} is not a column of {table.name}{hint}", False
    if check.action == "quarantine" and not isinstance(check, ROW_CHECKS):
        yield "only checks of single rows can quarantine; use fail or warn", False
    if not check.columns and not isinstance(check, SqlCheck | LookupDuplicates):
        yield "name the column it checks", False
    types = [schema.get(match_column(c, schema) or c, "string") for c in check.columns]
    match check:
        case Compare(value=v) | Between(low=v):
            bounds = [v, check.high] if isinstance(check, Between) else [v]
            for bound, type_name in ((b, t) for b in bounds for t in types):
                if type_name != "string" and not _literal_fits(bound, type_name):
                    yield f"{bound!r} is not a valid {type_name}", False
        case Matches(pattern=p):
            problem = java_regex_problem(p)
            if problem:
                yield problem, False
        case SqlCheck(expression=e):
            try:
                check_sql(e, schema, text_source=False)
            except UnsafePlanError as exc:
                yield f"sql {e!r}: {exc.message}", True
        case TotalEquals(source_column=c, factor=f, tolerance=tol):
            if match_column(c, scope.columns) is None:
                yield f"source column {c!r} is not in {scope.source}", False
            for number in [f, *([tol] if tol is not None else [])]:
                if not re.fullmatch(r"[-+]?[0-9]+(?:\.[0-9]+)?", number):
                    yield f"{number!r} is not a plain decimal number", False
            if any(t not in ("int", "bigint", "double", "float") and not t.startswith("decimal")
                   for t in types):  # fmt: skip
                yield "a total needs a numeric target column", False
        case LookupDuplicates(source=src, key=key):
            lookups = {(s.source, s.key.lower()) for c in table.columns for s in c.steps
                       if isinstance(s, Lookup)}  # fmt: skip
            if (src, key.lower()) not in lookups:
                yield f"{table.name} has no lookup from {src!r} on {key!r}", False
