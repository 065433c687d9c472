"""Plan -> PySpark source, deterministically: the only producer of code.

It never pastes plan text into code: names become string literals, SQL fragments are
re-rendered from their checked parse trees (``safety``), and the finished source must
pass the AST allow-list before anyone caches or runs it. The same plan always gives the
same text, byte for byte.

The generated cell expects ``spark`` plus the parameters block (``cell``) and leaves
``run_metrics`` behind: row counts and check counts gathered with ``Observation``
during the write, so checking the output costs no extra pass.
"""

from __future__ import annotations

import builtins
import re
from decimal import Decimal
from keyword import kwlist

from dataeng_magics.compile.cell import CODE_MARKER
from dataeng_magics.compile.emit import call as _call
from dataeng_magics.compile.emit import chain as _chain
from dataeng_magics.compile.lint import check_plan, used_columns
from dataeng_magics.compile.safety import (
    FORBIDDEN_NAMES,
    PARAMETERS,
    TEXT_FORMATS,
    check_generated,
    check_sql,
    col_ref,
    comment_text,
    match_column,
    py_str,
)
from dataeng_magics.errors import PlanError, UnsafePlanError
from dataeng_magics.plan.dates import has_time, java_date_pattern
from dataeng_magics.plan.model import (
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
)

NUMERIC_WORK_TYPE = "decimal(38,10)"


def _slug(name: str, taken: set[str]) -> str:
    """A fresh Python identifier derived from ``name`` (never the name itself)."""
    base = re.sub(r"\W+", "_", name.lower()).strip("_")
    reserved = base in _RESERVED or base in FORBIDDEN_NAMES  # never shadow a builtin
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
        found = match_column(name, self.read_types) or name
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


def _read_code(
    var: str, name: str, plan: Plan, columns: list[str], taken: set[str]
) -> tuple[list[str], str | None]:
    """The source's read, as its format's reader emits it, and the name of the
    ``Observation`` counting its malformed records (None for formats that have none)."""
    from dataeng_magics.sources.readers import reader_for

    read = plan.sources[name]
    code = reader_for(read).read_code(var, name, read, columns, lambda base: _slug(base, taken))
    return code.lines, code.observation


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
    malformed: dict[str, str] = {}  # source -> the Observation of its malformed records
    for name in needed:
        var_of[name] = _slug(name, taken)
        read_lines, observation = _read_code(var_of[name], name, plan, used[name], taken)
        lines.extend(read_lines)
        if observation:
            malformed[name] = observation
    metrics: list[str] = []
    for table in plan.tables:
        lines.append("")
        table_lines, obs_in, obs_out = _table_code(plan, table, var_of, taken)
        lines.extend(table_lines)
        # Each table reports the malformed records of every source it reads.
        read_by = dict.fromkeys([table.source, *(src for src, _ in _lookup_groups(table))])
        observed = [obs_in, obs_out, *(malformed[s] for s in read_by if s in malformed)]
        metrics.append(
            f"    {py_str(table.name)}: {{{', '.join(f'**{o}.get' for o in observed)}}},"
        )
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


_INTEGRAL = ("int", "bigint")


def _numeric(type_name: str) -> bool:
    return type_name in ("int", "bigint", "double", "float") or type_name.startswith("decimal")


def _join_key_type(left: str, left_text: bool, right: str, right_text: bool) -> str | None:
    """The type to compare lookup keys as, when a side is read as text: the type both
    samples showed (``0000000066`` and ``66`` are both the number 66), as SQL rules and
    filters compare text columns. None: compare the values as read."""
    if not (left_text or right_text):
        return None
    if _numeric(left) and _numeric(right):
        return "bigint" if left in _INTEGRAL and right in _INTEGRAL else NUMERIC_WORK_TYPE
    if left == right and left in ("date", "timestamp", "boolean"):
        return left
    return None


def _join_key(column: str, key_type: str | None, text: bool) -> str:
    ref = col_ref(column)
    return f"{ref}.try_cast({py_str(key_type)})" if key_type and text else ref


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
        left_key = match_column(key, read.columns) or key
        right_key = match_column(key, other.columns) or key
        other_text = other.format in TEXT_FORMATS
        key_type = _join_key_type(
            read.columns.get(left_key, "string"), text_source,
            other.columns.get(right_key, "string"), other_text,
        )  # fmt: skip
        lookup_cols = [f"{_join_key(right_key, key_type, other_text)}.alias({py_str(key_alias)})"]
        for i, c in enumerate(cols, start=1):
            alias = lookups[(src, key, c)] = f"_lk{n}_v{i}"
            found = match_column(c, other.columns) or c
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
        left = _join_key(left_key, key_type, text_source)
        joins.append(f'.join({var}, {left} == F.col({py_str(key_alias)}), "left")')
        misses.append((left_key, key_alias))
    selects: list[str] = []
    helpers: list[str] = []
    checks = ['F.count(F.lit(1)).alias("rows_written")']
    for index, column in enumerate(table.columns, start=1):
        compiler = _ColumnCompiler(read_types, lookups, read.columns, text_source)
        reads_own = column.reads_source
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
