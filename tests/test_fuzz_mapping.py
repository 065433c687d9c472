"""A seeded fuzz corpus of mapping workbooks (issue 12): 270 variants of one workbook
(header changes and added columns in every sheet, cell changes, formulas, hidden sheets,
merged headers, long values, unicode, byte-level damage), each read under a guard
against hanging.

For every variant: no traceback (only ``MappingError``, in one line, naming the file and,
for a change inside a sheet, the sheet and row); and a variant whose change must not
alter the meaning either is refused, reads to the same mapping, or says why in its
warnings (hidden sheets).
"""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Font

from dataeng_magics.errors import ECHO_CHARS, MappingError
from dataeng_magics.mapping.model import Mapping
from dataeng_magics.mapping.read import MAPPING_HEADERS, read_mapping

SEED = 20261201
VARIANTS = 270
HEADER = ["Target Table", "Target Column", "Data Type", "Source", "Source Column",
          "Transformation Rule", "Mandatory", "Default Value", "Comments"]  # fmt: skip
FIELD_OF = ["table", "column", "type", "source", "source_column", "rule", "required",
            "default", "comment"]  # fmt: skip
ROWS: list[list[Any]] = [
    ["TRADES", "TRADE_ID", "string", "trades", "Trade ID", "trim", "Y", None, "key"],
    ["TRADES", "TRADE_DATE", "date", "trades", "Trade Date", "parse date dd/MM/yyyy", "Y", None,
     None],
    ["TRADES", "AMOUNT", "decimal(18,2)", "trades", "Amount", "multiply by 1000", "N", "0", None],
    ["TRADES", "STATUS", "string", "trades", "Status", "upper", "N", "OPEN", None],
    ["TRADES", "DESK", "string", "trades", "Desk", "trim", "N", None, "free text"],
    ["TRADES", "SOURCE_SYSTEM", "string", None, None, "constant 'OMS'", "N", None, None],
]  # fmt: skip
HEADER_ROW = 3  # a title row and a blank row come first, as in real workbooks
SHEETS: dict[str, list[list[Any]]] = {
    "Mapping": [["ACME trades mapping"], [], HEADER, *ROWS],
    "Sources": [["Source Name", "File", "Format", "Delimiter"],
                ["trades", "trades.csv", "csv", ","]],
    "Filters": [["Target Table", "Condition", "Description"],
                ["TRADES", "Status <> 'CANCELLED'", "drop cancelled trades"]],
}  # fmt: skip
GARBAGE_HEADERS = ["Xform", "Rule Text", "", "Tgt Col", "Fallback", "Must Have", "Cond",
                   "Column 7", "Unnamed: 3", "Ziel-Spalte", "?", "Map", "Owner Team"]  # fmt: skip
VALUES = ["", " ", "0", "-1", "1e308", "NaN", "TRUE", "N/A", "=1+1", "@SUM(A1)", "'quoted'",
          'a "b" c', "x\ny", "trim, then upper", "Ünïcödé", "名前", "🙂", "DROP TABLE x",
          "../../etc/passwd", "a" * 300, "decimal(40,2)", "string", "Y", "maybe"]  # fmt: skip
INVISIBLE = ["\u200b", "\u200d", "\u202e", "\u2066", "\ufeff", "\u00ad"]


