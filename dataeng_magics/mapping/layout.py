"""How client files are read, from the workbook: the Layout sheet of fixed-width sources
and the Sources sheet's options beyond path and format (Record Path, Row Tag, delimiter
words).

Layout headers: ``Source Name, Field, Start, Length`` (or ``End`` instead of
``Length``, inclusive: Start 1, End 10 is ten characters); Start is 1-based, as layouts
are written. Fields must tile the record: overlaps and gaps are refused (name filler
explicitly), each error naming the file, sheet, row and column of the Layout sheet.
"""

from __future__ import annotations

from collections.abc import Mapping as MappingABC
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dataeng_magics.errors import MappingError, clip
from dataeng_magics.mapping.model import LayoutField, SourceFormat, SourceSpec

if TYPE_CHECKING:
    from dataeng_magics.mapping.read import _Sheet

LAYOUT_HEADERS: dict[str, tuple[str, ...]] = {
    "source": ("source name", "source", "source file", "file"),
    "field": ("field", "field name", "column", "column name", "source column", "name"),
    "start": ("start", "start position", "start pos", "from", "begin", "from position"),
    "length": ("length", "width", "field length", "size", "len"),
    "end": ("end", "end position", "end pos", "to", "to position"),
}
#: Spark's text reader decodes UTF-8 only (and so ASCII).
TEXT_ENCODINGS = ("utf-8", "utf8", "ascii", "us-ascii")
_HINT = "Give each field its Start and Length (or End, inclusive), 1-based."


def find_layout(sheet: _Sheet) -> tuple[int, dict[str, tuple[int, str]]] | None:
    """The Layout sheet's header row, if ``sheet`` is a Layout sheet."""
    found = sheet.find_header(LAYOUT_HEADERS, "start", minimum=3)
    if found is None or "field" not in found[1]:
        return None
    if "length" not in found[1] and "end" not in found[1]:
        return None
    return found


def parse_layout(
    sheet: _Sheet, header_index: int, fields: dict[str, tuple[int, str]], only_source: str | None
) -> dict[str, list[LayoutField]]:
    """Source name -> its fields in sheet order. Without a Source Name column the sheet
    describes ``only_source`` (the workbook's one fixed-width source)."""
    from dataeng_magics.mapping.read import _col, _records

    layouts: dict[str, list[LayoutField]] = {}
    for row, rec in _records(sheet, header_index, fields):
        source = rec.get("source") or only_source
        if not source:
            raise sheet.error(
                "layout row names no source",
                row=row,
                column=_col(fields, "source") if "source" in fields else None,
                hint="Add a Source Name column naming the fixed-width source of each field.",
            )
        name = rec.get("field", "")
        if not name:
            raise sheet.error("layout row has no field name", row=row,
                              column=_col(fields, "field"), hint=_HINT)  # fmt: skip
        start = _position(sheet, rec, fields, "start", row)
        length: int | None = None
        if rec.get("length"):
            length = _position(sheet, rec, fields, "length", row)
        if rec.get("end"):
            end = _position(sheet, rec, fields, "end", row)
            if end < start:
                raise sheet.error(f"End {end} is before Start {start}", row=row,
                                  column=_col(fields, "end"), hint=_HINT)  # fmt: skip
            if length is not None and length != end - start + 1:
                raise sheet.error(
                    f"Length {length} does not match Start {start} and End {end} "
                    f"({end - start + 1} characters)",
                    row=row, column=_col(fields, "length"), hint="Keep one of Length and End.",
                )  # fmt: skip
            length = end - start + 1
        if length is None:
            which = "length" if "length" in fields else "end"
            raise sheet.error(f"field {clip(name)} has no {which.title()}", row=row,
                              column=_col(fields, which), hint=_HINT)  # fmt: skip
        size_col = _col(fields, "length" if "length" in fields else "end")
        layouts.setdefault(source, []).append(
            LayoutField(
                sheet=sheet.name,
                row=row,
                file=sheet.file,
                column=size_col,
                name=name,
                start=start,
                length=length,
            )
        )
    for source, layout in layouts.items():
        _check_tiling(sheet, fields, source, layout)
    return layouts


