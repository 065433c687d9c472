"""Mapping workbooks: tolerant reading of real-world layouts, and one clear error otherwise.

Every workbook here is written by the test itself with openpyxl, so each test shows the
layout it is about.
"""

from __future__ import annotations

import csv
import io
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook

from dataeng_magics.agent.offline import OfflinePlanner
from dataeng_magics.errors import MappingError
from dataeng_magics.mapping.model import Mapping
from dataeng_magics.mapping.read import read_mapping
from dataeng_magics.plan.render import render_pseudocode

Row = list[Any]

# The canonical header, one entry per field; tests swap in synonyms.
HEADER: dict[str, str] = {
    "table": "Target Table",
    "column": "Target Column",
    "type": "Data Type",
    "source": "Source",
    "source_column": "Source Column",
    "rule": "Transformation Rule",
    "required": "Required",
    "default": "Default",
    "comment": "Comments",
}
FIELDS = list(HEADER)


# --- helpers ------------------------------------------------------------------------


def target(
    table: str | None,
    column: str | None,
    type_: str | None = "string",
    source: str | None = None,
    source_column: str | None = None,
    rule: str | None = None,
    required: str | None = None,
    default: str | None = None,
    comment: str | None = None,
) -> Row:
    """One mapping row, in the column order of HEADER."""
    return [table, column, type_, source, source_column, rule, required, default, comment]


def header(**renamed: str) -> Row:
    """HEADER's texts, with some replaced: header(type="Type")."""
    return [renamed.get(field, HEADER[field]) for field in FIELDS]


def write_xlsx(
    path: Path, sheets: dict[str, list[Row]], merged: dict[str, list[str]] | None = None
) -> Path:
    """A workbook with one sheet per entry; ``merged`` ranges are merged as Excel does (the
    top-left cell keeps its value, the others become empty merged cells)."""
    book = Workbook()
    for default in book.worksheets:
        book.remove(default)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for r, row in enumerate(rows, start=1):
            for c, value in enumerate(row, start=1):
                if value is not None:
                    sheet.cell(r, c, value)
        for cells in (merged or {}).get(title, []):
            sheet.merge_cells(cells)
    book.save(path)
    return path