def build(folder: Path, change: Callable[[Workbook], None] | None = None) -> Path:
    """trades.csv and the base workbook (styled headers), with ``change`` applied."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trades.csv").write_text(
        "Trade ID,Trade Date,Amount,Status,Desk\n1,01/02/2024,1.5,open,FX\n"
    )
    book = Workbook()
    book.remove(book.active)  # type: ignore[arg-type]
    for title, lines in SHEETS.items():
        sheet = book.create_sheet(title)
        for line in lines:
            sheet.append(line)
        header = HEADER_ROW if title == "Mapping" else 1
        for cell in sheet[header]:
            cell.font = Font(bold=True)
    if change is not None:
        change(book)
    path = folder / "map.xlsx"
    book.save(path)
    return path


def meaning(mapping: Mapping) -> Any:
    """What a run would do differently: the key content and where sources are read
    (relative to the workbook, which each variant writes to its own folder)."""
    folder = Path(mapping.file).resolve().parent
    paths = {n: str(Path(s.path).relative_to(folder)) for n, s in mapping.sources.items()}
    return mapping.model_dump(), paths


@dataclass
class Variant:
    name: str
    make: Callable[[Path], Path]
    keeps_meaning: bool  # the change must be refused, warned about, or change nothing
    in_sheet: bool = True  # a refusal names sheet and row


def _cell(rng: random.Random) -> tuple[int, int]:
    """A data cell of the Mapping sheet (1-based row, column)."""
    return rng.randint(HEADER_ROW + 1, HEADER_ROW + len(ROWS)), rng.randint(1, len(HEADER) - 1)


def header_variant(rng: random.Random, i: int) -> Variant:
    col = rng.randrange(len(HEADER) - 1)  # not Comments: any header is fine for notes
    field = FIELD_OF[col]
    same = rng.choice(MAPPING_HEADERS[field])
    choice = rng.choice(
        [same.upper(), f"  {same.title()}  ", f"{same.title()} (see notes)", same + "s",
         *GARBAGE_HEADERS]
    )  # fmt: skip

    def change(book: Workbook) -> None:
        book["Mapping"].cell(HEADER_ROW, col + 1, choice or None)

    return Variant(f"{i}-header-{col}-{choice!r}", lambda f: build(f, change), True)


def sheet_header_variant(rng: random.Random, i: int) -> Variant:
    """A Filters or Sources header renamed, or a new column added to any sheet."""
    sheet = rng.choice(["Filters", "Sources", "Mapping"])
    text = rng.choice([*GARBAGE_HEADERS, "Notes", "Owner", "Description", "Reviewed"])
    add = sheet == "Mapping" or rng.random() < 0.5
    start = HEADER_ROW if sheet == "Mapping" else 1

    def change(book: Workbook) -> None:
        ws = book[sheet]
        col = ws.max_column + 1 if add else rng.randint(1, 2)
        ws.cell(start, col, text or None)
        if add:
            ws.cell(start + 1, col, rng.choice(VALUES[1:]))

    what = "add" if add else "rename"
    return Variant(f"{i}-sheetheader-{sheet}-{what}-{text!r}", lambda f: build(f, change), True)


def cell_variant(rng: random.Random, i: int) -> Variant:
    row, col = _cell(rng)
    value = rng.choice(VALUES)

    def change(book: Workbook) -> None:
        book["Mapping"].cell(row, col, value or None)

    return Variant(f"{i}-cell-{row}-{col}", lambda f: build(f, change), False)


def formula_variant(rng: random.Random, i: int) -> Variant:
    sheet, row, col = rng.choice(
        [("Mapping", *_cell(rng)), ("Filters", 2, 2), ("Sources", 2, 2), ("Mapping", HEADER_ROW, 6)]
    )
    formula = rng.choice(['="tr"&"im"', "=A1", "=UPPER(B4)", "=1/0", '=INDIRECT("X")'])

    def change(book: Workbook) -> None:
        book[sheet].cell(row, col, formula)

    return Variant(f"{i}-formula-{sheet}-{row}-{col}", lambda f: build(f, change), True)


def hidden_variant(rng: random.Random, i: int) -> Variant:
    title = rng.choice(["Mapping", "Sources", "Filters", "Extra"])
    state: Literal["hidden", "veryHidden"] = rng.choice(["hidden", "veryHidden"])

    def change(book: Workbook) -> None:
        if title == "Extra":
            extra = book.create_sheet("Extra")
            for line in [HEADER, ["TRADES", "INJECTED", "string", "trades", "Desk"]]:
                extra.append(line)
        book[title].sheet_state = state

    return Variant(f"{i}-hidden-{title}-{state}", lambda f: build(f, change), True)


def merged_variant(rng: random.Random, i: int) -> Variant:
    col = rng.randint(1, len(HEADER) - 1)
    sheet, row = rng.choice([("Mapping", HEADER_ROW), ("Filters", 1), ("Sources", 1)])

    def change(book: Workbook) -> None:
        book[sheet].merge_cells(start_row=row, start_column=col, end_row=row, end_column=col + 1)

    return Variant(f"{i}-merged-{sheet}-{col}", lambda f: build(f, change), True)


def long_variant(rng: random.Random, i: int) -> Variant:
    row, col = rng.choice([_cell(rng), (HEADER_ROW, rng.randint(1, len(HEADER)))])
    value = rng.choice(["x", "名", "trim "]) * rng.choice([1_000, 10_000, 32_000])

    def change(book: Workbook) -> None:
        book["Mapping"].cell(row, col, value)

    keeps = row == HEADER_ROW and col < len(HEADER)
    return Variant(f"{i}-long-{row}-{col}", lambda f: build(f, change), keeps)


def unicode_variant(rng: random.Random, i: int) -> Variant:
    row, col = rng.choice([_cell(rng), (HEADER_ROW, rng.randint(1, len(HEADER)))])
    mark = rng.choice(INVISIBLE)

    def change(book: Workbook) -> None:
        cell = book["Mapping"].cell(row, col)
        text = str(cell.value or "name")
        at = rng.randint(0, len(text))
        cell.value = text[:at] + mark + text[at:]

    # in a rule (free text) the character is data: a constant keeps it as an escaped literal
    keeps = col != FIELD_OF.index("rule") + 1
    return Variant(f"{i}-unicode-{row}-{col}-U+{ord(mark):04X}", lambda f: build(f, change), keeps)


def bytes_variant(rng: random.Random, i: int) -> Variant:
    how = rng.choice(["flip", "truncate", "drop", "garble-xml"])
    seed = rng.random()

    def make(folder: Path) -> Path:
        path = build(folder)
        data = bytearray(path.read_bytes())
        local = random.Random(seed)
        if how == "flip":
            for _ in range(local.randint(1, 8)):
                data[local.randrange(len(data))] ^= 1 << local.randrange(8)
        elif how == "truncate":
            data = data[: local.randrange(len(data))]
        else:
            with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
                parts = {n: archive.read(n) for n in archive.namelist()}
            name = local.choice(sorted(parts))
            if how == "drop":
                del parts[name]
            else:
                cut = parts[name][: local.randrange(max(1, len(parts[name])))]
                parts[name] = cut + b"<<&" + bytes(local.randrange(256) for _ in range(20))
            out = io.BytesIO()
            with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
                for n, content in parts.items():
                    archive.writestr(n, content)
            data = bytearray(out.getvalue())
        path.write_bytes(bytes(data))
        return path

    return Variant(f"{i}-bytes-{how}", make, True, in_sheet=False)


KINDS = [header_variant, cell_variant, formula_variant, hidden_variant, merged_variant,
         long_variant, unicode_variant, bytes_variant, sheet_header_variant]  # fmt: skip


def corpus() -> list[Variant]:
    rng = random.Random(SEED)
    return [KINDS[i % len(KINDS)](rng, i) for i in range(VARIANTS)]


CORPUS = corpus()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return meaning(read_mapping(build(tmp_path_factory.mktemp("base"))))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("variant", CORPUS, ids=[v.name for v in CORPUS])
def test_fuzzed_workbook_fails_loudly_or_keeps_its_meaning(
    variant: Variant, tmp_path: Path, baseline: Any
) -> None:
    path = variant.make(tmp_path)
    try:
        mapping = read_mapping(path)
    except MappingError as err:
        text = str(err)
        assert "\n" not in text and err.file == str(path) and err.hint, text
        assert len(text) < 4 * ECHO_CHARS + 2 * len(str(path)) + 600, "values are cut short"
        if variant.in_sheet and not text.startswith(f"{path}: no mapping rows found"):
            assert err.sheet is not None and err.row is not None, f"no place: {text}"
        return
    if variant.keeps_meaning and meaning(mapping) != baseline:
        assert mapping.warnings, f"{variant.name}: the meaning changed without an error"


def test_the_corpus_is_seeded_and_covers_every_kind() -> None:
    """Same names from the same seed; at least 200 variants, every kind present."""
    assert [v.name for v in corpus()] == [v.name for v in CORPUS]
    assert len(CORPUS) >= 200
    kinds = {v.name.split("-")[1] for v in CORPUS}
    assert kinds == {"header", "cell", "formula", "hidden", "merged", "long", "unicode", "bytes",
                     "sheetheader"}  # fmt: skip


def test_the_base_workbook_reads(tmp_path: Path) -> None:
    mapping = read_mapping(build(tmp_path))
    assert [t.name for t in mapping.targets] == [r[1] for r in ROWS]
    assert [f.condition for f in mapping.filters] == ["Status <> 'CANCELLED'"]
    assert load_workbook(build(tmp_path / "again"))["Mapping"].cell(HEADER_ROW, 1).font.b
