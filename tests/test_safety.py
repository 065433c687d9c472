"""Safety is structural: hostile text anywhere in a workbook or a plan can only become data.

A corpus of hostile workbooks (names, rules, filters, values, sheet titles) goes through
the real pipeline. Each case either stops with a clear error, stays unresolved (which
blocks compilation), or compiles to code that passes the AST allow-list, whose string
constants are plain literals, and whose structure is exactly that of the same workbook
with a harmless word in the hostile text's place. A few are run on Spark.
"""

from __future__ import annotations

import ast
import csv
import io
import tokenize
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataeng_magics.agent.offline import OfflinePlanner
from dataeng_magics.compile.cell import parse_parameters, render_parameters, run_parameters
from dataeng_magics.compile.codegen import compile_plan
from dataeng_magics.compile.safety import check_generated, check_sql, py_str
from dataeng_magics.errors import DataEngMagicsError, MappingError, PlanError, UnsafePlanError
from dataeng_magics.mapping.read import read_mapping
from dataeng_magics.plan.model import (
    ColumnPlan,
    Concat,
    Constant,
    FilterPlan,
    Lookup,
    Multiply,
    ParseDate,
    Plan,
    SourceRead,
    Sql,
    TablePlan,
)
from dataeng_magics.run.executors.base import Job
from dataeng_magics.run.executors.local import execute
from dataeng_magics.sources.sampling import sample

# --- hostile text --------------------------------------------------------------------------

PY = 'x"); import os; os.system("touch PWNED") #'
PY1 = "x'); import os; os.system('touch PWNED') #"
NEWLINE = 'a\nimport os\nos.system("touch PWNED")\n#'
CR = 'a\rimport os; os.system("touch PWNED")\r#'
TRIPLE = '"""\nimport os; os.system("touch PWNED")\n"""'
TRIPLE1 = "'''; __import__('os').system('touch PWNED'); '''"
BACKSLASH = "C:\\new\\" + "x\\'y\\\"z \\x41 \\N{BULLET} \\u2028 end\\"
DUNDER = "__import__('os').system('touch PWNED')"
TRAVERSAL = "../../etc"
LINE_SEP = "a\u2028import os\u2029os.system('touch PWNED')"
RTL = "safe\u202e#)'DENWP hcuot'(metsys.so ;so tropmi"
LONG = "L" * 3000
ENV = "${env:HOME}"
TITLE = 'x");import os;os.system("w")#'  # a sheet title holds 31 characters at most
HOSTILE = {
    "py": PY,
    "py1": PY1,
    "newline": NEWLINE,
    "cr": CR,
    "triple": TRIPLE,
    "triple1": TRIPLE1,
    "backslash": BACKSLASH,
    "dunder": DUNDER,
    "traversal": TRAVERSAL,
    "linesep": LINE_SEP,
    "rtl": RTL,
    "title": TITLE,
    "long": LONG,
    "env": ENV,
}


def q(text: str) -> str:
    """Quote a value the way the rule vocabulary reads it."""
    return "'" + text.replace("'", "''") + "'"


# --- a small workbook that the corpus corrupts one cell at a time --------------------------


