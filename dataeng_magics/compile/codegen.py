"""Plan -> PySpark source, deterministically: the only producer of code.

It never pastes plan text into code: names become string literals, SQL fragments are
re-rendered from their checked parse trees (``safety``), and the finished source must
pass the AST allow-list before anyone caches or runs it. The same plan always gives the
same text, byte for byte.

The generated cell expects ``spark`` plus the parameters block (``cell``) and leaves
``run_metrics`` behind: row counts and check counts gathered with ``Observation``
during the write, so checking the output costs no extra pass. Each table's pass has ONE
``Observation``: Spark cannot fuse an observed node into its generated code, so every
extra one splits the pipeline and costs about a tenth of the run. Rows a filter drops
(and malformed records) therefore reach it, marked by a ``_dropped_by`` column, and are
dropped right after it; the metrics count each row where it belongs.
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Callable
from decimal import Decimal
from keyword import kwlist

from dataeng_magics.compile.cell import CODE_MARKER
from dataeng_magics.compile.emit import call as _call
from dataeng_magics.compile.emit import chain as _chain
from dataeng_magics.compile.lint import REJECTED_SUFFIX, check_plan, target_schema, used_columns
from dataeng_magics.compile.safety import (
    FORBIDDEN_NAMES,
    PARAMETERS,
    RUN_PARAMETERS,
    TEXT_FORMATS,
    check_generated,
    check_sql,
    col_ref,
    comment_text,
    match_column,
    py_str,
)
from dataeng_magics.errors import PlanError, UnsafePlanError
from dataeng_magics.plan.checks import check_name
from dataeng_magics.plan.dates import has_time, java_date_pattern
from dataeng_magics.plan.model import (
    ROW_CHECKS,
    Between,
    Check,
    ColumnPlan,
    Compare,
    Concat,
    Constant,
    Default,
    DigitsOnly,
    Divide,
    Lookup,
    LookupDuplicates,
    Lower,
    MapValues,
    Matches,
    Multiply,
    NotNull,
    OneOf,
    ParseDate,
    Plan,
    Round,
    SourceRead,
    Sql,
    SqlCheck,
    Step,
    Substring,
    TablePlan,
    TotalEquals,
    Trim,
    Unique,
    Upper,
)
from dataeng_magics.sources.readers.base import ReadCode

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
    "spark", "F", "Observation", "ps", "run_metrics", "c", *PARAMETERS, *RUN_PARAMETERS,
    *kwlist, *dir(builtins)
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
        kept: str | None = None,
    ) -> None:
        self.read_types = read_types
        self.lookups = lookups
        self.schema = schema
        self.text_source = text_source
        self.kept = kept  # true for the rows the filters keep (None: no row is dropped)
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
                expr = f"F.expr({py_str(canonical)})"
                # Under ANSI SQL can raise (1 / 0): never for a row the filters drop, which
                # the expression now sees (the only non-try_* code the compiler emits).
                return (f"F.when({self.kept}, {expr})" if self.kept else expr), "any"
        raise UnsafePlanError(f"step {step.op!r} cannot be compiled")

    def finish(self, expr: str, kind: str, target: str) -> str:
        if kind == target:
            return expr
        if target == "string":
            return f'{expr}.cast("string")'
        if (kind, target) == ("timestamp", "date"):
            return f'{expr}.cast("date")'
        return self.try_cast(expr, target)


def _read_code(var: str, name: str, plan: Plan, columns: list[str], taken: set[str]) -> ReadCode:
    """The source's read, as its format's reader emits it."""
    from dataeng_magics.sources.readers import reader_for

    read = plan.sources[name]
    return reader_for(read).read_code(var, name, read, columns, lambda base: _slug(base, taken))


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
    # A source only one table reads its rows from (and no lookup reads) has its malformed
    # records counted in that table's observation; any other keeps an Observation of its
    # own (a lookup's records are grouped by key before any table sees them).
    readers = [t.source for t in plan.tables] + [
        s.source for t in plan.tables for c in t.columns for s in c.steps if isinstance(s, Lookup)
    ]
    malformed: dict[str, str] = {}  # source -> the Observation of its malformed records
    folded: dict[str, str] = {}  # source -> the expression marking them in its table
    for name in needed:
        var_of[name] = _slug(name, taken)
        read = _read_code(var_of[name], name, plan, used[name], taken)
        driving = any(t.source == name for t in plan.tables)
        if driving and readers.count(name) == 1 and read.folded is not None and read.malformed:
            lines.extend(read.folded)
            folded[name] = read.malformed
            continue
        lines.extend(read.lines)
        if read.observation:
            malformed[name] = read.observation
    metrics: list[str] = []
    for table in plan.tables:
        lines.append("")
        table_lines, observed = _table_code(plan, table, var_of, taken, folded.get(table.source))
        lines.extend(table_lines)
        # Each table reports the malformed records of every source it reads.
        read_by = dict.fromkeys([table.source, *(src for src, _ in _lookup_groups(table))])
        observed += [malformed[s] for s in read_by if s in malformed]
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
    plan: Plan,
    table: TablePlan,
    var_of: dict[str, str],
    taken: set[str],
    malformed: str | None = None,
) -> tuple[list[str], list[str]]:
    """One table's pass; ``malformed`` marks the source's malformed records when they
    are this table's to count (the read passed them on)."""
    read = plan.sources[table.source]
    text_source = read.format in TEXT_FORMATS
    read_types = {c: ("string" if text_source else t) for c, t in read.columns.items()}
    frame = _slug(f"{table.name}_table", taken)
    obs = _slug(f"{table.name}_metrics", taken)
    status = _dropped_by(table, read.columns, text_source, malformed)
    kept = f"{DROPPED_BY} == 0" if status else None
    where = f"{comment_text(table.name)} <- {comment_text(table.source)}"
    lines = [f"# ---- {where} ".ljust(78, "-")]
    lookups: dict[tuple[str, str, str], str] = {}
    joins: list[str] = []
    misses: list[tuple[str, str]] = []  # (left key, key alias)
    duplicated: list[tuple[str, str, str]] = []  # (source, key, flag column)
    raw_of: dict[str, str] = {}  # source column -> the helper column holding it as read
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
            f"# {comment_text(src)}: one row per key, so the join never multiplies rows; of rows"
        )
        lines.append(
            "# sharing a key the smallest (by its values, in order) is taken, so the output is"
        )
        lines.append("# deterministic, and keys whose rows differ are flagged.")
        values = (
            "F.struct(" + ", ".join(py_str(f"_lk{n}_v{i}") for i in range(1, len(cols) + 1)) + ")"
        )
        lines.extend(
            _chain(
                var,
                [
                    var_of[src],
                    _call("select", lookup_cols),
                    f".groupBy({py_str(key_alias)})",
                    _call(
                        "agg",
                        [
                            f"F.min({values}).alias({py_str(f'_lk{n}')})",
                            f"(~F.min({values}).eqNullSafe(F.max({values})))"
                            f".alias({py_str(f'_lk{n}_dup')})",
                        ],
                    ),
                    f".select({py_str(key_alias)}, {py_str(f'_lk{n}.*')}, {py_str(f'_lk{n}_dup')})",
                ],
            )
        )
        left = _join_key(left_key, key_type, text_source)
        joins.append(f'.join({var}, {left} == F.col({py_str(key_alias)}), "left")')
        misses.append((left_key, key_alias))
        duplicated.append((src, key, f"_lk{n}_dup"))
    selects: list[str] = []
    helpers: list[str] = []
    checks = [f"F.count_if({kept})" if kept else "F.count(F.lit(1))"]
    checks[0] += '.alias("rows_written")'

    def only_kept(condition: str) -> str:
        return f"({kept}) & {condition}" if kept else condition

    for index, column in enumerate(table.columns, start=1):
        compiler = _ColumnCompiler(read_types, lookups, read.columns, text_source, kept)
        reads_own = column.reads_source
        expr, kind = compiler.source(column.source_column or "") if reads_own else ("", "string")
        for step in column.steps:
            expr, kind = compiler.step(step, expr, kind, column.type)
        expr = compiler.finish(expr, kind, column.type)
        selects.append(f"{expr}.alias({py_str(column.name)})")
        target = col_ref(column.name)
        if column.required:
            null = only_kept(f"{target}.isNull()")
            checks.append(f"F.count_if({null}).alias({py_str('null:' + column.name)})")
        if reads_own and compiler.lossy:
            helper = f"_src_{index}"
            helpers.append(helper)
            raw_of[match_column(column.source_column or "", read.columns) or ""] = helper
            selects.append(
                f"{compiler.source(column.source_column or '')[0]}.alias({py_str(helper)})"
            )
            present = f"F.col({py_str(helper)}).isNotNull()"
            if text_source:
                present = f'F.trim(F.col({py_str(helper)})) != ""'  # null or blank is absent
            lost = py_str("lost:" + column.name)
            # Null target first: the AND short-circuits, so the source is only inspected
            # for the rare rows that came out null.
            null = only_kept(f"{target}.isNull()")
            checks.append(f"F.count_if({null} & ({present})).alias({lost})")
    for n, (left_key, key_alias) in enumerate(misses, start=1):
        helper = f"_miss_{n}"
        helpers.append(helper)
        selects.append(
            f"({col_ref(left_key)}.isNotNull() & F.col({py_str(key_alias)}).isNull())"
            f".alias({py_str(helper)})"
        )
        miss = only_kept(f"F.col({py_str(helper)})")
        checks.append(f"F.count_if({miss}).alias({py_str('unmatched:' + left_key)})")
    for n, (src, key, flag) in enumerate(duplicated, start=1):
        helper = f"_lkd_{n}"
        helpers.append(helper)
        selects.append(f"F.coalesce(F.col({py_str(flag)}), F.lit(False)).alias({py_str(helper)})")
        declared = next(
            (i for i, c in enumerate(table.checks, start=1) if isinstance(c, LookupDuplicates)
             and c.source == src and c.key.lower() == key.lower()),
            None,
        )  # fmt: skip
        metric = f"check:{declared}" if declared else f"lookup_dup:{src} on {key}"
        flagged = only_kept(f"F.col({py_str(helper)})")
        checks.append(f"F.count_if({flagged}).alias({py_str(metric)})")
    flags, quarantine, uniques, examples = _check_code(
        table, read, selects, helpers, checks, kept, raw_of
    )
    read_metrics = [
        f"F.count_if({DROPPED_BY} >= 0)" if malformed else "F.count(F.lit(1))",
        *(f"F.count_if({DROPPED_BY} == {n}).alias({py_str(f'dropped:{n}')})"
          for n in range(1, len(table.filters) + 1)),
        _control_sums(table.source, DROPPED_BY if malformed else None),
    ]  # fmt: skip
    read_metrics[0] += '.alias("rows_read")'
    if malformed:  # last, where its own Observation's metric came before
        checks.append(
            f"F.count_if({DROPPED_BY} == -1).alias({py_str(f'malformed:{table.source}')})"
        )
    calls = [var_of[table.source]]
    if status:
        calls.append(".withColumns({\n" + status + "    })")
        helpers.append("_dropped_by")
        selects.append(DROPPED_BY)
    calls.extend(joins)
    selects.append(_control_columns(table.source))
    calls.append(_call("select", selects, inline=0))
    if flags:
        calls.append(".withColumns({\n" + "".join(f"        {f},\n" for f in flags) + "    })")
    calls.append(_call("observe", [obs, *read_metrics, *checks], inline=0))
    if kept:
        calls.append(f".where({kept})")
    unique_obs = [_slug(f"{table.name}_unique_{n}", taken) for n in range(len(uniques))]
    example_obs = [_slug(f"{table.name}_examples_{n}", taken) for n in range(len(examples))]
    lines.extend(f"{o} = Observation()" for o in (obs, *unique_obs, *example_obs))
    target = py_str("/" + table.name)
    drop = _call(
        "drop", [*(py_str(h) for h in helpers), _control_columns(table.source, names=True)]
    )
    if quarantine:
        lines.append("# Rows failing a quarantine check go to their own folder, the rest to the")
        lines.append("# table: the frame is kept (memory, then disk), so the source is read once.")
        calls.append(".persist()")
        lines.extend(_chain(frame, calls))
        lines.append(_NULLABLE_NOTE)
        lines.append(
            f'{frame}.where(~F.col("_chk_0")){drop}{_NULLABLE}{_WRITE}.save(output_dir + {target})'
        )
        rejected = [
            *(col_ref(c.name) for c in table.columns),
            *(
                f"F.col({py_str(raw_of[c])}).alias({py_str(_source_name(c, read))})"
                for c in read.columns
            ),
            f'{quarantine}.alias("failed_checks")',
            'F.lit(run_id).alias("run_id")',
        ]
        lines.append(
            f'{frame}.where(F.col("_chk_0")){_call("select", rejected, inline=0)}{_NULLABLE}'
            f"{_WRITE}.save(output_dir + {py_str('/' + table.name + REJECTED_SUFFIX)})"
        )
        lines.append(f"{frame}.unpersist()")
        rejected_dir = py_str("/" + table.name + REJECTED_SUFFIX)
        for ex_obs, (index, name, example) in zip(example_obs, examples, strict=True):
            lines.extend([
                f"# {comment_text(name)}: up to 10 examples, read back from the rejected rows",
                "(",
                '    spark.read.format(output_format).option("header", "true")'
                f".load(output_dir + {rejected_dir})",
                '    .where(F.array_contains(F.split(F.col("failed_checks"), "; "), '
                f"{py_str(name)}))",
                "    .limit(10)",
                f'    .observe({ex_obs}, F.concat_ws("\\x1f", F.collect_list({example}))'
                f".alias({py_str(f'examples:{index}')}))",
                '    .write.format("noop").mode("overwrite").save()',
                ")",
            ])  # fmt: skip
    else:
        calls.append(drop)
        lines.extend(_chain(frame, calls))
        lines.append(_NULLABLE_NOTE)
        lines.append(f"{frame}{_NULLABLE}{_WRITE}.save(output_dir + {target})")
    for u_obs, (index, columns) in zip(unique_obs, uniques, strict=True):
        refs = [col_ref(c) for c in columns]
        lines.append(f"# {comment_text(table.name)}: {', '.join(columns)} unique, counted on the "
                     "written output (only those columns are read back)")  # fmt: skip
        lines.extend([
            "(",
            '    spark.read.format(output_format).option("header", "true")'
            f".load(output_dir + {target})",
            f"    .where({' & '.join(f'{r}.isNotNull()' for r in refs)})",
            f"    .groupBy({', '.join(refs)}).count()",
            '    .where(F.col("count") > 1)',
            f'    .observe({u_obs}, F.sum("count").alias("check:{index}"))',
            '    .write.format("noop").mode("overwrite").save()',
            ")",
        ])  # fmt: skip
    return lines, [obs, *unique_obs, *example_obs]


