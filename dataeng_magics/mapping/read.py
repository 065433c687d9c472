"""Read a source-to-target mapping workbook (.xlsx or .csv) into a ``Mapping``.

Real workbooks have title rows, blank rows, merged cells, stray spaces and their own
names for headers, so sheets are recognised by their headers, not their names. Any
problem is reported once, pointing at the file, sheet, row and column, and nothing
half-parsed is returned.
"""

from __future__ import annotations

import csv
import difflib
import re
from collections.abc import Iterable
from collections.abc import Mapping as MappingABC
from pathlib import Path
from typing import Any

from dataeng_magics.errors import ECHO_CHARS, MappingError, clip
from dataeng_magics.mapping import checks, layout
from dataeng_magics.mapping.model import (
    SIMPLE_TYPES,
    UNSAFE_TABLE_NAME,
    CheckSpec,
    FilterSpec,
    LayoutField,
    Mapping,
    SourceFormat,
    SourceSpec,
    TargetColumn,
    normalize_type,
)
from dataeng_magics.sources.credentials import given, locate

HEADER_SCAN_ROWS = 30

MAPPING_HEADERS: dict[str, tuple[str, ...]] = {
    "table": ("target table", "output table", "target entity", "target table name"),
    "column": (
        "target column",
        "target field",
        "output column",
        "target column name",
        "target attribute",
        "output field",
    ),
    "type": ("target type", "data type", "type", "target data type", "datatype"),
    "source": ("source", "source file", "input file", "source table", "source name"),
    "source_column": (
        "source column",
        "source field",
        "input column",
        "source attribute",
        "source column name",
        "input field",
    ),
    "rule": (
        "transformation rule",
        "business rule",
        "transformation logic",
        "logic",
        "rule",
        "transformation",
        "mapping rule",
        "mapping logic",
        "derivation",
        "derivation rule",
        "derivation logic",
    ),
    "required": ("required", "mandatory", "is required", "is mandatory", "req d", "reqd"),
    "nullable": ("nullable", "is nullable", "allow nulls", "allow null"),
    "default": ("default", "default value", "default if blank", "default if null"),
    "comment": ("comments", "comment", "notes", "remarks"),
    "validation": checks.VALIDATION_HEADERS,
}
SOURCE_HEADERS: dict[str, tuple[str, ...]] = {
    "name": ("source name", "source", "name"),
    "path": ("file", "path", "file path", "location", "file name", "filename", "file/path"),
    "format": ("format", "file format", "file type"),
    "delimiter": ("delimiter", "separator", "sep"),
    "header": ("header", "has header", "header row"),
    "encoding": ("encoding", "charset"),
    "excel_sheet": ("sheet", "sheet name", "excel sheet", "worksheet"),
    **layout.SOURCE_OPTION_HEADERS,
}
FILTER_HEADERS: dict[str, tuple[str, ...]] = {
    "table": ("target table", "table", "output table", "target entity"),
    "condition": (
        "condition",
        "filter",
        "where",
        "filter condition",
        "where clause",
        "filter expression",
        "filter rule",
    ),
    "description": ("description", "comment", "comments", "notes"),
}
EXTENSIONS: dict[str, SourceFormat] = {
    ".csv": "csv",
    ".txt": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".xlsx": "excel",
    ".xlsm": "excel",
    ".json": "json",
    ".jsonl": "json",
    ".ndjson": "json",
    ".xml": "xml",
}
#: Informational columns real workbooks carry, matched as whole headers and ignored
#: (the ``ignore_headers`` setting adds more). Any other header with values is refused.
INFORMATIONAL_HEADERS = (
    "comments", "comment", "notes", "note", "remarks", "remark", "description",
    "business description", "definition", "owner", "data owner", "example", "examples",
    "sample value", "sample values", "sample data", "questions", "open questions",
    "status", "last updated", "updated by", "changed by", "change log", "#", "no", "id",
    "ref", "reference", "ticket", "jira",
)  # fmt: skip
#: Characters that change what a name is without showing: zero-width and bidi controls.
INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
#: Free text, where an invisible character is data (a constant's value is compiled as an
#: escaped literal); in every other field (names, types, defaults, conditions) it would
#: change the meaning without showing, so it is refused.
TEXT_FIELDS = frozenset({"rule", "comment", "description", "validation"})
#: A mapping workbook is a few thousand rows: bigger sheets are refused before reading.
MAX_SHEET_BYTES = 64 * 1024 * 1024
MAX_SHEET_CELLS = 5_000_000
YES = {"y", "yes", "true", "1", "x", "mandatory", "required", "m", "r"}
NO = {"", "n", "no", "false", "0", "optional", "o", "-"}
OLE2_MAGIC = bytes.fromhex("D0CF11E0A1B11AE1")


