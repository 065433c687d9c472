"""The compiler: one readable, self-contained PySpark cell per plan, the same text for the
same plan, and the right values on real Spark for every phrase of the rule vocabulary.

The workbooks here are written with openpyxl and go through the real pipeline (mapping
reader, sampler, offline planner); the Spark tests run the compiled cell once per module
and check many columns against that one run.
"""

from __future__ import annotations

import ast
import builtins
import csv
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataeng_magics.agent.offline import OfflinePlanner, finalize
from dataeng_magics.canonical import canonical_json
from dataeng_magics.compile.cell import render_parameters
from dataeng_magics.compile.codegen import compile_plan
from dataeng_magics.compile.safety import check_generated
from dataeng_magics.errors import PlanError, UnsafePlanError
from dataeng_magics.mapping.model import Mapping
from dataeng_magics.mapping.read import read_mapping
from dataeng_magics.plan.model import (
    ColumnPlan,
    Multiply,
    ParseDate,
    Plan,
    SourceRead,
    Sql,
    TablePlan,
    Unresolved,
)
from dataeng_magics.run import validate
from dataeng_magics.run.executors.base import Job
from dataeng_magics.run.executors.local import execute
from dataeng_magics.sources.sampling import sample

MAPPING_HEADER = [
    "Target Table",
    "Target Column",
    "Data Type",
    "Source",
    "Source Column",
    "Transformation Rule",
    "Required",
    "Default Value",
]

# (table, column, type, source, source column, rule, required, default)
Row = tuple[str, str, str, str | None, str | None, str, str, str | None]


def write_workbook(
    path: Path,
    rows: list[Row],
    sources: list[tuple[str, str, str]],
    filters: Sequence[tuple[str, str, str]] = (),
) -> Path:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Mapping"
    sheet.append(MAPPING_HEADER)
    for row in rows:
        sheet.append(list(row))
    listing = book.create_sheet("Sources")
    listing.append(["Source Name", "File", "Format"])
    for source in sources:
        listing.append(list(source))
    if filters:
        sheet = book.create_sheet("Filters")
        sheet.append(["Target Table", "Condition", "Description"])
        for f in filters:
            sheet.append(list(f))
    book.save(path)
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def draft(mapping_path: Path, client: str = "ACME") -> tuple[Mapping, Plan]:
    mapping = read_mapping(mapping_path)
    schemas = {name: sample(spec).schema for name, spec in mapping.sources.items()}
    return mapping, OfflinePlanner().draft(client, mapping, schemas).plan


def run_plan(spark: Any, plan: Plan, mapping: Mapping, out: Path) -> dict[str, dict[str, int]]:
    paths = {name: spec.path for name, spec in mapping.sources.items()}
    code = render_parameters(paths, str(out), "parquet") + "\n" + compile_plan(plan)
    return execute(code, spark, Job(name="test", client=plan.client, key="0" * 64, code=code))


# --- the kitchen sink: every phrase of the vocabulary, over CSV, Parquet and JSON ---------

TRADES_HEADER = [
    "id", "name", "code", "trade_date", "eu_date", "compact", "ts", "amount", "qty", "side",
    "active", "first", "last", "account", "ccy", "status", "cpty", "bad_date",
]  # fmt: skip
TRADES = [
    ["T1", "  Alice Smith ", "abcdef", "12/31/2024", "31/12/2024", "20240229",
     "2024-03-05 13:45:10", "1234.567", "7", "B", "Y", "Ann", "Lee", "ACC-123-45", " usd ",
     "NEW", "CP1", "12/31/2024"],
    ["T2", "bob", "xy", "01/02/2024", "01/02/2024", "20231231", "2023-12-31 23:59:59",
     "1.2345678", "", "S", "N", "Bo", "", "12 34", "", "NEW", "CP2", "01/02/2024"],
    ["T3", "", "", "", "", "", "", "", "12", "X", "Y", "", "Solo", "", "   ", "NEW", "CP9", "  "],
    ["T4", "Dee", "abcd", "02/28/2023", "28/02/2023", "20230228", "2023-02-28 00:00:01",
     "-0.005", "0", "S", "N", "Di", "Do", "A1B2", "gbp", "NEW", "CP1", "02/28/2023"],
    ["T5", "Zed", "zzzz", "01/01/2024", "01/01/2024", "20240101", "2024-01-01 00:00:00", "5",
     "1", "B", "Y", "Z", "Z", "9", "EUR", "CANCELLED", "CP1", "01/01/2024"],
]  # fmt: skip
EVENTS = [
    {"eid": 1, "at": "2024-03-05T13:45:10", "price": 10.125, "label": " x ", "extra": {"k": 1}},
    {"eid": 2, "at": "2024-12-31T00:00:00", "price": 0.1, "label": None, "extra": None},
]


