"""Deterministic output checks, read from the counts the compiled code observed.

The compiled cell gathers every count during its single write pass (``Observation``),
so validating a 10 GB output costs nothing extra. This module only interprets them:
``null:COL`` (a required column has nulls), ``lost:COL`` (values present in the
source became null through a parse or cast: the sign of a wrong date pattern) and
``unmatched:KEY`` (lookup keys with no match, a warning) and ``malformed:SOURCE``
(records the reader could not parse: the run fails rather than drop them silently).

With the plan it also reads the plan's data checks (``check:N``, with up to ten
examples ``examples:N``, or the ``example_min:N``/``example_max:N`` pair that code
approved before them gathers; and the reconciliation sums
``total_target:N``/``total_source:N``), the row accounting
(``rows_read`` = written + ``quarantined`` + ``dropped:N`` per filter) and, with the
run's control totals, the source sums ``sum:COLUMN``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Literal

from dataeng_magics.errors import ConfigError

if TYPE_CHECKING:
    from dataeng_magics.plan.model import Plan, TablePlan

Severity = Literal["error", "warning"]

_KINDS: dict[str, tuple[str, Severity, str]] = {
    "null": ("required", "error", "{n} null value(s) in a required column"),
    "lost": (
        "conversion",
        "error",
        "{n} value(s) present in the source became null (check the rule, pattern or type)",
    ),
    "unmatched": ("lookup", "warning", "{n} row(s) found no match in the lookup"),
    "malformed": (
        "malformed",
        "error",
        "{n} malformed record(s) in this source (wrong number of fields, broken quoting or "
        "a record cut short), counted before any filter",
    ),
}


@dataclass(frozen=True)
class Check:
    table: str
    column: str
    kind: str
    failed: int
    severity: Severity
    detail: str = ""  # where to look: for malformed records, the file and the first bad line
    name: str = ""  # a plan check's name (``AMOUNT > 0``); its kind's message otherwise
    action: str = ""  # a plan check's action: fail, warn, quarantine
    examples: tuple[str, ...] = ()  # failing values, as ``-12.5 (source '-12,500')``
    text: str = ""  # the message, for checks whose kind has no fixed one

    @property
    def passed(self) -> bool:
        return self.failed == 0

    @property
    def message(self) -> str:
        if self.passed:
            return "ok"
        if self.text:
            return self.text
        if self.kind not in _KINDS_BY_NAME:
            examples = f", e.g. {'; '.join(self.examples)}" if self.examples else ""
            verb = {"quarantine": "quarantined", "warn": "reported"}.get(self.action, "failed")
            return f"{self.name} in {self.failed} row(s), {verb}{examples}"
        text = _KINDS_BY_NAME[self.kind][2].format(n=self.failed)
        return f"{text}; {self.detail}" if self.detail else text


_KINDS_BY_NAME = {name: value for value in _KINDS.values() for name in [value[0]]}


@dataclass
class TableReport:
    table: str
    rows_read: int
    rows_written: int
    checks: list[Check] = field(default_factory=list)
    quarantined: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # filter -> rows it dropped


@dataclass
class ValidationReport:
    tables: list[TableReport]

    @property
    def failures(self) -> list[Check]:
        return [c for t in self.tables for c in t.checks if not c.passed and c.severity == "error"]

    @property
    def warnings(self) -> list[Check]:
        return [
            c for t in self.tables for c in t.checks if not c.passed and c.severity == "warning"
        ]

    @property
    def passed(self) -> bool:
        return not self.failures

    def counts(self) -> tuple[int, int]:
        """(checks passed, checks failed)."""
        checks = [c for t in self.tables for c in t.checks]
        return sum(c.passed for c in checks), sum(not c.passed for c in checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "tables": [
                {
                    "table": t.table,
                    "rows_read": t.rows_read,
                    "rows_written": t.rows_written,
                    **({"quarantined": t.quarantined} if t.quarantined else {}),
                    **({"dropped": t.dropped} if t.dropped else {}),
                    "checks": [
                        {
                            "column": c.column,
                            "kind": c.kind,
                            "failed": c.failed,
                            "severity": c.severity,
                            **({"detail": c.detail} if c.detail else {}),
                            **({"name": c.name, "action": c.action} if c.name else {}),
                            **({"examples": list(c.examples)} if c.examples else {}),
                            **({"message": c.message} if c.text and not c.passed else {}),
                        }
                        for c in t.checks
                    ],
                }
                for t in self.tables
            ],
        }

    def to_text(self) -> str:
        lines = []
        for t in self.tables:
            ok = sum(c.passed for c in t.checks)
            lines.append(
                f"{t.table}: {t.rows_read} rows read, {t.rows_written} written, "
                f"{ok}/{len(t.checks)} checks passed"
            )
            for c in t.checks:
                if not c.passed:
                    mark = "FAIL" if c.severity == "error" else "WARN"
                    lines.append(f"  {mark} {c.column} [{c.kind}]: {c.message}")
        return "\n".join(lines)


@dataclass(frozen=True)
class Control:
    """A control total the client sent: ``source.rows`` = N or ``source.COLUMN`` = total,
    within ``tolerance``."""

    source: str
    column: str | None  # None: the record count
    expected: Decimal
    tolerance: Decimal = Decimal(0)

    @property
    def label(self) -> str:
        return f"{self.source}.{self.column or 'rows'}"


_CONTROL = re.compile(r"\s*([-+]?[0-9]+(?:\.[0-9]+)?)\s*(?:(?:\+-|±)\s*([0-9]+(?:\.[0-9]+)?))?\s*")


def parse_controls(controls: Mapping[str, str] | None, plan: Plan) -> list[Control]:
    """``{"trades.rows": "4610", "trades.AMOUNT": "1234.50+-0.01"}`` checked against the
    plan: the source must give a table its rows, the column must be one the plan reads."""
    from dataeng_magics.compile.safety import match_column

    parsed = []
    driving = {t.source for t in plan.tables}
    for key, value in (controls or {}).items():
        source, _, column = key.rpartition(".")
        match = _CONTROL.fullmatch(str(value))
        hint = "Write --control SOURCE.rows=N or --control SOURCE.COLUMN=TOTAL[+-TOLERANCE]."
        if not source or match is None:
            raise ConfigError(f"control {key}={value}: not understood", hint=hint)
        if source not in driving:
            raise ConfigError(
                f"control {key}: {source!r} is not a source a table reads its rows from "
                f"(those are {', '.join(sorted(driving))})", hint=hint,
            )  # fmt: skip
        name: str | None = None
        if column.lower() != "rows":
            name = match_column(column, dict(plan.sources[source].columns))
            if name is None:
                raise ConfigError(
                    f"control {key}: the approved plan does not read column {column!r} of "
                    f"{source!r}", hint="Name a column the plan reads.",
                )  # fmt: skip
        parsed.append(Control(source, name, Decimal(match.group(1)), Decimal(match.group(2) or 0)))
    return parsed


def control_columns(controls: list[Control]) -> dict[str, list[str]]:
    """The run parameter telling the compiled code which columns to sum, per source."""
    out: dict[str, list[str]] = {}
    for c in controls:
        if c.column and c.column not in out.setdefault(c.source, []):
            out[c.source].append(c.column)
    return out


def _decimal(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except InvalidOperation:
        return None


def _default_tolerance(type_name: str, rows: int) -> Decimal:
    """What rounding each row to the target type can explain: half a unit of the last
    digit per row."""
    found = re.fullmatch(r"decimal\(\d+,(\d+)\)", type_name)
    if found:
        return Decimal(rows) * Decimal(5) * Decimal(10) ** -(int(found.group(1)) + 1)
    if type_name in ("int", "bigint"):
        return Decimal(rows) / 2
    return Decimal("1e-6") * max(rows, 1)


def _plan_checks(table: TablePlan, metrics: Mapping[str, Any], rows: int) -> list[Check]:
    from dataeng_magics.plan.checks import check_name
    from dataeng_magics.plan.model import TotalEquals

    out = []
    for index, check in enumerate(table.checks, start=1):
        severity: Severity = "error" if check.action == "fail" else "warning"
        name = check_name(check)
        if isinstance(check, TotalEquals):
            target = _decimal(metrics.get(f"total_target:{index}")) or Decimal(0)
            source = (_decimal(metrics.get(f"total_source:{index}")) or Decimal(0)) * Decimal(
                check.factor
            )
            column = next(
                (c for c in table.columns if c.name.lower() == check.columns[0].lower()), None
            )
            tolerance = (
                Decimal(check.tolerance)
                if check.tolerance is not None
                else _default_tolerance(column.type if column else "double", rows)
            )
            off = abs(target - source) > tolerance
            text = (f"{name}: the target total is {target}, the source total x {check.factor} is "
                    f"{source} (difference {target - source}, tolerance {tolerance})")  # fmt: skip
            out.append(Check(table.name, ", ".join(check.columns), check.kind, int(off), severity,
                             name=name, action=check.action, text=text))  # fmt: skip
            continue
        if f"check:{index}" not in metrics:
            continue
        stored = str(metrics.get(f"examples:{index}") or "")
        examples = tuple(stored.split("\x1f")) if stored else tuple(
            dict.fromkeys(
                str(metrics[k]) for k in (f"example_min:{index}", f"example_max:{index}")
                if metrics.get(k) not in (None, "")
            )
        )  # fmt: skip
        out.append(Check(table.name, ", ".join(check.columns), check.kind,
                         int(metrics[f"check:{index}"] or 0), severity, name=name,
                         action=check.action, examples=examples))  # fmt: skip
    return out


def evaluate(
    run_metrics: dict[str, dict[str, Any]],
    plan: Plan | None = None,
    controls: list[Control] | None = None,
) -> ValidationReport:
    """Turn ``run_metrics`` (as left by the compiled cell) into a report; with the
    ``plan``, its data checks and the row accounting, and the run's ``controls``."""
    tables_by_name = {t.name: t for t in plan.tables} if plan else {}
    tables = []
    for table, metrics in run_metrics.items():
        report = TableReport(
            table, int(metrics.get("rows_read", 0)), int(metrics.get("rows_written", 0)),
            quarantined=int(metrics.get("quarantined", 0)),
            dropped={k.partition(":")[2]: int(v) for k, v in metrics.items()
                     if k.startswith("dropped:")},
        )  # fmt: skip
        for name, value in metrics.items():
            prefix, _, column = name.partition(":")
            if prefix in _KINDS:
                kind, severity, _ = _KINDS[prefix]
                report.checks.append(Check(table, column, kind, int(value or 0), severity))
            elif prefix == "lookup_dup":
                report.checks.append(Check(
                    table, column, "lookup_duplicates", int(value or 0), "warning",
                    name=f"duplicated lookup keys in {column}", action="warn",
                ))  # fmt: skip
        plan_table = tables_by_name.get(table)
        if plan_table is not None:
            conditions = {str(n): f.condition for n, f in enumerate(plan_table.filters, start=1)}
            report.dropped = {conditions.get(k, k): v for k, v in report.dropped.items()}
            kept = report.rows_written + report.quarantined
            report.checks.extend(_plan_checks(plan_table, metrics, kept))
            if report.dropped or not plan_table.filters:
                accounted = kept + sum(report.dropped.values())
                text = (f"rows do not add up: {report.rows_read} read, {report.rows_written} "
                        f"written + {report.quarantined} quarantined + "
                        f"{sum(report.dropped.values())} dropped = {accounted}")  # fmt: skip
                off = int(accounted != report.rows_read)
                report.checks.append(Check(table, "", "accounting", off, "error", text=text))
        tables.append(report)
    for control in controls or []:
        driven = next(t for t in (plan.tables if plan else []) if t.source == control.source)
        metrics = run_metrics.get(driven.name, {})
        if control.column is None:
            actual: Decimal | None = Decimal(int(metrics.get("rows_read", 0)))
        else:
            actual = _decimal(metrics.get(f"sum:{control.column}"))
        off = actual is None or abs(actual - control.expected) > control.tolerance
        text = (f"control total {control.label}: expected {control.expected}"
                f"{f' +- {control.tolerance}' if control.tolerance else ''}, the source as read "
                f"gives {actual if actual is not None else 'no number'}")  # fmt: skip
        report_of = next(r for r in tables if r.table == driven.name)
        report_of.checks.append(Check(driven.name, control.column or "rows", "control", int(off),
                                      "error", text=text))  # fmt: skip
    return ValidationReport(tables)