_WRITE = '.write.mode("overwrite").format(output_format).option("header", "true")'
#: Spark writes a column non-nullable whenever its optimiser proves it never null (a
#: literal, concat_ws, a default), which would make each table's schema depend on its
#: rules. A union with an empty, column-less frame (``allowMissingColumns``: typed nulls)
#: makes every written column nullable on local Spark and Spark Connect alike, at the cost
#: of one empty task (no scan, no shuffle). Refused nulls stay a check, not a schema claim:
#: Spark writes NOT NULL only for what it proves never null, and it keeps a filter's
#: ``isNotNull`` out of the written schema, so only a made-up fallback value would do.
_NULLABLE = '.unionByName(spark.range(0, 0, 1, 1).drop("id"), allowMissingColumns=True)'
_NULLABLE_NOTE = "# Every column written nullable: the run's checks, not the schema, refuse nulls."
_DECIMAL = py_str(NUMERIC_WORK_TYPE)


DROPPED_BY = 'F.col("_dropped_by")'
#: Failing values kept per check: the smallest and largest of each of this many buckets
#: (by a hash of the value's text), the ten smallest of them reported. Bounded memory,
#: the same values every run, and distinct values rarely share a bucket.
EXAMPLE_BUCKETS = 10
MAX_EXAMPLES = 10