def _position(
    sheet: _Sheet, rec: dict[str, str], fields: dict[str, tuple[int, str]], key: str, row: int
) -> int:
    from dataeng_magics.mapping.read import _col

    text = rec.get(key, "")
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1 or str(value) != text.strip():
        raise sheet.error(
            f"{key.title()} {clip(text)} is not a whole number of at least 1" if text
            else f"{key.title()} is empty",
            row=row, column=_col(fields, key), hint=_HINT,
        )  # fmt: skip
    return value


def _check_tiling(
    sheet: _Sheet, fields: dict[str, tuple[int, str]], source: str, layout: list[LayoutField]
) -> None:
    """Fields cover positions 1..N once each: no overlap, no gap, no name twice."""
    from dataeng_magics.mapping.read import _col

    names: dict[str, LayoutField] = {}
    for field in layout:
        if field.name.lower() in names:
            raise sheet.error(
                f"field {clip(field.name)} of {clip(source)} appears twice (also row "
                f"{names[field.name.lower()].row})",
                row=field.row, column=_col(fields, "field"), hint="Name each field once.",
            )  # fmt: skip
        names[field.name.lower()] = field
    position = 1
    previous: LayoutField | None = None
    for field in sorted(layout, key=lambda f: (f.start, f.end)):
        if field.start < position and previous is not None:
            raise sheet.error(
                f"field {clip(field.name)} (positions {field.start}-{field.end}) overlaps "
                f"{clip(previous.name)} (positions {previous.start}-{previous.end}, row "
                f"{previous.row})",
                row=field.row, column=_col(fields, "start"),
                hint="Fix Start or Length so each position belongs to one field.",
            )  # fmt: skip
        if field.start > position:
            raise sheet.error(
                f"positions {position}-{field.start - 1} of {clip(source)} belong to no field "
                f"(a gap before {clip(field.name)})",
                row=field.row, column=_col(fields, "start"),
                hint="Add a field for them (for example 'Filler'), or fix the Start.",
            )  # fmt: skip
        position, previous = field.end + 1, field


def attach(
    file: str,
    sources: dict[str, SourceSpec],
    layouts: MappingABC[str, list[LayoutField]],
    located: dict[str, tuple[str | None, int | None, str | None]],
) -> dict[str, SourceSpec]:
    """Give each fixed-width source its layout; refuse a layout without a fixed-width
    source and a fixed-width source without a layout. ``located`` maps a source to its
    Sources sheet, row and Format column, for the error."""
    for name, layout in layouts.items():
        spec = sources.get(name)
        first = layout[0]
        if spec is None or spec.format != "fixed-width":
            what = "is not a source" if spec is None else f"is a {spec.format} source"
            raise MappingError(
                f"the layout names {clip(name)}, which {what}",
                file=file, sheet=first.sheet, row=first.row,
                hint="Set its Format to fixed-width in the Sources sheet, or fix the Source "
                "Name" if spec is not None else f"Known sources: {', '.join(sources)}.",
            )  # fmt: skip
    out = dict(sources)
    for name, spec in sources.items():
        if spec.format != "fixed-width":
            continue
        sheet, row, column = located.get(name, (spec.sheet, spec.row, None))
        if name not in layouts:
            raise MappingError(
                f"fixed-width source {clip(name)} has no layout",
                file=file, sheet=sheet, row=row, column=column,
                hint="Add a Layout sheet with Source Name, Field, Start and Length.",
            )  # fmt: skip
        if spec.encoding.lower() not in TEXT_ENCODINGS:
            raise MappingError(
                f"fixed-width source {clip(name)} is {spec.encoding}; Spark's text reader reads "
                "UTF-8 only",
                file=file, sheet=sheet, row=row,
                hint="Convert the file to UTF-8 (iconv -f latin1 -t utf-8) and set the "
                "encoding to utf-8.",
            )  # fmt: skip
        out[name] = spec.model_copy(update={"layout": tuple(layouts[name])})
    return out


