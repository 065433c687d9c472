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

from dataeng_magics.errors import MappingError
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
    ),
    "required": ("required", "mandatory", "is required", "is mandatory"),
    "nullable": ("nullable", "is nullable", "allow nulls"),
    "default": ("default", "default value"),
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
    "condition": ("condition", "filter", "where", "filter condition"),
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

    def __init__(self, file: str, name: str | None, rows: list[tuple[int, list[str]]]) -> None:
        self.file = file
        self.name = name
        self.rows = rows

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
                # "Mandatory (Y/N)", "Data Type (Spark)": the note in brackets is not the name
                field = lookup.get(_norm(text)) or lookup.get(_norm(re.sub(r"\(.*?\)", "", text)))
                if field and field not in found:
                    found[field] = (col, text.strip())
            if anchor in found and len(found) >= minimum:
                return index, found
        return None


def _open_sheets(path: Path) -> list[_Sheet]:
    file = str(path)
    if not path.exists():
        raise MappingError(
            "mapping file does not exist", file=file, hint="Check the path given to --mapping."
        )
    if path.suffix.lower() == ".csv":
        return [_read_csv(path)]
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
    import zipfile

    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(path, data_only=True)
    except (zipfile.BadZipFile, InvalidFileException, KeyError, OSError, ValueError) as exc:
        raise MappingError(
            f"workbook cannot be opened ({type(exc).__name__}: {exc})",
            file=file,
            hint="The file is corrupt or not a real .xlsx; re-save it from Excel.",
        ) from None
    sheets = []
    for ws in book.worksheets:
        merged: dict[tuple[int, int], Any] = {}
        for rng in ws.merged_cells.ranges:
            value = ws.cell(rng.min_row, rng.min_col).value
            for r in range(rng.min_row, rng.max_row + 1):
                for c in range(rng.min_col, rng.max_col + 1):
                    merged[(r, c)] = value
        rows = []
        for r, values in enumerate(ws.iter_rows(values_only=True), start=1):
            cells = [_cell(merged.get((r, c), v)) for c, v in enumerate(values, start=1)]
            rows.append((r, cells))
        sheets.append(_Sheet(file, ws.title, rows))
    return sheets


def _read_csv(path: Path) -> _Sheet:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [(i, [c.strip() for c in row]) for i, row in enumerate(csv.reader(fh), 1)]
    except UnicodeDecodeError:
        raise MappingError(
            "mapping CSV is not UTF-8", file=str(path), hint="Save it as 'CSV UTF-8' from Excel."
        ) from None
    return _Sheet(str(path), None, rows)


def _records(
    sheet: _Sheet, header_index: int, fields: dict[str, tuple[int, str]]
) -> Iterable[tuple[int, dict[str, str]]]:
    for row_number, cells in sheet.rows[header_index + 1 :]:
        record = {f: cells[c] if c < len(cells) else "" for f, (c, _) in fields.items()}
        if any(record.values()):
            yield row_number, record


def _col(fields: dict[str, tuple[int, str]], field: str) -> str:
    index, text = fields[field]
    return f"{text} ({_letter(index)})"


def _missing_header(
    sheet: _Sheet, synonyms: MappingABC[str, tuple[str, ...]], field: str, row: int
) -> MappingError:
    names = ", ".join(s.title() for s in synonyms[field])
    return sheet.error(
        f"missing required header for {field.replace('_', ' ')}",
        row=row,
        hint=f"Add a column headed one of: {names}.",
    )


def _flag(sheet: _Sheet, value: str, row: int, column: str) -> bool:
    lowered = value.strip().lower()
    if lowered in YES:
        return True
    if lowered in NO:
        return False
    raise sheet.error(f"{value!r} is not yes or no", row=row, column=column, hint="Write Y or N.")


