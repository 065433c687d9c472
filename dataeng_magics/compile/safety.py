"""Safety checks: plan text stays data, and only the narrow code shape we emit may run.

Three layers, each independent of how the plan was made: names become literals
(``py_str``, ``sql_ident``, ``comment_text``); Spark SQL fragments are parsed with
sqlglot, checked against the source's columns and a deny-list of functions that reach
the JVM, files, network or secrets, and re-rendered from the parsed tree
(``check_sql``); and generated source must pass an AST allow-list (``check_generated``)
before anyone caches or runs it.
"""

from __future__ import annotations

import ast
import difflib
import re
import threading
from typing import Any

from dataeng_magics.errors import UnsafePlanError

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
#: Formats the run reads as text (every field a string); SQL and lookup keys see them with
#: the types their sample showed.
TEXT_FORMATS = ("csv", "excel", "fixed-width", "xml")
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
#: Parameters a run sets that cells materialised before them lack (they default).
RUN_PARAMETERS = {"run_id": "", "control_columns": {}, "multiline": {}}


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


#: The one SQL statement generated code may run (publishing to Delta): a NOT NULL
#: constraint on one column of a path-addressed Delta table, both names backtick-quoted.
_NOT_NULL_SQL = re.compile(
    r"ALTER TABLE delta\.`(?:[^`]|``)+` ALTER COLUMN `(?:[^`]|``)+` SET NOT NULL"
)


def not_null_sql(path: str, column: str) -> str:
    """``ALTER TABLE delta.`path` ALTER COLUMN `column` SET NOT NULL``, names quoted.
    Refuses ``${``: Spark substitutes variables in a statement's text before parsing."""
    sql = f"ALTER TABLE delta.{sql_ident(path)} ALTER COLUMN {sql_ident(column)} SET NOT NULL"
    _no_substitution(sql)
    return sql


# --- SQL fragments ----------------------------------------------------------------


def match_column(name: str, columns: dict[str, str]) -> str | None:
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
            found = match_column(node.name, columns)
            if found is None:
                folded = {c.lower(): c for c in columns}  # Spark ignores case; so do hints
                close = difflib.get_close_matches(node.name.lower(), list(folded), n=1)
                hint = f"; did you mean {folded[close[0]]!r}?" if close else ""
                raise UnsafePlanError(f"column {node.name!r} is not in the source{hint}")
            referenced.append(found)

    def retype(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Column):
            found = match_column(node.name, columns) or node.name
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


def _try_cast_sql(sql_type: str) -> Any:
    from sqlglot import exp

    return exp.DataType.build(sql_type, dialect="spark")


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
    ast.Lt,  # fixed-width: a line shorter than the layout
    ast.LtE,
    ast.Gt,
    ast.GtE,  # data checks
    ast.Starred,
    ast.ListComp,
    ast.comprehension,  # control totals: columns a run names
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
        # data checks, deterministic lookups, quarantine
        "agg", "array_contains", "between", "collect_list", "concat", "eqNullSafe", "groupBy",
        "isin", "limit", "max", "min", "persist", "rlike", "split", "struct", "sum",
        "unpersist", "withColumns",
        # up to ten examples per check in the same pass (hash buckets, bounded)
        "array", "array_distinct", "array_sort", "pmod", "slice", "xxhash64",
        # readers: a CSV header's schema plus the corrupt-record column (StructType.add),
        # fixed-width lines (text, length), JSON document records (inline), XML (load)
        "add", "inline", "length", "load", "text",
        # every written column nullable: a union with an empty frame (range(0) drops "id")
        "range", "unionByName",
    }
)  # fmt: skip
_PARAMETER_NODES = (
    ast.Module, ast.Assign, ast.Name, ast.Store, ast.Load, ast.Constant, ast.Dict, ast.List
)  # fmt: skip
FORBIDDEN_NAMES = {
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


_PARSING = threading.Lock()


def parse_python(code: str) -> ast.Module:
    """``ast.parse``, one call at a time: CPython 3.11 before 3.11.8 shares the AST
    converter's recursion counter between threads (gh-106905), so two parses at once
    (a batch's workers, a panel's background preview) fail with ``SystemError``. Code
    that runs beside the kernel, which parses every cell unlocked, must not parse."""
    with _PARSING:
        return ast.parse(code)


def check_generated(code: str, *, parameters: bool = False, publish: bool = False) -> None:
    """Refuse any source that is not the narrow shape the compiler emits. ``publish``:
    the Delta publishing cell, which may also run ``spark.sql`` with one literal
    statement of the ``not_null_sql`` shape (never in the approved cell)."""
    try:
        tree = parse_python(code)
    except SyntaxError as exc:
        raise UnsafePlanError(f"generated code does not parse: {exc.msg}") from None
    allowed = _PARAMETER_NODES if parameters else _ALLOWED_NODES
    defined = {"spark", *PARAMETERS, *RUN_PARAMETERS}
    statements: set[int] = set()  # the ``spark.sql`` attributes of checked statements
    for node in ast.walk(tree):  # breadth first: a call comes before its ``.sql``
        if publish and isinstance(node, ast.Call) and _is_not_null_statement(node):
            statements.add(id(node.func))
        if isinstance(node, ast.Attribute) and id(node) in statements:
            continue
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
        if isinstance(node, ast.Name) and (node.id in FORBIDDEN_NAMES or node.id.startswith("_")):
            raise UnsafePlanError(f"generated code uses forbidden name {node.id!r}")
        if isinstance(node, ast.Import | ast.ImportFrom):
            defined.update((a.asname or a.name).split(".")[0] for a in node.names)
        if isinstance(node, ast.Starred) and not isinstance(node.value, ast.ListComp):
            raise UnsafePlanError("generated code unpacks something other than its control loop")
        if isinstance(node, ast.ListComp):
            _check_control_loop(node)
        if isinstance(node, ast.comprehension):
            defined.update(n.id for n in ast.walk(node.target) if isinstance(n, ast.Name))
        if isinstance(node, ast.Assign):
            for target in node.targets:
                for name in ast.walk(target):
                    if isinstance(name, ast.Name):
                        defined.add(name.id)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in defined:
            raise UnsafePlanError(f"generated code reads undefined name {node.id!r}")


def _is_not_null_statement(node: ast.Call) -> bool:
    """``spark.sql("ALTER TABLE delta.`...` ALTER COLUMN `...` SET NOT NULL")``, exactly."""
    func, args = node.func, node.args
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "sql"
        and isinstance(func.value, ast.Name)
        and func.value.id == "spark"
        and not node.keywords
        and len(args) == 1
        and isinstance(args[0], ast.Constant)
        and isinstance(args[0].value, str)
        and "${" not in args[0].value
        and _NOT_NULL_SQL.fullmatch(args[0].value) is not None
    )


def _check_control_loop(node: ast.ListComp) -> None:
    """The one loop the compiler emits: over the columns a run's control totals name
    (``for c in control_columns.get("trades", [])``); any other is refused."""
    [loop, *more] = node.generators
    iterated = loop.iter
    if not (
        not more
        and not loop.ifs
        and isinstance(loop.target, ast.Name)
        and isinstance(iterated, ast.Call)
        and isinstance(iterated.func, ast.Attribute)
        and isinstance(iterated.func.value, ast.Name)
        and iterated.func.value.id == "control_columns"
    ):
        raise UnsafePlanError("generated code contains a forbidden ListComp")


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
