"""Readers without Spark: each new format's sample (first records only, proved with files
whose later parts are broken), many-file and compressed sources, delimiters, the
workbook's Record Path, Row Tag and Layout sheet (every bad layout named at its cell),
the compiled reads and lookup keys, and keys that stay put for existing workbooks."""

from __future__ import annotations

import ast
import bz2
import csv
import gzip
import io
import json
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook

from dataeng_magics.canonical import hashed_form
from dataeng_magics.compile.codegen import compile_plan
from dataeng_magics.compile.safety import check_generated
from dataeng_magics.config import load_settings
from dataeng_magics.errors import MappingError, SourceError
from dataeng_magics.mapping.model import LayoutField, SourceFormat, SourceSpec
from dataeng_magics.mapping.read import read_mapping
from dataeng_magics.plan.model import ColumnPlan, Lookup, Plan, SourceRead, TablePlan
from dataeng_magics.sources.diagnose import first_malformed, quoted_break, spans_lines
from dataeng_magics.sources.platforms import reads_xml
from dataeng_magics.sources.readers.csv import records
from dataeng_magics.sources.readers.json_document import DOCUMENT_LIMIT_BYTES
from dataeng_magics.sources.sampling import sample
from dataeng_magics.workflow import TransformRequest, TransformSession

FORMATS = Path(__file__).resolve().parent / "data" / "formats"
LAYOUT = (LayoutField(name="id", start=1, length=10), LayoutField(name="name", start=11, length=6),
          LayoutField(name="amount", start=17, length=8))  # fmt: skip


def spec(path: Path | str, fmt: SourceFormat = "csv", **options: Any) -> SourceSpec:
    return SourceSpec(name="src", path=str(path), format=fmt, **options)


def refused(source: SourceSpec, **kwargs: Any) -> SourceError:
    with pytest.raises(SourceError) as info:
        sample(source, **kwargs)
    assert "\n" not in str(info.value)
    return info.value


# -- fixed-width ------------------------------------------------------------------------------


