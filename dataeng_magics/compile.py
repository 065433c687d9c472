"""Plan -> PySpark source, deterministically, plus the safety checks around it.

The compiler is the only producer of code. It never pastes plan text into code:
names become string literals (``repr``), SQL fragments are parsed with sqlglot, checked
against the source schema and a deny-list, and re-rendered from the parsed tree; and
the finished source must pass an AST allow-list before anyone caches or runs it.

The generated cell expects ``spark`` plus three parameters (``source_paths``,
``output_dir``, ``output_format``) that change from run to run without changing the
approved logic. It leaves ``run_metrics`` behind: row counts and check counts gathered
with ``Observation`` during the write, so checking the output costs no extra pass.
"""

from __future__ import annotations

import ast
import builtins
import difflib
import re
from dataclasses import dataclass
from decimal import Decimal
from keyword import kwlist
from typing import Any

from dataeng_magics.errors import PlanError, UnsafePlanError
from dataeng_magics.models import normalize_type
from dataeng_magics.plan import (
    PRODUCERS,
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
    TablePlan,
    Trim,
    Upper,
    sha256_text,
)
from dataeng_magics.rules import has_time, java_date_pattern

#: Functions that reach the JVM, the file system, the network, secrets or external models.
DENIED_FUNCTIONS = frozenset(
    {
        "reflect",
        "java_method",
        "try_reflect",
        "http_request",
        "secret",
        "try_secret",
        "read_files",
        "read_kafka",
        "read_kinesis",
        "read_pubsub",
        "read_pulsar",
        "read_statestore",
        "cloud_files_state",
        "vector_search",
        "ai_query",
        "ai_generate",
        "ai_classify",
        "ai_extract",
        "ai_fix_grammar",
        "ai_forecast",
        "ai_gen",
        "ai_mask",
        "ai_similarity",
        "ai_summarize",
        "ai_translate",
        "ai_analyze_sentiment",
        "ai_parse_document",
        "xpath",
        "xpath_boolean",
        "xpath_double",
        "xpath_float",
        "xpath_int",
        "xpath_long",
        "xpath_number",
        "xpath_short",
        "xpath_string",
        "input_file_name",
        "input_file_block_start",
        "input_file_block_length",
        "current_user",
        "session_user",
        "user",
        "uuid",
        "rand",
        "randn",
        "random",
        "shuffle",
        "identifier",
    }
)
#: Generators and aggregates: they would change the row count inside the single select.
ROW_CHANGING = frozenset({"explode", "explode_outer", "posexplode", "posexplode_outer", "inline",
                          "inline_outer", "stack", "json_tuple"})  # fmt: skip
#: Sample types that text sources (CSV, Excel) are read as text for; SQL sees them typed.
TEXT_FORMATS = ("csv", "excel")
SQL_TYPE_OF_SAMPLE = {
    "bigint": "BIGINT",
    "int": "INT",
    "double": "DECIMAL(38,10)",
    "float": "DECIMAL(38,10)",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
}
PARAMETERS = ("source_paths", "output_dir", "output_format")
NUMERIC_WORK_TYPE = "decimal(38,10)"
#: Names of the helper columns a table's ``select`` carries until its checks are counted
#: (Spark matches names case-insensitively, so a target column may not take one).
HELPER_COLUMN = re.compile(r"_(?:src|miss)_\d+", re.IGNORECASE)


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


# --- quoting ----------------------------------------------------------------------


def py_str(text: str) -> str:
    """A Python string literal for ``text``; never anything else."""
    literal = repr(str(text))
    if literal.startswith("'") and '"' not in text:
        literal = '"' + literal[1:-1].replace("\\'", "'") + '"'
    return literal


def comment_text(text: str) -> str:
    """``text`` for a ``#`` comment: as written when it is one printable line, else a
    quoted literal, since a line break would end the comment and start code."""
    return text if text.isprintable() else py_str(text)


def sql_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def col_ref(name: str) -> str:
    return f"F.col({py_str(sql_ident(name))})"


# --- SQL fragments ----------------------------------------------------------------


def _match_column(name: str, columns: dict[str, str]) -> str | None:
    if name in columns:
        return name
    folded = [c for c in columns if c.lower() == name.lower()]  # Spark resolves case-insensitively
    return folded[0] if len(folded) == 1 else None