def write_csv(path: Path, rows: list[Row], encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as fh:
        csv.writer(fh).writerows([["" if v is None else v for v in row] for row in rows])
    return path


def source_file(directory: Path, name: str, text: str = "Order ID,Amount\n1,10\n") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def simple_mapping(tmp_path: Path, *rows: Row, **renamed: str) -> Path:
    """orders.csv next to a one-sheet workbook with the given rows."""
    source_file(tmp_path, "orders.csv")
    return write_xlsx(tmp_path / "map.xlsx", {"Mapping": [header(**renamed), *rows]})


ORDER_ROWS = [
    target("ORDERS", "ORDER_ID", "string", "orders.csv", "Order ID", "trim", "Y"),
    target(None, "AMOUNT", "decimal(18,2)", None, "Amount", "multiply by 1000", "N"),
]


def mapping_error(path: Path, overrides: dict[str, str] | None = None) -> MappingError:
    """The one error read_mapping raises for ``path``; it always names the file in one line."""
    with pytest.raises(MappingError) as info:
        read_mapping(path, overrides)
    text = str(info.value)
    assert "\n" not in text
    assert path.name in text
    assert info.value.hint, "every mapping error says what to do"
    assert info.value.hint.rstrip(".") in text
    return info.value


def assert_points_at(
    err: MappingError,
    *,
    sheet: str | None = None,
    row: int | None = None,
    column: str | None = None,
) -> None:
    """The error's structured location, and the same location in its one-line text."""
    text = str(err)
    assert (err.sheet, err.row, err.column) == (sheet, row, column)
    if sheet is not None:
        assert f"sheet {sheet!r}" in text
    if row is not None:
        assert re.search(rf"\brow {row}\b", text)
    if column is not None:
        assert f"column {column!r}" in text


def columns_by_table(mapping: Mapping) -> dict[str, list[str]]:
    return {table: [c.name for c in columns] for table, columns in mapping.tables().items()}


# --- the bundled example ------------------------------------------------------------


def test_bundled_example(example: Path) -> None:
    mapping = read_mapping(example)
    assert columns_by_table(mapping) == {
        "TRADES": [
            "TRADE_ID", "TRADE_DATE", "SETTLE_DATE", "BOOK_DATE", "ACCOUNT", "DESK", "SIDE",
            "QUANTITY", "AMOUNT", "CURRENCY", "COUNTERPARTY", "TRADER", "SOURCE_SYSTEM",
            "SIGNED_AMOUNT",
        ],
        "COUNTERPARTIES": ["CPTY_ID", "CPTY_NAME", "COUNTRY", "LEI", "IS_ACTIVE"],
    }  # fmt: skip
    folder = example.parent.resolve()
    assert {name: (s.format, Path(s.path)) for name, s in mapping.sources.items()} == {
        "trades": ("csv", folder / "trades.csv"),
        "counterparties": ("parquet", folder / "counterparties.parquet"),
    }
    assert [(f.table, f.condition, f.description) for f in mapping.filters] == [
        ("TRADES", "Status <> 'CANCELLED'", "exclude cancelled trades")
    ]
    by_name = {c.name: c for c in mapping.targets}
    # a title row and a blank row come first: the header is on row 3
    assert (by_name["TRADE_ID"].sheet, by_name["TRADE_ID"].row) == ("Mapping", 4)
    # the merged Source cell (D4:D13) and Target Table cell (A4:A17) reach every row
    assert (by_name["BOOK_DATE"].table, by_name["BOOK_DATE"].source) == ("TRADES", "trades")
    assert by_name["CPTY_NAME"].source == "counterparties"
    # " Source Column " and "DATA TYPE" are found despite spaces and case
    assert by_name["TRADE_DATE"].source_column == "Trade Date"
    assert by_name["AMOUNT"].type == "decimal(18,2)"
    assert by_name["IS_ACTIVE"].type == "boolean"
    # a constant reads no source even inside the merged Source cell's table
    assert (by_name["SOURCE_SYSTEM"].source, by_name["SOURCE_SYSTEM"].source_column) == (None, None)
    assert by_name["SOURCE_SYSTEM"].rule == "constant 'NORTHWIND-OMS'"
    # Mandatory Y/N, Default Value, Comments
    assert [by_name[n].required for n in ("TRADE_ID", "SETTLE_DATE", "COUNTRY")] == [
        True,
        False,
        False,
    ]
    assert (by_name["CURRENCY"].default, by_name["COUNTRY"].default) == ("EUR", "XX")
    assert by_name["SETTLE_DATE"].comment == "blank until settled"
    assert by_name["TRADE_ID"].default is None


def test_bundled_example_source_column_typo_is_caught_by_the_planner(example: Path) -> None:
    """The planner checks each Source Column against the source's real header."""
    mapping = read_mapping(example)
    trades_header = (example.parent / "trades.csv").read_text().splitlines()[0].split(",")
    assert "Qty" in trades_header
    schemas = {
        "trades": {c: "string" for c in trades_header if c != "Qty"} | {"Quantity": "string"},
        "counterparties": {
            c: "string" for c in ("Cpty ID", "Cpty Name", "Country", "LEI", "Active")
        },
    }
    with pytest.raises(MappingError) as info:
        OfflinePlanner().draft("NORTHWIND", mapping, schemas)
    quantity = next(c for c in mapping.targets if c.name == "QUANTITY")
    assert (info.value.sheet, info.value.row) == ("Mapping", quantity.row)
    assert "'Qty'" in str(info.value)
    assert "\n" not in str(info.value)


# --- layout tolerance ---------------------------------------------------------------


def test_title_rows_merged_cells_blank_rows_and_untidy_header(tmp_path: Path) -> None:
    source_file(tmp_path, "orders.csv")
    source_file(tmp_path, "customers.csv", "Cust ID,Name\n1,a\n")
    rows: list[Row] = [
        ["ACME Ltd – source to target mapping (v2)"],  # merged A1:F1
        ["Prepared by the onboarding team"],
        [],
        ["  target TABLE ", "TARGET column", " data   type", "Source ", "source  column", "RULE"],
        ["ORDERS", "ORDER_ID", "String", "orders", "Order ID", "trim"],
        [None, "AMOUNT", "DECIMAL(10, 2)", None, "Amount", "multiply by 100"],
        [],  # blank inside the merged ORDERS cells
        [None, "STATUS", "string", None, "Status", "upper"],
        [],
        [],
        ["CUSTOMERS", "CUSTOMER_ID", "Integer", "customers", "Cust ID", None],
        [None, "NAME", "string", None, "Name", "trim"],
    ]
    path = write_xlsx(
        tmp_path / "acme.xlsx",
        {
            "Read me": [["This workbook maps ACME's files."], ["Version", "Date"], ["2", "2024"]],
            "v2 FINAL (2)": rows,
        },
        merged={"v2 FINAL (2)": ["A1:F1", "A5:A8", "D5:D8", "A11:A12", "D11:D12"]},
    )
    mapping = read_mapping(path)
    assert columns_by_table(mapping) == {
        "ORDERS": ["ORDER_ID", "AMOUNT", "STATUS"],
        "CUSTOMERS": ["CUSTOMER_ID", "NAME"],
    }
    assert [(c.sheet, c.row) for c in mapping.targets] == [
        ("v2 FINAL (2)", r) for r in (5, 6, 8, 11, 12)
    ]
    assert [c.source for c in mapping.targets] == ["orders"] * 3 + ["customers"] * 2
    assert [c.type for c in mapping.targets] == [
        "string",
        "decimal(10,2)",
        "string",
        "int",
        "string",
    ]
    assert [c.rule for c in mapping.targets] == ["trim", "multiply by 100", "upper", "", "trim"]
    assert sorted(mapping.sources) == ["customers", "orders"]


def test_blank_table_cells_repeat_the_table_above_without_merging(tmp_path: Path) -> None:
    path = simple_mapping(
        tmp_path,
        target("ORDERS", "ORDER_ID", source="orders", source_column="Order ID"),
        target(None, "AMOUNT", source_column="Amount"),
        target("ORDER_LINES", "LINE_ID", source="orders", source_column="Order ID"),
        target(None, "LINE_AMOUNT", source_column="Amount"),
    )
    mapping = read_mapping(path)
    assert columns_by_table(mapping) == {
        "ORDERS": ["ORDER_ID", "AMOUNT"],
        "ORDER_LINES": ["LINE_ID", "LINE_AMOUNT"],
    }
    assert {c.source for c in mapping.targets} == {"orders"}


def test_without_a_table_column_the_sheet_name_is_the_table(tmp_path: Path) -> None:
    source_file(tmp_path, "orders.csv")
    path = write_xlsx(
        tmp_path / "map.xlsx",
        {
            "ORDERS": [
                ["Target Column", "Type", "Source", "Source Column"],
                ["ORDER_ID", "string", "orders", "Order ID"],
            ],
            "PAYMENTS": [
                ["Target Column", "Type", "Source", "Source Column"],
                ["PAYMENT_ID", "string", "orders", "Order ID"],
            ],
        },
    )
    assert columns_by_table(read_mapping(path)) == {
        "ORDERS": ["ORDER_ID"],
        "PAYMENTS": ["PAYMENT_ID"],
    }


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("string", "string"),
        ("String", "string"),
        ("int", "int"),
        ("Integer", "int"),
        ("bigint", "bigint"),
        ("LONG", "bigint"),
        ("decimal(18,2)", "decimal(18,2)"),
        ("Decimal( 10 , 0 )", "decimal(10,0)"),
        ("double", "double"),
        ("float", "float"),
        ("date", "date"),
        ("Timestamp", "timestamp"),
        ("boolean", "boolean"),
        (" date ", "date"),
    ],
)
def test_types(tmp_path: Path, written: str, canonical: str) -> None:
    path = simple_mapping(tmp_path, target("T", "C", written, "orders", "Amount"))
    [column] = read_mapping(path).targets
    assert column.type == canonical


