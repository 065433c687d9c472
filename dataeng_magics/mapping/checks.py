"""The workbook's data checks: the optional Checks sheet and the Validation column.

The Checks sheet (``Target Table, Column, Check, On Failure``; Validation for Check and
Action for On Failure) is recognised by its Check and On Failure headers, so it is never
taken for a mapping sheet. Every phrase is parsed here, so a bad one is reported at its
file, sheet, row and column like every other cell.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from dataeng_magics.errors import MappingError
from dataeng_magics.mapping.model import CheckSpec, TargetColumn

if TYPE_CHECKING:
    from dataeng_magics.mapping.read import _Sheet

CHECK_HEADERS: dict[str, tuple[str, ...]] = {
    "table": ("target table", "table", "output table", "target entity"),
    "columns": ("column", "columns", "target column", "target columns", "field"),
    "check": ("check", "validation", "data check", "validation check", "test"),
    "action": ("on failure", "action", "on fail", "if it fails", "severity"),
}
#: The mapping sheet's Validation column (a check phrase, action fail).
VALIDATION_HEADERS = (
    "validation", "validation rule", "data check", "data quality check", "dq check",
)  # fmt: skip


def parse_checks(
    sheet: _Sheet, header_index: int, fields: dict[str, tuple[int, str]]
) -> list[CheckSpec]:
    from dataeng_magics.mapping.read import _col, _records
    from dataeng_magics.plan.checks import action_of, parse_check

    specs = []
    table = ""
    for row, rec in _records(sheet, header_index, fields):
        table = rec.get("table") or table
        if not rec.get("check"):
            raise sheet.error(
                "check is empty", row=row, column=_col(fields, "check"),
                hint="Write a check (e.g. not null, > 0) or delete the row.",
            )  # fmt: skip
        if not table:
            raise sheet.error("check has no target table", row=row, column=_col(fields, "table"))
        try:
            action = action_of(rec.get("action", ""))
        except ValueError as exc:
            raise sheet.error(str(exc), row=row, column=_col(fields, "action")) from None
        columns = [c for c in re.split(r"\s*,\s*", rec.get("columns", "")) if c]
        try:
            parse_check(rec["check"], columns, action)
        except ValueError as exc:
            raise sheet.error(str(exc), row=row, column=_col(fields, "check")) from None
        specs.append(CheckSpec(sheet=sheet.name, row=row, table=table, columns=columns,
                               check=rec["check"], action=action))  # fmt: skip
    return specs


def validation_check(sheet: _Sheet, text: str, column: str, row: int, header: str) -> None:
    """Refuse a Validation cell that is not a check phrase, at its cell."""
    from dataeng_magics.plan.checks import parse_check  # the plan imports mapping.model

    try:
        parse_check(text, [column])
    except ValueError as exc:
        raise sheet.error(str(exc), row=row, column=header) from None


def check_tables(file: str, specs: list[CheckSpec], targets: list[TargetColumn]) -> None:
    """Every check names a known table and that table's columns."""
    tables: dict[str, set[str]] = {}
    for t in targets:
        tables.setdefault(t.table, set()).add(t.name.lower())
    for spec in specs:
        if spec.table not in tables:
            raise MappingError(f"check names unknown target table {spec.table!r}", file=file,
                               sheet=spec.sheet, row=spec.row, column="Target Table",
                               hint=f"Known tables: {', '.join(sorted(tables))}.")  # fmt: skip
        for column in spec.columns:
            if column.lower() not in tables[spec.table]:
                raise MappingError(
                    f"check names unknown column {column!r} of table {spec.table!r}",
                    file=file, sheet=spec.sheet, row=spec.row, column="Column",
                    hint="Name a target column of that table.",
                )  # fmt: skip