def only_fixed_width(sources: MappingABC[str, Any]) -> str | None:
    """The name of the workbook's one fixed-width source, if it has exactly one."""
    names = [n for n, s in sources.items() if getattr(s, "format", None) == "fixed-width"]
    return names[0] if len(names) == 1 else None


# -- the Sources sheet's options for client files ---------------------------------------------

SOURCE_OPTION_HEADERS: dict[str, tuple[str, ...]] = {
    "record_path": ("record path", "records path", "json path", "array path"),
    "row_tag": ("row tag", "rowtag", "record tag", "row element", "record element"),
}
FORMAT_WORDS: dict[str, SourceFormat] = {
    "xml": "xml",
    "fixed-width": "fixed-width",
    "fixed width": "fixed-width",
    "fixedwidth": "fixed-width",
    "fixed length": "fixed-width",
    "fwf": "fixed-width",
    "positional": "fixed-width",
}
COMPRESSED = (".gz", ".bz2")
DELIMITER_WORDS = {"tab": "\t", "\\t": "\t", "pipe": "|", "comma": ",", "semicolon": ";"}


def data_suffix(path: str) -> str:
    """``trades.csv.gz`` -> ``.csv``: the format's extension under a compression one."""
    from pathlib import PurePosixPath

    name = PurePosixPath(path.split("?")[0].rstrip("/"))
    suffix = name.suffix.lower()
    if suffix in COMPRESSED:
        suffix = PurePosixPath(name.stem).suffix.lower()
    return suffix


def source_options(
    sheet: _Sheet, fields: dict[str, tuple[int, str]], row: int, rec: dict[str, str], fmt: str
) -> dict[str, Any]:
    """The Sources row's read options beyond path and format, checked against the format."""
    from dataeng_magics.mapping.read import _col, _flag

    delimiter = rec.get("delimiter") or ""
    delimiter = DELIMITER_WORDS.get(delimiter.lower(), delimiter)
    options: dict[str, Any] = {"delimiter": delimiter} if delimiter else {}
    for key, needs in (("record_path", "json"), ("row_tag", "xml")):
        value = rec.get(key, "")
        if value and fmt != needs:
            raise sheet.error(
                f"{fields[key][1]} {clip(value)} is for {needs} sources, not {fmt}",
                row=row, column=_col(fields, key),
                hint=f"Clear it, or set the Format to {needs}.",
            )  # fmt: skip
        if value:
            options[key] = value
    if fmt == "xml" and not options.get("row_tag"):
        raise sheet.error(
            "an xml source needs a Row Tag: the element that holds one record",
            row=row, column=_col(fields, "row_tag") if "row_tag" in fields else None,
            hint="Add a Row Tag column to the Sources sheet, e.g. trade for <trade> elements.",
        )  # fmt: skip
    if fmt == "fixed-width":
        options["header"] = False  # lines are records; cut by the layout
        if rec.get("header") and _flag(sheet, rec["header"], row, _col(fields, "header")):
            raise sheet.error(
                "fixed-width sources are read without a header line",
                row=row, column=_col(fields, "header"),
                hint="Set Header to N; a header line would be read as a record.",
            )  # fmt: skip
    return options


def local_source_exists(path: str) -> bool:
    """A local file or folder, or a glob that matches at least one file."""
    import glob

    from dataeng_magics.sources.files import is_glob

    if is_glob(path):
        # Path.glob takes relative patterns only; this one is absolute
        return any(Path(p).is_file() for p in glob.iglob(path, recursive=True))  # noqa: PTH207
    return Path(path).exists()
