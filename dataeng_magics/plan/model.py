"""The transformation plan: the only thing planners (rule-based or LLM) may produce.

A plan is plain typed data. It is rendered as readable pseudocode for review
(``render``) and compiled, deterministically, to PySpark (``dataeng_magics.compile``).
No field is ever pasted into code: names become quoted literals and SQL text is parsed
and re-rendered.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from dataeng_magics.canonical import canonical_json, hashed_form, sha256_text
from dataeng_magics.mapping.model import LayoutField, SourceFormat


class _Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Trim(_Step):
    op: Literal["trim"] = "trim"


class Upper(_Step):
    op: Literal["upper"] = "upper"


class Lower(_Step):
    op: Literal["lower"] = "lower"


class ParseDate(_Step):
    """Parse text written in ``pattern`` (as people write it: DD/MM/YYYY)."""

    op: Literal["parse_date"] = "parse_date"
    pattern: str
    output_pattern: str | None = None  # only used when the target is text


class Multiply(_Step):
    op: Literal["multiply"] = "multiply"
    by: str  # a decimal literal, kept as text so no float rounding creeps in


class Divide(_Step):
    op: Literal["divide"] = "divide"
    by: str


class Round(_Step):
    op: Literal["round"] = "round"
    digits: int = Field(ge=0, le=18)


class Default(_Step):
    """Replace null (and blank text) with ``value``."""

    op: Literal["default"] = "default"
    value: str


class Constant(_Step):
    op: Literal["constant"] = "constant"
    value: str


class MapValues(_Step):
    op: Literal["map"] = "map"
    pairs: list[tuple[str, str]] = Field(min_length=1)
    otherwise: str | None = None


class Concat(_Step):
    op: Literal["concat"] = "concat"
    columns: list[str] = Field(min_length=1)
    separator: str = ""


class Substring(_Step):
    """1-based ``start``; a negative start counts from the end, as Spark does."""

    op: Literal["substring"] = "substring"
    start: int
    length: int = Field(ge=1)


class DigitsOnly(_Step):
    op: Literal["digits"] = "digits"


class Lookup(_Step):
    """Left join ``source`` on the same-named ``key`` column and take ``column``."""

    op: Literal["lookup"] = "lookup"
    column: str
    source: str
    key: str


class Sql(_Step):
    """A Spark SQL expression over the table's source columns."""

    op: Literal["sql"] = "sql"
    expression: str


class Unresolved(_Step):
    """Text no planner could turn into a step; blocks approval until revised."""

    op: Literal["unresolved"] = "unresolved"
    text: str
    reason: str = "not in the rule vocabulary"


Step = Annotated[
    Trim
    | Upper
    | Lower
    | ParseDate
    | Multiply
    | Divide
    | Round
    | Default
    | Constant
    | MapValues
    | Concat
    | Substring
    | DigitsOnly
    | Lookup
    | Sql
    | Unresolved,
    Field(discriminator="op"),
]

#: Steps that produce a value from nothing or from other columns, so the column's own
#: source column (if any) is not read by them.
_PRODUCERS = (Constant, Concat, Lookup, Sql)


class ColumnPlan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: str
    source_column: str | None = None
    steps: list[Step] = []
    required: bool = False
    rule: str = ""  # the mapping's text, kept so reviewers see what it came from

    @property
    def unresolved(self) -> list[Unresolved]:
        return [s for s in self.steps if isinstance(s, Unresolved)]

    @property
    def produces_value(self) -> bool:
        """True when the first step makes the value (constant, concat, lookup, sql)."""
        return bool(self.steps) and isinstance(self.steps[0], _PRODUCERS)

    @property
    def reads_source(self) -> bool:
        """True when the column starts from its own source column."""
        return bool(self.source_column) and not self.produces_value


class FilterPlan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    condition: str
    description: str = ""


CheckAction = Literal["fail", "warn", "quarantine"]
CompareOp = Literal[">", ">=", "<", "<="]


class _Check(BaseModel):
    """A data check on a table's output. ``columns`` are target columns; ``action`` says
    what a failing row does: fail the run, be reported, or go to ``TABLE__rejected``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    columns: list[str] = []
    action: CheckAction = "fail"


class NotNull(_Check):
    kind: Literal["not_null"] = "not_null"


class Unique(_Check):
    """No two rows share the values of ``columns`` (counted on the written output)."""

    kind: Literal["unique"] = "unique"


class OneOf(_Check):
    kind: Literal["one_of"] = "one_of"
    values: list[str] = Field(min_length=1)


class Between(_Check):
    """Inclusive bounds, kept as text (numbers or ISO dates) like ``Multiply.by``."""

    kind: Literal["between"] = "between"
    low: str
    high: str


class Compare(_Check):
    kind: Literal["compare"] = "compare"
    op: CompareOp
    value: str


class Matches(_Check):
    """The whole value matches ``pattern`` (Java regex syntax, as Spark's ``rlike``)."""

    kind: Literal["matches"] = "matches"
    pattern: str


class SqlCheck(_Check):
    """A Spark SQL boolean expression over the table's target columns."""

    kind: Literal["sql"] = "sql"
    expression: str


class TotalEquals(_Check):
    """Reconciliation: sum(target column) = sum(source column) x ``factor`` over the rows
    kept (written plus quarantined), within ``tolerance`` (default: what rounding each
    row to the target type can explain)."""

    kind: Literal["total"] = "total"
    source_column: str
    factor: str = "1"
    tolerance: str | None = None


class LookupDuplicates(_Check):
    """Rows whose lookup key matched several different rows of ``source`` (the compiler
    then takes the smallest row, so the output stays deterministic)."""

    kind: Literal["lookup_duplicates"] = "lookup_duplicates"
    source: str
    key: str
    action: CheckAction = "warn"


Check = Annotated[
    NotNull | Unique | OneOf | Between | Compare | Matches | SqlCheck | TotalEquals
    | LookupDuplicates,
    Field(discriminator="kind"),
]  # fmt: skip
#: Checks a single row can fail, so their failing rows can be quarantined.
ROW_CHECKS = (NotNull, OneOf, Between, Compare, Matches, SqlCheck)


class TablePlan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    source: str  # the source whose rows become this table's rows
    filters: list[FilterPlan] = []
    columns: list[ColumnPlan]
    checks: list[Check] = []


class SourceRead(BaseModel):
    """How a source is read. ``columns`` are the ones the plan uses, with the types the
    sample showed; they make the compiled read schema explicit, so the plan alone
    determines the code. The read options mirror ``SourceSpec``'s."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    format: SourceFormat
    delimiter: str = ","
    header: bool = True
    encoding: str = "utf-8"
    excel_sheet: str | None = None
    columns: dict[str, str] = Field(default_factory=dict)
    record_path: str | None = Field(default=None)
    row_tag: str | None = Field(default=None)
    layout: tuple[LayoutField, ...] = Field(default=())


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    client: str
    sources: dict[str, SourceRead]
    tables: list[TablePlan]
    notes: str = ""

    def sha256(self) -> str:
        """Stable across upgrades: fields added since version 1 count only when set."""
        return sha256_text(canonical_json(hashed_form(self)))

    def unresolved(self) -> list[tuple[str, ColumnPlan, Unresolved]]:
        return [
            (table.name, column, step)
            for table in self.tables
            for column in table.columns
            for step in column.unresolved
        ]

    def table(self, name: str) -> TablePlan:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)