# Each synonym, the cell written under it, the TargetColumn attribute and its value.
SYNONYMS: list[tuple[str, str, str, str, Any]] = [
    *(("table", h, "ORDERS", "table", "ORDERS")
      for h in ("Target Table", "Output Table", "Target Entity")),
    *(("column", h, "ORDER_ID", "name", "ORDER_ID")
      for h in ("Target Column", "Target Field", "Output Column")),
    *(("type", h, "Integer", "type", "int") for h in ("Target Type", "Data Type", "Type")),
    *(("source", h, "orders", "source", "orders")
      for h in ("Source", "Source File", "Input File", "Source Table")),
    *(("source_column", h, "Order ID", "source_column", "Order ID")
      for h in ("Source Column", "Source Field", "Input Column")),
    *(("rule", h, "trim", "rule", "trim")
      for h in ("Transformation Rule", "Business Rule", "Transformation Logic", "Logic", "Rule")),
    *(("required", h, "Y", "required", True)
      for h in ("Required", "Mandatory", "Mandatory (Y/N)")),
    *(("default", h, "n/a", "default", "n/a") for h in ("Default", "Default Value")),
    *(("comment", h, "from the old system", "comment", "from the old system")
      for h in ("Comments", "Comment", "Notes")),
]  # fmt: skip


@pytest.mark.parametrize(
    ("field", "synonym", "cell", "attribute", "expected"),
    SYNONYMS,
    ids=[f"{field}={synonym}" for field, synonym, *_ in SYNONYMS],
)
def test_header_synonyms(
    tmp_path: Path, field: str, synonym: str, cell: str, attribute: str, expected: Any
) -> None:
    values = {
        "table": "ORDERS",
        "column": "ORDER_ID",
        "type": "string",
        "source": "orders",
        "source_column": "Order ID",
        "rule": "",
        "required": "",
        "default": "",
        "comment": "",
    } | {field: cell}
    source_file(tmp_path, "orders.csv")
    path = write_xlsx(
        tmp_path / "map.xlsx",
        {"Sheet1": [header(**{field: synonym}), [values[f] for f in FIELDS]]},
    )
    [column] = read_mapping(path).targets
    assert getattr(column, attribute) == expected


@pytest.mark.parametrize("synonym", ["Nullable", "NULLABLE", "Nullable (Y/N)"])
def test_nullable_means_not_required(tmp_path: Path, synonym: str) -> None:
    cells = ["Y", "N", None, "yes", "No"]
    path = simple_mapping(
        tmp_path,
        *(
            target("T", f"C{i}", "string", "orders", "Amount", None, cell)
            for i, cell in enumerate(cells)
        ),
        required=synonym,
    )
    assert [c.required for c in read_mapping(path).targets] == [False, True, False, False, True]


def test_required_blank_means_optional(tmp_path: Path) -> None:
    path = simple_mapping(
        tmp_path,
        target("T", "A", source="orders", source_column="Amount", required="Y"),
        target("T", "B", source="orders", source_column="Amount", required=None),
        target("T", "C", source="orders", source_column="Amount", required="x"),
    )
    assert [c.required for c in read_mapping(path).targets] == [True, False, True]


def test_rule_only_columns_read_no_source_column(tmp_path: Path) -> None:
    """A constant needs no Source Column, and a blank Source below it is not inherited."""
    path = simple_mapping(
        tmp_path,
        target("T", "ID", source="orders", source_column="Order ID"),
        target(None, "SYSTEM", rule="constant 'OMS'"),
    )
    system = read_mapping(path).targets[1]
    assert (system.source, system.source_column, system.rule) == (None, None, "constant 'OMS'")


# --- CSV mapping files --------------------------------------------------------------


