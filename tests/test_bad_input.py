"""Bad input never becomes wrong output (issue 12): a workbook column the reader does not
know, a formula with no saved value, a hidden sheet, an invisible character or a damaged
file is refused (or, for hidden sheets, left out with a warning in the draft), each
refusal naming the file, sheet, cell and row."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook
from openpyxl.styles import Font

from dataeng_magics.config import load_settings
from dataeng_magics.errors import MappingError
from dataeng_magics.mapping.model import Mapping
from dataeng_magics.mapping.read import read_mapping
from dataeng_magics.workflow import TransformRequest, TransformSession

HEADER = ["Target Table", "Target Column", "Data Type", "Source", "Source Column",
          "Transformation Rule", "Mandatory", "Default Value"]  # fmt: skip
ROWS: list[list[Any]] = [
    ["TRADES", "TRADE_ID", "string", "trades.csv", "Trade ID", "trim", "Y", None],
    ["TRADES", "STATUS", "string", "trades.csv", "Status", "upper", "N", "OPEN"],
]
FILTERS: list[list[Any]] = [["Target Table", "Condition"], ["TRADES", "Status <> 'CANCELLED'"]]


def workbook(
    folder: Path,
    header: list[Any] | None = None,
    rows: list[list[Any]] | None = None,
    filters: list[list[Any]] | None = None,
    **extra: list[list[Any]],
) -> Path:
    """trades.csv and a workbook: a Mapping sheet, a Filters sheet, and ``extra`` sheets."""
    (folder / "trades.csv").write_text("Trade ID,Status\n1,open\n2,CANCELLED\n")
    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for title, lines in {"Mapping": [header or HEADER, *(rows or ROWS)],
                         "Filters": filters or FILTERS, **extra}.items():  # fmt: skip
        sheet = book.create_sheet(title)
        for line in lines:
            sheet.append(line)
        for cell in sheet[1]:
            cell.font = Font(bold=True)  # a styled header, as real workbooks have
    path = folder / "map.xlsx"
    book.save(path)
    return path


def refusal(path: Path, **settings: Any) -> MappingError:
    """The one error for ``path``: one line, naming the file, saying what to do."""
    with pytest.raises(MappingError) as info:
        read_mapping(path, **settings)
    text = str(info.value)
    assert "\n" not in text and path.name in text and info.value.hint
    return info.value


def renamed(column: int, text: str) -> list[Any]:
    return [text if i == column else h for i, h in enumerate(HEADER)]


# --- headers: nothing silently dropped -------------------------------------------------


@pytest.mark.parametrize("header", ["Xform", "Rule Text", ""])
def test_an_unknown_rule_header_is_refused_naming_the_column(tmp_path: Path, header: str) -> None:
    """Rule phrases under an unknown (or blank) header: refused, pointing at the rule
    field, never read as "copy"."""
    err = refusal(workbook(tmp_path, renamed(5, header)))
    assert (err.sheet, err.row, err.column) == ("Mapping", 1, f"{header or '(blank)'} (F)")
    assert "column F has values" in str(err) and "first on row 2: 'trim'" in str(err)
    assert "Did you mean Transformation Rule?" in str(err) and "ignore_headers" in str(err)


@pytest.mark.parametrize(
    ("column", "header", "field"),
    [(5, "Transformation Rules", "rule"), (5, "Mapping Logic", "rule"),
     (6, "Req'd", "required"), (7, "Default Values", "default")],
)  # fmt: skip
def test_widened_synonyms_read_the_column(
    tmp_path: Path, column: int, header: str, field: str
) -> None:
    mapping = read_mapping(workbook(tmp_path, renamed(column, header)))
    first, second = mapping.targets
    assert (first.rule, first.required, second.default) == ("trim", True, "OPEN")


def test_a_renamed_default_is_refused_with_the_nearest_field(tmp_path: Path) -> None:
    err = refusal(workbook(tmp_path, renamed(7, "Default Val")))
    assert err.column == "Default Val (H)" and "Did you mean Default?" in str(err)


def test_informational_headers_are_ignored_and_the_setting_extends_them(tmp_path: Path) -> None:
    header = [*HEADER, "Notes", "Owner", "Reviewed In"]
    rows = [[*r, "n", "o", "sprint 4"] for r in ROWS]
    err = refusal(workbook(tmp_path, header, rows))
    assert err.column == "Reviewed In (K)"
    assert "Headers this sheet can still take" in str(err)
    mapping = read_mapping(workbook(tmp_path, header, rows), ignore_headers=["reviewed in"])
    assert [t.name for t in mapping.targets] == ["TRADE_ID", "STATUS"]
    # the same from the settings a session uses (DATAENG_MAGICS_IGNORE_HEADERS is comma-separated)
    assert load_settings(ignore_headers="Reviewed In, Ticket").ignore_headers == [
        "Reviewed In",
        "Ticket",
    ]


def test_a_renamed_filter_condition_is_refused_not_dropped(tmp_path: Path) -> None:
    err = refusal(workbook(tmp_path, filters=[["Target Table", "Cond"], FILTERS[1]]))
    assert (err.sheet, err.row) == ("Filters", 1)
    assert "missing required header for condition" in str(err)
    err = refusal(workbook(tmp_path, filters=[["Table Name", "Condition"], FILTERS[1]]))
    assert (err.sheet, err.row) == ("Filters", 1) and "for table" in str(err)


def test_checks_sheet_and_validation_column_are_known(tmp_path: Path) -> None:
    """The headers other stages add this round are carried, never refused."""
    header = [*HEADER, "Validation"]
    rows = [[*ROWS[0], "unique"], [*ROWS[1], None]]
    checks = [
        ["Target Table", "Column", "Check", "On Failure"],
        ["TRADES", "TRADE_ID", "not null", "fail"],
    ]
    mapping = read_mapping(workbook(tmp_path, header, rows, Checks=checks))
    assert [t.validation for t in mapping.targets] == ["unique", None]
    # a mapping sheet with Validation and Action columns is still the mapping sheet, whose
    # Action column is not one of its headers
    header = [*HEADER, "Validation", "Action"]
    rows = [[*ROWS[0], "unique", "fail"], [*ROWS[1], None, None]]
    assert refusal(workbook(tmp_path, header, rows)).column == "Action (J)"


# --- cells: formulas, invisible characters, long values ---------------------------------


def test_a_formula_uses_its_saved_value_or_is_refused(tmp_path: Path) -> None:
    rows = [[*ROWS[0][:5], '="tr"&"im"', *ROWS[0][6:]], ROWS[1]]
    path = workbook(tmp_path, rows=rows)
    err = refusal(path)  # openpyxl saves no value for a formula: as if never calculated
    assert (err.sheet, err.row, err.column) == ("Mapping", 2, "Transformation Rule (F)")
    assert "cell F2 holds a formula" in str(err) and "never evaluated" in str(err)
    # a saved value, as Excel writes it, is used
    with zipfile.ZipFile(path) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    sheet = parts["xl/worksheets/sheet1.xml"].decode()
    cell = re.search(r'<c r="F2"[^>]*>.*?</c>', sheet)
    assert cell is not None
    saved = '<c r="F2" t="str"><f>"tr"&amp;"im"</f><v>trim</v></c>'
    parts["xl/worksheets/sheet1.xml"] = sheet.replace(cell.group(), saved).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in parts.items():
            archive.writestr(name, data)
    assert read_mapping(path).targets[0].rule == "trim"


def test_invisible_characters_in_a_name_are_refused(tmp_path: Path) -> None:
    rows = [["TRADES", "TRADE\u200b_ID", *ROWS[0][2:]], ROWS[1]]
    err = refusal(workbook(tmp_path, rows=rows))
    assert (err.row, err.column) == (2, "Target Column (B)") and "U+200B" in str(err)
    rows = [["TRADES", "\u202eDI_EDART", *ROWS[0][2:]], ROWS[1]]
    assert "U+202E" in str(refusal(workbook(tmp_path, rows=rows)))


def test_a_huge_cell_is_echoed_cut_short(tmp_path: Path) -> None:
    rows = [[*ROWS[0][:2], "x" * 30_000, *ROWS[0][3:]], ROWS[1]]
    err = refusal(workbook(tmp_path, rows=rows))
    assert err.column == "Data Type (C)" and "30,000 characters" in str(err)
    assert len(str(err)) < 1_000


# --- hidden sheets ----------------------------------------------------------------------


def hidden_column(path: Path, state: str) -> Path:
    """Add a sheet, hidden or veryHidden, that would add a target column."""
    from openpyxl import load_workbook

    book = load_workbook(path)
    sheet = book.create_sheet("Extra")
    for line in [HEADER, ["TRADES", "SECRET", "string", "trades.csv", "Status"]]:
        sheet.append(line)
    sheet.sheet_state = state
    book.save(path)
    return path


@pytest.mark.parametrize("state", ["hidden", "veryHidden"])
def test_hidden_sheets_are_ignored_with_a_warning_in_the_draft(
    tmp_path: Path, state: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = hidden_column(workbook(tmp_path), state)
    mapping = read_mapping(path)
    assert [t.name for t in mapping.targets] == ["TRADE_ID", "STATUS"]
    word = "very hidden" if state == "veryHidden" else "hidden"
    assert mapping.warnings == (
        f"ignored {word} sheet 'Extra' (set read_hidden_sheets to read it)",
    )
    assert [t.name for t in read_mapping(path, read_hidden_sheets=True).targets][-1] == "SECRET"
    monkeypatch.setenv("DATAENG_MAGICS_HOME", str(tmp_path / "home"))
    entry = TransformSession(TransformRequest(client="ACME", mapping=path)).draft()
    assert f"# warning: ignored {word} sheet 'Extra'" in entry.pseudocode


# --- damaged files ----------------------------------------------------------------------


def rewrite(path: Path, change: dict[str, bytes | None]) -> Path:
    """The workbook with some zip members replaced (bytes) or removed (None)."""
    with zipfile.ZipFile(path) as archive:
        parts = {info: archive.read(info.filename) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for info, data in parts.items():
            new = change.get(info.filename, data)
            if new is not None:
                archive.writestr(info.filename, new)
    return path


def damage_deflate(path: Path) -> Path:
    """Flip bytes inside the first sheet's compressed data (zlib.error when read)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo("xl/worksheets/sheet1.xml")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start + 2, start + min(info.compress_size, 40)):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    "damage",
    [
        damage_deflate,
        lambda p: rewrite(p, {"xl/worksheets/sheet1.xml": zipfile.ZipFile(p).read(
            "xl/worksheets/sheet1.xml")[:300]}),
        lambda p: rewrite(p, {"xl/styles.xml": None}),
    ],
    ids=["deflate", "truncated-xml", "no-styles"],
)  # fmt: skip
def test_a_damaged_workbook_is_one_line_naming_the_file(tmp_path: Path, damage: Any) -> None:
    err = refusal(damage(workbook(tmp_path)))
    assert "cannot be opened" in str(err) and "save it again" in str(err)