def check_sql(
    text: str, columns: dict[str, str], *, text_source: bool = False
) -> tuple[str, list[str]]:
    """Parse one Spark SQL expression, check it and render it again.

    Returns (canonical SQL, referenced columns). Raises UnsafePlanError for anything that
    is not a plain expression over ``columns`` with allowed functions. When the source is
    read as text, references to columns the sample showed as numbers, booleans or dates
    are wrapped in ``try_cast`` so arithmetic and comparisons behave as the author meant.
    """
    from sqlglot import exp

    tree = parse_safe_sql(text)
    referenced: list[str] = []
    for node in tree.walk():
        if isinstance(node, exp.Column):
            found = _match_column(node.name, columns)
            if found is None:
                folded = {c.lower(): c for c in columns}  # Spark ignores case; so do hints
                close = difflib.get_close_matches(node.name.lower(), list(folded), n=1)
                hint = f"; did you mean {folded[close[0]]!r}?" if close else ""
                raise UnsafePlanError(f"column {node.name!r} is not in the source{hint}")
            referenced.append(found)

    def retype(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column):
            found = _match_column(node.name, columns) or node.name
            ident = exp.column(exp.to_identifier(found, quoted=True))
            sql_type = SQL_TYPE_OF_SAMPLE.get(columns.get(found, "string")) if text_source else None
            if sql_type:
                return exp.TryCast(this=ident, to=_try_cast_sql(sql_type), safe=True)
            return ident
        return node

    # Rendered from the tree alone: comments are dropped, so only checked SQL reaches Spark.
    canonical = tree.transform(retype).sql(dialect="spark", comments=False)
    _no_substitution(canonical)
    return canonical, list(dict.fromkeys(referenced))


def _no_substitution(text: str) -> None:
    # Spark's parser replaces ${env:X}, ${system:X} and ${conf} in the text before parsing,
    # even inside string literals: that would copy secrets into the output.
    if "${" in text:
        raise UnsafePlanError("'${' is not allowed in rules (Spark substitutes variables there)")