def _norm(text: Any) -> str:
    words = " ".join(re.sub(r"[^0-9a-z/]+", " ", str(text or "").lower()).split())
    return re.sub(r" ?/ ?", "/", words)


def _cell(value: Any) -> str:
    """Cell value as text: 1000.0 -> '1000', None -> ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


class _Sheet:
    """Rows of one sheet (merged cells filled in) plus where they came from."""

    def __init__(
        self,
        file: str,
        name: str | None,
        rows: list[tuple[int, list[str]]],
        filled: set[tuple[int, int]] | None = None,
        unreadable: dict[tuple[int, int], str] | None = None,
    ) -> None:
        self.file = file
        self.name = name
        self.rows = rows
        # (row, column index) of cells that only repeat a merged range's value
        self.filled = filled or set()
        # (row, column index) -> why it cannot be read: a formula with no saved value, or
        # an Excel error (#REF!)
        self.unreadable = unreadable or {}

    def error(
        self,
        message: str,
        row: int | None = None,
        column: str | None = None,
        hint: str | None = None,
    ) -> MappingError:
        return MappingError(
            message, file=self.file, sheet=self.name, row=row, column=column, hint=hint
        )

    def find_header(
        self, synonyms: MappingABC[str, tuple[str, ...]], anchor: str, minimum: int = 2
    ) -> tuple[int, dict[str, tuple[int, str]]] | None:
        """The first row holding the ``anchor`` header (and ``minimum`` known ones):
        (row index, field -> (column index, header text))."""
        lookup = {syn: field for field, syns in synonyms.items() for syn in syns}
        for index, (_, cells) in enumerate(self.rows[:HEADER_SCAN_ROWS]):
            found: dict[str, tuple[int, str]] = {}
            for col, text in enumerate(cells):
                field = next((lookup[k] for k in _header_keys(text) if k in lookup), None)
                if field and field not in found:
                    found[field] = (col, text.strip())
            if anchor in found and len(found) >= minimum:
                return index, found
        return None


def _header_keys(text: str) -> list[str]:
    """The ways a header may name a field: as written, without a note in brackets
    ("Mandatory (Y/N)", "Data Type (Spark)"), and each in the singular."""
    keys = [_norm(text), _norm(re.sub(r"\(.*?\)", "", text))]
    return keys + [k[:-1] for k in keys if k.endswith("s") and not k.endswith("ss")]


def _open_sheets(path: Path, read_hidden: bool = False) -> tuple[list[_Sheet], list[str]]:
    """The sheets to read, and a warning for each hidden sheet left out."""
    file = str(path)
    if not path.exists():
        raise MappingError(
            "mapping file does not exist", file=file, hint="Check the path given to --mapping."
        )
    if path.suffix.lower() == ".csv":
        return [_read_csv(path)], []
    if path.suffix.lower() not in (".xlsx", ".xlsm"):
        raise MappingError(
            "mapping must be an .xlsx or .csv file",
            file=file,
            hint="Save the workbook as .xlsx (Excel 2007 or later).",
        )
    with path.open("rb") as fh:
        head = fh.read(8)
    if head == OLE2_MAGIC:
        raise MappingError(
            "workbook is password-protected (or an old .xls)",
            file=file,
            hint="Remove the password (File > Info > Protect Workbook) and save as .xlsx.",
        )
    _check_part_sizes(path)
    from openpyxl.reader.excel import ExcelReader

    try:
        # Cached values, and the formulas themselves to tell "blank" from "never computed":
        # a formula is never evaluated here.
        readers = [ExcelReader(path, data_only=True), ExcelReader(path, data_only=False)]
        for reader in readers:
            reader.read()
    except Exception as exc:  # a damaged part can fail anywhere in openpyxl's parser
        raise MappingError(
            f"workbook cannot be opened ({type(exc).__name__}: {clip(str(exc))})",
            file=file,
            hint="The file is corrupt or not a real .xlsx: open it in Excel and save it again "
            "as .xlsx, or ask for a fresh copy.",
        ) from None
    values = readers[0]
    for sheet, rel in values.parser.find_sheets():
        if rel.target not in values.valid_files:  # openpyxl skips such a sheet silently
            raise MappingError(
                f"the workbook lists sheet {clip(sheet.name)} but its part {rel.target} is missing",
                file=file,
                sheet=sheet.name,
                hint="The file is damaged: open it in Excel and save it again, or ask for a "
                "fresh copy.",
            )
    sheets, warnings = [], []
    for ws, wf in zip(values.wb.worksheets, readers[1].wb.worksheets, strict=True):
        if ws.sheet_state != "visible" and not read_hidden:
            state = "very hidden" if ws.sheet_state == "veryHidden" else "hidden"
            warnings.append(
                f"ignored {state} sheet {clip(ws.title)} (set read_hidden_sheets to read it)"
            )
            continue
        sheets.append(_worksheet(file, ws, wf))
    return sheets, warnings


def _check_part_sizes(path: Path) -> None:
    """Refuse an oversized sheet from the zip directory, before any XML is parsed."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            parts = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # reported by the reader, as a damaged file
    for info in parts:
        if info.filename.startswith("xl/worksheets/") and info.file_size > MAX_SHEET_BYTES:
            raise MappingError(
                f"workbook part {info.filename} is {info.file_size / 2**20:,.0f} MB unpacked, "
                "too large for a mapping sheet",
                file=str(path),
                hint="Keep data out of the mapping workbook: delete the large sheet (or its "
                "stray far-away cells) and save again.",
            )