def test_csv_mapping(tmp_path: Path) -> None:
    source_file(tmp_path, "orders.csv")
    path = write_csv(
        tmp_path / "acme_mapping.csv",
        [
            ["ACME mapping, exported from Excel"],
            [],
            [" Output Table", "Target Field ", "TYPE", "Input File", "Input Column", "Logic"],
            ["ORDERS", "ORDER_ID", "string", "orders.csv", "Order ID", "trim"],
            ["", "AMOUNT", "decimal(12,2)", "", "Amount", "divide by 100"],
            [],
            ["", "CHANNEL", "string", "", "", "constant 'web'"],
        ],
    )
    mapping = read_mapping(path)
    assert columns_by_table(mapping) == {"ORDERS": ["ORDER_ID", "AMOUNT", "CHANNEL"]}
    assert [(c.sheet, c.row) for c in mapping.targets] == [(None, 4), (None, 5), (None, 7)]
    assert [c.source for c in mapping.targets] == ["orders.csv", "orders.csv", None]
    assert mapping.sources["orders.csv"].path == str((tmp_path / "orders.csv").resolve())


def test_csv_mapping_without_a_table_column_uses_the_file_stem(tmp_path: Path) -> None:
    source_file(tmp_path, "orders.csv")
    path = write_csv(
        tmp_path / "ORDERS.csv",
        [
            ["Target Column", "Data Type", "Source", "Source Column"],
            ["ORDER_ID", "string", "orders.csv", "Order ID"],
        ],
    )
    assert columns_by_table(read_mapping(path)) == {"ORDERS": ["ORDER_ID"]}


def test_csv_mapping_error_has_row_and_column_but_no_sheet(tmp_path: Path) -> None:
    source_file(tmp_path, "orders.csv")
    path = write_csv(
        tmp_path / "map.csv",
        [header(), target("T", "ID", "strng", "orders.csv", "Order ID")],
    )
    err = mapping_error(path)
    assert_points_at(err, row=2, column="Data Type (C)")
    assert "Did you mean 'string'?" in str(err)


def test_csv_mapping_that_is_not_utf8(tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "map.csv", [header(), target("T", "NAME", rule="constant 'Zürich'")], "cp1252"
    )
    err = mapping_error(path)
    assert "UTF-8" in str(err)


# --- sources ------------------------------------------------------------------------


def test_sources_sheet(tmp_path: Path) -> None:
    source_file(tmp_path / "data", "orders.txt", "Order ID;Amount\n1;10\n")
    source_file(tmp_path, "customers.tsv", "Cust ID\tName\n1\ta\n")
    source_file(tmp_path, "rates.parquet", "not really parquet; only its existence is read")
    source_file(tmp_path, "codes.csv", "Code|Label\n")
    path = write_xlsx(
        tmp_path / "map.xlsx",
        {
            "Mapping": [
                header(),
                target("ORDERS", "ID", source="orders", source_column="Order ID"),
                target("CUSTOMERS", "ID", source="customers", source_column="Cust ID"),
            ],
            "Inputs": [
                ["Where the files are"],
                [],
                ["Source Name", "File / Path", "FORMAT", "Delimiter", "Header", "Encoding "],
                ["orders", "data/orders.txt", "CSV", ";", "No", "latin-1"],
                ["customers", "customers.tsv"],
                ["rates", "rates.parquet"],
                ["codes", "codes.csv", "csv", "|", "yes", None],
                [],
            ],
        },
    )
    sources = read_mapping(path).sources
    found = {
        name: (Path(s.path), s.format, s.delimiter, s.header, s.encoding, s.sheet, s.row)
        for name, s in sources.items()
    }
    base = tmp_path.resolve()
    assert found == {
        "orders": (base / "data" / "orders.txt", "csv", ";", False, "latin-1", "Inputs", 4),
        "customers": (base / "customers.tsv", "csv", "\t", True, "utf-8", "Inputs", 5),
        "rates": (base / "rates.parquet", "parquet", ",", True, "utf-8", "Inputs", 6),
        "codes": (base / "codes.csv", "csv", "|", True, "utf-8", "Inputs", 7),
    }


@pytest.mark.parametrize("written", ["tab", "\\t"])
def test_sources_sheet_tab_delimiter(tmp_path: Path, written: str) -> None:
    source_file(tmp_path, "orders.txt")
    path = write_xlsx(
        tmp_path / "map.xlsx",
        {
            "Mapping": [header(), target("T", "ID", source="orders", source_column="Order ID")],
            "Sources": [["Source", "File", "Delimiter"], ["orders", "orders.txt", written]],
        },
    )
    assert read_mapping(path).sources["orders"].delimiter == "\t"


@pytest.mark.parametrize(
    ("cell", "fmt"),
    [
        ("orders.csv", "csv"),
        ("orders", "csv"),
        ("rates.parquet", "parquet"),
        ("rates", "parquet"),
        ("events", "json"),
        ("book.xlsx", "excel"),
    ],
)
def test_implicit_source_by_file_name_or_stem(tmp_path: Path, cell: str, fmt: str) -> None:
    """Without a Sources sheet, the Source cell names a file next to the mapping."""
    for name in ("orders.csv", "rates.parquet", "events.jsonl", "book.xlsx", "notes.txt.bak"):
        source_file(tmp_path, name)
    path = write_xlsx(
        tmp_path / "map.xlsx",
        {"Mapping": [header(), target("T", "ID", source=cell, source_column="Order ID")]},
    )
    spec = read_mapping(path).sources[cell]
    assert spec.format == fmt
    assert Path(spec.path).parent == tmp_path.resolve()
    assert Path(spec.path).stem == Path(cell).stem