@dataclass
class Book:
    title: str = "Mapping"
    table_column: bool = True
    header: list[str] = field(default_factory=lambda: ["id", "amount", "kind", "note"])
    rows: list[list[Any]] = field(
        default_factory=lambda: [
            ["T", "ID", "string", "src", "id", "trim", "Y", None],
            ["T", "AMT", "decimal(18,2)", "src", "amount", "multiply by 1000", "N", None],
            ["T", "KIND", "string", "src", "kind", "map A=Alpha, B=Beta, else Other", "N", None],
            ["T", "SYS", "string", None, None, "constant 'OMS'", "N", None],
            ["T", "NOTE", "string", "src", "note", "", "N", "n/a"],
            ["T", "BOTH", "string", "src", None, "concat id, kind with '-'", "N", None],
            ["T", "LABEL", "string", "ref", "label", "lookup label from ref on kind", "N", None],
        ]
    )
    sources: list[list[str]] = field(
        default_factory=lambda: [["src", "data.csv", "csv"], ["ref", "ref.parquet", "parquet"]]
    )
    filters: list[list[str]] = field(default_factory=lambda: [["T", "kind <> 'Z'", "drop Z"]])

    def row(self, name: str) -> list[Any]:
        return next(r for r in self.rows if r[1] == name)

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        with (folder / "data.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(self.header)
            writer.writerows([["1", "2.5", "A", "hello"], ["2", "", "B", ""], ["3", "1", "Z", "x"]])
        pq.write_table(
            pa.table({"kind": ["A", "B"], "label": ["first", "second"]}), folder / "ref.parquet"
        )
        book = openpyxl.Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.title = self.title
        header = [
            "Target Table",
            "Target Column",
            "Data Type",
            "Source",
            "Source Column",
            "Transformation Rule",
            "Required",
            "Default Value",
        ]
        cut = 0 if self.table_column else 1
        sheet.append(header[cut:])
        for row in self.rows:
            sheet.append(row[cut:])
        listing = book.create_sheet("Sources")
        listing.append(["Source Name", "File", "Format"])
        for source in self.sources:
            listing.append(source)
        filters = book.create_sheet("Filters")
        filters.append(["Target Table", "Condition", "Description"])
        for f in self.filters:
            filters.append(f)
        book.save(folder / "mapping.xlsx")
        return folder / "mapping.xlsx"


def _rename_table(book: Book, text: str) -> None:
    for row in book.rows:
        row[0] = text
    for f in book.filters:
        f[0] = text


def _sheet_title(book: Book, text: str) -> None:
    book.title, book.table_column = text, False
    for f in book.filters:
        f[0] = text


def _source_name(book: Book, text: str) -> None:
    book.sources[0][0] = text
    for row in book.rows:
        if row[3] == "src":
            row[3] = text


def _lookup_source(book: Book, text: str) -> None:
    book.sources[1][0] = text
    book.row("LABEL")[3] = text
    book.row("LABEL")[5] = f"lookup label from {q(text)} on kind"


def _source_column(book: Book, text: str) -> None:
    book.header[3] = text
    book.row("NOTE")[4] = text


def _set(row: str, index: int, template: str = "{}") -> Callable[[Book, str], None]:
    def apply(book: Book, text: str) -> None:
        book.row(row)[index] = template.format(q(text)) if template != "{}" else text

    return apply


def _filter(index: int) -> Callable[[Book, str], None]:
    def apply(book: Book, text: str) -> None:
        book.filters[0][index] = text

    return apply


def _date_rule(book: Book, text: str) -> None:
    book.row("NOTE")[2] = "date"
    book.row("NOTE")[5] = f"parse date {q(text)}"
    book.row("NOTE")[7] = None


LOCATIONS: dict[str, Callable[[Book, str], None]] = {
    "target_column": _set("ID", 1),
    "table": _rename_table,
    "sheet_title": _sheet_title,
    "source_name": _source_name,
    "lookup_source": _lookup_source,
    "source_column": _source_column,
    "rule": _set("NOTE", 5),
    "filter": _filter(1),
    "filter_description": _filter(2),
    "default": _set("NOTE", 7),
    "constant": _set("SYS", 5, "constant {}"),
    "map_value": _set("KIND", 5, "map A={}, B=Beta, else Other"),
    "map_key": _set("KIND", 5, "map {}=Alpha, else Other"),
    "concat_separator": _set("BOTH", 5, "concat id, kind with {}"),
    "date_pattern": _date_rule,
    "target_type": _set("AMT", 2),
}
#: What each location holds when it is harmless (the structural twin of a hostile case).
BENIGN = {
    "sheet_title": "Mapping",
    "rule": "trim",
    "filter": "kind <> 'Q'",
    "date_pattern": "DD/MM/YYYY",
    "target_type": "decimal(18,2)",
}

COMPILES, UNRESOLVED = "compiles", "unresolved"
CORPUS: list[tuple[str, str, Any]] = [
    # Names become quoted literals (or folder names, checked).
    ("target_column", "py", COMPILES),
    ("target_column", "py1", COMPILES),
    ("target_column", "dunder", COMPILES),
    ("target_column", "linesep", COMPILES),
    ("target_column", "rtl", MappingError),  # an invisible character in a name (issue 12)
    ("target_column", "long", COMPILES),
    ("target_column", "backslash", COMPILES),
    ("target_column", "newline", UNRESOLVED),  # control characters in a column name
    ("table", "traversal", MappingError),
    ("table", "newline", MappingError),
    ("table", "py", COMPILES),
    ("table", "dunder", COMPILES),
    ("sheet_title", "title", COMPILES),  # no Target Table column: the title names the table
    ("source_name", "py", COMPILES),
    ("source_name", "newline", COMPILES),
    ("source_name", "cr", COMPILES),
    ("source_name", "dunder", COMPILES),
    ("source_name", "linesep", COMPILES),
    ("source_name", "long", COMPILES),
    ("lookup_source", "py1", COMPILES),
    ("lookup_source", "newline", MappingError),  # the rule's spaces no longer match the name
    ("source_column", "py", COMPILES),
    ("source_column", "newline", COMPILES),
    ("source_column", "triple", COMPILES),
    ("source_column", "backslash", COMPILES),
    # Rules are vocabulary or parsed SQL, nothing else.
    ("rule", "py", UNRESOLVED),
    ("rule", "dunder", UNRESOLVED),
    ("rule", "sql: reflect('java.lang.Runtime', 'getRuntime')", UNRESOLVED),
    ("rule", "sql: java_method('java.lang.System', 'getenv', 'HOME')", UNRESOLVED),
    ("rule", "sql: upper(TRY_REFLECT('java.lang.System', 'getenv', 'HOME'))", UNRESOLVED),
    ("rule", "sql: (SELECT 1)", UNRESOLVED),
    ("rule", "sql: note; DROP TABLE x", UNRESOLVED),
    ("rule", "sql: ${env:HOME}", UNRESOLVED),
    ("rule", "sql: concat(note, '${env:HOME}')", UNRESOLVED),
    ("rule", "sql: IDENTIFIER('note')", UNRESOLVED),
    ("rule", "sql: main.default.evil(note)", UNRESOLVED),
    ("rule", "sql: count(*)", UNRESOLVED),
    ("rule", "sql: transform(array(note), x -> x)", UNRESOLVED),
    ("rule", "sql: nope(secret_column)", UNRESOLVED),
    ("filter", "kind IN (SELECT kind FROM other)", MappingError),
    ("filter", "EXISTS (SELECT 1)", MappingError),
    ("filter", "reflect('java.lang.Runtime', 'getRuntime') IS NOT NULL", MappingError),
    ("filter", "kind <> 'Z'; DROP TABLE x", MappingError),
    ("filter", "kind <> '${env:HOME}'", MappingError),
    ("filter", "t.kind <> 'Z'", MappingError),
    ("filter", "py", MappingError),
    ("filter_description", "newline", COMPILES),
    ("filter_description", "cr", COMPILES),
    ("filter_description", "linesep", COMPILES),
    ("filter_description", "py", COMPILES),
    # Values become literals.
    ("default", "py", COMPILES),
    ("default", "newline", COMPILES),
    ("default", "triple", COMPILES),
    ("default", "backslash", COMPILES),
    ("default", "env", COMPILES),  # a literal, never parsed by Spark's SQL parser
    ("constant", "py", COMPILES),
    ("constant", "triple1", COMPILES),
    ("constant", "backslash", COMPILES),
    ("constant", "rtl", COMPILES),
    ("map_value", "backslash", COMPILES),
    ("map_value", "py1", COMPILES),
    ("map_key", "dunder", COMPILES),
    ("concat_separator", "triple", COMPILES),
    ("date_pattern", "py1", UNRESOLVED),
    ("target_type", "py", MappingError),
]


def hostile_text(name: str) -> str:
    return HOSTILE.get(name, name)


def build(folder: Path, location: str | None = None, text: str = "") -> Path:
    book = Book()
    if location is not None:
        LOCATIONS[location](book, text)
    return book.write(folder)


def draft(path: Path) -> Plan:
    mapping = read_mapping(path)
    schemas = {name: sample(spec).schema for name, spec in mapping.sources.items()}
    return OfflinePlanner().draft("CLIENT", mapping, schemas).plan


def skeleton(code: str) -> str:
    """The code's structure with every string blanked and every variable renumbered."""
    tree = ast.parse(code)
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
        elif isinstance(node, ast.Name):
            node.id = names.setdefault(node.id, f"v{len(names)}")
    return ast.dump(tree)


def _fold(text: str) -> str:
    return " ".join(text.split())


def string_constants(code: str) -> list[str]:
    tree = ast.parse(code)
    values = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            segment = ast.get_source_segment(code, node)
            assert segment is not None
            assert ast.literal_eval(segment) == node.value  # a plain literal, nothing more
            values.append(node.value)
    return values


def comments(code: str) -> list[str]:
    tokens = tokenize.generate_tokens(io.StringIO(code).readline)
    return [t.string for t in tokens if t.type == tokenize.COMMENT]


def assert_only_data(code: str, twin: str) -> None:
    """The invariants of every compiled case."""
    check_generated(code)
    string_constants(code)
    assert skeleton(code) == skeleton(twin)
    assert all(c.isprintable() for c in comments(code))  # no comment hides a line break


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Per location, the code compiled from the same workbook holding a harmless word."""
    out = {}
    for location in LOCATIONS:
        folder = tmp_path_factory.mktemp(f"twin_{location}")
        out[location] = compile_plan(draft(build(folder, location, BENIGN.get(location, "ok"))))
    return out


@pytest.mark.parametrize(
    ("location", "text", "expected"),
    CORPUS,
    ids=[f"{loc}-{text if text in HOSTILE else text[:30]}" for loc, text, _ in CORPUS],
)
def test_hostile_workbook(
    tmp_path: Path, twins: dict[str, str], location: str, text: str, expected: Any
) -> None:
    payload = hostile_text(text)
    path = build(tmp_path, location, payload)
    if isinstance(expected, type):
        with pytest.raises(expected) as info:
            draft(path)
        assert "\n" not in str(info.value)  # one clear line
        return
    plan = draft(path)
    if expected == UNRESOLVED:
        assert plan.unresolved()
        with pytest.raises(PlanError, match="unresolved"):
            compile_plan(plan)
        return
    assert not plan.unresolved(), plan.unresolved()
    code = compile_plan(plan)
    assert_only_data(code, twins[location])
    constants = string_constants(code)
    if location == "filter_description":
        note = next(f.description for t in plan.tables for f in t.filters)
        assert any(
            c.endswith("# " + (note if note.isprintable() else py_str(note)))
            for c in comments(code)
        )
    else:
        # The text is in the code as data, whole (rules and the .xlsx format may fold its
        # whitespace: a rule is one line, and XML turns a carriage return into a newline).
        assert any(_fold(payload) in _fold(c) for c in constants)


# --- running a hostile workbook ------------------------------------------------------------


@pytest.mark.spark
def test_hostile_workbook_runs_as_data(
    spark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hostile names and values everywhere at once: the run writes them as data and nothing
    else happens (no PWNED file next to us, where ``os.system`` would have put it)."""
    book = Book()
    book.row("ID")[1] = PY
    _source_column(book, PY1)
    _source_name(book, NEWLINE)
    _rename_table(book, DUNDER)
    book.row("SYS")[5] = f"constant {q(TRIPLE1)}"
    book.row("KIND")[5] = f"map A={q(BACKSLASH)}, B={q(RTL)}, else {q(LINE_SEP)}"
    book.row("NOTE")[7] = TRIPLE
    book.row("BOTH")[5] = f"concat id, kind with {q(PY)}"
    book.filters[0][2] = NEWLINE
    mapping_path = book.write(tmp_path / "in")
    plan = draft(mapping_path)
    code = compile_plan(plan)
    mapping = read_mapping(mapping_path)
    monkeypatch.chdir(tmp_path)
    paths = {name: spec.path for name, spec in mapping.sources.items()}
    cell = render_parameters(paths, str(tmp_path / "out"), "parquet") + "\n" + code
    metrics = execute(cell, spark, Job(name="hostile", client="C", key="0" * 64, code=cell))
    assert not list(tmp_path.rglob("PWNED")) and not Path("PWNED").exists()
    assert metrics[DUNDER]["rows_written"] == 2  # kind 'Z' filtered out
    out = spark.read.parquet(str(tmp_path / "out" / DUNDER))
    assert out.columns == [PY, "AMT", "KIND", "SYS", "NOTE", "BOTH", "LABEL"]
    rows = sorted((r.asDict() for r in out.collect()), key=lambda r: r[PY])
    assert [r[PY] for r in rows] == ["1", "2"]
    assert [r["KIND"] for r in rows] == [BACKSLASH, RTL]
    assert {r["SYS"] for r in rows} == {TRIPLE1}
    assert [r["NOTE"] for r in rows] == ["hello", TRIPLE]  # blank note -> hostile default
    assert [r["BOTH"] for r in rows] == [f"1{PY}A", f"2{PY}B"]
    assert [r["LABEL"] for r in rows] == ["first", "second"]


# --- hostile plans (what an LLM could hand back) -------------------------------------------

COLUMNS = {"id": "string", "amount": "double", "note": "string"}


def plan_of(
    *columns: ColumnPlan,
    filters: tuple[str, ...] = (),
    table: str = "T",
    source: str = "src",
    read: SourceRead | None = None,
    client: str = "C",
) -> Plan:
    return Plan(
        client=client,
        sources={source: read or SourceRead(format="csv", columns=COLUMNS)},
        tables=[
            TablePlan(
                name=table,
                source=source,
                columns=list(columns),
                filters=[FilterPlan(condition=f) for f in filters],
            )
        ],
    )


ID = ColumnPlan(name="ID", type="string", source_column="id")


def _col(
    name: str = "A", type_: str = "string", source_column: str | None = None, *steps: Any
) -> ColumnPlan:
    return ColumnPlan(name=name, type=type_, source_column=source_column, steps=list(steps))


@dataclass
class PlanCase:
    plan: Callable[[], Plan]
    error: type[Exception] | None = None
    twin: Callable[[], Plan] | None = None  # same structure, harmless text
    data: str | None = None  # must be in the code as (part of) a string literal


PLAN_CORPUS: dict[str, PlanCase] = {
    "client-newline": PlanCase(lambda: plan_of(ID, client=NEWLINE), twin=lambda: plan_of(ID)),
    "client-triple": PlanCase(lambda: plan_of(ID, client=TRIPLE), twin=lambda: plan_of(ID)),
    "source-newline": PlanCase(
        lambda: plan_of(ID, source=NEWLINE), twin=lambda: plan_of(ID), data=NEWLINE
    ),
    "source-dunder": PlanCase(
        lambda: plan_of(ID, source=DUNDER), twin=lambda: plan_of(ID), data=DUNDER
    ),
    "table-traversal": PlanCase(lambda: plan_of(ID, table=TRAVERSAL), UnsafePlanError),
    "table-absolute": PlanCase(lambda: plan_of(ID, table="/etc/cron.d"), UnsafePlanError),
    "table-backslash": PlanCase(lambda: plan_of(ID, table="..\\..\\x"), UnsafePlanError),
    "table-nul": PlanCase(lambda: plan_of(ID, table="a\x00b"), UnsafePlanError),
    "table-empty": PlanCase(lambda: plan_of(ID, table=" "), UnsafePlanError),
    "column-nul": PlanCase(lambda: plan_of(_col("a\x00", "string", "id")), UnsafePlanError),
    "column-newline": PlanCase(lambda: plan_of(_col(NEWLINE, "string", "id")), UnsafePlanError),
    "column-empty": PlanCase(lambda: plan_of(_col("", "string", "id")), UnsafePlanError),
    "column-escape": PlanCase(lambda: plan_of(_col("\x1b[2J", "string", "id")), UnsafePlanError),
    "column-code": PlanCase(
        lambda: plan_of(_col(PY, "string", "id")), twin=lambda: plan_of(ID), data=PY
    ),
    "source-column-backtick": PlanCase(
        lambda: plan_of(
            _col("X", "string", "a` STRING, `b"),
            read=SourceRead(format="parquet", columns={"a` STRING, `b": "string"}),
        ),
        twin=lambda: plan_of(ID, read=SourceRead(format="parquet", columns={"id": "string"})),
        data="`a`` STRING, ``b` STRING",
    ),
    "csv-options": PlanCase(
        lambda: plan_of(
            ID, read=SourceRead(format="csv", delimiter=PY, encoding=TRIPLE, columns=COLUMNS)
        ),
        twin=lambda: plan_of(ID),
        data=TRIPLE,
    ),
    "excel-sheet": PlanCase(
        lambda: plan_of(ID, read=SourceRead(format="excel", excel_sheet=NEWLINE, columns=COLUMNS)),
        twin=lambda: plan_of(ID, read=SourceRead(format="excel", excel_sheet="s", columns=COLUMNS)),
        data=NEWLINE,
    ),
    "constant-everything": PlanCase(
        lambda: plan_of(_col("A", "string", None, Constant(value=TRIPLE + BACKSLASH + LINE_SEP))),
        twin=lambda: plan_of(_col("A", "string", None, Constant(value="ok"))),
        data=TRIPLE + BACKSLASH + LINE_SEP,
    ),
    "multiply-code": PlanCase(
        lambda: plan_of(_col("A", "decimal(18,2)", "amount", Multiply(by="1); import os; ("))),
        PlanError,
    ),
    "date-pattern-code": PlanCase(
        lambda: plan_of(_col("A", "date", "note", ParseDate(pattern=PY1))), PlanError
    ),
    "date-output-code": PlanCase(
        lambda: plan_of(
            _col("A", "string", "note", ParseDate(pattern="DD/MM/YYYY", output_pattern=PY))
        ),
        PlanError,
    ),
    "type-code": PlanCase(lambda: plan_of(_col("A", PY, "id")), PlanError),
    "sql-reflect": PlanCase(
        lambda: plan_of(
            _col("A", "string", None, Sql(expression="reflect('java.lang.Runtime', 'exit')"))
        ),
        UnsafePlanError,
    ),
    "sql-env": PlanCase(
        lambda: plan_of(_col("A", "string", None, Sql(expression="concat(note, '${env:HOME}')"))),
        UnsafePlanError,
    ),
    "sql-python": PlanCase(
        lambda: plan_of(_col("A", "string", None, Sql(expression=DUNDER))), UnsafePlanError
    ),
    "filter-subquery": PlanCase(
        lambda: plan_of(ID, filters=("id IN (SELECT id FROM t)",)), UnsafePlanError
    ),
    "filter-java": PlanCase(
        lambda: plan_of(ID, filters=("java_method('a', 'b') = id",)), UnsafePlanError
    ),
    "lookup-unknown-source": PlanCase(
        lambda: plan_of(_col("A", "string", "x", Lookup(column="x", source=PY, key="id"))),
        PlanError,
    ),
    "concat-unknown-column": PlanCase(
        lambda: plan_of(_col("A", "string", None, Concat(columns=["id", PY]))), PlanError
    ),
}


@pytest.mark.parametrize("case", PLAN_CORPUS.values(), ids=PLAN_CORPUS.keys())
def test_hostile_plan(case: PlanCase) -> None:
    plan = case.plan()
    if case.error is not None:
        with pytest.raises(case.error) as info:
            compile_plan(plan)
        assert isinstance(info.value, DataEngMagicsError)
        assert "\n" not in str(info.value)
        return
    code = compile_plan(plan)
    assert case.twin is not None
    assert_only_data(code, compile_plan(case.twin()))
    assert code.splitlines()[0].endswith(f"client {py_str(plan.client)}.")
    if case.data is not None:
        assert any(case.data in c for c in string_constants(code))


# --- the AST allow-list on its own ---------------------------------------------------------

REJECTED_CODE = {
    "import-os": "import os",
    "from-os": "from os import system",
    "import-lookalike": "import pysparkling",
    "from-lookalike": "from pyspark_evil import x",
    "dunder-import": "__import__('os')",
    "eval": "eval('1')",
    "exec": "exec('1')",
    "open": "open('/etc/passwd')",
    "compile": "compile('1', 'x', 'exec')",
    "getattr": "getattr(spark, 'read')",
    "globals": "globals()",
    "builtins": "__builtins__",
    "jvm": "spark._jvm",
    "gateway": "spark.sparkContext._gateway",
    "dunder-attr": "x = ().__class__",
    "spark-sql": "spark.sql(\"SELECT reflect('java.lang.Runtime', 'getRuntime')\")",
    "spark-context": "sc = spark.sparkContext",
    "session-from-frame": "s = spark.read.csv(source_paths['a']).sparkSession",
    "rdd": "r = spark.read.csv(source_paths['a']).rdd",
    "collect": "r = spark.read.csv(source_paths['a']).collect()",
    "to-pandas": "r = spark.read.csv(source_paths['a']).toPandas()",
    "call-function": "from pyspark.sql import functions as F\nx = F.call_function('reflect')",
    "expr-reflect": "from pyspark.sql import functions as F\n"
    "x = F.expr(\"reflect('java.lang.Runtime', 'getRuntime')\")",
    "expr-env": "from pyspark.sql import functions as F\nx = F.expr(\"'${env:HOME}'\")",
    "expr-variable": "from pyspark.sql import functions as F\ny = 'a'\nx = F.expr(y)",
    "udf": "from pyspark.sql import functions as F\nx = F.udf(F.col)",
    "lambda": "f = lambda: 1",
    "def": "def f():\n    return 1",
    "async-def": "async def f():\n    return 1",
    "class": "class A:\n    pass",
    "for": "for x in []:\n    pass",
    "with": "with spark:\n    pass",
    "comprehension": "x = [output_dir for y in source_paths]",
    "f-string": "x = f'{spark}'",
    "if-expression": "x = spark if output_dir else spark",
    "undefined": "x = y",
    "starred-call": "x = spark.read.csv(*source_paths)",
    "syntax-error": "x = (",
}


@pytest.mark.parametrize("code", REJECTED_CODE.values(), ids=REJECTED_CODE.keys())
def test_check_generated_rejects(code: str) -> None:
    with pytest.raises(UnsafePlanError):
        check_generated(code)


def test_check_generated_accepts_the_compilers_own_shapes(tmp_path: Path) -> None:
    check_generated(compile_plan(draft(build(tmp_path))))
    check_generated("from pyspark.sql import functions as F\nx = F.expr('`a` + 1')")


@pytest.mark.parametrize(
    "block",
    [
        "source_paths = {}\noutput_dir = open('x')\noutput_format = 'parquet'",
        "source_paths = {}\noutput_dir = 'x'\noutput_format = 'p'\nimport os",
        "source_paths = {'a': spark}\noutput_dir = 'x'\noutput_format = 'p'",
        "source_paths = {}\noutput_dir = 'x' + 'y'\noutput_format = 'p'",
    ],
)
def test_parameters_block_holds_literals_only(block: str) -> None:
    with pytest.raises(UnsafePlanError):
        parse_parameters(block)


def test_parameters_block_round_trips_hostile_paths() -> None:
    paths = {NEWLINE: "/data/" + TRIPLE, PY: "abfss://c@a.dfs.core.windows.net/" + BACKSLASH}
    block = render_parameters(paths, "/out/" + PY1, "parquet")
    values = parse_parameters(block)
    assert values == {
        "source_paths": paths,
        "output_dir": "/out/" + PY1,
        "output_format": "parquet",
        "run_id": "",  # the run's own parameters, set by each run
        "control_columns": {},
        "multiline": {},  # every CSV read whole-record unless a run found it safe by lines
    }
    controls = {NEWLINE: [PY, TRIPLE]}
    overridden = parse_parameters(block + run_parameters(BACKSLASH, controls, {TRIPLE: "false"}))
    assert overridden["run_id"] == BACKSLASH and overridden["control_columns"] == controls
    assert overridden["multiline"] == {TRIPLE: "false"}


# --- the SQL check on its own --------------------------------------------------------------

SQL_COLUMNS = {"id": "string", "amount": "double", "note": "string"}
DENIED_SQL = [
    "reflect('java.lang.Runtime', 'getRuntime')",
    "REFLECT('java.lang.Runtime', 'getRuntime')",
    "ReFlEcT('a', 'b')",
    "`reflect`('a', 'b')",
    "upper(reflect('a', 'b'))",
    "concat(note, java_method('java.lang.System', 'getenv', 'HOME'))",
    "coalesce(NULL, upper(try_reflect('a', 'b')))",
    "JAVA_METHOD('a', 'b')",
    "CASE WHEN id = '1' THEN reflect('a', 'b') ELSE note END",
    "sys.reflect('a', 'b')",
    "main.default.evil(note)",
    "IDENTIFIER('note')",
    "input_file_name()",
    "current_user()",
    "rand()",
    "uuid()",
    "secret('scope', 'key')",
    "http_request('http://169.254.169.254/')",
    "read_files('/etc/passwd')",
    "ai_query('model', note)",
    "xpath_string(note, '/a')",
]


@pytest.mark.parametrize("sql", DENIED_SQL)
def test_check_sql_denies_functions(sql: str) -> None:
    with pytest.raises(UnsafePlanError, match="not allowed"):
        check_sql(sql, SQL_COLUMNS)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("amout * 2", "did you mean 'amount'"),
        ("NOTES", "did you mean 'note'"),
        ("upper(secret_column)", "not in the source"),
        ("(SELECT 1)", "not a statement or query"),
        ("id IN (SELECT id FROM t)", "subqueries"),
        ("EXISTS (SELECT 1)", "subqueries"),
        ("(SELECT max(id) FROM t) + 1", "subqueries"),
        ("SELECT 1", "not a statement or query"),
        ("id; DROP TABLE x", "not allowed"),
        ("DROP TABLE x", "not allowed"),
        ("INSERT INTO t VALUES (1)", "not a statement or query"),
        ("SET spark.sql.x = 1", "not allowed"),
        ("*", "not allowed"),
        ("count(*)", "combines or multiplies rows"),
        ("transform(array(id), x -> x)", "lambdas"),
        ("t.id", "qualified column"),
        ("${env:HOME}", r"\$\{"),
        ("concat(note, '${env:AWS_SECRET_ACCESS_KEY}')", r"\$\{"),
        ("'${system:user.home}'", r"\$\{"),
        ("id = ?", "not allowed"),
        ("id = :x", "not allowed"),
        ("", "empty"),
        ("   ", "empty"),
        ("upper(", "does not parse"),
        ("explode(split(note, ','))", "combines or multiplies rows"),
        ("stack(2, id, note)", "combines or multiplies rows"),
        ("sum(amount)", "combines or multiplies rows"),
        ("row_number() OVER (ORDER BY id)", "window functions"),
    ],
)
def test_check_sql_rejects(sql: str, message: str) -> None:
    with pytest.raises(UnsafePlanError, match=message):
        check_sql(sql, SQL_COLUMNS)