def _worksheet(file: str, ws: Any, wf: Any) -> _Sheet:
    """One sheet's text rows, merged ranges filled in, unreadable cells noted."""
    if ws.max_row * ws.max_column > MAX_SHEET_CELLS:
        raise MappingError(
            f"sheet spans {ws.max_row:,} rows by {ws.max_column:,} columns, too large for a "
            "mapping sheet",
            file=file,
            sheet=ws.title,
            hint="Delete the stray far-away cells (Ctrl+End shows the last one) and save again.",
        )
    merged: dict[tuple[int, int], Any] = {}
    filled: set[tuple[int, int]] = set()
    for rng in ws.merged_cells.ranges:
        value = ws.cell(rng.min_row, rng.min_col).value
        for r in range(rng.min_row, min(rng.max_row, ws.max_row) + 1):
            for c in range(rng.min_col, min(rng.max_col, ws.max_column) + 1):
                merged[(r, c)] = value
                if (r, c) != (rng.min_row, rng.min_col):
                    filled.add((r, c - 1))
    rows = []
    for r, values in enumerate(ws.iter_rows(values_only=True), start=1):
        cells = [_cell(merged.get((r, c), v)) for c, v in enumerate(values, start=1)]
        rows.append((r, cells))
    unreadable: dict[tuple[int, int], str] = {}
    for line in wf.iter_rows():
        for cell in line:
            saved = ws.cell(cell.row, cell.column)
            if saved.data_type == "e":
                unreadable[(cell.row, cell.column - 1)] = f"holds the Excel error {saved.value}"
            elif cell.data_type == "f" and saved.value is None:
                formula = getattr(cell.value, "text", None) or str(cell.value)
                unreadable[(cell.row, cell.column - 1)] = (
                    f"holds a formula ({clip(formula)}) with no saved value"
                )
    return _Sheet(file, ws.title, rows, filled, unreadable)


def _read_csv(path: Path) -> _Sheet:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [(i, [c.strip() for c in row]) for i, row in enumerate(csv.reader(fh), 1)]
    except UnicodeDecodeError:
        raise MappingError(
            "mapping CSV is not UTF-8", file=str(path), hint="Save it as 'CSV UTF-8' from Excel."
        ) from None
    return _Sheet(str(path), None, rows)


def _check_sheet(
    sheet: _Sheet,
    header_index: int,
    fields: dict[str, tuple[int, str]],
    synonyms: MappingABC[str, tuple[str, ...]],
    informational: frozenset[str],
) -> None:
    """Nothing under the header row is silently dropped or kept invisibly: every column
    with values is a known field or an informational one, and every known field's cells
    are readable text without invisible characters."""
    header_row, header_cells = sheet.rows[header_index]
    below = sheet.rows[header_index + 1 :]
    used = {c: field for field, (c, _) in fields.items()}
    width = max(len(cells) for _, cells in sheet.rows[header_index:])
    for col in range(width):
        text = header_cells[col] if col < len(header_cells) else ""
        if col in used:
            name = used[col] not in TEXT_FIELDS
            for row, cells in [(header_row, header_cells), *below]:
                _check_cell(sheet, row, col, text, cells[col] if col < len(cells) else "", name)
            continue
        if text and (_norm(text) in informational or text.strip().lower() in informational):
            continue
        values = [
            (row, cells[col])
            for row, cells in below
            if col < len(cells) and cells[col] and (row, col) not in sheet.filled
        ]
        if values:
            raise _unknown_column(sheet, header_row, col, text, values, synonyms, fields)