def test_implicit_source_is_resolved_next_to_the_mapping_not_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "client"
    folder.mkdir()
    source_file(folder, "orders.csv")
    source_file(tmp_path, "orders.csv")  # a decoy in the current directory
    monkeypatch.chdir(tmp_path)
    path = write_xlsx(
        folder / "map.xlsx",
        {"Mapping": [header(), target("T", "ID", source="orders", source_column="Order ID")]},
    )
    assert read_mapping(Path("client/map.xlsx")).sources["orders"].path == str(
        (folder / "orders.csv").resolve()
    )
    assert path.exists()


def test_implicit_source_stem_matching_several_files(tmp_path: Path) -> None:
    source_file(tmp_path, "orders.csv")
    source_file(tmp_path, "orders.json")
    path = write_xlsx(
        tmp_path / "map.xlsx",
        {"Mapping": [header(), target("T", "ID", source="orders", source_column="Order ID")]},
    )
    err = mapping_error(path)
    assert_points_at(err, sheet="Mapping", row=2, column="Source (D)")
    assert "orders.csv" in str(err)
    assert "orders.json" in str(err)
    assert "extension" in str(err)


def test_implicit_source_that_does_not_exist(tmp_path: Path) -> None:
    source_file(tmp_path, "orders.csv")
    path = write_xlsx(
        tmp_path / "map.xlsx",
        {
            "Mapping": [
                header(),
                target("T", "ID", source="orders", source_column="Order ID"),
                target("U", "ID", source="refunds.csv", source_column="Order ID"),
            ]
        },
    )
    err = mapping_error(path)
    assert_points_at(err, sheet="Mapping", row=3, column="Source (D)")
    assert "'refunds.csv'" in str(err)
    assert "--source NAME=PATH" in str(err)


def test_implicit_source_error_names_the_sheet_the_row_is_on(tmp_path: Path) -> None:
    source_file(tmp_path, "orders.csv")
    path = write_xlsx(
        tmp_path / "map.xlsx",
        {
            "ORDERS": [header(), target(None, "ID", source="orders", source_column="Order ID")],
            "REFUNDS": [
                ["Refunds"],
                header(),
                target(None, "ID", source="refunds", source_column="Order ID"),
            ],
        },
    )
    assert_points_at(mapping_error(path), sheet="REFUNDS", row=3, column="Source (D)")


def test_sources_sheet_file_that_does_not_exist(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "map.xlsx",
        {
            "Mapping": [header(), target("T", "ID", source="orders", source_column="Order ID")],
            "Sources": [["Source Name", "File", "Format"], ["orders", "missing/orders.csv", "csv"]],
        },
    )
    err = mapping_error(path)
    assert_points_at(err, sheet="Sources", row=2, column="File (B)")
    assert str((tmp_path / "missing" / "orders.csv").resolve()) in str(err)
    assert "--source NAME=PATH" in str(err)


@pytest.mark.parametrize(
    ("rows", "message", "column"),
    [
        (
            [["orders", "orders.dat", "cobol copybook"]],
            "unknown source format 'cobol copybook'",
            "Format (C)",
        ),
        ([["orders", "orders.dat", None]], "cannot tell the format of 'orders.dat'", "Format (C)"),
        ([["orders", None, "csv"]], "a source needs both a name and a file", "File (B)"),
        ([[None, "orders.csv", "csv"]], "a source needs both a name and a file", "Source Name (A)"),
    ],
)
def test_bad_sources_sheet_rows(tmp_path: Path, rows: list[Row], message: str, column: str) -> None:
    source_file(tmp_path, "orders.dat")
    path = write_xlsx(
        tmp_path / "map.xlsx",
        {
            "Mapping": [header(), target("T", "ID", source="orders", source_column="Order ID")],
            "Sources": [["Source Name", "File", "Format"], *rows],
        },
    )
    with pytest.raises(MappingError) as info:
        read_mapping(path)
    assert message in str(info.value)
    assert_points_at(info.value, sheet="Sources", row=2, column=column)
    assert "\n" not in str(info.value)


def test_sources_sheet_without_a_file_column(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "map.xlsx",
        {
            "Mapping": [header(), target("T", "ID", source="orders", source_column="Order ID")],
            "Sources": [["Inputs"], ["Source Name", "Format"], ["orders", "csv"]],
        },
    )
    err = mapping_error(path)
    assert_points_at(err, sheet="Sources", row=2)
    assert "missing required header for path" in str(err)
    assert "File, Path" in (err.hint or "")


# --- --source overrides -------------------------------------------------------------


def two_source_mapping(tmp_path: Path) -> Path:
    """A Sources sheet naming files that are not there, and an implicit source that is not."""
    return write_xlsx(
        tmp_path / "map.xlsx",
        {
            "Mapping": [
                header(),
                target("ORDERS", "ID", source="orders", source_column="Order ID"),
                target("REFUNDS", "ID", source="refunds.csv", source_column="Order ID"),
            ],
            "Sources": [["Source Name", "File"], ["orders", "//server/share/orders.csv"]],
        },
    )


def test_overrides_say_where_sources_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    source_file(elsewhere, "orders_2024.parquet")
    source_file(elsewhere, "refunds.csv")
    monkeypatch.chdir(elsewhere)
    mapping = read_mapping(
        two_source_mapping(tmp_path),
        {"orders": "orders_2024.parquet", "refunds.csv": str(elsewhere / "refunds.csv")},
    )
    orders, refunds = mapping.sources["orders"], mapping.sources["refunds.csv"]
    # relative to the current directory, and the format follows the new file's extension
    assert (orders.path, orders.format) == (
        str(elsewhere.resolve() / "orders_2024.parquet"),
        "parquet",
    )
    assert (refunds.path, refunds.format) == (str((elsewhere / "refunds.csv").resolve()), "csv")
    # where a source is read from is not part of what the mapping says
    assert "path" not in mapping.model_dump()["sources"]["orders"]


