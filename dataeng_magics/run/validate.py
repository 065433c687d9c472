"""Deterministic output checks, read from the counts the compiled code observed.

The compiled cell gathers every count during its single write pass (``Observation``),
so validating a 10 GB output costs nothing extra. This module only interprets them:
``null:COL`` (a required column has nulls), ``lost:COL`` (values present in the
source became null through a parse or cast: the sign of a wrong date pattern) and
``unmatched:KEY`` (lookup keys with no match, a warning) and ``malformed:SOURCE``
(records the reader could not parse: the run fails rather than drop them silently).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

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

    @property
    def passed(self) -> bool:
        return self.failed == 0

    @property
    def message(self) -> str:
        if self.passed:
            return "ok"
        text = _KINDS_BY_NAME[self.kind][2].format(n=self.failed)
        return f"{text}; {self.detail}" if self.detail else text


_KINDS_BY_NAME = {name: value for value in _KINDS.values() for name in [value[0]]}


@dataclass
class TableReport:
    table: str
    rows_read: int
    rows_written: int
    checks: list[Check] = field(default_factory=list)


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
                    "checks": [
                        {
                            "column": c.column,
                            "kind": c.kind,
                            "failed": c.failed,
                            "severity": c.severity,
                            **({"detail": c.detail} if c.detail else {}),
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


def evaluate(run_metrics: dict[str, dict[str, Any]]) -> ValidationReport:
    """Turn ``run_metrics`` (as left by the compiled cell) into a report."""
    tables = []
    for table, metrics in run_metrics.items():
        report = TableReport(
            table, int(metrics.get("rows_read", 0)), int(metrics.get("rows_written", 0))
        )
        for name, value in metrics.items():
            prefix, _, column = name.partition(":")
            if prefix in _KINDS:
                kind, severity, _ = _KINDS[prefix]
                report.checks.append(Check(table, column, kind, int(value or 0), severity))
        tables.append(report)
    return ValidationReport(tables)