def parse_safe_sql(text: str) -> Any:
    """Parse one Spark SQL expression and refuse anything but a plain expression with
    allowed functions and unqualified columns. Returns the sqlglot tree."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    if not text.strip():
        raise UnsafePlanError("empty SQL expression")
    _no_substitution(text)
    try:
        tree = sqlglot.parse_one(text, read="spark")
    except (ParseError, TokenError) as exc:
        first = str(exc).splitlines()[0]
        raise UnsafePlanError(f"SQL does not parse: {first}") from None
    if tree is None or isinstance(tree, exp.Query | exp.Command | exp.DDL | exp.DML):
        raise UnsafePlanError("only an expression is allowed here, not a statement or query")
    for node in tree.walk():
        if isinstance(node, exp.Query | exp.Subquery | exp.Table | exp.Lambda):
            raise UnsafePlanError("subqueries, tables and lambdas are not allowed in rules")
        if isinstance(node, exp.Star | exp.Placeholder | exp.Parameter | exp.SessionParameter):
            raise UnsafePlanError(f"{node.sql(dialect='spark')!r} is not allowed in rules")
        if isinstance(node, exp.Window):
            raise UnsafePlanError("window functions (OVER) are not allowed: a rule maps one row")
        if isinstance(node, exp.AggFunc | exp.Explode) or (
            isinstance(node, exp.Func) and node.sql_name().lower() in ROW_CHANGING
        ):
            raise UnsafePlanError(
                f"{node.sql_name().lower()}() combines or multiplies rows; a rule maps one row "
                "to one value"
            )
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name in DENIED_FUNCTIONS or name.startswith(("ai_", "java", "read_")):
                raise UnsafePlanError(f"function {name}() is not allowed")
        if isinstance(node, exp.Column) and node.table:
            raise UnsafePlanError(f"qualified column {node.sql(dialect='spark')!r} is not allowed")
        if isinstance(node, exp.Dot) and isinstance(node.expression, exp.Func):
            # catalog.schema.fn(...) runs a function someone stored in the catalog
            raise UnsafePlanError(
                f"qualified function {node.sql(dialect='spark')!r} is not allowed"
            )
    return tree


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


def check_plan(plan: Plan, schemas: dict[str, dict[str, str]]) -> list[Problem]:
    """Everything that would make the plan fail to compile or compile to the wrong thing.

    ``schemas`` maps each source to its columns and sample types.
    """
    problems: list[Problem] = []
    seen_tables: set[str] = set()
    for table in plan.tables:
        t = table.name

        def bad(message: str, column: str | None = None, unsafe: bool = False, t: str = t) -> None:
            problems.append(Problem(t, column, message, unsafe))

        if not t.strip() or re.search(r"[/\\\x00-\x1f]|^\.|\.\.", t):
            bad("table name is not allowed (it becomes a folder name)", unsafe=True)
        if t.lower() in seen_tables:
            bad("table appears twice")
        seen_tables.add(t.lower())
        if table.source not in plan.sources or table.source not in schemas:
            bad(f"unknown source {table.source!r}")
            continue
        columns = schemas[table.source]
        text_source = plan.sources[table.source].format in TEXT_FORMATS
        for f in table.filters:
            try:
                _, refs = check_sql(f.condition, columns, text_source=text_source)
            except UnsafePlanError as exc:
                bad(f"filter {f.condition!r}: {exc.message}", unsafe=True)
                continue
            if not refs:
                bad(f"filter {f.condition!r} uses no column: it would keep all rows or none")
        names: set[str] = set()
        for column in table.columns:
            c = column.name
            if not c.strip() or any(ord(ch) < 32 for ch in c):
                bad("target column name is empty or has control characters", c, unsafe=True)
            if c.lower() in names:
                bad("target column appears twice", c)
            if HELPER_COLUMN.fullmatch(c):
                bad(f"target column name {c!r} is reserved for the compiler's helper columns", c)
            names.add(c.lower())
            if normalize_type(column.type) != column.type:
                bad(f"unknown target type {column.type!r}", c)
            if column.unresolved:
                continue  # reported as unresolved, not as a compile problem
            if column.source_column is not None and (
                not column.steps
                or not isinstance(column.steps[0], Constant | Concat | Lookup | Sql)
            ):
                if _match_column(column.source_column, columns) is None:
                    close = difflib.get_close_matches(column.source_column, list(columns), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    bad(f"source column {column.source_column!r} is not in {table.source}{hint}", c)
            elif column.source_column is None and not (
                column.steps and isinstance(column.steps[0], Constant | Concat | Lookup | Sql)
            ):
                bad("no source column and no rule that produces a value", c)
            for step in column.steps:
                for ref in _column_refs(step):
                    if _match_column(ref, columns) is None:
                        bad(f"column {ref!r} is not in {table.source}", c)
                if isinstance(step, Lookup):
                    other = schemas.get(step.source)
                    if other is None or step.source not in plan.sources:
                        bad(f"lookup source {step.source!r} is unknown", c)
                    else:
                        for ref in (step.key, step.column):
                            if _match_column(ref, other) is None:
                                bad(f"column {ref!r} is not in {step.source}", c)
                if isinstance(step, Sql):
                    try:
                        check_sql(step.expression, columns, text_source=text_source)
                    except UnsafePlanError as exc:
                        bad(f"sql {step.expression!r}: {exc.message}", c, unsafe=True)
                if isinstance(step, ParseDate):
                    try:
                        java_date_pattern(step.pattern)
                        if step.output_pattern:
                            java_date_pattern(step.output_pattern)
                    except ValueError as exc:
                        bad(str(exc), c)
                if isinstance(step, Multiply | Divide):
                    if not re.fullmatch(r"[-+]?[0-9]+(?:\.[0-9]+)?", step.by):
                        bad(f"{step.by!r} is not a plain decimal number (like 1000 or 0.01)", c)
                    elif isinstance(step, Divide) and Decimal(step.by) == 0:
                        bad("division by zero", c)
            last = column.steps[-1] if column.steps else None
            value = last.value if isinstance(last, Constant | Default) else None
            if (
                value is not None
                and column.type != "string"
                and not _literal_fits(value, column.type)
            ):
                bad(f"{value!r} is not a valid {column.type}", c)
    return problems


def used_columns(
    plan: Plan, schemas: dict[str, dict[str, str]] | None = None
) -> dict[str, list[str]]:
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
            first = column.steps[0] if column.steps else None
            if column.source_column and not isinstance(first, Constant | Concat | Lookup | Sql):
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


# --- code generation --------------------------------------------------------------


def _slug(name: str, taken: set[str]) -> str:
    """A fresh Python identifier derived from ``name`` (never the name itself)."""
    base = re.sub(r"\W+", "_", name.lower()).strip("_")
    reserved = base in _RESERVED or base in _FORBIDDEN_NAMES  # never shadow a builtin
    if not base or not base[0].isalpha() or not base.isascii() or reserved:
        base = "src_" + base if base and base.isascii() else "src"
    slug, n = base, 2
    while slug in taken:
        slug, n = f"{base}_{n}", n + 1
    taken.add(slug)
    return slug


_RESERVED = {
    "spark", "F", "Observation", "ps", "run_metrics", *PARAMETERS, *kwlist, *dir(builtins)
}  # fmt: skip


def _num_lit(text: str) -> str:
    value = Decimal(text)
    if "." not in text and "e" not in text.lower():
        return f"F.lit({int(value)})"
    _, digits, exponent = value.as_tuple()
    scale = max(0, -int(exponent))
    precision = max(len(digits), scale) + 1
    return f"F.lit({py_str(str(value))}).cast({py_str(f'decimal({precision},{scale})')})"


def _try_cast_sql(sql_type: str) -> Any:
    from sqlglot import exp

    return exp.DataType.build(sql_type, dialect="spark")


class _ColumnCompiler:
    """Builds one target column's expression, tracking the working type step by step and
    whether any step can turn a present value into null (a "lossy" step)."""

    def __init__(
        self,
        read_types: dict[str, str],
        lookups: dict[tuple[str, str, str], str],
        schema: dict[str, str],
        text_source: bool,
    ) -> None:
        self.read_types = read_types
        self.lookups = lookups
        self.schema = schema
        self.text_source = text_source
        self.lossy = False

    def source(self, name: str) -> tuple[str, str]:
        found = _match_column(name, self.read_types) or name
        return col_ref(found), self.read_types.get(found, "string")

    @staticmethod
    def as_string(expr: str, kind: str) -> str:
        return expr if kind == "string" else f'{expr}.cast("string")'

    def try_cast(self, expr: str, type_name: str) -> str:
        self.lossy = True
        return f"{expr}.try_cast({py_str(type_name)})"

    def as_number(self, expr: str, kind: str, target: str) -> tuple[str, str]:
        if kind.startswith("decimal") or kind in ("int", "bigint", "double", "float"):
            return expr, kind
        work = "double" if target in ("double", "float") else NUMERIC_WORK_TYPE
        return self.try_cast(expr, work), work

    def step(self, step: Step, expr: str, kind: str, target: str) -> tuple[str, str]:
        match step:
            case Trim() | Upper() | Lower():
                return f"F.{step.op}({self.as_string(expr, kind)})", "string"
            case DigitsOnly():
                return f'F.regexp_replace({self.as_string(expr, kind)}, "[^0-9]", "")', "string"
            case Substring(start=s, length=n):
                return f"F.substring({self.as_string(expr, kind)}, {s}, {n})", "string"
            case ParseDate(pattern=p, output_pattern=out):
                self.lossy = True
                java = java_date_pattern(p)
                text = self.as_string(expr, kind)
                if target == "timestamp" or has_time(java):
                    parsed = f"F.try_to_timestamp({text}, F.lit({py_str(java)}))"
                    parsed_kind = "timestamp"
                else:
                    # try_to_timestamp exists in every client from PySpark 3.5 (Databricks
                    # Connect 16 included); try_to_date only from 4.0.
                    parsed = f'F.try_to_timestamp({text}, F.lit({py_str(java)})).cast("date")'
                    parsed_kind = "date"
                if target == "string" and out:
                    return f"F.date_format({parsed}, {py_str(java_date_pattern(out))})", "string"
                return parsed, parsed_kind
            case Multiply(by=n) | Divide(by=n):
                num, work = self.as_number(expr, kind, target)
                self.lossy = True  # overflow and division give null, never an error
                fn = "try_multiply" if isinstance(step, Multiply) else "try_divide"
                return f"F.{fn}({num}, {_num_lit(n)})", work
            case Round(digits=d):
                num, work = self.as_number(expr, kind, target)
                return f"F.round({num}, {d})", work
            case Default(value=v):
                lit = f"F.lit({py_str(v)})"
                if kind == "string":
                    return f'F.coalesce(F.when(F.trim({expr}) != "", {expr}), {lit})', kind
                if kind != "any":
                    lit = f"{lit}.try_cast({py_str(kind)})"
                return f"F.coalesce({expr}, {lit})", kind
            case Constant(value=v):
                return f"F.lit({py_str(v)})", "string"
            case MapValues(pairs=pairs, otherwise=other):
                text = self.as_string(expr, kind)
                chain = "F" + "".join(
                    f".when({text} == {py_str(k)}, F.lit({py_str(v)}))" for k, v in pairs
                )
                if other is None:
                    self.lossy = True  # unmapped values become null
                    return chain, "string"
                return f"{chain}.otherwise(F.lit({py_str(other)}))", "string"
            case Concat(columns=cols, separator=sep):
                parts = ", ".join(self.source(c)[0] for c in cols)
                return f"F.concat_ws({py_str(sep)}, {parts})", "string"
            case Lookup(column=c, source=src, key=k):
                alias = self.lookups[(src, k, c)]
                return f"F.col({py_str(alias)})", self.read_types.get(f"{src}\x00{c}", "string")
            case Sql(expression=e):
                self.lossy = True
                canonical, _ = check_sql(e, self.schema, text_source=self.text_source)
                return f"F.expr({py_str(canonical)})", "any"
        raise UnsafePlanError(f"step {step.op!r} cannot be compiled")

    def finish(self, expr: str, kind: str, target: str) -> str:
        if kind == target:
            return expr
        if target == "string":
            return f'{expr}.cast("string")'
        if (kind, target) == ("timestamp", "date"):
            return f'{expr}.cast("date")'
        return self.try_cast(expr, target)


def _chain(head: str, calls: list[str]) -> list[str]:
    return [f"{head} = (", *[f"    {c}" for c in calls], ")"]


def _call(name: str, args: list[str], inline: int = 88) -> str:
    """``.name(a, b)`` on one line when short, else one argument per line."""
    one = f".{name}({', '.join(args)})"
    if len(one) <= inline:
        return one
    return f".{name}(\n" + "".join(f"        {a},\n" for a in args) + "    )"


def _read_code(var: str, name: str, plan: Plan, columns: list[str]) -> list[str]:
    read = plan.sources[name]
    path = f"source_paths[{py_str(name)}]"
    if read.format == "csv":
        options = {
            "header": str(read.header).lower(),
            "sep": read.delimiter,
            "encoding": read.encoding,
            "quote": '"',
            "escape": '"',
            "inferSchema": "false",
        }
        opts = [f"{k}={py_str(v)}" for k, v in options.items()]
        return [
            f"# {comment_text(name)}: CSV read as text (no inference pass); "
            "every conversion is explicit.",
            *_chain(var, ["spark.read", _call("options", opts), f".csv({path})"]),
        ]
    if read.format == "excel":
        sheet = py_str(read.excel_sheet) if read.excel_sheet else "0"
        return [
            f"# {comment_text(name)}: Excel has no native Spark reader; "
            "pandas-on-Spark reads it as text.",
            "import pyspark.pandas as ps",
            f'{var} = ps.read_excel({path}, sheet_name={sheet}, dtype="str").to_spark()',
        ]
    ddl = ", ".join(f"{sql_ident(c)} {read.columns.get(c, 'string').upper()}" for c in columns)
    reader = "parquet" if read.format == "parquet" else "json"
    return [
        f"# {comment_text(name)}: {read.format}, reading only the columns used, with their types.",
        *_chain(var, ["spark.read", f".schema({py_str(ddl)})", f".{reader}({path})"]),
    ]


def compile_plan(plan: Plan) -> str:
    """The approved logic as one self-contained PySpark cell body. Same plan, same text."""
    blocking = [f"{t}.{c.name}: {s.text!r} ({s.reason})" for t, c, s in plan.unresolved()]
    if blocking:
        raise PlanError(
            f"plan has unresolved steps: {'; '.join(blocking)}",
            hint="Revise those columns before compiling.",
        )
    schemas = {name: dict(read.columns) for name, read in plan.sources.items()}
    problems = check_plan(plan, schemas)
    if problems:
        cls = UnsafePlanError if any(p.unsafe for p in problems) else PlanError
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise cls(
            f"plan cannot compile: {problems[0]}{more}",
            table=problems[0].table,
            target_column=problems[0].column or "",
        )
    used = used_columns(plan)
    lines = [
        f"{CODE_MARKER}{plan.sha256()[:16]}, client {py_str(plan.client)}.",
        "# Generated from the approved plan: change the plan, not this code.",
        "from pyspark.sql import Observation",
        "from pyspark.sql import functions as F",
        "",
    ]
    taken: set[str] = set()
    var_of: dict[str, str] = {}
    # Sources are read in order of first use: the code follows the plan's content (which
    # its hash sees with sorted keys), never the order of the ``sources`` mapping.
    needed = dict.fromkeys(
        name
        for t in plan.tables
        for name in [
            t.source,
            *(s.source for c in t.columns for s in c.steps if isinstance(s, Lookup)),
        ]
    )
    for name in needed:
        var_of[name] = _slug(name, taken)
        lines.extend(_read_code(var_of[name], name, plan, used[name]))
    metrics: list[str] = []
    for table in plan.tables:
        lines.append("")
        table_lines, obs_in, obs_out = _table_code(plan, table, var_of, taken)
        lines.extend(table_lines)
        metrics.append(f"    {py_str(table.name)}: {{**{obs_in}.get, **{obs_out}.get}},")
    lines.extend(["", "run_metrics = {", *metrics, "}"])
    code = "\n".join(lines) + "\n"
    check_generated(code)
    return code


def _lookup_groups(table: TablePlan) -> dict[tuple[str, str], list[str]]:
    """(source, key) -> columns taken from it: one join per group, however many columns."""
    groups: dict[tuple[str, str], list[str]] = {}
    for column in table.columns:
        for step in column.steps:
            if isinstance(step, Lookup):
                cols = groups.setdefault((step.source, step.key), [])
                if step.column not in cols:
                    cols.append(step.column)
    return groups


def _table_code(
    plan: Plan, table: TablePlan, var_of: dict[str, str], taken: set[str]
) -> tuple[list[str], str, str]:
    read = plan.sources[table.source]
    text_source = read.format in TEXT_FORMATS
    read_types = {c: ("string" if text_source else t) for c, t in read.columns.items()}
    frame = _slug(f"{table.name}_table", taken)
    obs_in, obs_out = _slug(f"{table.name}_read", taken), _slug(f"{table.name}_checks", taken)
    where = f"{comment_text(table.name)} <- {comment_text(table.source)}"
    lines = [f"# ---- {where} ".ljust(78, "-")]
    lookups: dict[tuple[str, str, str], str] = {}
    joins: list[str] = []
    misses: list[tuple[str, str]] = []  # (left key, key alias)
    for n, ((src, key), cols) in enumerate(_lookup_groups(table).items(), start=1):
        var = _slug(f"{table.name}_lookup_{n}", taken)
        other = plan.sources[src]
        key_alias = f"_lk{n}_key"
        lookup_cols = [
            f"{col_ref(_match_column(key, other.columns) or key)}.alias({py_str(key_alias)})"
        ]
        for i, c in enumerate(cols, start=1):
            alias = lookups[(src, key, c)] = f"_lk{n}_v{i}"
            found = _match_column(c, other.columns) or c
            other_type = "string" if other.format in TEXT_FORMATS else other.columns.get(found)
            read_types[f"{src}\x00{c}"] = other_type or "string"
            lookup_cols.append(f"{col_ref(found)}.alias({py_str(alias)})")
        lines.append(
            f"# {comment_text(src)} deduplicated on its key, so the join never multiplies rows."
        )
        lines.extend(
            _chain(
                var,
                [
                    var_of[src],
                    _call("select", lookup_cols),
                    f".dropDuplicates([{py_str(key_alias)}])",
                ],
            )
        )
        left_key = _match_column(key, read.columns) or key
        joins.append(f'.join({var}, {col_ref(left_key)} == F.col({py_str(key_alias)}), "left")')
        misses.append((left_key, key_alias))
    selects: list[str] = []
    helpers: list[str] = []
    checks = ['F.count(F.lit(1)).alias("rows_written")']
    for index, column in enumerate(table.columns, start=1):
        compiler = _ColumnCompiler(read_types, lookups, read.columns, text_source)
        first = column.steps[0] if column.steps else None
        reads_own = column.source_column is not None and not isinstance(first, PRODUCERS)
        expr, kind = compiler.source(column.source_column or "") if reads_own else ("", "string")
        for step in column.steps:
            expr, kind = compiler.step(step, expr, kind, column.type)
        expr = compiler.finish(expr, kind, column.type)
        selects.append(f"{expr}.alias({py_str(column.name)})")
        target = col_ref(column.name)
        if column.required:
            checks.append(f"F.count_if({target}.isNull()).alias({py_str('null:' + column.name)})")
        if reads_own and compiler.lossy:
            helper = f"_src_{index}"
            helpers.append(helper)
            selects.append(
                f"{compiler.source(column.source_column or '')[0]}.alias({py_str(helper)})"
            )
            present = f"F.col({py_str(helper)}).isNotNull()"
            if text_source:
                present = f'F.trim(F.col({py_str(helper)})) != ""'  # null or blank is absent
            lost = py_str("lost:" + column.name)
            # Null target first: the AND short-circuits, so the source is only inspected
            # for the rare rows that came out null.
            checks.append(f"F.count_if({target}.isNull() & ({present})).alias({lost})")
    for n, (left_key, key_alias) in enumerate(misses, start=1):
        helper = f"_miss_{n}"
        helpers.append(helper)
        selects.append(
            f"({col_ref(left_key)}.isNotNull() & F.col({py_str(key_alias)}).isNull())"
            f".alias({py_str(helper)})"
        )
        checks.append(
            f"F.count_if(F.col({py_str(helper)})).alias({py_str('unmatched:' + left_key)})"
        )
    calls = [var_of[table.source], f'.observe({obs_in}, F.count(F.lit(1)).alias("rows_read"))']
    for f in table.filters:
        canonical, _ = check_sql(f.condition, read.columns, text_source=text_source)
        note = f"  # {comment_text(f.description)}" if f.description else ""
        calls.append(f".where(F.expr({py_str(canonical)})){note}")
    calls.extend(joins)
    calls.append(_call("select", selects, inline=0))
    calls.append(_call("observe", [obs_out, *checks], inline=0))
    if helpers:
        calls.append(_call("drop", [py_str(h) for h in helpers]))
    lines.extend(f"{obs} = Observation()" for obs in (obs_in, obs_out))
    lines.extend(_chain(frame, calls))
    lines.append(
        f'{frame}.write.mode("overwrite").format(output_format).option("header", "true")'
        f".save(output_dir + {py_str('/' + table.name)})"
    )
    return lines, obs_in, obs_out


def render_parameters(source_paths: dict[str, str], output_dir: str, output_format: str) -> str:
    """The per-run parameters block: literals only, checked like the body."""
    items = ", ".join(f"{py_str(k)}: {py_str(v)}" for k, v in sorted(source_paths.items()))
    code = (
        f"source_paths = {{{items}}}\n"
        f"output_dir = {py_str(output_dir.rstrip('/') or '/')}\n"
        f"output_format = {py_str(output_format)}\n"
    )
    check_generated(code, parameters=True)
    return code


CODE_MARKER = "# dataeng-magics: plan "


def split_cell(body: str) -> tuple[str, str]:
    """A materialised cell's body -> (parameters block, approved code)."""
    index = body.find("\n" + CODE_MARKER)
    if body.startswith(CODE_MARKER):
        return "", body
    if index < 0:
        raise UnsafePlanError(
            "this cell has no approved code in it (its '# dataeng-magics: plan' line is gone)",
            hint="Materialise the approved plan again.",
        )
    return body[: index + 1], body[index + 1 :]