def _check_cell(sheet: _Sheet, row: int, col: int, header: str, value: str, name: bool) -> None:
    """A formula without a saved value, or (outside free text) an invisible character."""
    letter = _letter(col)
    problem = sheet.unreadable.get((row, col))
    if problem is not None:
        raise sheet.error(
            f"cell {letter}{row} {problem}",
            row=row,
            column=_column_name(col, header),
            hint="Formulas are never evaluated here: open the workbook in Excel and save it "
            "(Excel saves each formula's value), or type the value itself.",
        )
    hidden = INVISIBLE.search(value) if name else None
    if hidden is not None:
        raise sheet.error(
            f"cell {letter}{row} holds an invisible character "
            f"(U+{ord(hidden.group()):04X}) in {clip(value)}",
            row=row,
            column=_column_name(col, header),
            hint="Zero-width and text-direction characters change a name without showing; "
            "retype the cell.",
        )


def _unknown_column(
    sheet: _Sheet,
    header_row: int,
    col: int,
    text: str,
    values: list[tuple[int, str]],
    synonyms: MappingABC[str, tuple[str, ...]],
    fields: dict[str, tuple[int, str]],
) -> MappingError:
    """Refuse a column of values the reader would otherwise drop, saying which field it
    most likely is: the nearest header word, else (for rule phrases) the rule."""
    missing = [f for f in synonyms if f not in fields] or list(synonyms)
    lookup = {syn: f for f in missing for syn in synonyms[f]}
    close = difflib.get_close_matches(_norm(text), list(lookup), n=1, cutoff=0.6)
    field = lookup[close[0]] if close and text else None
    if field is None and "rule" in missing and synonyms is MAPPING_HEADERS:
        field = "rule" if _reads_as_rules([v for _, v in values]) else None
    first_row, first = values[0]
    letter = _letter(col)
    what = f"header {clip(text)}, which is not a known header" if text else "a blank header"
    if field is not None:
        words = ", ".join(s.title() for s in synonyms[field])
        hint = f"Did you mean {synonyms[field][0].title()}? Headers accepted for it: {words}."
    else:
        words = ", ".join(synonyms[f][0].title() for f in missing)
        hint = f"Headers this sheet can still take: {words}."
    return sheet.error(
        f"column {letter} has values under {what} (first on row {first_row}: {clip(first)}); "
        "they would be ignored",
        row=header_row,
        column=_column_name(col, text),
        hint=f"{hint} If the column is only informational, add its header to the "
        "ignore_headers setting.",
    )


def _reads_as_rules(values: list[str]) -> bool:
    """Most of these values read as transformation rule phrases."""
    from dataeng_magics.plan.model import Unresolved
    from dataeng_magics.plan.rules import parse_rule

    sample = values[:20]
    phrases = [v for v in sample if not any(isinstance(s, Unresolved) for s in parse_rule(v))]
    return len(phrases) * 2 >= len(sample)


def _records(
    sheet: _Sheet, header_index: int, fields: dict[str, tuple[int, str]]
) -> Iterable[tuple[int, dict[str, str]]]:
    for row_number, cells in sheet.rows[header_index + 1 :]:
        record = {f: cells[c] if c < len(cells) else "" for f, (c, _) in fields.items()}
        if any(record.values()):
            yield row_number, record


def _col(fields: dict[str, tuple[int, str]], field: str) -> str:
    index, text = fields[field]
    return _column_name(index, text)


def _column_name(index: int, header: str) -> str:
    """A column as errors name it: its header (cut short) and its letter."""
    return f"{header[:ECHO_CHARS] or '(blank)'} ({_letter(index)})"


def _missing_header(
    sheet: _Sheet,
    synonyms: MappingABC[str, tuple[str, ...]],
    field: str,
    header_index: int,
    found: MappingABC[str, tuple[int, str]],
) -> MappingError:
    """A needed header is not in the header row: refused there, pointing at the header
    that most likely meant it (the nearest unknown one, or the only one)."""
    row, cells = sheet.rows[header_index]
    used = {c for c, _ in found.values()}
    unknown = {c: _norm(t) for c, t in enumerate(cells) if t and c not in used}
    close = difflib.get_close_matches(_norm(synonyms[field][0]), unknown.values(), 1, 0.4)
    near = [c for c, text in unknown.items() if text in close]
    # the nearest unknown header, or the only one; with several and none near, no guess
    suspect = near[0] if near else (next(iter(unknown)) if len(unknown) == 1 else None)
    names = ", ".join(s.title() for s in synonyms[field])
    message = f"missing required header for {field.replace('_', ' ')}"
    if suspect is None:
        return sheet.error(message, row=row, hint=f"Add a column headed one of: {names}.")
    return sheet.error(
        f"{message} (is column {_letter(suspect)}, {clip(cells[suspect])}, meant to be it?)",
        row=row,
        column=_column_name(suspect, cells[suspect]),
        hint=f"Rename that column's header, or add one, to one of: {names}.",
    )