def test_an_oversized_sheet_is_refused_before_it_is_read(tmp_path: Path) -> None:
    """The zip directory says how big a sheet is: refused without parsing it."""
    path = workbook(tmp_path)
    with zipfile.ZipFile(path) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml")
    padding = b"<!--" + b" " * (70 * 1024 * 1024) + b"-->"
    huge = sheet.replace(b"<sheetData>", padding + b"<sheetData>", 1)
    err = refusal(rewrite(path, {"xl/worksheets/sheet1.xml": huge}))
    assert "too large for a mapping sheet" in str(err)


def test_a_sheet_with_a_far_away_cell_is_refused(tmp_path: Path) -> None:
    from openpyxl import load_workbook

    path = workbook(tmp_path)
    book = load_workbook(path)
    book["Filters"]["XFD1048576"] = "stray"
    book.save(path)
    err = refusal(path)
    assert err.sheet == "Filters" and "1,048,576 rows by 16,384 columns" in str(err)


def test_the_mapping_reads_cleanly(tmp_path: Path) -> None:
    """The base workbook of these tests is accepted, so each refusal above is the change's."""
    mapping = read_mapping(workbook(tmp_path))
    assert isinstance(mapping, Mapping) and mapping.warnings == ()
    assert [f.condition for f in mapping.filters] == ["Status <> 'CANCELLED'"]


def test_a_filter_that_uses_no_column_names_its_row(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATAENG_MAGICS_HOME", str(tmp_path / "home"))
    path = workbook(tmp_path, filters=[FILTERS[0], ["TRADES", "1 = 0"]])
    with pytest.raises(MappingError) as info:
        TransformSession(TransformRequest(client="ACME", mapping=path)).draft()
    err = info.value
    assert "uses no column" in str(err) and path.name in str(err)
    assert (err.sheet, err.row, err.column) == ("Filters", 2, "Condition (B)")
    path = workbook(tmp_path, filters=[FILTERS[0], ["TRADE", "Status <> 'X'"]])
    err = refusal(path)
    assert (err.sheet, err.row, err.column) == ("Filters", 2, "Target Table (A)")
    assert "Did you mean 'TRADES'?" in str(err)