def _t(column: str, type_: str, source_column: str | None, rule: str, required: str = "N",
       default: str | None = None, source: str | None = "trades") -> Row:  # fmt: skip
    return ("TRADES", column, type_, source, source_column, rule, required, default)


def _e(column: str, type_: str, source_column: str, rule: str, required: str = "N",
       default: str | None = None) -> Row:  # fmt: skip
    return ("EVENTS", column, type_, "events", source_column, rule, required, default)


SINK_ROWS: list[Row] = [
    _t("ID", "string", "id", "trim", "Y"),
    _t("NAME_T", "string", "name", "trim"),
    _t("NAME_U", "string", "name", "trim, upper"),
    _t("NAME_L", "string", "name", "lower"),
    _t("CODE3", "string", "code", "first 3 characters"),
    _t("LAST2", "string", "code", "last 2 characters"),
    _t("MID", "string", "code", "substring(2,3)"),
    _t("TRADE_DATE", "date", "trade_date", "convert MM/DD/YYYY to YYYY-MM-DD"),
    _t("EU_DATE", "date", "eu_date", "parse date DD/MM/YYYY"),
    _t("EU_TEXT", "string", "eu_date", "convert DD/MM/YYYY to YYYY-MM-DD"),
    _t("COMPACT", "date", "compact", "date format YYYYMMDD"),
    _t("TS", "timestamp", "ts", "parse timestamp YYYY-MM-DD HH24:MI:SS"),
    _t("AMOUNT", "decimal(18,2)", "amount", "multiply by 1000"),
    _t("AMOUNT_R", "decimal(18,2)", "amount", "multiply by 1000 and round to 1"),
    _t("AMOUNT_D", "decimal(18,4)", "amount", "divide by 3"),
    _t("QTY", "bigint", "qty", "direct move"),
    _t("QTY_D", "bigint", "qty", "", default="0"),
    _t("SIDE", "string", "side", "map B=BUY, S=SELL, else UNKNOWN"),
    _t("SIDE_RAW", "string", "side", "map B=BUY, S=SELL"),
    _t("ACTIVE", "boolean", "active", "map Y=true, N=false"),
    _t("FULL_NAME", "string", None, "concat first, last with ' '"),
    _t("ACCOUNT", "string", "account", "digits only"),
    _t("CCY", "string", "ccy", "trim, upper", default="EUR"),
    _t("SYSTEM", "string", None, "constant 'OMS'", source=None),
    _t("LEVEL", "int", None, "constant 42", source=None),
    _t("CPTY_NAME", "string", "cpty_name", "lookup cpty_name from counterparties on cpty",
       source="counterparties"),
    _t("QTY2", "bigint", "qty", "sql: qty * 2 + 1"),
    _t("SIGNED", "decimal(18,2)", "amount",
       "sql: CASE WHEN side = 'S' THEN -amount ELSE amount END"),
    _t("BAD_DATE", "date", "bad_date", "parse date DD/MM/YYYY"),  # the data is MM/DD/YYYY
    _t("LAST_REQ", "string", "last", "", "Y"),
    _e("EID", "bigint", "eid", "", "Y"),
    _e("AT", "timestamp", "at", "parse timestamp YYYY-MM-DDTHH24:MI:SS"),
    _e("PRICE", "decimal(10,2)", "price", "multiply by 2"),
    _e("LABEL", "string", "label", "trim", default="none"),
]  # fmt: skip