def test_fixed_width_keeps_spaces_and_types_by_text(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text(f"{66:010d}{'Ada':<6}{'12.50':>8}\n{7:010d}{'Bob':<6}{'-3.00':>8}\n\n")
    result = sample(spec(path, "fixed-width", header=False, layout=LAYOUT))
    assert result.schema == {"id": "bigint", "name": "string", "amount": "double"}
    assert result.frame["id"].tolist() == ["0000000066", "0000000007"]  # text, as read
    assert result.frame["name"].tolist() == ["Ada   ", "Bob   "]  # trailing spaces kept


def test_fixed_width_reads_only_the_first_records(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    good = "".join(f"{i:010d}Name{i % 10:02d}{i:8d}\n" for i in range(50))
    path.write_text(good + "short\n" * 10)  # later lines break the layout
    assert len(sample(spec(path, "fixed-width", header=False, layout=LAYOUT), n=50).frame) == 50
    error = refused(spec(path, "fixed-width", header=False, layout=LAYOUT), n=60)
    assert "line 51" in error.message and "shorter than the layout (24)" in error.message


def _located(name: str, start: int, length: int, row: int) -> LayoutField:
    return LayoutField(name=name, start=start, length=length, sheet="Layout", row=row,
                       file="map.xlsx", column="Length (D)")  # fmt: skip


def test_fixed_width_errors_point_at_the_layout_sheet(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("0000000066Ada   \n")  # 16 characters
    layout = (_located("id", 1, 10, 2), _located("name", 11, 6, 3), _located("amt", 17, 8, 4))
    error = refused(spec(path, "fixed-width", header=False, layout=layout))
    assert (error.file, error.sheet, error.row, error.column) == (
        "map.xlsx", "Layout", 4, "Length (D)")  # fmt: skip
    assert "field 'amt' (positions 17-24) runs past the end" in error.message
    path.write_text("0000000066Ada      12.50\n0000000066Ada   \n")  # one record cut short
    error = refused(spec(path, "fixed-width", header=False, layout=layout))
    assert error.row == 4 and "line 2" in error.message and "shorter than the layout" in str(error)


# -- JSON documents ------------------------------------------------------------------------------


def test_json_document_streams_to_the_first_records(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    # far more than the parser's buffer before the break: reading stops long before it
    records_ = ",".join(json.dumps({"id": i, "v": i / 2}) for i in range(50_000))
    path.write_text('{"meta": {"n": 20}, "export": {"rows": [' + records_ + ", {broken")
    result = sample(spec(path, "json", record_path="export.rows"), n=20)
    assert result.schema == {"id": "bigint", "v": "double"}
    assert result.frame["id"].tolist() == list(range(20))
    path.write_text('{"export": {"rows": [{"id": 1}, {broken')
    assert "not valid JSON" in refused(spec(path, "json", record_path="export.rows")).message


def test_json_document_root_array_and_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text('[{"id": 1}, {"id": 2}]')
    assert sample(spec(path, "json", record_path="$")).frame["id"].tolist() == [1, 2]
    assert "$" in refused(spec(path, "json")).hint  # type: ignore[operator]
    error = refused(spec(path, "json", record_path="export.rows"))
    assert "no records at record path 'export.rows'" in error.message


def test_json_document_over_the_limit_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:  # sparse: nothing is written, the size is what counts
        handle.truncate(DOCUMENT_LIMIT_BYTES + 1)
    error = refused(spec(path, "json", record_path="rows"))
    assert "works up to 256 MB" in error.message and "JSON Lines" in str(error.hint)
    assert "jq -c '.rows[]'" in str(error.hint)


# -- XML ---------------------------------------------------------------------------------------


def test_xml_names_fields_as_spark_does(tmp_path: Path) -> None:
    path = FORMATS / "xml" / "positions.xml"
    result = sample(spec(path, "xml", row_tag="position"))
    assert result.schema == {
        "_id": "string", "_status": "string", "account.id": "bigint",
        "account.branch": "string", "isin": "string", "qty": "bigint",
        "price._currency": "string", "price._VALUE": "double",
    }  # fmt: skip
    assert result.frame["account.id"].tolist()[:2] == ["00012", "00013"]


def test_xml_reads_only_the_first_row_tags(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    rows = "".join(f'<r id="{i}"><v>{i}</v></r>' for i in range(30))
    path.write_text(f"<rows>{rows}<r><v>unclosed</rows>")
    assert len(sample(spec(path, "xml", row_tag="r"), n=30).frame) == 30
    assert "XML" in refused(spec(path, "xml", row_tag="r"), n=31).message


def test_xml_entity_expansion_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bomb.xml"
    path.write_text(
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
        "<rows><r><v>&b;</v></r></rows>"
    )
    assert "cannot be read as XML" in refused(spec(path, "xml", row_tag="r")).message


def test_xml_without_the_row_tag(tmp_path: Path) -> None:
    error = refused(spec(FORMATS / "xml" / "positions.xml", "xml", row_tag="trade"))
    assert "no <trade> elements" in error.message


# -- many files, compression, delimiters ----------------------------------------------------------


def test_glob_and_folder_of_gzip_parts_sample_the_first(tmp_path: Path) -> None:
    folder = FORMATS / "gzip_parts" / "prices"
    for path in (str(folder), str(folder / "part-*.csv.gz")):
        result = sample(spec(path, delimiter="|"))
        assert len(result.files) == 3 and result.files[0].endswith("part-00000.csv.gz")
        assert result.frame["Ticker"].tolist() == ["aapl", "msft"]  # the first part's rows


def test_a_part_with_another_header_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "a.csv.gz").write_bytes(gzip.compress(b"id,name\n1,a\n"))
    (folder / "b.csv.gz").write_bytes(gzip.compress(b"id,name\n2,b\n"))
    (folder / "c.csv.gz").write_bytes(gzip.compress(b"name,id\nc,3\n"))
    (folder / "_SUCCESS").write_text("")
    error = refused(spec(folder))
    assert error.file is not None and error.file.endswith("c.csv.gz")
    assert "different header" in error.message and "'name,id'" in error.message


def test_a_glob_without_matches(tmp_path: Path) -> None:
    assert "no file matches" in refused(spec(tmp_path / "*.csv")).message


def test_bz2_and_a_gzip_read_only_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "a.csv.bz2"
    path.write_bytes(bz2.compress(b"id,name\n1,a\n2,b\n"))
    assert sample(spec(path)).frame["name"].tolist() == ["a", "b"]
    big = tmp_path / "big.csv.gz"
    head = gzip.compress(b"id,name\n" + b"".join(b"%d,n\n" % i for i in range(500_000)))
    big.write_bytes(head + b"\x00corrupt gzip member after the first rows" * 100)
    assert len(sample(spec(big)).frame) == 100  # the broken tail is never decompressed


@pytest.mark.parametrize("sep", ["|", "\t", ";", "||", "~|~"])
def test_delimiters_with_quotes_and_line_breaks(tmp_path: Path, sep: str) -> None:
    rows = [["id", "note"], ["1", f"a {sep} b"], ["2", 'say "hi"\nnext line'], ["3", "plain"]]
    text = "".join(sep.join('"' + v.replace('"', '""') + '"' if i else v
                            for i, v in enumerate(row)) + "\n" for row in rows)  # fmt: skip
    path = tmp_path / "d.txt"
    path.write_text(text)
    result = sample(spec(path, delimiter=sep))
    assert result.schema == {"id": "bigint", "note": "string"}
    assert result.frame["note"].tolist() == [r[1] for r in rows[1:]]


def test_records_read_as_pythons_csv_module() -> None:
    text = 'a,"b ""q"", c",d\n"x\ny",,\n"unclosed,1\n'
    assert list(records(io.StringIO(text), ",")) == [
        (1, ["a", 'b "q", c', "d"], True),
        (2, ["x\ny", "", ""], True),
        (4, ["unclosed,1\n"], False),
    ]
    assert [r for r in csv.reader(io.StringIO(text[:-12]))] == [
        ["a", 'b "q", c', "d"], ["x\ny", "", ""]]  # fmt: skip


def test_first_malformed_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,name\n1,a\n2,b,extra\n3,c\n")
    assert first_malformed(spec(path)) == f"first in {path}, line 3: '2,b,extra (3 fields, not 2)'"
    path.write_text('id,name\n1,a\n2,"open\n')
    assert "line 3" in str(first_malformed(spec(path))) and "never closed" in str(
        first_malformed(spec(path))
    )
    path.write_text("id,name\n1,a\n")
    assert first_malformed(spec(path)) is None
    fixed = tmp_path / "f.txt"
    fixed.write_text("0000000066Ada      12.50\n00066\n")
    hit = first_malformed(spec(fixed, "fixed-width", header=False, layout=LAYOUT))
    assert hit is not None and "line 2" in hit and "the layout needs 24" in hit


@pytest.mark.parametrize(
    ("text", "spans"),
    [
        (b"id,note\n1,plain\n", False),
        (b'id,note\r\n1,"said ""hi"", twice"\r\n2,""\r\n', False),  # doubled quotes, \r\n
        (b'id,note\n1,"two\nlines"\n', True),
        (b'id,note\r1,"two\rlines"\r', True),  # a lone \r inside quotes breaks a line too
        (b'id,note\n1,"cut off', True),  # odd in total: today's multiLine path names it
        (b'\xef\xbb\xbf"id",note\n"1",x\n', False),  # a quote right after the BOM
        # A literal quote in an unquoted field: parity no longer follows the parser,
        # which here reads a record over two lines; never read by lines.
        (b'id,note\na"b,"x\ny",c"d\n', True),
        (b'id,note\n5" pipe,x\n', True),
    ],
)
def test_quoted_line_breaks_are_found_by_quote_parity(text: bytes, spans: bool) -> None:
    assert quoted_break(io.BytesIO(text)) is spans
    for chunk in range(3, 9):  # cut anywhere (past the BOM): chunks judged apart agree
        assert quoted_break(io.BytesIO(text), chunk=chunk) is spans


def test_quote_parity_carries_over_chunk_boundaries() -> None:
    """Every cut of the file into 8-byte chunks (a quoted pair, a doubled quote, or the
    line break inside quotes straddling a boundary) gives the whole file's answer."""
    clean = b'id,note\n1,"a, ""b"""\n2,"c"\n3,x\n'
    broken = b'id,note\n1,"a, ""b"""\n2,"c\nd"\n3,x\n'
    for shift in range(8):
        pad = b"0" * shift + b",p\n"
        assert quoted_break(io.BytesIO(pad + clean), chunk=8) is False
        assert quoted_break(io.BytesIO(pad + broken), chunk=8) is True


def test_spans_lines_reads_every_file_of_a_source_compressed_too(tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "a.csv").write_text('id,note\n1,"x"\n')
    with gzip.open(folder / "b.csv.gz", "wt") as part:
        part.write('id,note\n2,"two\nlines"\n')
    assert spans_lines(spec(folder / "a.csv")) is False
    assert spans_lines(spec(folder)) is True  # the second file, decompressed
    assert spans_lines(spec(tmp_path / "missing.csv")) is True  # unreadable: the safe read
    (folder / "b.csv.gz").unlink()
    assert spans_lines(spec(folder, delimiter="||")) is True  # '"x"' does not follow '||'
    (folder / "a.csv").write_text('id||note\n1||"x||y"\n')
    assert spans_lines(spec(folder, delimiter="||")) is False
    assert spans_lines(spec(folder, encoding="utf-16")) is True  # bytes are not characters


# -- the workbook ----------------------------------------------------------------------------------


def workbook(path: Path, sheets: dict[str, list[list[Any]]]) -> Path:
    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


MAPPING = [["Target Table", "Target Column", "Data Type", "Source", "Source Column"],
           ["T", "ID", "string", "trades", "id"]]  # fmt: skip
SOURCES = [["Source Name", "File/Path", "Format"], ["trades", "t.txt", "fixed-width"]]
GOOD_LAYOUT = [["Source Name", "Field", "Start", "Length", "End"],
               ["trades", "id", 1, 10, None], ["trades", "name", 11, None, 16]]  # fmt: skip


def test_layout_sheet_with_length_or_end(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("0000000066Ada   \n")
    path = workbook(tmp_path / "m.xlsx", {"Mapping": MAPPING, "Sources": SOURCES,
                                         "Layout": GOOD_LAYOUT})  # fmt: skip
    source = read_mapping(path).sources["trades"]
    assert [(f.name, f.start, f.length) for f in source.layout] == [("id", 1, 10), ("name", 11, 6)]
    assert source.header is False


@pytest.mark.parametrize(
    ("change", "message", "row", "column"),
    [
        ({3: ["trades", "name", 10, 6, None]}, "overlaps 'id' (positions 1-10, row 2)", 3,
         "Start (C)"),
        ({3: ["trades", "name", 12, 5, None]}, "positions 11-11 of 'trades' belong to no field",
         3, "Start (C)"),
        ({2: ["trades", "id", 2, 9, None]}, "positions 1-1 of 'trades' belong to no field", 2,
         "Start (C)"),
        ({3: ["trades", "name", 11, None, 9]}, "End 9 is before Start 11", 3, "End (E)"),
        ({3: ["trades", "name", 11, 5, 16]}, "Length 5 does not match Start 11 and End 16", 3,
         "Length (D)"),
        ({3: ["trades", "name", "eleven", 6, None]}, "Start 'eleven' is not a whole number", 3,
         "Start (C)"),
        ({3: ["trades", "id", 11, 6, None]}, "field 'id' of 'trades' appears twice", 3,
         "Field (B)"),
        ({3: ["trades", "name", 11, None, None]}, "field 'name' has no Length", 3, "Length (D)"),
    ],
)  # fmt: skip
def test_bad_layouts_are_named_at_their_cell(
    tmp_path: Path, change: dict[int, list[Any]], message: str, row: int, column: str
) -> None:
    (tmp_path / "t.txt").write_text("0000000066Ada   \n")
    layout = [list(r) for r in GOOD_LAYOUT]
    for index, values in change.items():
        layout[index - 1] = values
    path = workbook(tmp_path / "m.xlsx", {"Mapping": MAPPING, "Sources": SOURCES,
                                         "Layout": layout})  # fmt: skip
    with pytest.raises(MappingError) as info:
        read_mapping(path)
    error = info.value
    assert message in error.message
    assert (error.file, error.sheet, error.row, error.column) == (str(path), "Layout", row, column)


def test_sources_sheet_options_are_checked(tmp_path: Path) -> None:
    (tmp_path / "t.txt").write_text("x\n")
    (tmp_path / "p.xml").write_text("<rows/>")
    cases = [
        ([["trades", "t.txt", "csv", "rows", None]], "Record Path 'rows' is for json sources"),
        ([["trades", "p.xml", "xml", None, None]], "an xml source needs a Row Tag"),
        ([["trades", "t.txt", "fixed-width", None, None]], "fixed-width source 'trades' has no "
         "layout"),
    ]  # fmt: skip
    for rows, message in cases:
        sources = [["Source Name", "File/Path", "Format", "Record Path", "Row Tag"], *rows]
        path = workbook(tmp_path / "m.xlsx", {"Mapping": MAPPING, "Sources": sources})
        with pytest.raises(MappingError, match=message) as info:
            read_mapping(path)
        assert info.value.sheet == "Sources" and info.value.row == 2


def test_compressed_glob_formats_from_the_inner_extension(tmp_path: Path) -> None:
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "a.csv.gz").write_bytes(gzip.compress(b"id\n1\n"))
    sources = [["Source Name", "File/Path", "Delimiter"], ["trades", "parts/*.csv.gz", "tab"]]
    path = workbook(tmp_path / "m.xlsx", {"Mapping": MAPPING, "Sources": sources})
    source = read_mapping(path).sources["trades"]
    assert (source.format, source.delimiter) == ("csv", "\t")
    assert source.path == str(tmp_path / "parts" / "*.csv.gz")


# -- keys, plans and the compiled reads -----------------------------------------------------------


def test_existing_keys_and_plan_hashes_do_not_move(example: Path) -> None:
    """New source options at their defaults are left out of the key and the plan hash:
    the bundled example keeps the key and plan it had before they existed."""
    settings = load_settings()
    s = TransformSession(TransformRequest(client="NORTHWIND", mapping=example), settings)
    assert s.key == "53e4c7abe8974033d1af83884d2c70db29fe07b852469a032ca61108eab8e876"
    assert s.baseline.sha256().startswith("0d07ad7369d0255a")
    hashed = hashed_form(s.mapping.sources["trades"])
    assert set(hashed) == {"name", "format", "delimiter", "header", "encoding", "excel_sheet"}


def test_key_covers_the_layout_not_the_file_names(tmp_path: Path) -> None:
    client = tmp_path / "client"
    import shutil

    shutil.copytree(FORMATS / "fixed_width", client)
    settings = load_settings()

    def key() -> str:
        return TransformSession(
            TransformRequest(client="ACME", mapping=client / "mapping.xlsx"), settings
        ).key

    before = key()
    (client / "trades.txt").rename(client / "trades_2026Q1.txt")
    quarter = TransformSession(
        TransformRequest(client="ACME", mapping=client / "mapping.xlsx",
                         sources={"trades": str(client / "trades_2026Q1.txt")}), settings,
    )  # fmt: skip
    assert quarter.key == before  # a new quarter's file replays the approval
    (client / "trades_2026Q1.txt").rename(client / "trades.txt")
    from openpyxl import load_workbook

    book = load_workbook(client / "mapping.xlsx")
    book["Layout"]["D8"] = 3  # Filler: 4 characters -> 3
    book.save(client / "mapping.xlsx")
    assert key() != before


def _plan(left: SourceRead, right: SourceRead) -> Plan:
    column = ColumnPlan(name="NAME", type="string", source_column="name",
                        steps=[Lookup(column="name", source="cpty", key="id")])  # fmt: skip
    table = TablePlan(name="T", source="trades", columns=[column])
    return Plan(client="C", sources={"trades": left, "cpty": right}, tables=[table])


@pytest.mark.parametrize(
    ("left", "right", "cast"),
    [
        ("bigint", "bigint", 'try_cast("bigint")'),
        ("bigint", "double", 'try_cast("decimal(38,10)")'),
        ("string", "bigint", None),
        ("date", "date", 'try_cast("date")'),
    ],
)
def test_lookup_keys_compare_as_the_sample_typed_them(
    left: str, right: str, cast: str | None
) -> None:
    fixed = SourceRead(format="fixed-width", header=False, columns={"id": left},
                       layout=(LayoutField(name="id", start=1, length=10),))  # fmt: skip
    code = compile_plan(
        _plan(fixed, SourceRead(format="csv", columns={"id": right, "name": "string"}))
    )
    join = next(line for line in code.splitlines() if ".join(" in line)
    key = next(line for line in code.splitlines() if '.alias("_lk1_key")' in line)
    if cast:
        assert f'F.col("`id`").{cast} == F.col("_lk1_key")' in join and cast in key
    else:
        assert "try_cast" not in join and "try_cast" not in key
    # typed on both sides (Parquet): compared as they are
    parquet = SourceRead(format="parquet", columns={"id": "bigint", "name": "string"})
    typed = compile_plan(_plan(SourceRead(format="parquet", columns={"id": "bigint"}), parquet))
    assert 'F.col("`id`") == F.col("_lk1_key")' in typed


@pytest.mark.parametrize("name", ["fixed_width", "gzip_parts", "json_document", "xml"])
def test_every_format_compiles_to_allowed_native_code(name: str) -> None:
    s = TransformSession(
        TransformRequest(client="ACME", mapping=FORMATS / name / "mapping.xlsx"), load_settings()
    )
    code = compile_plan(s.baseline)
    check_generated(code)
    calls = {n.func.attr for n in ast.walk(ast.parse(code))
             if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)}  # fmt: skip
    assert not calls & {"udf", "pandas_udf", "collect", "toPandas", "rdd"}
    assert "malformed:" in code  # every text read counts what it cannot parse


def test_xml_support_by_version() -> None:
    assert reads_xml("4.0.1") and reads_xml("spark 4.1") and reads_xml("databricks 14.3")
    assert not reads_xml("3.5.2") and not reads_xml("dbr 13.3") and not reads_xml("garbage")