def test_override_with_a_url_is_kept_as_written(tmp_path: Path) -> None:
    source_file(tmp_path, "refunds.csv")
    url = "abfss://raw@acme.dfs.core.windows.net/orders/2024.csv"
    mapping = read_mapping(two_source_mapping(tmp_path), {"orders": url})
    assert (mapping.sources["orders"].path, mapping.sources["orders"].format) == (url, "csv")


def test_without_overrides_the_missing_files_are_reported(tmp_path: Path) -> None:
    source_file(tmp_path, "refunds.csv")
    err = mapping_error(two_source_mapping(tmp_path))
    assert_points_at(err, sheet="Sources", row=2, column="File (B)")


def test_override_naming_an_unknown_source(tmp_path: Path) -> None:
    source_file(tmp_path, "refunds.csv")
    source_file(tmp_path, "orders.csv")
    err = mapping_error(two_source_mapping(tmp_path), {"order": str(tmp_path / "orders.csv")})
    assert "unknown source 'order'" in str(err)
    assert "Did you mean 'orders'?" in str(err)


def test_override_naming_an_unknown_source_lists_the_known_ones(tmp_path: Path) -> None:
    source_file(tmp_path, "refunds.csv")
    err = mapping_error(two_source_mapping(tmp_path), {"zzz": "x.csv"})
    assert "Known sources: orders, refunds.csv" in str(err)


def test_override_to_a_file_that_does_not_exist(tmp_path: Path) -> None:
    source_file(tmp_path, "refunds.csv")
    err = mapping_error(two_source_mapping(tmp_path), {"orders": str(tmp_path / "nope.csv")})
    assert "--source orders=" in str(err)
    assert "nope.csv" in str(err)
    assert "--source" in (err.hint or "")
    assert err.sheet is None  # the workbook is not where the wrong path came from


# --- filters ------------------------------------------------------------------------


def with_filters(tmp_path: Path, filter_rows: list[Row]) -> Path:
    source_file(tmp_path, "orders.csv")
    return write_xlsx(
        tmp_path / "map.xlsx",
        {
            "Mapping": [header(), *ORDER_ROWS],
            "Rules to apply": [
                ["Row filters"],
                [],
                ["Target Table", "Condition", "Description"],
                *filter_rows,
            ],
        },
    )


def test_filters_sheet(tmp_path: Path) -> None:
    path = with_filters(
        tmp_path,
        [
            ["ORDERS", "Status <> 'CANCELLED'", "drop cancelled"],
            [],
            ["ORDERS", "Amount > 0", None],
            ["ORDERS", None, "a note with no condition is skipped"],
        ],
    )
    filters = read_mapping(path).filters
    assert [(f.table, f.condition, f.description, f.sheet, f.row) for f in filters] == [
        ("ORDERS", "Status <> 'CANCELLED'", "drop cancelled", "Rules to apply", 4),
        ("ORDERS", "Amount > 0", None, "Rules to apply", 6),
    ]


def test_filter_naming_an_unknown_table(tmp_path: Path) -> None:
    err = mapping_error(with_filters(tmp_path, [["ORDER", "Amount > 0", None]]))
    assert_points_at(err, sheet="Rules to apply", row=4, column="Target Table (A)")
    assert "unknown target table 'ORDER'" in str(err)
    assert "Did you mean 'ORDERS'?" in str(err)


def test_filter_without_a_table(tmp_path: Path) -> None:
    with pytest.raises(MappingError) as info:
        read_mapping(with_filters(tmp_path, [[None, "Amount > 0", None]]))
    assert_points_at(info.value, sheet="Rules to apply", row=4, column="Target Table (A)")


def test_no_filters_sheet_means_no_filters(tmp_path: Path) -> None:
    assert read_mapping(simple_mapping(tmp_path, *ORDER_ROWS)).filters == []


# --- errors in the mapping sheet ----------------------------------------------------


@pytest.mark.parametrize(
    ("dropped", "missing", "hint"),
    [
        ("type", "type", "Target Type, Data Type, Type"),
        ("column", "column", "Target Column, Target Field, Output Column"),
        (("source_column", "rule"), "source column", "Source Column, Source Field, Input Column"),
    ],
)
def test_missing_required_header(
    tmp_path: Path, dropped: str | tuple[str, ...], missing: str, hint: str
) -> None:
    dropped = (dropped,) if isinstance(dropped, str) else dropped
    renamed = {field: "Remarks for the reviewer" for field in dropped}
    path = write_xlsx(
        tmp_path / "map.xlsx",
        {"Cover": [["ACME"]], "Mapping": [["ACME mapping"], header(**renamed), *ORDER_ROWS]},
    )
    err = mapping_error(path)
    assert f"missing required header for {missing}" in str(err)
    # the one unknown header, which most likely meant it, is named (issue 12); of two
    # unknown headers neither near the missing one, none is guessed
    if len(dropped) == 1:
        assert err.column is not None and err.column.startswith("Remarks for the reviewer (")
    else:
        assert err.column is None
    assert_points_at(err, sheet="Mapping", row=2, column=err.column)
    assert hint in str(err)


