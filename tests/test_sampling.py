"""sampling: each format's first rows and Spark schema, the "read only the start" promise
(proved with files whose later parts are broken), and the one-line errors users see."""

from __future__ import annotations

import datetime as dt
import decimal
import gzip
import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataeng_magics.errors import SourceError
from dataeng_magics.mapping.model import SourceFormat, SourceSpec
from dataeng_magics.sources.sampling import Sample, sample, spark_type_of


def spec(path: Path | str, fmt: SourceFormat = "csv", **options: Any) -> SourceSpec:
    return SourceSpec(name="src", path=str(path), format=fmt, **options)


def write_csv(path: Path, rows: int) -> Path:
    lines = ["id,amount,name"] + [f"{i},{i * 1.5},n{i}" for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def source_error(source: SourceSpec, **kwargs: Any) -> SourceError:
    """The SourceError ``sample`` raises, checked to be a single line naming the file."""
    with pytest.raises(SourceError) as info:
        sample(source, **kwargs)
    text = str(info.value)
    assert "\n" not in text and "Traceback" not in text
    assert info.value.file is not None and info.value.file in text
    return info.value


@pytest.fixture
def memfs() -> Iterator[Any]:
    fs = fsspec.filesystem("memory")
    yield fs
    fs.store.clear()
    fs.pseudo_dirs[:] = [""]


# -- CSV ------------------------------------------------------------------------------------


def test_csv_round_trip_types_and_nulls(tmp_path: Path) -> None:
    path = tmp_path / "trades.csv"
    path.write_text(
        "id,amount,active,country,note,blank\n1,10.5,true,NA,x,\n,2,false,FR,,\n3,3.25,,None,z,\n"
    )
    result = sample(spec(path))
    assert isinstance(result, Sample)
    assert (result.source, result.path, result.format) == ("src", str(path), "csv")
    assert result.schema == {
        "id": "bigint",  # an integer column with a gap stays an integer
        "amount": "double",
        "active": "boolean",
        "country": "string",
        "note": "string",
        "blank": "string",  # nothing to infer from, as in Spark
    }
    assert result.columns() == list(result.frame.columns)
    frame = result.frame
    assert frame["id"].tolist() == [1, pd.NA, 3]
    assert frame["amount"].tolist() == [10.5, 2.0, 3.25]
    assert frame["country"].tolist() == ["NA", "FR", "None"]  # only empty cells are null
    assert frame["note"].isna().tolist() == [False, True, False]


def test_csv_reads_n_rows(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "big.csv", 1000)
    assert len(sample(spec(path)).frame) == 100
    small = sample(spec(path), n=7)
    assert small.frame["id"].tolist() == list(range(7))
    assert small.schema == {"id": "bigint", "amount": "double", "name": "string"}
    empty = sample(spec(path), n=0)
    assert empty.frame.empty and empty.columns() == ["id", "amount", "name"]


def test_csv_semicolon_latin1(tmp_path: Path) -> None:
    path = tmp_path / "clients.csv"
    path.write_bytes("Prénom;Ville;Solde\nRenée;Liège;12\nJosé;Besançon;7\n".encode("latin-1"))
    result = sample(spec(path, delimiter=";", encoding="latin-1"))
    assert result.schema == {"Prénom": "string", "Ville": "string", "Solde": "bigint"}
    assert result.frame.iloc[1].tolist() == ["José", "Besançon", 7]


def test_csv_wrong_encoding_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "clients.csv"
    path.write_bytes("Prénom;Ville\nRenée;Liège\n".encode("latin-1"))
    error = source_error(spec(path, delimiter=";"))
    assert "utf-8" in str(error) and "encoding" in str(error).lower()
    assert isinstance(error.__cause__, UnicodeDecodeError)


def test_csv_unknown_encoding(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", 3)
    assert "klingon" in str(source_error(spec(path, encoding="klingon")))


def test_csv_headerless_gets_spark_names(tmp_path: Path) -> None:
    path = tmp_path / "raw.csv"
    path.write_text("1,a,2.5\n2,b,3.5\n")
    result = sample(spec(path, header=False))
    assert result.schema == {"_c0": "bigint", "_c1": "string", "_c2": "double"}
    assert result.frame.iloc[0].tolist() == [1, "a", 2.5]  # the first line is data


def test_csv_header_names_kept_but_bom_stripped(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffid, Gross Amount ,,x\n1,2,3,4\n".encode())
    assert sample(spec(path)).columns() == ["id", " Gross Amount ", "_c2", "x"]


def test_csv_gzip(tmp_path: Path) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(gzip.compress(b"id,name\n1,a\n2,b\n"))
    assert sample(spec(path)).frame["name"].tolist() == ["a", "b"]


def test_csv_stops_before_a_broken_row(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "broken.csv", 10)
    with path.open("a") as handle:
        handle.write("1,2,3,4,5\n")  # too many fields on line 12
    assert len(sample(spec(path), n=10).frame) == 10
    error = source_error(spec(path), n=20)
    assert "CSV" in error.message and "delimiter" in (error.hint or "")


# -- Parquet --------------------------------------------------------------------------------


def test_parquet_round_trip_types(tmp_path: Path) -> None:
    table = pa.table(
        {
            "i32": pa.array([1, None, 3], pa.int32()),
            "i64": pa.array([1, 2, 3], pa.int64()),
            "amount": pa.array(
                [decimal.Decimal("1.50"), None, decimal.Decimal("-2.25")], pa.decimal128(10, 2)
            ),
            "f32": pa.array([1.5, 2.5, 3.5], pa.float32()),
            "f64": pa.array([1.5, 2.5, 3.5], pa.float64()),
            "flag": pa.array([True, None, False]),
            "day": pa.array([dt.date(2024, 1, 1)] * 3, pa.date32()),
            "at": pa.array([dt.datetime(2024, 1, 1, 12)] * 3, pa.timestamp("us")),
            "name": pa.array(["a", "b", None]),
            "blob": pa.array([b"x", b"y", b"z"]),
            "tags": pa.array([[1], [2, 3], []]),
            "cat": pa.array(["x", "y", "x"]).dictionary_encode(),
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path)
    result = sample(spec(path, "parquet"))
    assert result.schema == {
        "i32": "int",
        "i64": "bigint",
        "amount": "decimal(10,2)",
        "f32": "float",
        "f64": "double",
        "flag": "boolean",
        "day": "date",
        "at": "timestamp",
        "name": "string",
        "blob": "binary",
        "tags": "string",
        "cat": "string",
    }
    frame = result.frame
    assert frame["i32"].tolist() == [1, pd.NA, 3]
    assert frame["amount"][0] == decimal.Decimal("1.50")
    assert frame["day"][0] == dt.date(2024, 1, 1)
    assert frame["name"].tolist()[:2] == ["a", "b"]


def test_parquet_reads_only_the_row_groups_it_needs(tmp_path: Path) -> None:
    path = tmp_path / "groups.parquet"
    pq.write_table(
        pa.table({"id": list(range(500)), "v": [str(i) for i in range(500)]}),
        path,
        row_group_size=100,
    )
    metadata = pq.ParquetFile(path).metadata
    assert metadata.num_row_groups == 5
    last = metadata.row_group(4)
    chunks = [last.column(c) for c in range(last.num_columns)]
    start = min(c.dictionary_page_offset or c.data_page_offset for c in chunks)
    size = sum(c.total_compressed_size for c in chunks)
    data = bytearray(path.read_bytes())
    data[start : start + size] = b"\xff" * size  # wreck the last row group, keep the footer
    path.write_bytes(bytes(data))
    with pytest.raises((OSError, pa.ArrowException)):
        pq.read_table(path)  # the whole file is unreadable...

    result = sample(spec(path, "parquet"), n=150)  # ...but its start is fine
    assert result.frame["id"].tolist() == list(range(150))
    assert result.schema == {"id": "bigint", "v": "string"}
    assert sample(spec(path, "parquet"), n=0).columns() == ["id", "v"]


def test_parquet_that_is_not_parquet(tmp_path: Path) -> None:
    path = tmp_path / "fake.parquet"
    path.write_text("id,name\n1,a\n")
    error = source_error(spec(path, "parquet"))
    assert "Parquet" in error.message and error.file == str(path)


def test_folder_of_parts_with_partitions(tmp_path: Path) -> None:
    root = tmp_path / "sales"
    part = root / "year=2024" / "day=2024-03-01"
    part.mkdir(parents=True)
    (root / "_SUCCESS").write_text("")
    (root / ".hidden.crc").write_text("junk")
    pq.write_table(pa.table({"id": [1, 2]}), part / "part-00000.parquet")
    pq.write_table(pa.table({"id": [3]}), part / "part-00001.parquet")
    result = sample(spec(root, "parquet"))
    assert result.schema == {"id": "bigint", "year": "int", "day": "date"}
    assert result.frame["id"].tolist() == [1, 2]
    assert result.frame["year"].tolist() == [2024, 2024]
    assert result.frame["day"][0] == dt.date(2024, 3, 1)


def test_folder_without_data_files(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "_SUCCESS").write_text("")
    assert "no data files" in source_error(spec(tmp_path / "out", "parquet")).message


# -- Excel ----------------------------------------------------------------------------------


def write_workbook(path: Path | io.BytesIO, rows: int = 3) -> None:
    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "Cover"
    sheet.append(["This sheet is not the data"])
    data = book.create_sheet("Trades")
    data.append(["id", "amount", "ok", "trade date", "booked at", "desk", None])
    for i in range(rows):
        data.append(
            [
                i,
                i + 0.5 if i % 2 else i,
                i % 2 == 0,
                dt.datetime(2024, 1, 1 + i % 28),
                dt.datetime(2024, 1, 1, 9, i % 60),
                f"d{i}" if i else None,
            ]
        )
        data.cell(row=i + 2, column=4).number_format = "yyyy-mm-dd"
        data.cell(row=i + 2, column=5).number_format = "yyyy-mm-dd hh:mm"
    data.append([])  # a blank row is skipped
    book.save(path)


def test_excel_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    write_workbook(path)
    result = sample(spec(path, "excel", excel_sheet="Trades"))
    assert result.schema == {
        "id": "bigint",
        "amount": "double",
        "ok": "boolean",
        "trade date": "date",
        "booked at": "timestamp",
        "desk": "string",
    }
    frame = result.frame
    assert frame["id"].tolist() == [0, 1, 2]
    assert frame["amount"].tolist() == [0.0, 1.5, 2.0]
    assert frame["trade date"][1] == dt.date(2024, 1, 2)
    assert frame["booked at"][2] == pd.Timestamp("2024-01-01 09:02")
    assert frame["desk"].tolist() == [pd.NA, "d1", "d2"]


def test_excel_default_sheet_is_the_first(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    write_workbook(path)
    assert sample(spec(path, "excel")).columns() == ["This sheet is not the data"]


def test_excel_reads_n_rows_and_stops(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    write_workbook(path, rows=300)
    # Break a cell far below the sample: reading it would raise in openpyxl.
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    xml = parts["xl/worksheets/sheet2.xml"].decode()
    target = '<c r="A250" t="n"><v>248</v></c>'
    assert target in xml
    parts["xl/worksheets/sheet2.xml"] = xml.replace(
        target, '<c r="A250" t="n"><v>oops</v></c>'
    ).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, content in parts.items():
            archive.writestr(name, content)

    result = sample(spec(path, "excel", excel_sheet="Trades"), n=20)
    assert result.frame["id"].tolist() == list(range(20))
    with pytest.raises(SourceError):
        sample(spec(path, "excel", excel_sheet="Trades"), n=260)  # proves the break is real


def test_excel_unknown_sheet_lists_the_sheets(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    write_workbook(path)
    error = source_error(spec(path, "excel", excel_sheet="Trade"))
    assert error.sheet == "Trade"
    assert "Cover, Trades" in str(error)


def test_excel_empty_sheet(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    write_workbook(path)
    book = openpyxl.load_workbook(path)
    book.create_sheet("Blank")
    book.save(path)
    error = source_error(spec(path, "excel", excel_sheet="Blank"))
    assert "empty" in error.message and error.sheet == "Blank"


def test_excel_that_is_not_xlsx(tmp_path: Path) -> None:
    path = tmp_path / "old.xlsx"
    path.write_bytes(b"\xd0\xcf\x11\xe0 an old .xls or an encrypted workbook")
    assert ".xlsx" in str(source_error(spec(path, "excel")))


# -- JSON Lines -----------------------------------------------------------------------------


def test_json_lines_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    records = [
        {"id": 1, "amount": 2, "ok": True, "who": {"name": "a"}, "tags": ["x"]},
        {"id": 2, "amount": 2.5, "ok": False, "who": None, "code": "007"},
        {"id": 3, "ok": None},
    ]
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    result = sample(spec(path, "json"))
    assert result.schema == {
        "id": "bigint",
        "amount": "double",
        "ok": "boolean",
        "who": "string",
        "tags": "string",
        "code": "string",
    }
    frame = result.frame
    assert frame["id"].tolist() == [1, 2, 3]
    assert frame["amount"].tolist() == [2.0, 2.5, pd.NA]
    assert frame["who"][0] == '{"name": "a"}'
    assert frame["code"][1] == "007"  # JSON strings stay strings, leading zeros and all


def test_json_lines_later_garbage_is_never_read(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps({"id": i}) + "\n" for i in range(3)) + "{not json\n" * 5)
    assert sample(spec(path, "json"), n=3).frame["id"].tolist() == [0, 1, 2]
    error = source_error(spec(path, "json"), n=5)
    assert error.row == 4 and "line 4" in error.message


def test_json_array_is_not_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "dump.json"
    path.write_text('[\n  {"id": 1},\n  {"id": 2}\n]\n')
    assert "JSON Lines" in source_error(spec(path, "json")).message


# -- errors common to every format ----------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "parquet", "excel", "json"])
def test_missing_file(tmp_path: Path, fmt: SourceFormat) -> None:
    error = source_error(spec(tmp_path / "nope.data", fmt))
    assert "does not exist" in error.message and "--source NAME=PATH" in str(error)


@pytest.mark.parametrize("fmt", ["csv", "parquet", "excel", "json"])
def test_empty_file(tmp_path: Path, fmt: SourceFormat) -> None:
    path = tmp_path / "empty.data"
    path.write_bytes(b"")
    assert "empty" in source_error(spec(path, fmt)).message


def test_blank_csv_counts_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("\n\n")
    assert "empty" in source_error(spec(path)).message


def test_unknown_protocol() -> None:
    assert "nosuchfs://" in str(source_error(spec("nosuchfs://bucket/a.csv")))


# -- fsspec ---------------------------------------------------------------------------------


def test_memory_filesystem(memfs: Any) -> None:
    memfs.pipe("/landing/a.csv", b"id,name\n1,a\n2,b\n")
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": pa.array([7], pa.int32())}), buffer)
    memfs.pipe("/landing/b.parquet", buffer.getvalue())

    csv = sample(spec("memory://landing/a.csv"), storage_options={})
    assert csv.schema == {"id": "bigint", "name": "string"} and len(csv.frame) == 2
    parquet = sample(spec("memory://landing/b.parquet", "parquet"))
    assert parquet.schema == {"id": "int"} and parquet.frame["id"].tolist() == [7]
    memfs.pipe("/landing/c.jsonl", b'{"id": 1}\n{"id": 2}\n')
    assert sample(spec("memory://landing/c.jsonl", "json")).frame["id"].tolist() == [1, 2]
    book = io.BytesIO()
    write_workbook(book)
    memfs.pipe("/landing/d.xlsx", book.getvalue())
    excel = sample(spec("memory://landing/d.xlsx", "excel", excel_sheet="Trades"), n=2)
    assert excel.frame["id"].tolist() == [0, 1]
    error = source_error(spec("memory://landing/missing.csv"))
    assert error.file == "memory://landing/missing.csv"


# -- spark_type_of --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dtype", "expected"),
    [
        (np.dtype("int64"), "bigint"),
        ("int32", "int"),
        (np.dtype("float64"), "double"),
        (np.dtype("float32"), "float"),
        (np.dtype("bool"), "boolean"),
        (np.dtype("object"), "string"),
        (np.dtype("datetime64[ns]"), "timestamp"),
        (pd.DatetimeTZDtype(tz="UTC"), "timestamp"),
        (pd.Int64Dtype(), "bigint"),
        (pd.BooleanDtype(), "boolean"),
        (pd.StringDtype(), "string"),
        (pd.CategoricalDtype(["a"]), "string"),
        (np.dtype("uint64"), "decimal(20,0)"),
        (pd.ArrowDtype(pa.decimal128(38, 4)), "decimal(38,4)"),
        (pa.decimal256(50, 2), "string"),
        (pa.date32(), "date"),
        (pa.timestamp("ms", tz="UTC"), "timestamp"),
        (pa.int16(), "int"),
        (pa.uint32(), "bigint"),
        (pa.large_string(), "string"),
        (pa.large_binary(), "binary"),
        (pa.struct([("a", pa.int8())]), "string"),
        (pa.map_(pa.string(), pa.int8()), "string"),
        (pa.dictionary(pa.int8(), pa.int64()), "bigint"),
        ("not a dtype", "string"),
    ],
)
def test_spark_type_of(dtype: Any, expected: str) -> None:
    assert spark_type_of(dtype) == expected