def _dropped_by(
    table: TablePlan, columns: dict[str, str], text_source: bool, malformed: str | None
) -> str:
    """The ``withColumns`` entry saying which filter drops a row (0: none; -1: a
    malformed record), or "" when no row is dropped. Filters are tried in order, as
    chained ``where``s are: a filter keeps a row only when its condition is true (null
    drops it), and never sees a row an earlier one dropped."""
    if not (table.filters or malformed):
        return ""
    branches = [f"F.when({malformed}, F.lit(-1))  # a malformed record"] if malformed else []
    for n, f in enumerate(table.filters, start=1):
        canonical, _ = check_sql(f.condition, columns, text_source=text_source)
        keep = f"F.coalesce(F.expr({py_str(canonical)}), F.lit(False))"
        note = f"  # {comment_text(f.description)}" if f.description else ""
        branches.append(
            f"{'F' if n == 1 and not malformed else ''}.when(~{keep}, F.lit({n})){note}"
        )
    first, *more = branches
    return ("".join([f'        "_dropped_by": {first}\n',
                     *(f"        {b}\n" for b in more),
                     "        .otherwise(F.lit(0)),\n"]))  # fmt: skip


def _control_columns(source: str, names: bool = False) -> str:
    """The run's control columns as read, carried past the select as ``_ctl:NAME`` (or,
    with ``names``, those names, to drop). Which columns is a run parameter, so the
    approved code does not change with the controls."""
    each = '"_ctl:" + c' if names else 'F.col(c).alias("_ctl:" + c)'
    return f"*[{each} for c in control_columns.get({py_str(source)}, [])]"