@pytest.mark.parametrize(
    ("written", "suggestion"),
    [
        ("strng", "string"),
        ("integr", "integer"),
        ("Timestmp", "timestamp"),
        ("decmal(10,2)", "decimal(p,s)"),
        ("decimal(40,2)", "decimal(p,s)"),
        ("decimal(5,7)", "decimal(p,s)"),
        ("bolean", "boolean"),
    ],
)
def test_unknown_type_suggests_the_closest(tmp_path: Path, written: str, suggestion: str) -> None:
    path = simple_mapping(
        tmp_path,
        target("ORDERS", "ORDER_ID", "string", "orders", "Order ID"),
        target(None, "AMOUNT", written, None, "Amount"),
    )
    err = mapping_error(path)
    assert f"unknown type {written!r}" in str(err)
    assert f"Did you mean {suggestion!r}?" in str(err)
    assert_points_at(err, sheet="Mapping", row=3, column="Data Type (C)")


def test_unknown_type_with_nothing_close(tmp_path: Path) -> None:
    err = mapping_error(simple_mapping(tmp_path, target("T", "C", "geography", "orders", "Amount")))
    assert "Did you mean" not in str(err)
    assert "Known: string, int, bigint, decimal(p,s)" in str(err)


def test_empty_type(tmp_path: Path) -> None:
    err = mapping_error(simple_mapping(tmp_path, target("T", "C", None, "orders", "Amount")))
    assert "data type is empty" in str(err)
    assert_points_at(err, sheet="Mapping", row=2, column="Data Type (C)")


def test_duplicate_target_column(tmp_path: Path) -> None:
    path = simple_mapping(
        tmp_path,
        target("ORDERS", "ORDER_ID", source="orders", source_column="Order ID"),
        target(None, "AMOUNT", source_column="Amount"),
        target(None, "order_id ", source_column="Amount"),  # case and a stray space
    )
    err = mapping_error(path)
    assert "appears twice in table 'ORDERS'" in str(err)
    assert_points_at(err, sheet="Mapping", row=4, column="Target Column (B)")
    assert "also on row 2" in str(err)


def test_same_column_name_in_two_tables_is_fine(tmp_path: Path) -> None:
    path = simple_mapping(
        tmp_path,
        target("ORDERS", "ID", source="orders", source_column="Order ID"),
        target("REFUNDS", "ID", source="orders", source_column="Order ID"),
    )
    assert columns_by_table(read_mapping(path)) == {"ORDERS": ["ID"], "REFUNDS": ["ID"]}


def test_row_with_a_rule_but_no_target_column(tmp_path: Path) -> None:
    path = simple_mapping(
        tmp_path, *ORDER_ROWS, target(None, None, "string", None, "Amount", "trim")
    )
    err = mapping_error(path)
    assert "target column is empty" in str(err)
    assert_points_at(err, sheet="Mapping", row=4, column="Target Column (B)")


def test_table_name_on_its_own_row_is_a_section_title(tmp_path: Path) -> None:
    path = simple_mapping(
        tmp_path,
        target("ORDERS", None, None),
        target(None, "ORDER_ID", source="orders", source_column="Order ID"),
    )
    assert columns_by_table(read_mapping(path)) == {"ORDERS": ["ORDER_ID"]}


@pytest.mark.parametrize("table", ["../outside", "a/b", "..", ".hidden", "c:\\x"])
def test_unsafe_table_name(tmp_path: Path, table: str) -> None:
    err = mapping_error(simple_mapping(tmp_path, target(table, "C", "string", "orders", "Amount")))
    assert "is not allowed" in str(err)
    assert_points_at(err, sheet="Mapping", row=2, column="Target Table (A)")


def test_bad_yes_no_value(tmp_path: Path) -> None:
    path = simple_mapping(
        tmp_path,
        target("T", "C", "string", "orders", "Amount", required="sometimes"),
        required="Mandatory",
    )
    err = mapping_error(path)
    assert "'sometimes' is not yes or no" in str(err)
    assert_points_at(err, sheet="Mapping", row=2, column="Mandatory (G)")


def test_nothing_half_parsed_is_returned(tmp_path: Path) -> None:
    """A good first sheet does not make the workbook usable when a later one is wrong."""
    source_file(tmp_path, "orders.csv")
    path = write_xlsx(
        tmp_path / "map.xlsx",
        {
            "ORDERS": [header(), *ORDER_ROWS],
            "REFUNDS": [header(), target("REFUNDS", "ID", "uuid", "orders", "Order ID")],
        },
    )
    err = mapping_error(path)
    assert_points_at(err, sheet="REFUNDS", row=2, column="Data Type (C)")


# --- errors in the workbook itself ---------------------------------------------------


def test_workbook_without_mapping_headers(tmp_path: Path) -> None:
    path = write_xlsx(
        tmp_path / "empty.xlsx",
        {"Sheet1": [["Mapping to follow"]], "Notes": [["Owner", "Date"], ["me", "today"]]},
    )
    err = mapping_error(path)
    assert "no mapping rows found" in str(err)
    assert (err.sheet, err.row) == (None, None)
    assert "Target Column" in (err.hint or "")


def test_workbook_with_no_cells_at_all(tmp_path: Path) -> None:
    path = tmp_path / "blank.xlsx"
    Workbook().save(path)
    assert "no mapping rows found" in str(mapping_error(path))


