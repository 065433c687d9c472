"""The parsed mapping: plain data shared by mapping, sampling, the planners and the key.

Kept apart from ``mapping.py`` (which reads workbooks) so code that only needs the
shapes does not import openpyxl.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SourceFormat = Literal["csv", "parquet", "excel", "json", "xml", "fixed-width"]

#: Target types the mapping may name, in their canonical Spark spelling.
SIMPLE_TYPES = {
    "string": "string",
    "str": "string",
    "varchar": "string",
    "text": "string",
    "int": "int",
    "integer": "int",
    "bigint": "bigint",
    "long": "bigint",
    "double": "double",
    "float": "float",
    "date": "date",
    "timestamp": "timestamp",
    "datetime": "timestamp",
    "boolean": "boolean",
    "bool": "boolean",
    "decimal": "decimal(38,18)",
}
#: Table names become folder names: no separators, control characters or "..".
UNSAFE_TABLE_NAME = re.compile(r"[/\\\x00-\x1f]|^\.|\.\.")
DECIMAL_RE = re.compile(r"^(?:decimal|numeric|number)\s*\(\s*(\d{1,2})\s*(?:,\s*(\d{1,2})\s*)?\)$")


def normalize_type(text: str) -> str | None:
    """Canonical Spark type name for a mapping's type cell, or None if unknown."""
    cleaned = " ".join(str(text).strip().lower().split())
    if cleaned in SIMPLE_TYPES:
        return SIMPLE_TYPES[cleaned]
    match = DECIMAL_RE.match(cleaned)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2) or 0)
        if 1 <= precision <= 38 and scale <= precision:
            return f"decimal({precision},{scale})"
    return None


class Located(BaseModel):
    """Where a row came from, so errors can point at it. Not part of the cache key."""

    model_config = ConfigDict(frozen=True)

    sheet: str | None = Field(default=None, exclude=True)
    row: int | None = Field(default=None, exclude=True)


class LayoutField(Located):
    """One field of a fixed-width record: ``length`` characters from 1-based ``start``.
    ``file`` and ``column`` (the workbook, the Start/Length cell's header) locate errors."""

    name: str
    start: int = Field(ge=1)
    length: int = Field(ge=1)
    file: str | None = Field(default=None, exclude=True)
    column: str | None = Field(default=None, exclude=True)

    @property
    def end(self) -> int:
        """The last character's position, inclusive."""
        return self.start + self.length - 1


class SourceSpec(Located):
    """A source (a file, a folder of parts or a glob) and how to read it.

    ``path`` may name one file, a folder or a glob (``prices/*.csv.gz``): every matching
    file is part of the source. ``record_path`` (json) is the dotted path to the array of
    records inside one JSON document (``$`` for a top-level array); without it json means
    JSON Lines. ``row_tag`` (xml) names the element that is one record. ``layout``
    (fixed-width) gives each field's position.
    """

    name: str
    path: str = Field(exclude=True)  # where it is read from changes per run; not in the key
    #: A secret query split off the path (a SAS token): given at run time, kept in memory,
    #: never shown, stored or written into code (``sources.credentials``).
    credential: str = Field(default="", exclude=True, repr=False)
    format: SourceFormat
    delimiter: str = ","
    header: bool = True
    encoding: str = "utf-8"
    excel_sheet: str | None = None
    record_path: str | None = Field(default=None)
    row_tag: str | None = Field(default=None)
    layout: tuple[LayoutField, ...] = Field(default=())

    @property
    def url(self) -> str:
        """Where a reader opens the source: the path with its credential (memory only)."""
        return f"{self.path}?{self.credential}" if self.credential else self.path


class TargetColumn(Located):
    table: str
    name: str
    type: str
    source: str | None = None
    source_column: str | None = None
    rule: str = ""
    required: bool = False
    default: str | None = None
    comment: str | None = Field(default=None, exclude=True)
    validation: str | None = None  # a check phrase from the Validation column (action fail)


class FilterSpec(Located):
    table: str
    condition: str
    description: str | None = Field(default=None, exclude=True)
    # the Target Table and Condition cells' columns ("Condition (B)"), to locate errors
    table_column: str | None = Field(default=None, exclude=True)
    condition_column: str | None = Field(default=None, exclude=True)


class CheckSpec(Located):
    """A row of the Checks sheet: ``check`` (a phrase of ``plan.checks``) over target
    ``columns`` of ``table``, with its On Failure ``action`` (fail, warn, quarantine)."""

    table: str
    columns: list[str] = []
    check: str
    action: Literal["fail", "warn", "quarantine"] = "fail"


class Mapping(BaseModel):
    """A whole workbook, parsed and checked. ``model_dump()`` is its key content."""

    model_config = ConfigDict(frozen=True)

    file: str = Field(exclude=True)
    targets: list[TargetColumn]
    sources: dict[str, SourceSpec]
    filters: list[FilterSpec] = []
    # What the reader left out on purpose (hidden sheets), shown with the draft.
    warnings: tuple[str, ...] = Field(default=(), exclude=True)
    checks: list[CheckSpec] = []

    def tables(self) -> dict[str, list[TargetColumn]]:
        """Target tables in workbook order, each with its columns in workbook order."""
        out: dict[str, list[TargetColumn]] = {}
        for column in self.targets:
            out.setdefault(column.table, []).append(column)
        return out