def _control_sums(source: str, dropped_by: str | None) -> str:
    """The run's control totals over this source as read (before filters; not over
    malformed records, which are no records of the source)."""
    value = f'F.col("_ctl:" + c).try_cast({_DECIMAL})'
    if dropped_by:
        value = f"F.when({dropped_by} >= 0, {value})"
    return (
        f'*[F.sum({value}).cast("string").alias("sum:" + c) '
        f"for c in control_columns.get({py_str(source)}, [])]"
    )


def _typed_lit(value: str, type_name: str) -> str:
    """A check's bound or value as a literal of the column's type."""
    if _numeric(type_name) and re.fullmatch(r"[-+]?[0-9]+(?:\.[0-9]+)?", value):
        return _num_lit(value)
    if type_name != "string":
        return f"F.lit({py_str(value)}).try_cast({py_str(type_name)})"
    return f"F.lit({py_str(value)})"


def _failing(check: Check, ref: str, type_name: str) -> str:
    """The condition a failing row meets, for one column (null passes all but not null)."""
    match check:
        case NotNull():
            return f"{ref}.isNull()"
        case OneOf(values=values):
            return f"~{ref}.isin({', '.join(_typed_lit(v, type_name) for v in values)})"
        case Between(low=lo, high=hi):
            return f"~{ref}.between({_typed_lit(lo, type_name)}, {_typed_lit(hi, type_name)})"
        case Compare(op=op, value=v):
            return f"~({ref} {op} {_typed_lit(v, type_name)})"
        case Matches(pattern=p):
            return f'~{ref}.cast("string").rlike({py_str(f"^(?:{p})$")})'
    raise UnsafePlanError(f"check {check.kind!r} is not a row check")  # pragma: no cover