def test_header_without_rows(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "map.xlsx", {"Mapping": [["Title"], [], header(), [], []]})
    err = mapping_error(path)
    assert "no rows under it" in str(err)
    assert_points_at(err, sheet="Mapping", row=3)


def encrypted_copy(plain: Path, password: str) -> bytes:
    ooxml = pytest.importorskip("msoffcrypto.format.ooxml")  # in the dev extra
    out = io.BytesIO()
    with plain.open("rb") as fh:
        ooxml.OOXMLFile(fh).encrypt(password, out)
    return out.getvalue()


def test_password_protected_workbook(tmp_path: Path) -> None:
    plain = simple_mapping(tmp_path, *ORDER_ROWS)
    assert read_mapping(plain).targets  # readable before it is encrypted
    locked = tmp_path / "locked.xlsx"
    locked.write_bytes(encrypted_copy(plain, "s3cret"))
    err = mapping_error(locked)
    assert "password-protected" in str(err)
    assert "Remove the password" in str(err)


def test_ole2_file_named_xlsx_is_reported_as_protected(tmp_path: Path) -> None:
    """What Excel writes for an encrypted workbook (or an old .xls) is an OLE2 container."""
    path = tmp_path / "old.xlsx"
    path.write_bytes(bytes.fromhex("D0CF11E0A1B11AE1") + os.urandom(4096))
    assert "password-protected" in str(mapping_error(path))


def test_random_bytes_named_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "noise.xlsx"
    path.write_bytes(os.urandom(2048))
    err = mapping_error(path)
    assert "cannot be opened" in str(err)
    assert "corrupt" in (err.hint or "")


def test_truncated_workbook(tmp_path: Path) -> None:
    whole = simple_mapping(tmp_path, *ORDER_ROWS).read_bytes()
    path = tmp_path / "truncated.xlsx"
    path.write_bytes(whole[: len(whole) // 2])
    assert "cannot be opened" in str(mapping_error(path))


def test_zip_that_is_not_a_workbook(tmp_path: Path) -> None:
    path = tmp_path / "archive.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a workbook")
    assert "cannot be opened" in str(mapping_error(path))


def test_mapping_file_that_does_not_exist(tmp_path: Path) -> None:
    err = mapping_error(tmp_path / "nowhere.xlsx")
    assert "does not exist" in str(err)


@pytest.mark.parametrize("name", ["map.xls", "map.ods", "map.json"])
def test_unsupported_mapping_file_type(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"whatever")
    err = mapping_error(path)
    assert ".xlsx or .csv" in str(err)


# --- the planner's check of source columns ------------------------------------------


def planner_mapping(tmp_path: Path, *rows: Row) -> Mapping:
    return read_mapping(simple_mapping(tmp_path, *rows))


ORDERS_SCHEMA = {"orders": {"Order ID": "string", "Amount": "string", "Status": "string"}}


def test_planner_accepts_source_columns_in_the_header(tmp_path: Path) -> None:
    mapping = planner_mapping(
        tmp_path,
        target("ORDERS", "ORDER_ID", "string", "orders", "order id", "trim"),  # any case
        target(None, "AMOUNT", "decimal(18,2)", None, "Amount", "multiply by 1000"),
    )
    plan = OfflinePlanner().draft("ACME", mapping, ORDERS_SCHEMA).plan
    assert [c.name for c in plan.table("ORDERS").columns] == ["ORDER_ID", "AMOUNT"]


def test_planner_rejects_a_source_column_missing_from_the_header(tmp_path: Path) -> None:
    mapping = planner_mapping(
        tmp_path,
        target("ORDERS", "ORDER_ID", "string", "orders", "Order ID", "trim"),
        target(None, "AMOUNT", "decimal(18,2)", None, "Amout", "multiply by 1000"),
    )
    with pytest.raises(MappingError) as info:
        OfflinePlanner().draft("ACME", mapping, ORDERS_SCHEMA)
    err = info.value
    assert "source column 'Amout' is not in the header of source 'orders'" in str(err)
    assert (err.file, err.sheet, err.row) == (mapping.file, "Mapping", 3)
    assert err.column
    assert "Did you mean 'Amount'?" in str(err)
    assert "\n" not in str(err)


def test_planner_lists_the_header_when_nothing_is_close(tmp_path: Path) -> None:
    mapping = planner_mapping(
        tmp_path, target("ORDERS", "ORDER_ID", "string", "orders", "Reference", "trim")
    )
    with pytest.raises(MappingError) as info:
        OfflinePlanner().draft("ACME", mapping, ORDERS_SCHEMA)
    assert "Order ID, Amount, Status" in str(info.value)
    assert info.value.row == 2


def test_unresolved_rule_from_a_workbook_shows_in_the_pseudocode(tmp_path: Path) -> None:
    mapping = planner_mapping(
        tmp_path,
        target("ORDERS", "ORDER_ID", "string", "orders", "Order ID", "trim"),
        target(None, "AMOUNT", "string", None, "Amount", "trim and convert to local currency"),
    )
    plan = OfflinePlanner().draft("ACME", mapping, ORDERS_SCHEMA).plan
    [line] = [ln for ln in render_pseudocode(plan).splitlines() if "AMOUNT" in ln]
    assert "UNRESOLVED" in line
    assert '"convert to local currency"' in line
    assert [step.text for _, _, step in plan.unresolved()] == ["convert to local currency"]