@pytest.mark.parametrize(
    ("sql", "canonical", "refs"),
    [
        ("amount * 1000", "TRY_CAST(`amount` AS DECIMAL(38, 10)) * 1000", ["amount"]),
        ("upper(NOTE) /* a comment */", "UPPER(`note`)", ["note"]),
        (
            "CASE WHEN id = 'S' THEN -amount ELSE amount END",
            "CASE WHEN `id` = 'S' THEN -TRY_CAST(`amount` AS DECIMAL(38, 10)) "
            "ELSE TRY_CAST(`amount` AS DECIMAL(38, 10)) END",
            ["id", "amount"],
        ),
        ("note -- trailing comment", "`note`", ["note"]),
    ],
)
def test_check_sql_renders_from_the_parsed_tree(sql: str, canonical: str, refs: list[str]) -> None:
    text, found = check_sql(sql, SQL_COLUMNS, text_source=True)
    assert (text, sorted(found)) == (canonical, sorted(refs))
    assert check_sql(text, SQL_COLUMNS)[0] == text  # stable when parsed again


def test_denied_functions_are_refused_in_every_spelling_the_parser_knows() -> None:
    from dataeng_magics.compile.safety import DENIED_FUNCTIONS

    for name in sorted(DENIED_FUNCTIONS):
        for spelling in (name, name.upper(), name.title()):
            with pytest.raises(UnsafePlanError):
                check_sql(f"{spelling}(note)", SQL_COLUMNS)


def test_compile_never_runs_sql_it_did_not_parse(tmp_path: Path) -> None:
    """The SQL in the code is the parser's rendering, not the author's text."""
    book = Book()
    book.row("NOTE")[5] = "sql: upper(NOTE)  /* ) ; reflect('a','b') -- */"
    plan = draft(book.write(tmp_path))
    code = compile_plan(plan)
    assert 'F.expr("UPPER(`note`)")' in code
    assert "reflect" not in code and "/*" not in code