def _check_code(
    table: TablePlan,
    read: SourceRead,
    selects: list[str],
    helpers: list[str],
    metrics: list[str],
    kept: str | None,
    raw: dict[str, str],
) -> tuple[list[str], str, list[tuple[int, list[str]]], list[tuple[int, str, str]]]:
    """The table's data checks, added to its one pass: a flag column per row check (in a
    ``withColumns`` after the select, so checks read the target columns; true only for
    rows the filters keep, ``kept``), their counts, up to ten example values each
    (``_examples``), reconciliation sums, and the quarantine split.

    Returns the ``withColumns`` entries (flags, then examples), the failed-checks
    expression of a quarantined row ("" when nothing is quarantined), the ``unique``
    checks to count on the written output and, per quarantine check, its index, name and
    example expression over the rejected rows' columns. ``raw`` (source column -> helper
    column holding it as read) gains every source column a check or the rejected rows
    need."""
    schema = target_schema(table)
    by_name = {c.name: c for c in table.columns}

    def source_value(name: str) -> str:
        found = match_column(name, read.columns) or name
        if found not in raw:
            raw[found] = f"_raw_{len(raw) + 1}"
            helpers.append(raw[found])
            selects.append(f"{col_ref(found)}.alias({py_str(raw[found])})")
        return f"F.col({py_str(raw[found])})"

    flags: list[str] = []
    sampled: list[str] = []  # the example columns, computed from the flags
    failed: list[str] = []
    quarantined: list[str] = []
    examples: list[tuple[int, str, str]] = []
    uniques: list[tuple[int, list[str]]] = []
    for index, check in enumerate(table.checks, start=1):
        columns = [match_column(c, schema) or c for c in check.columns]
        if isinstance(check, Unique):
            uniques.append((index, columns))
            continue
        if isinstance(check, TotalEquals):
            total = [
                col_ref(columns[0]),
                f"{source_value(check.source_column)}.try_cast({_DECIMAL})",
            ]
            if kept:
                total = [f"F.when({kept}, {t})" for t in total]
            metrics.extend([
                f"F.sum({total[0]}).cast(\"string\").alias({py_str(f'total_target:{index}')})",
                f"F.sum({total[1]}).cast(\"string\").alias({py_str(f'total_source:{index}')})",
            ])  # fmt: skip
            continue
        if not isinstance(check, ROW_CHECKS):
            continue  # lookup duplicates: counted with the join
        flag = f"_chk_{index}"
        if isinstance(check, SqlCheck):
            canonical, refs = check_sql(check.expression, schema, text_source=False)
            condition = f"~F.expr({py_str(canonical)})"
            columns = refs
        else:
            parts = [_failing(check, col_ref(c), schema[c]) for c in columns]
            condition = " | ".join(f"({p})" for p in parts) if len(parts) > 1 else parts[0]
        if kept:  # a row the filters drop fails no check (and its SQL is never evaluated)
            condition = f"F.when({kept}, {condition})"
        flags.append(f"{py_str(flag)}: {condition}")
        helpers.append(flag)
        metrics.append(f"F.count_if(F.col({py_str(flag)})).alias({py_str(f'check:{index}')})")
        if check.action != "quarantine":  # quarantined rows are read back for theirs
            column, metric = _examples(index, flag, _example(columns, by_name, source_value))
            sampled.append(column)
            helpers.append(f"_ex_{index}")
            metrics.append(metric)
        failed.append(f"F.when(F.col({py_str(flag)}), F.lit({py_str(check_name(check))}))")
        if check.action == "quarantine":
            quarantined.append(f"F.coalesce(F.col({py_str(flag)}), F.lit(False))")
            stored = _example(columns, by_name, lambda c: f"F.col({py_str(_source_name(c, read))})")
            examples.append((index, check_name(check), stored))
    if not quarantined:
        return [*flags, *sampled], "", uniques, []
    flags.append(f'"_chk_0": {" | ".join(quarantined)}')
    written = f'({kept}) & ~F.col("_chk_0")' if kept else '~F.col("_chk_0")'
    metrics[0] = f'F.count_if({written}).alias("rows_written")'
    metrics.append('F.count_if(F.col("_chk_0")).alias("quarantined")')
    for name in read.columns:
        source_value(name)
    helpers.append("_chk_0")
    return [*flags, *sampled], f'F.concat_ws("; ", {", ".join(failed)})', uniques, examples


