"""The transformation plan: the only thing planners (rule-based or LLM) may produce.

A plan is plain typed data. It is rendered as readable pseudocode for review and
compiled, deterministically, to PySpark by ``compile.py``. No field is ever pasted
into code: names become quoted literals and SQL text is parsed and re-rendered.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from dataeng_magics.models import SourceFormat


def canonical_json(data: Any) -> str:
    """One spelling per value, so hashes are stable across runs and machines."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
PRODUCERS = (Constant, Concat, Lookup, Sql)


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


class FilterPlan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    condition: str
    description: str = ""


class TablePlan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    source: str  # the source whose rows become this table's rows
    filters: list[FilterPlan] = []
    columns: list[ColumnPlan]


class SourceRead(BaseModel):
    """How a source is read. ``columns`` are the ones the plan uses, with the types the
    sample showed; they make the compiled read schema explicit, so the plan alone
    determines the code."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: SourceFormat
    delimiter: str = ","
    header: bool = True
    encoding: str = "utf-8"
    excel_sheet: str | None = None
    columns: dict[str, str] = {}


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    client: str
    sources: dict[str, SourceRead]
    tables: list[TablePlan]
    notes: str = ""

    def sha256(self) -> str:
        return sha256_text(canonical_json(self.model_dump(mode="json")))

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


# --- pseudocode -------------------------------------------------------------------


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


def column_line(column: ColumnPlan) -> str:
    origin = _q(column.source_column) if column.source_column else "-"
    steps = ", then ".join(describe_step(s) for s in column.steps) or "copy"
    if not column.source_column and column.steps and isinstance(column.steps[0], PRODUCERS):
        origin = "-"
    flag = " [required]" if column.required else ""
    return f"{column.name} ({column.type}){flag} <- {origin}: {steps}"


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
    return "\n".join(lines) + "\n"


def plan_diff(before: Plan, after: Plan) -> list[str]:
    """What a revision changed, as +/- pseudocode lines (empty when nothing changed)."""
    old = render_pseudocode(before).splitlines()
    new = render_pseudocode(after).splitlines()
    return [
        line
        for line in difflib.unified_diff(old, new, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