def _flag(sheet: _Sheet, value: str, row: int, column: str) -> bool:
    lowered = value.strip().lower()
    if lowered in YES:
        return True
    if lowered in NO:
        return False
    raise sheet.error(
        f"{clip(value)} is not yes or no", row=row, column=column, hint="Write Y or N."
    )


def _parse_targets(
    sheet: _Sheet, header_index: int, fields: dict[str, tuple[int, str]]
) -> list[TargetColumn]:
    targets: list[TargetColumn] = []
    seen: dict[tuple[str, str], int] = {}
    table = source = ""
    default_table = sheet.name or Path(sheet.file).stem
    for row, rec in _records(sheet, header_index, fields):
        table = rec.get("table") or table
        if not rec.get("column"):
            if rec.get("type") or rec.get("source_column") or rec.get("rule"):
                raise sheet.error(
                    "target column is empty",
                    row=row,
                    column=_col(fields, "column"),
                    hint="Name the target column or delete the row.",
                )
            continue  # a section title or a table name on its own
        name_table = table or default_table
        if UNSAFE_TABLE_NAME.search(name_table) or name_table.lower().endswith("__rejected"):
            raise sheet.error(
                f"target table name {clip(name_table)} is not allowed",
                row=row,
                column=_col(fields, "table") if "table" in fields else None,
                hint="Table names become folder names: no slashes or '..', and no name ending "
                "in '__rejected' (quarantined rows go there).",
            )
        source_column = rec.get("source_column", "")
        # A merged or blank Source cell means "same as above", but only where a column is read.
        source = rec.get("source") or (source if source_column else "")
        type_name = normalize_type(rec["type"])
        if type_name is None and not rec["type"]:
            raise sheet.error(
                "data type is empty",
                row=row,
                column=_col(fields, "type"),
                hint="Write one of: string, int, bigint, decimal(p,s), double, float, date, "
                "timestamp, boolean.",
            )
        if type_name is None:
            close = difflib.get_close_matches(
                rec["type"].lower(), [*SIMPLE_TYPES, "decimal(p,s)"], n=1, cutoff=0.5
            )
            hint = f"Did you mean {clip(close[0])}?" if close else ""
            raise sheet.error(
                f"unknown type {clip(rec['type'])}",
                row=row,
                column=_col(fields, "type"),
                hint=f"{hint} Known: string, int, bigint, decimal(p,s), double, float, date, "
                "timestamp, boolean.",
            )
        if "required" in fields:
            required = _flag(sheet, rec["required"], row, _col(fields, "required"))
        elif "nullable" in fields:
            required = not _flag(sheet, rec["nullable"] or "y", row, _col(fields, "nullable"))
        else:
            required = False
        dup = (name_table.lower(), rec["column"].lower())
        if dup in seen:
            raise sheet.error(
                f"target column {clip(rec['column'])} appears twice in table {clip(name_table)}",
                row=row,
                column=_col(fields, "column"),
                hint=f"It is also on row {seen[dup]}; keep one of them.",
            )
        seen[dup] = row
        if rec.get("validation"):
            checks.validation_check(sheet, rec["validation"], rec["column"], row,
                                    _col(fields, "validation"))  # fmt: skip
        targets.append(
            TargetColumn(
                sheet=sheet.name,
                row=row,
                table=name_table,
                name=rec["column"],
                type=type_name,
                source=source or None,
                source_column=source_column or None,
                rule=rec.get("rule", ""),
                required=required,
                default=rec.get("default") or None,
                comment=rec.get("comment") or None,
                validation=rec.get("validation") or None,
            )
        )
    return targets


def _format_of(
    path: str, declared: str, sheet: _Sheet, row: int | None, column: str | None
) -> SourceFormat:
    formats: dict[str, SourceFormat] = {
        "csv": "csv",
        "txt": "csv",
        "tsv": "csv",
        "parquet": "parquet",
        "excel": "excel",
        "xlsx": "excel",
        "json": "json",
        "jsonl": "json",
        "json lines": "json",
        "ndjson": "json",
        **layout.FORMAT_WORDS,
    }
    if declared:
        fmt = formats.get(_norm(declared))
        if fmt is None:
            raise sheet.error(
                f"unknown source format {clip(declared)}",
                row=row,
                column=column,
                hint="Use csv, parquet, excel, json, xml or fixed-width.",
            )
        return fmt
    suffix = layout.data_suffix(path)
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    raise sheet.error(
        f"cannot tell the format of {clip(path)}",
        row=row,
        column=column,
        hint="Add a Format column to the Sources sheet (csv, parquet, excel, json, xml, "
        "fixed-width).",
    )