def _examples(index: int, flag: str, example: str) -> tuple[str, str]:
    """Up to ``MAX_EXAMPLES`` distinct failing values of one check, in the same pass and
    bounded memory (never a list of all failures): a failing row's value goes to one of
    ``EXAMPLE_BUCKETS`` buckets by a hash of its text; each bucket keeps its smallest and
    largest; the smallest of those are reported, sorted. The same data gives the same
    examples, however Spark splits the work. Returns the ``withColumns`` entry (the value
    and its bucket, null for passing rows) and the metric."""
    helper = f"_ex_{index}"
    bucket = f"F.pmod(F.xxhash64({example}), F.lit({EXAMPLE_BUCKETS}))"
    value = (f"F.when(F.col({py_str(flag)}), "
             f'F.struct({bucket}.alias("bucket"), {example}.alias("value")))')  # fmt: skip
    bucket, text = py_str(f"{helper}.bucket"), py_str(f"{helper}.value")
    picks = "".join(
        f"            F.min(F.when(F.col({bucket}) == {b}, F.col({text}))), "
        f"F.max(F.when(F.col({bucket}) == {b}, F.col({text}))),\n"
        for b in range(EXAMPLE_BUCKETS)
    )
    metric = (f'F.concat_ws("\\x1f", F.slice(F.array_sort(F.array_distinct(F.array(\n{picks}'
              f"        ))), 1, {MAX_EXAMPLES})).alias({py_str(f'examples:{index}')})")  # fmt: skip
    return f"{py_str(helper)}: {value}", metric


def _source_name(column: str, read: SourceRead) -> str:
    """A source column's name in the rejected rows."""
    return "source_" + (match_column(column, read.columns) or column)


def _example(
    columns: list[str], by_name: dict[str, ColumnPlan], source_value: Callable[[str], str]
) -> str:
    """A failing row's values as text: ``-12.5 (source '-12,500')``, ``A=1, B=2``."""
    parts = []
    for name in columns:
        value = f'F.coalesce({col_ref(name)}.cast("string"), F.lit("null"))'
        column = by_name.get(name)
        if column is not None and column.reads_source and column.source_column:
            raw = source_value(column.source_column)
            value = (f'F.concat({value}, F.lit(" (source \'"), '
                     f'F.coalesce({raw}.cast("string"), F.lit("null")), F.lit("\')"))')  # fmt: skip
        parts.append(
            value if len(columns) == 1 else f"F.concat(F.lit({py_str(name + '=')}), {value})"
        )
    return parts[0] if len(parts) == 1 else f'F.concat_ws(", ", {", ".join(parts)})'