def write_sink(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_csv(folder / "trades.csv", TRADES_HEADER, TRADES)
    pq.write_table(
        pa.table(
            {
                "cpty": ["CP1", "CP1", "CP2"],  # CP1 twice: the lookup must not multiply rows
                "cpty_name": ["Acme", "Acme", "Beta"],
                "rating": ["A", "A", "B"],  # not used by the mapping, so never read
            }
        ),
        folder / "cpty.parquet",
    )
    (folder / "events.json").write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    return write_workbook(
        folder / "sink.xlsx",
        SINK_ROWS,
        [
            ("trades", "trades.csv", "csv"),
            ("counterparties", "cpty.parquet", "parquet"),
            ("events", "events.json", "json"),
        ],
        [("TRADES", "status <> 'CANCELLED'", "drop cancelled trades")],
    )


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> tuple[Mapping, Plan, str]:
    mapping, plan = draft(write_sink(tmp_path_factory.mktemp("sink")))
    assert not plan.unresolved(), plan.unresolved()
    return mapping, plan, compile_plan(plan)


# --- the shape of the code ---------------------------------------------------------------


def _reads(tree: ast.Module) -> dict[str, tuple[str, str | None, str]]:
    """Source name -> (reader, explicit schema or None, variable) for each ``spark.read``."""
    reads = {}
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and "spark.read" in ast.unparse(node.value)):
            continue
        if isinstance(node.value, ast.Attribute) and node.value.attr == "schema":
            continue  # a CSV header, read on its own to name the columns
        calls = {
            n.func.attr: n
            for n in ast.walk(node.value)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
        }
        reader = next(r for r in ("csv", "parquet", "json") if r in calls)
        path = calls[reader].args[0]
        assert isinstance(path, ast.Subscript) and isinstance(path.slice, ast.Constant)
        arg = calls["schema"].args[0] if "schema" in calls else None
        schema = arg.value if isinstance(arg, ast.Constant) else arg and ast.unparse(arg)
        assert isinstance(node.targets[0], ast.Name)
        reads[path.slice.value] = (reader, schema, node.targets[0].id)
    return reads