def _parse_targets(
    sheet: _Sheet, header_index: int, fields: dict[str, tuple[int, str]]
) -> list[TargetColumn]:
    header_row = sheet.rows[header_index][0]
    for needed in ("column", "type"):
        if needed not in fields:
            raise _missing_header(sheet, MAPPING_HEADERS, needed, header_row)
    if "source_column" not in fields and "rule" not in fields:
        raise _missing_header(sheet, MAPPING_HEADERS, "source_column", header_row)
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
                f"target table name {name_table!r} is not allowed",
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
            hint = f"Did you mean {close[0]!r}?" if close else ""
            raise sheet.error(
                f"unknown type {rec['type']!r}",
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
                f"target column {rec['column']!r} appears twice in table {name_table!r}",
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
                f"unknown source format {declared!r}",
                row=row,
                column=column,
                hint="Use csv, parquet, excel, json, xml or fixed-width.",
            )
        return fmt
    suffix = layout.data_suffix(path)
    if suffix in EXTENSIONS:
        return EXTENSIONS[suffix]
    raise sheet.error(
        f"cannot tell the format of {path!r}",
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
    if "path" not in fields:
        raise _missing_header(sheet, SOURCE_HEADERS, "path", sheet.rows[header_index][0])
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
        sources[name] = SourceSpec(
            sheet=sheet.name,
            row=row,
            name=name,
            path=_resolve(base, path),
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
            f"source {name!r} could be any of {', '.join(p.name for p in existing)}",
            row=row,
            column=column,
            hint="Write the file name with its extension, add a Sources sheet, or pass "
            "--source NAME=PATH.",
        )
    if not existing:
        raise sheet.error(
            f"source {name!r} is not in a Sources sheet and no file {name!r} is next to the "
            "mapping",
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


def _no_mapping_header(path: Path, sheets: list[_Sheet]) -> MappingError:
    """Point at a header row that has mapping headers but no Target Column, if there is one."""
    for sheet in sheets:
        for anchor in ("type", "source_column", "rule", "table"):
            found = sheet.find_header(MAPPING_HEADERS, anchor, minimum=3)
            if found is not None:
                return _missing_header(sheet, MAPPING_HEADERS, "column", sheet.rows[found[0]][0])
    return MappingError(
        "no mapping rows found: no sheet has a header row with Target Column and Data Type",
        file=str(path),
        hint="Add a header row (Target Table, Target Column, Data Type, Source, Source Column,"
        " Transformation Rule) above the rows.",
    )


def glob_escape(text: str) -> str:
    return re.sub(r"([\[\]*?])", r"[\1]", text)


def read_mapping(path: str | Path, overrides: MappingABC[str, str] | None = None) -> Mapping:
    """Parse and check a mapping workbook. ``overrides`` maps source names to paths
    (``--source NAME=PATH``), resolved against the current directory."""
    path = Path(path)
    sheets = _open_sheets(path)
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
        found = checks.find_checks(sheet)
        if found is not None:
            check_specs.extend(checks.parse_checks(sheet, *found))
            continue
        found = sheet.find_header(MAPPING_HEADERS, "column")
        if found is not None:
            targets.extend(_parse_targets(sheet, *found))
            source_col = _col(found[1], "source") if "source" in found[1] else None
            mapping_sheets[sheet.name] = (sheet, sheet.rows[found[0]][0], source_col)
            continue
        found = sheet.find_header(FILTER_HEADERS, "condition")
        if found is not None and "table" in found[1]:
            filters.extend(_parse_filters(sheet, *found))
            continue
        found = sheet.find_header(SOURCE_HEADERS, "name")
        if found is not None and ("path" in found[1] or "format" in found[1]):
            parsed = _parse_sources(sheet, *found, base)
            sources.update(parsed)
            named_in.update(dict.fromkeys(parsed, _col(found[1], "path")))
            continue
        found = layout.find_layout(sheet)
        if found is not None:
            layout_sheets.append((sheet, *found))
    if not mapping_sheets:
        raise _no_mapping_header(path, sheets)
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
                f"filter names unknown target table {f.table!r}",
                file=str(path),
                sheet=f.sheet,
                row=f.row,
                hint=f"Did you mean {close[0]!r}?"
                if close
                else f"Known tables: {', '.join(sorted(tables))}.",
            )
    checks.check_tables(str(path), check_specs, targets)
    for name, new_path in overrides.items():
        if name not in sources:
            close = difflib.get_close_matches(name, sorted(sources), n=1)
            raise MappingError(
                f"--source names unknown source {name!r}",
                file=str(path),
                hint=f"Did you mean {close[0]!r}?"
                if close
                else f"Known sources: {', '.join(sorted(sources))}.",
            )
        spec = sources[name]
        fmt = spec.format
        if layout.data_suffix(new_path) in EXTENSIONS and fmt != "fixed-width":  # .txt, .dat
            fmt = EXTENSIONS[layout.data_suffix(new_path)]
        resolved = new_path if "://" in new_path else str(Path(new_path).resolve())
        sources[name] = spec.model_copy(update={"path": resolved, "format": fmt})
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
                f"source file for {spec.name!r} does not exist: {spec.path}",
                file=str(path),
                sheet=spec.sheet,
                row=spec.row,
                column=named_in.get(spec.name),
                hint="Fix the path in the workbook or pass --source NAME=PATH.",
            )
    return Mapping(
        file=str(path), targets=targets, sources=sources, filters=filters, checks=check_specs
    )