def _resolve(base: Path, path: str) -> str:
    if "://" in path or Path(path).is_absolute():
        return path
    return str((base / path).resolve())


def _parse_sources(
    sheet: _Sheet, header_index: int, fields: dict[str, tuple[int, str]], base: Path
) -> dict[str, SourceSpec]:
    sources: dict[str, SourceSpec] = {}
    for row, rec in _records(sheet, header_index, fields):
        name, path = rec.get("name", ""), rec.get("path", "")
        if not name or not path:
            raise sheet.error(
                "a source needs both a name and a file",
                row=row,
                column=_col(fields, "name" if not name else "path"),
            )
        fmt_col = _col(fields, "format") if "format" in fields else _col(fields, "path")
        fmt = _format_of(path, rec.get("format", ""), sheet, row, fmt_col)
        header = True
        if rec.get("header"):
            header = _flag(sheet, rec["header"], row, _col(fields, "header"))
        options = {
            "delimiter": "\t" if layout.data_suffix(path) == ".tsv" else ",",
            "header": header,
            **layout.source_options(sheet, fields, row, rec, fmt),
        }
        where, credential = locate(_resolve(base, path))  # a SAS is not part of the path
        sources[name] = SourceSpec(
            sheet=sheet.name,
            row=row,
            name=name,
            path=where,
            credential=credential,
            format=fmt,
            encoding=rec.get("encoding") or "utf-8",
            excel_sheet=rec.get("excel_sheet") or None,
            **options,
        )
    return sources


def _parse_filters(
    sheet: _Sheet, header_index: int, fields: dict[str, tuple[int, str]]
) -> list[FilterSpec]:
    filters = []
    for row, rec in _records(sheet, header_index, fields):
        if not rec.get("condition"):
            continue
        if not rec.get("table"):
            raise sheet.error(
                "filter has no target table",
                row=row,
                column=_col(fields, "table") if "table" in fields else None,
            )
        filters.append(
            FilterSpec(
                sheet=sheet.name,
                row=row,
                table=rec["table"],
                condition=rec["condition"],
                description=rec.get("description") or None,
                table_column=_col(fields, "table"),
                condition_column=_col(fields, "condition"),
            )
        )
    return filters


def _implicit_source(
    name: str,
    base: Path,
    sheet: _Sheet,
    row: int | None,
    column: str | None,
    override: str | None = None,
) -> SourceSpec:
    """A Source cell that names a file (``trades.csv``) or a file's stem (``trades``).
    With an ``override`` (``--source``) the file need not be next to the mapping."""
    if override is not None:
        known = layout.data_suffix(override) in EXTENSIONS
        return SourceSpec(
            sheet=sheet.name,
            row=row,
            name=name,
            path=override,
            format=_format_of(override if known else name, "", sheet, row, column),
        )
    candidates = (
        [base / name]
        if Path(name).suffix
        else sorted(
            p for p in base.glob(f"{glob_escape(name)}.*") if p.suffix.lower() in EXTENSIONS
        )
    )
    existing = [p for p in candidates if p.exists()]
    if "://" in name:
        return SourceSpec(
            sheet=sheet.name,
            row=row,
            name=name,
            path=name,
            format=_format_of(name, "", sheet, row, column),
        )
    if len(existing) > 1:
        raise sheet.error(
            f"source {clip(name)} could be any of {', '.join(p.name for p in existing)}",
            row=row,
            column=column,
            hint="Write the file name with its extension, add a Sources sheet, or pass "
            "--source NAME=PATH.",
        )
    if not existing:
        raise sheet.error(
            f"source {clip(name)} is not in a Sources sheet and no file {clip(name)} is next "
            "to the mapping",
            row=row,
            column=column,
            hint="Add it to a Sources sheet or pass --source NAME=PATH.",
        )
    path = existing[0]
    return SourceSpec(
        sheet=sheet.name,
        row=row,
        name=name,
        path=str(path.resolve()),
        format=_format_of(path.name, "", sheet, row, column),
        delimiter="\t" if path.suffix.lower() == ".tsv" else ",",
    )


def _no_mapping_header(path: Path, warnings: list[str]) -> MappingError:
    hidden = f" ({'; '.join(warnings)})" if warnings else ""
    return MappingError(
        f"no mapping rows found: no sheet has a header row with Target Column and Data "
        f"Type{hidden}",
        file=str(path),
        hint="Add a header row (Target Table, Target Column, Data Type, Source, Source Column,"
        " Transformation Rule) above the rows.",
    )


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def _require_headers(
    sheet: _Sheet, kind: str, header_index: int, fields: dict[str, tuple[int, str]]
) -> None:
    """A known sheet missing a column it needs is refused at its header row."""
    synonyms, needed = SHEET_KINDS[kind]
    if kind == "mapping" and "source_column" not in fields and "rule" not in fields:
        needed = (*needed, "source_column")
    if kind == "layout" and "end" in fields:
        needed = tuple(n for n in needed if n != "length")
    for field in needed:
        if field not in fields:
            raise _missing_header(sheet, synonyms, field, header_index, fields)