def _table_chain(tree: ast.Module, variable: str) -> list[str]:
    """The method names called, outermost last, in the assignment of ``variable``."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == variable:
            return [
                n.func.attr
                for n in ast.walk(node.value)
                if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            ]
    raise AssertionError(f"no assignment of {variable}")


def test_one_read_per_source_with_explicit_schemas(sink: tuple[Mapping, Plan, str]) -> None:
    _, _, code = sink
    tree = ast.parse(code)
    reads = _reads(tree)
    assert len(reads) == 3 and code.count("spark.read") == 4  # and the CSV's header
    # CSV is text: the header names the columns (no inference pass), plus the corrupt record
    header = reads["trades"][2] + "_columns"
    assert reads["trades"][:2] == ("csv", f"{header}.add('_corrupt_record', 'string')")
    assert 'inferSchema="false"' in code
    # multiLine by default (a cell, a run that did not scan); a run may read by lines.
    assert code.count('multiLine=multiline.get("trades", "true")') == 2
    # Only the columns the mapping uses, with the types the sample showed.
    assert reads["counterparties"][:2] == ("parquet", "`cpty` STRING, `cpty_name` STRING")
    assert reads["events"][:2] == (
        "json",
        "`eid` BIGINT, `at` STRING, `price` DOUBLE, `label` STRING, `_corrupt_record` STRING",
    )
    assert "rating" not in code and "extra" not in code


def test_one_select_per_table_with_its_join_and_filter(sink: tuple[Mapping, Plan, str]) -> None:
    _, plan, code = sink
    tree = ast.parse(code)
    tables = [
        n.targets[0].id
        for n in tree.body
        if isinstance(n, ast.Assign)
        and isinstance(n.targets[0], ast.Name)
        and n.targets[0].id.endswith("_table")
    ]
    assert len(tables) == len(plan.tables) == 2
    trades, events = (_table_chain(tree, t) for t in tables)
    assert trades.count("select") == events.count("select") == 1
    assert trades.count("join") == 1 and events.count("join") == 0
    # one where each, after the table's one observation: filtered-out rows and
    # malformed records (events: JSON Lines, no filter) are counted, then dropped
    assert trades.count("where") == events.count("where") == 1
    assert trades.count("observe") == events.count("observe") == 1
    assert code.count("Observation()") == 2  # one per table, none in the reads
    assert code.count(".write.") == 2 and code.count(".save(") == 2
    # The lookup is reduced to one row per key (deterministically) before the join.
    lookup = next(
        n for n in tree.body if isinstance(n, ast.Assign) and ".groupBy(" in ast.unparse(n.value)
    )
    assert "counterparties" in ast.unparse(lookup.value)


def test_native_functions_only(sink: tuple[Mapping, Plan, str]) -> None:
    _, _, code = sink
    check_generated(code)
    tree = ast.parse(code)
    attributes = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    banned = {
        "udf",
        "pandas_udf",
        "collect",
        "toPandas",
        "rdd",
        "foreach",
        "mapInPandas",
        "applyInPandas",
        "sql",
        "call_function",
        "call_udf",
    }
    assert not attributes & banned
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.Lambda | ast.FunctionDef)]
    imports = [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]
    assert {getattr(n, "module", None) for n in imports} == {"pyspark.sql"}


def _select_item(code: str, alias: str) -> str:
    for line in code.splitlines():
        if line.rstrip(",").endswith(f'.alias("{alias}")'):
            return line.strip()
    raise AssertionError(f"no select item for {alias}")


def test_arithmetic_at_full_precision_then_one_cast(sink: tuple[Mapping, Plan, str]) -> None:
    _, _, code = sink
    item = _select_item(code, "AMOUNT")
    # Text -> decimal(38,10) once, multiply, then the target type once, at the very end.
    assert item.count('try_cast("decimal(38,10)")') == 1
    assert item.count('try_cast("decimal(18,2)")') == 1
    assert item.index("try_multiply") < item.index('try_cast("decimal(18,2)")')
    assert item.endswith('.try_cast("decimal(18,2)").alias("AMOUNT"),')
    rounded = _select_item(code, "AMOUNT_R")
    assert rounded.index("F.round(") < rounded.index('try_cast("decimal(18,2)")')


def test_same_plan_same_text(sink: tuple[Mapping, Plan, str]) -> None:
    _, plan, code = sink
    assert compile_plan(plan) == code
    assert compile_plan(Plan.model_validate_json(plan.model_dump_json())) == code
    # Canonical JSON sorts keys (sources, read schemas): the hash and the code must not care.
    canonical = Plan.model_validate(json.loads(canonical_json(plan.model_dump(mode="json"))))
    assert list(canonical.sources) != list(plan.sources)
    assert canonical.sha256() == plan.sha256()
    assert compile_plan(canonical) == code
    reordered = plan.model_copy(update={"sources": dict(reversed(plan.sources.items()))})
    assert compile_plan(reordered) == code


def test_same_text_in_another_process(sink: tuple[Mapping, Plan, str], tmp_path: Path) -> None:
    _, plan, code = sink
    (tmp_path / "plan.json").write_text(plan.model_dump_json())
    script = (
        "import sys; from dataeng_magics.plan.model import Plan; "
        "from dataeng_magics.compile.codegen import compile_plan; "
        "sys.stdout.write(compile_plan(Plan.model_validate_json(open(sys.argv[1]).read())))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # set iteration order differs
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "plan.json")],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=120,
    )
    assert result.stdout == code


def test_code_names_the_plan_it_came_from(sink: tuple[Mapping, Plan, str]) -> None:
    _, plan, code = sink
    assert code.splitlines()[0].startswith(f"# dataeng-magics: plan {plan.sha256()[:16]}")
    changed = plan.model_copy(update={"notes": "another revision"})
    assert compile_plan(changed).splitlines()[0] != code.splitlines()[0]


# --- what blocks compilation ---------------------------------------------------------------

SCHEMA = {"id": "string", "amount": "double", "d": "string"}


def small_plan(*columns: ColumnPlan, fmt: str = "csv", source: str = "src") -> Plan:
    plan = Plan(
        client="C",
        sources={source: SourceRead(format=fmt)},  # type: ignore[arg-type]
        tables=[TablePlan(name="T", source=source, columns=list(columns))],
    )
    return finalize(plan, {source: SCHEMA})


def test_unresolved_steps_block_compilation() -> None:
    plan = small_plan(
        ColumnPlan(name="ID", type="string", source_column="id"),
        ColumnPlan(
            name="X", type="string", source_column="id", steps=[Unresolved(text="frobnicate it")]
        ),
    )
    with pytest.raises(PlanError, match=r"T\.X: 'frobnicate it'"):
        compile_plan(plan)


def test_sql_unknown_column_says_did_you_mean() -> None:
    plan = Plan(
        client="C",
        sources={"src": SourceRead(format="csv", columns=SCHEMA)},
        tables=[
            TablePlan(
                name="T",
                source="src",
                columns=[ColumnPlan(name="X", type="double", steps=[Sql(expression="amout * 2")])],
            )
        ],
    )
    with pytest.raises(UnsafePlanError, match="did you mean 'amount'"):
        compile_plan(plan)


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (
            ColumnPlan(
                name="A", type="decimal(18,2)", source_column="amount", steps=[Multiply(by="1e3")]
            ),
            "not a plain decimal",
        ),
        (
            ColumnPlan(
                name="A", type="decimal(18,2)", source_column="amount", steps=[Multiply(by="NaN")]
            ),
            "not a plain decimal",
        ),
        (
            ColumnPlan(
                name="A", type="date", source_column="d", steps=[ParseDate(pattern="QQ/RR")]
            ),
            "not a date pattern",
        ),
        (ColumnPlan(name="A", type="strin g", source_column="id"), "unknown target type"),
        (ColumnPlan(name="_SRC_1", type="string", source_column="id"), "reserved"),
        (ColumnPlan(name="A", type="int", source_column="id", steps=[]), None),
    ],
    ids=["exponent", "nan", "bad-pattern", "bad-type", "helper-name", "fine"],
)
def test_plan_checks(column: ColumnPlan, message: str | None) -> None:
    """Values an LLM might write into a plan are checked before any code exists."""
    plan = small_plan(ColumnPlan(name="ID", type="string", source_column="id"), column)
    if message is None:
        check_generated(compile_plan(plan))
        return
    with pytest.raises(PlanError, match=message):
        compile_plan(plan)


def test_excel_source_compiles_to_checked_code() -> None:
    plan = small_plan(ColumnPlan(name="ID", type="string", source_column="id"), fmt="excel")
    code = compile_plan(plan)
    check_generated(code)
    assert 'ps.read_excel(source_paths["src"], sheet_name=0, dtype="str").to_spark()' in code


@pytest.mark.parametrize("name", ["input", "open", "str", "type", "print", "F", "spark", "ps"])
def test_source_names_never_shadow_builtins(name: str) -> None:
    code = compile_plan(
        small_plan(ColumnPlan(name="ID", type="string", source_column="id"), source=name)
    )
    assigned = {
        t.id
        for n in ast.parse(code).body
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    assert name not in assigned
    assert not assigned & set(dir(builtins))
    assert f"source_paths[{json.dumps(name)}]" in code


# --- semantics on real Spark ---------------------------------------------------------------


@pytest.fixture(scope="module")
def sink_run(
    spark: Any, sink: tuple[Mapping, Plan, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    mapping, plan, _ = sink
    out = tmp_path_factory.mktemp("sink_out")
    metrics = run_plan(spark, plan, mapping, out)
    trades = spark.read.parquet(str(out / "TRADES"))
    events = spark.read.parquet(str(out / "EVENTS"))
    return {
        "metrics": metrics,
        "trades_schema": [(f.name, f.dataType.simpleString()) for f in trades.schema],
        "events_schema": [(f.name, f.dataType.simpleString()) for f in events.schema],
        "trades": {r["ID"]: r.asDict() for r in trades.collect()},
        "events": {r["EID"]: r.asDict() for r in events.collect()},
    }


def _utc(value: datetime | None) -> str | None:
    """Spark hands timestamps back as naive local time; compare them in UTC."""
    if value is None:
        return None
    return datetime.fromtimestamp(value.timestamp(), tz=UTC).strftime("%Y-%m-%d %H:%M:%S")


def _dec(text: str, exponent: str, op: Any) -> Decimal:
    return op(Decimal(text)).quantize(Decimal(exponent), rounding=ROUND_HALF_UP)


@pytest.mark.spark
def test_output_columns_in_mapping_order_with_mapping_types(sink_run: dict[str, Any]) -> None:
    expected = [(r[1], r[2]) for r in SINK_ROWS if r[0] == "TRADES"]
    assert sink_run["trades_schema"] == expected
    assert sink_run["events_schema"] == [(r[1], r[2]) for r in SINK_ROWS if r[0] == "EVENTS"]


@pytest.mark.spark
def test_filter_and_lookup_keep_one_row_per_source_row(sink_run: dict[str, Any]) -> None:
    rows = sink_run["trades"]
    assert sorted(rows) == ["T1", "T2", "T3", "T4"]  # T5 is cancelled; CP1 twice adds none
    metrics = sink_run["metrics"]["TRADES"]
    assert (metrics["rows_read"], metrics["rows_written"]) == (5, 4)
    assert {k: rows[k]["CPTY_NAME"] for k in rows} == {
        "T1": "Acme",
        "T2": "Beta",
        "T3": None,
        "T4": "Acme",
    }


def _column(rows: dict[str, dict[str, Any]], name: str) -> list[Any]:
    return [rows[k][name] for k in ("T1", "T2", "T3", "T4")]


@pytest.mark.spark
@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("NAME_T", ["Alice Smith", "bob", None, "Dee"]),
        ("NAME_U", ["ALICE SMITH", "BOB", None, "DEE"]),
        ("NAME_L", ["  alice smith ", "bob", None, "dee"]),
        ("CODE3", ["abc", "xy", None, "abc"]),
        ("LAST2", ["ef", "xy", None, "cd"]),
        ("MID", ["bcd", "y", None, "bcd"]),
        ("TRADE_DATE", [date(2024, 12, 31), date(2024, 1, 2), None, date(2023, 2, 28)]),
        ("EU_DATE", [date(2024, 12, 31), date(2024, 2, 1), None, date(2023, 2, 28)]),
        ("EU_TEXT", ["2024-12-31", "2024-02-01", None, "2023-02-28"]),
        ("COMPACT", [date(2024, 2, 29), date(2023, 12, 31), None, date(2023, 2, 28)]),
        ("QTY", [7, None, 12, 0]),
        ("QTY_D", [7, 0, 12, 0]),  # default on a blank (null) number
        ("SIDE", ["BUY", "SELL", "UNKNOWN", "SELL"]),
        ("SIDE_RAW", ["BUY", "SELL", None, "SELL"]),
        ("ACTIVE", [True, False, True, False]),
        ("FULL_NAME", ["Ann Lee", "Bo", "Solo", "Di Do"]),  # nulls are skipped, not "Bo "
        ("ACCOUNT", ["12345", "1234", None, "12"]),
        ("CCY", ["USD", "EUR", "EUR", "GBP"]),  # default on null and on blank
        ("SYSTEM", ["OMS"] * 4),
        ("LEVEL", [42] * 4),
        ("QTY2", [15, None, 25, 1]),  # SQL arithmetic on a column read as text
        ("BAD_DATE", [None, date(2024, 2, 1), None, None]),
        ("LAST_REQ", ["Lee", None, "Solo", "Do"]),
    ],
)
def test_rule_values(sink_run: dict[str, Any], column: str, expected: list[Any]) -> None:
    assert _column(sink_run["trades"], column) == expected


@pytest.mark.spark
def test_decimal_values(sink_run: dict[str, Any]) -> None:
    rows = sink_run["trades"]
    amounts = [r[7] for r in TRADES[:4]]

    def expect(exponent: str, op: Any) -> list[Decimal | None]:
        return [_dec(a, exponent, op) if a else None for a in amounts]

    assert _column(rows, "AMOUNT") == expect("0.01", lambda d: d * 1000)
    assert _column(rows, "AMOUNT")[:2] == [Decimal("1234567.00"), Decimal("1234.57")]
    assert _column(rows, "AMOUNT_R") == expect(
        "0.01", lambda d: (d * 1000).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    )
    assert _column(rows, "AMOUNT_R")[1] == Decimal("1234.60")
    assert _column(rows, "AMOUNT_D") == expect("0.0001", lambda d: d / 3)
    sides = [r[9] for r in TRADES[:4]]
    assert _column(rows, "SIGNED") == [
        _dec(a, "0.01", lambda d, s=s: -d if s == "S" else d) if a else None
        for a, s in zip(amounts, sides, strict=True)
    ]


@pytest.mark.spark
def test_timestamps_and_json_source(sink_run: dict[str, Any]) -> None:
    ts = [_utc(v) for v in _column(sink_run["trades"], "TS")]
    assert ts == ["2024-03-05 13:45:10", "2023-12-31 23:59:59", None, "2023-02-28 00:00:01"]
    events = sink_run["events"]
    assert sorted(events) == [1, 2]
    assert [_utc(events[k]["AT"]) for k in (1, 2)] == ["2024-03-05 13:45:10", "2024-12-31 00:00:00"]
    assert [events[k]["PRICE"] for k in (1, 2)] == [Decimal("20.25"), Decimal("0.20")]
    assert [events[k]["LABEL"] for k in (1, 2)] == ["x", "none"]


@pytest.mark.spark
def test_metrics_become_the_validation_report(sink_run: dict[str, Any]) -> None:
    metrics = sink_run["metrics"]
    trades = metrics["TRADES"]
    # A wrong date pattern loses values that were present (T1 and T4: month 31 and 28).
    assert trades["lost:BAD_DATE"] == 2
    assert trades["lost:SIDE_RAW"] == 1  # 'X' has no mapping and no else
    assert trades["null:LAST_REQ"] == 1 and trades["null:ID"] == 0
    assert trades["unmatched:cpty"] == 1  # CP9
    others = {
        k: v
        for k, v in trades.items()
        if k.startswith("lost:") and k not in ("lost:BAD_DATE", "lost:SIDE_RAW")
    }
    assert others and not any(others.values()), others  # null or blank inputs are not "lost"
    report = validate.evaluate(metrics)
    assert not report.passed
    assert {(c.table, c.column, c.kind) for c in report.failures} == {
        ("TRADES", "BAD_DATE", "conversion"),
        ("TRADES", "SIDE_RAW", "conversion"),
        ("TRADES", "LAST_REQ", "required"),
    }
    assert {(c.table, c.column, c.kind) for c in report.warnings} == {("TRADES", "cpty", "lookup")}
    assert report.tables[0].rows_read == 5 and report.tables[0].rows_written == 4