def parse_parameters(text: str) -> dict[str, object]:
    """The parameters block's values; it may hold literal assignments and nothing else."""
    check_generated(text, parameters=True)
    values: dict[str, object] = {}
    for node in ast.parse(text).body:
        assert isinstance(node, ast.Assign)
        for target in node.targets:
            if isinstance(target, ast.Name):
                try:
                    values[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    raise UnsafePlanError(f"parameter {target.id!r} must be a literal") from None
    missing = [p for p in PARAMETERS if p not in values]
    if missing:
        raise UnsafePlanError(f"the parameters block does not set {', '.join(missing)}")
    return values


# --- AST allow-list ---------------------------------------------------------------

_ALLOWED_NODES = (
    ast.Module,
    ast.Assign,
    ast.Expr,
    ast.Call,
    ast.Attribute,
    ast.Name,
    ast.Constant,
    ast.keyword,
    ast.Load,
    ast.Store,
    ast.Compare,
    ast.BinOp,
    ast.UnaryOp,
    ast.Tuple,
    ast.List,
    ast.Dict,
    ast.Subscript,
    ast.ImportFrom,
    ast.Import,
    ast.alias,
    ast.Eq,
    ast.NotEq,
    ast.BitAnd,
    ast.BitOr,
    ast.Invert,
    ast.Add,
    ast.USub,
    ast.Not,
)
#: Every attribute the compiler emits; anything else (``spark.sql``, ``F.call_function``,
#: ``df.sparkSession``, ``F.udf``, ``.rdd``, ``.collect``) is refused.
_ALLOWED_ATTRIBUTES = frozenset(
    {
        "alias", "cast", "coalesce", "col", "concat_ws", "count", "count_if", "csv",
        "date_format", "drop", "dropDuplicates", "expr", "format", "get", "isNotNull", "isNull",
        "join", "json", "lit", "lower", "mode", "observe", "option", "options", "otherwise",
        "parquet", "read", "read_excel", "regexp_replace", "round", "save", "schema", "select",
        "substring", "to_spark", "trim", "try_cast", "try_divide", "try_multiply",
        "try_to_timestamp", "upper", "when", "where", "write",
    }
)  # fmt: skip
_PARAMETER_NODES = (ast.Module, ast.Assign, ast.Name, ast.Store, ast.Load, ast.Constant, ast.Dict)
_FORBIDDEN_NAMES = {
    "exec",
    "eval",
    "open",
    "compile",
    "__import__",
    "globals",
    "locals",
    "vars",
    "getattr",
    "setattr",
    "delattr",
    "input",
    "breakpoint",
    "exit",
    "quit",
    "help",
    "__builtins__",
    "type",
    "object",
    "memoryview",
}


def check_generated(code: str, *, parameters: bool = False) -> None:
    """Refuse any source that is not the narrow shape the compiler emits."""
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise UnsafePlanError(f"generated code does not parse: {exc.msg}") from None
    allowed = _PARAMETER_NODES if parameters else _ALLOWED_NODES
    defined = {"spark", *PARAMETERS}
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise UnsafePlanError(f"generated code contains a forbidden {type(node).__name__}")
        if isinstance(node, ast.ImportFrom) and not _is_pyspark(node.module or ""):
            raise UnsafePlanError(
                f"generated code imports {node.module!r}; only pyspark is allowed"
            )
        if isinstance(node, ast.Import) and not all(_is_pyspark(a.name) for a in node.names):
            raise UnsafePlanError("generated code imports something other than pyspark")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise UnsafePlanError(f"generated code touches private attribute {node.attr!r}")
        if isinstance(node, ast.Attribute) and node.attr not in _ALLOWED_ATTRIBUTES:
            raise UnsafePlanError(f"generated code uses .{node.attr}: the compiler never emits it")
        if isinstance(node, ast.Call):
            _check_expr_call(node)
        if isinstance(node, ast.Name) and (node.id in _FORBIDDEN_NAMES or node.id.startswith("_")):
            raise UnsafePlanError(f"generated code uses forbidden name {node.id!r}")
        if isinstance(node, ast.Import | ast.ImportFrom):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        if isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        defined.add(name.id)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in defined:
            raise UnsafePlanError(f"generated code reads undefined name {node.id!r}")


def _check_expr_call(node: ast.Call) -> None:
    """``F.expr`` SQL is checked again here, whatever produced the code."""
    if not (isinstance(node.func, ast.Attribute) and node.func.attr == "expr"):
        return
    arg = node.args[0] if len(node.args) == 1 and not node.keywords else None
    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
        raise UnsafePlanError("F.expr takes exactly one string literal")
    parse_safe_sql(arg.value)


def _is_pyspark(module: str) -> bool:
    return module == "pyspark" or module.startswith("pyspark.")


def code_sha256(code: str) -> str:
    return sha256_text(code)