def _classify(sheet: _Sheet) -> tuple[str, int, dict[str, tuple[int, str]]] | None:
    """What kind of sheet this is, by its header row: (kind, header index, fields)."""
    found = sheet.find_header(checks.CHECK_HEADERS, "action", minimum=3)
    if found is not None and "check" in found[1] and "type" not in _known(sheet, found[0]):
        return "checks", *found
    found = sheet.find_header(MAPPING_HEADERS, "column")
    if found is not None:
        return "mapping", *found
    found = sheet.find_header(FILTER_HEADERS, "condition")
    if found is not None and "table" in found[1]:
        return "filters", *found
    found = sheet.find_header(SOURCE_HEADERS, "name")
    if found is not None and ("path" in found[1] or "format" in found[1]):
        return "sources", *found
    found = layout.find_layout(sheet)
    if found is not None:
        return "layout", *found
    return None


def _known(sheet: _Sheet, index: int) -> set[str]:
    """The mapping fields a row's headers name (a mapping sheet may have an Action column)."""
    lookup = {syn: field for field, syns in MAPPING_HEADERS.items() for syn in syns}
    return {lookup[k] for text in sheet.rows[index][1] for k in _header_keys(text) if k in lookup}


#: Each kind of sheet's headers, and the fields a sheet of that kind cannot do without.
SHEET_KINDS: dict[str, tuple[MappingABC[str, tuple[str, ...]], tuple[str, ...]]] = {
    "mapping": (MAPPING_HEADERS, ("column", "type")),
    "filters": (FILTER_HEADERS, ("table", "condition")),
    "sources": (SOURCE_HEADERS, ("name", "path")),
    "layout": (layout.LAYOUT_HEADERS, ("field", "start", "length")),
    "checks": (checks.CHECK_HEADERS, ("table", "columns", "check", "action")),
}
#: Sheet names that say what a sheet is, so a renamed header cannot make it vanish.
SHEET_NAMES = {"filters": "filters", "filter": "filters", "sources": "sources",
               "source": "sources", "layout": "layout", "checks": "checks"}  # fmt: skip


def _unrecognised(sheet: _Sheet) -> MappingError | None:
    """A sheet no kind matched, refused when it is (by name, or by most of a mapping
    header) a known sheet missing a column it needs; None for other sheets (covers,
    notes), which are not read."""
    for anchor in ("type", "source_column", "rule", "table"):
        found = sheet.find_header(MAPPING_HEADERS, anchor, minimum=3)
        if found is not None:
            return _missing_header(sheet, MAPPING_HEADERS, "column", *found)
    kind = SHEET_NAMES.get(_norm(sheet.name or ""))
    if kind is None:
        return None
    synonyms, needed = SHEET_KINDS[kind]
    best = max(
        (f for a in needed if (f := sheet.find_header(synonyms, a, minimum=1))),
        key=lambda f: len(f[1]),
        default=None,
    )
    if best is not None:
        absent = [n for n in needed if n not in best[1]]
        return _missing_header(sheet, synonyms, absent[0], *best) if absent else None
    if not any(any(cells) for _, cells in sheet.rows):
        return None  # an empty sheet
    words = ", ".join(synonyms[n][0].title() for n in needed)
    return sheet.error(
        f"the {kind.title()} sheet has no header row this reader knows",
        hint=f"Add a header row with: {words}.",
    )


def read_mapping(
    path: str | Path,
    overrides: MappingABC[str, str] | None = None,
    *,
    ignore_headers: Iterable[str] = (),
    read_hidden_sheets: bool = False,
) -> Mapping:
    """Parse and check a mapping workbook. ``overrides`` maps source names to paths
    (``--source NAME=PATH``), resolved against the current directory; ``ignore_headers``
    adds informational headers to ``INFORMATIONAL_HEADERS``; hidden sheets are left out
    (with a warning) unless ``read_hidden_sheets``."""
    path = Path(path)
    sheets, warnings = _open_sheets(path, read_hidden_sheets)
    informational = frozenset(
        {*INFORMATIONAL_HEADERS, *(_norm(h) for h in ignore_headers), *ignore_headers}
    )
    base = path.resolve().parent
    overrides = dict(overrides or {})
    targets: list[TargetColumn] = []
    sources: dict[str, SourceSpec] = {}
    filters: list[FilterSpec] = []
    # mapping sheet name -> (sheet, header row, its Source column); source -> its file's column
    mapping_sheets: dict[str | None, tuple[_Sheet, int, str | None]] = {}
    named_in: dict[str, str | None] = {}
    layout_sheets: list[tuple[_Sheet, int, dict[str, tuple[int, str]]]] = []
    check_specs: list[CheckSpec] = []
    for sheet in sheets:
        classified = _classify(sheet)
        if classified is None:
            problem = _unrecognised(sheet)
            if problem is not None:
                raise problem
            continue
        kind, index, fields = classified
        _require_headers(sheet, kind, index, fields)
        _check_sheet(sheet, index, fields, SHEET_KINDS[kind][0], informational)
        if kind == "mapping":
            targets.extend(_parse_targets(sheet, index, fields))
            source_col = _col(fields, "source") if "source" in fields else None
            mapping_sheets[sheet.name] = (sheet, sheet.rows[index][0], source_col)
        elif kind == "filters":
            filters.extend(_parse_filters(sheet, index, fields))
        elif kind == "sources":
            parsed = _parse_sources(sheet, index, fields, base)
            sources.update(parsed)
            named_in.update(dict.fromkeys(parsed, _col(fields, "path")))
        elif kind == "layout":
            layout_sheets.append((sheet, index, fields))
        elif kind == "checks":
            check_specs.extend(checks.parse_checks(sheet, index, fields))
    if not mapping_sheets:
        raise _no_mapping_header(path, warnings)
    if not targets:
        sheet, header_row, _ = next(iter(mapping_sheets.values()))
        raise sheet.error(
            "the mapping header has no rows under it",
            row=header_row,
            hint="Add one row per target column below the header.",
        )
    for target in targets:
        if target.source and target.source not in sources:
            sheet, _, source_col = mapping_sheets[target.sheet]
            sources[target.source] = _implicit_source(
                target.source, base, sheet, target.row, source_col, overrides.get(target.source)
            )
            named_in[target.source] = source_col
    layouts: dict[str, list[LayoutField]] = {}
    for sheet, index, fields in layout_sheets:
        layouts.update(layout.parse_layout(sheet, index, fields, layout.only_fixed_width(sources)))
    located = {n: (s.sheet, s.row, named_in.get(n)) for n, s in sources.items()}
    sources = layout.attach(str(path), sources, layouts, located)
    tables = {t.table for t in targets}
    for f in filters:
        if f.table not in tables:
            close = difflib.get_close_matches(f.table, sorted(tables), n=1)
            raise MappingError(
                f"filter names unknown target table {clip(f.table)}",
                file=str(path),
                sheet=f.sheet,
                row=f.row,
                column=f.table_column,
                hint=f"Did you mean {clip(close[0])}?"
                if close
                else f"Known tables: {', '.join(sorted(tables))}.",
            )
    checks.check_tables(str(path), check_specs, targets)
    for name, new_path in overrides.items():
        if name not in sources:
            close = difflib.get_close_matches(name, sorted(sources), n=1)
            raise MappingError(
                f"--source names unknown source {clip(name)}",
                file=str(path),
                hint=f"Did you mean {clip(close[0])}?"
                if close
                else f"Known sources: {', '.join(sorted(sources))}.",
            )
        spec = sources[name]
        fmt = spec.format
        if layout.data_suffix(new_path) in EXTENSIONS and fmt != "fixed-width":  # .txt, .dat
            fmt = EXTENSIONS[layout.data_suffix(new_path)]
        resolved = new_path if "://" in new_path else str(Path(new_path).resolve())
        resolved, credential = locate(resolved)
        if not credential:  # a cell's path without its SAS: the workbook's, or this process's
            same = resolved == spec.path and spec.credential
            credential = spec.credential if same else given(resolved)
        update = {"path": resolved, "format": fmt, "credential": credential}
        sources[name] = spec.model_copy(update=update)
    for spec in sources.values():
        if "://" not in spec.path and not layout.local_source_exists(spec.path):
            if spec.name in overrides:
                raise MappingError(
                    f"--source {spec.name}={overrides[spec.name]}: file does not exist "
                    f"({spec.path})",
                    file=str(path),
                    hint="Check the path given to --source.",
                )
            raise MappingError(
                f"source file for {clip(spec.name)} does not exist: {spec.path}",
                file=str(path),
                sheet=spec.sheet,
                row=spec.row,
                column=named_in.get(spec.name),
                hint="Fix the path in the workbook or pass --source NAME=PATH.",
            )
    return Mapping(
        file=str(path),
        targets=targets,
        sources=sources,
        filters=filters,
        checks=check_specs,
        warnings=tuple(warnings),
    )
