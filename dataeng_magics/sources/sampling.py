"""The first rows and the schema of a source, in time that does not grow with the file.

Planning and review need only a glimpse of each source (its columns, their types, a few
rows), while client files run to 10 GB. So every reader stops after ``n`` rows: CSV and
JSON Lines stop reading the stream, Excel stops iterating the sheet, Parquet reads only
the row groups that hold those rows. Types are given as Spark type names because that is
the language of the plan and of the generated code.
"""

from __future__ import annotations

import codecs
import datetime as dt
import io
import json
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice
from typing import IO, Any
from urllib.parse import unquote

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dataeng_magics.errors import MissingDependency, SourceError
from dataeng_magics.mapping.model import SourceSpec

__all__ = ["Sample", "sample", "spark_type_of"]

Typed = tuple[pd.DataFrame, dict[str, str]]

_AZURE = {"abfs", "abfss", "az", "adl"}
_LABEL = {"csv": "CSV", "parquet": "Parquet", "excel": "an Excel .xlsx workbook", "json": "JSON"}
#: Errors that mean "this file cannot be read as this format", never a bug of ours.
_UNREADABLE = (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile, pa.ArrowException)
#: Arrow -> pandas nullable dtypes, so integer and boolean columns with nulls keep their type.
_NULLABLE: dict[pa.DataType, Any] = {
    **{getattr(pa, f"int{b}")(): getattr(pd, f"Int{b}Dtype")() for b in (8, 16, 32, 64)},
    **{getattr(pa, f"uint{b}")(): getattr(pd, f"UInt{b}Dtype")() for b in (8, 16, 32, 64)},
    pa.bool_(): pd.BooleanDtype(),
    pa.float32(): pd.Float32Dtype(),
    pa.float64(): pd.Float64Dtype(),
    pa.string(): pd.StringDtype(),
    pa.large_string(): pd.StringDtype(),
}
_PANDAS_DTYPE: dict[str, Any] = {"boolean": "boolean", "bigint": "Int64", "double": "Float64"}


@dataclass(frozen=True, eq=False)  # eq=False: comparing DataFrames field-wise would raise
class Sample:
    """A few rows of a source and the Spark types of all its columns."""

    source: str
    path: str
    format: str
    frame: pd.DataFrame
    schema: dict[str, str]

    def columns(self) -> list[str]:
        return list(self.schema)


def sample(spec: SourceSpec, n: int = 100, storage_options: dict[str, Any] | None = None) -> Sample:
    """Read the first ``n`` rows of ``spec`` (a local path or an fsspec URL).

    A folder (Spark's own output: part files, ``key=value`` partition folders) is sampled
    through its first data file, with the partition keys added as columns as Spark does.
    Every failure a user can fix is raised as a one-line ``SourceError`` naming the file.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    fs, root = _filesystem(spec.path, storage_options or {})
    shown = spec.path
    try:
        file, partitions = _first_data_file(fs, root, spec.path)
        if file != root:  # a file inside a folder: name it the way the user spelt the folder
            shown = f"{spec.path.rstrip('/')}/{file[len(root) :].lstrip('/')}"
        frame, schema = _read(fs, file, spec, n)
    except SourceError as exc:
        exc.file = exc.file or shown
        raise
    except FileNotFoundError as exc:
        raise _missing(spec.path) from exc
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"is not valid {spec.encoding} text (byte {exc.object[exc.start : exc.start + 1]!r})",
            file=shown,
            hint=f"Set the source's encoding in the mapping (for example latin-1 or cp1252)"
            f" instead of {spec.encoding!r}",
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise _empty(shown) from exc
    except _UNREADABLE as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise SourceError(
            f"cannot be read as {_LABEL[spec.format]}: {reason}",
            file=shown,
            hint=_HINT[spec.format],
        ) from exc
    for key, value in partitions.items():
        if key not in schema:
            frame[key], schema[key] = _partition_column(value, len(frame))
    return Sample(spec.name, spec.path, spec.format, frame, schema)


def spark_type_of(dtype: Any) -> str:
    """Spark's name for a pandas or Arrow dtype.

    Nested and unusual types come back as "string": a sample has to name every column,
    and a string is what the plan can always cast from.
    """
    if isinstance(dtype, pd.ArrowDtype):
        dtype = dtype.pyarrow_dtype
    if isinstance(dtype, pa.DataType):
        return _arrow_type(dtype)
    if isinstance(dtype, pd.CategoricalDtype):
        return spark_type_of(dtype.categories.dtype)
    if isinstance(dtype, pd.DatetimeTZDtype):
        return "timestamp"
    try:
        dtype = pd.api.types.pandas_dtype(dtype)
    except TypeError:
        return "string"
    kind, size = dtype.kind, getattr(dtype, "itemsize", 8)
    if kind == "b":
        return "boolean"
    if kind == "i":
        return "bigint" if size == 8 else "int"
    if kind == "u":  # Spark widens unsigned types, as it does when reading Parquet
        return "int" if size <= 2 else "bigint" if size == 4 else "decimal(20,0)"
    if kind == "f":
        return "double" if size == 8 else "float"
    return {"M": "timestamp", "S": "binary"}.get(kind, "string")


def _arrow_type(t: pa.DataType) -> str:
    types = pa.types
    if types.is_dictionary(t):
        return _arrow_type(t.value_type)
    if types.is_integer(t):
        width = t.bit_width
        if types.is_signed_integer(t):
            return "bigint" if width == 64 else "int"
        return "int" if width <= 16 else "bigint" if width == 32 else "decimal(20,0)"
    if types.is_decimal(t):
        ok = 0 <= t.scale <= t.precision <= 38
        return f"decimal({t.precision},{t.scale})" if ok else "string"
    if types.is_floating(t):
        return "double" if t.bit_width == 64 else "float"
    if types.is_boolean(t):
        return "boolean"
    if types.is_date(t):
        return "date"
    if types.is_timestamp(t):
        return "timestamp"
    binary = (types.is_binary, types.is_large_binary, types.is_fixed_size_binary)
    return "binary" if any(check(t) for check in binary) else "string"


# -- files ---------------------------------------------------------------------------------


def _filesystem(path: str, options: dict[str, Any]) -> tuple[Any, str]:
    import fsspec

    protocol = path.split("://", 1)[0] if "://" in path else "file"
    try:
        fs, root = fsspec.core.url_to_fs(path, **options)
        return fs, str(root)
    except (ImportError, ValueError) as exc:
        if protocol in _AZURE:
            raise MissingDependency("adlfs", "azure", f"Reading {protocol}:// sources") from exc
        raise SourceError(
            f"cannot open {protocol}:// paths ({exc})",
            file=path,
            hint="Use a local path or an fsspec URL whose filesystem package is installed",
        ) from exc


def _missing(path: str) -> SourceError:
    return SourceError(
        "file does not exist", file=path, hint="Check the path, or pass --source NAME=PATH"
    )


def _empty(path: str) -> SourceError:
    return SourceError(
        "file is empty", file=path, hint="Re-export it, or point the source at the right file"
    )


def _hidden(name: str) -> bool:
    base = name.rstrip("/").rsplit("/", 1)[-1]
    return base.startswith(("_", "."))  # Spark skips _SUCCESS, _delta_log, .crc files


def _first_data_file(fs: Any, root: str, path: str) -> tuple[str, dict[str, str]]:
    """The file to sample and the ``key=value`` partition folders above it."""
    try:
        entry = fs.info(root)
    except FileNotFoundError as exc:
        raise _missing(path) from exc
    partitions: dict[str, str] = {}
    while entry["type"] == "directory":
        listing = sorted(
            (e for e in fs.ls(entry["name"], detail=True) if not _hidden(e["name"])),
            key=lambda e: (e["type"] != "file", e["name"]),  # files first, then sub-folders
        )
        candidates = [e for e in listing if e["type"] == "directory" or e.get("size")]
        if not candidates:
            raise SourceError("folder holds no data files", file=path, hint=_HINT["folder"])
        entry = candidates[0]
        key, eq, value = entry["name"].rstrip("/").rsplit("/", 1)[-1].partition("=")
        if eq and entry["type"] == "directory":
            partitions[unquote(key)] = unquote(value)
    if not entry.get("size"):
        raise _empty(path)
    return str(entry["name"]), partitions


def _read(fs: Any, file: str, spec: SourceSpec, n: int) -> Typed:
    import fsspec

    text = spec.format in ("csv", "json")
    try:
        codecs.lookup(spec.encoding)
    except LookupError as exc:
        raise SourceError(
            f"names an unknown encoding {spec.encoding!r}",
            hint="Set the source's encoding in the mapping to a name such as utf-8 or latin-1",
        ) from exc
    compression = fsspec.utils.infer_compression(file) if text else None
    with fsspec.core.OpenFile(fs, file, "rb", compression=compression) as handle:
        return _READERS[spec.format](handle, spec, n)


# -- readers -------------------------------------------------------------------------------


def _read_csv(handle: IO[bytes], spec: SourceSpec, n: int) -> Typed:
    # Only empty cells are null, as in Spark: "NA" or "None" may be real values (Namibia).
    frame = pd.read_csv(
        handle,
        nrows=n,
        sep=spec.delimiter,
        header=0 if spec.header else None,
        encoding=spec.encoding,
        keep_default_na=False,
        na_values=[""],
        dtype_backend="numpy_nullable",
    )
    names = [str(c) for c in frame.columns]  # pandas has already dropped a BOM
    frame.columns = [  # Spark's names for missing headers
        f"_c{i}" if not spec.header or name == f"Unnamed: {i}" else name
        for i, name in enumerate(names)
    ]
    schema = {}
    for name in frame.columns:
        if frame[name].isna().all():  # nothing to infer from: Spark says string too
            frame[name] = frame[name].astype("string")
        schema[name] = spark_type_of(frame[name].dtype)
    return frame, schema


def _read_parquet(handle: IO[bytes], spec: SourceSpec, n: int) -> Typed:
    parquet = pq.ParquetFile(handle)
    batches: list[pa.RecordBatch] = []
    rows = 0
    for group in range(parquet.num_row_groups):  # stop at the group that completes n rows
        if rows >= n:
            break
        batch = next(parquet.iter_batches(batch_size=n - rows, row_groups=[group]), None)
        if batch is not None:
            batches.append(batch)
            rows += batch.num_rows
    table = pa.Table.from_batches(batches, schema=parquet.schema_arrow)
    frame = table.to_pandas(types_mapper=_NULLABLE.get)
    return frame, {field.name: spark_type_of(field.type) for field in parquet.schema_arrow}


def _read_excel(handle: IO[bytes], spec: SourceSpec, n: int) -> Typed:
    import openpyxl

    book = openpyxl.load_workbook(handle, read_only=True, data_only=True)
    try:
        if spec.excel_sheet is not None and spec.excel_sheet not in book.sheetnames:
            raise SourceError(
                f"has no sheet {spec.excel_sheet!r}",
                sheet=spec.excel_sheet,
                hint=f"Set the source's excel_sheet to one of: {', '.join(book.sheetnames)}",
            )
        sheet = book[spec.excel_sheet] if spec.excel_sheet else book.worksheets[0]
        sheet.reset_dimensions()  # stored dimensions can be wrong; read what is there
        rows = ([_excel_value(cell) for cell in cells] for cells in sheet.iter_rows())
        filled = (row for row in rows if any(v is not None for v in row))
        header = next(filled, None) if spec.header else []
        if header is None:
            raise SourceError("sheet is empty", sheet=sheet.title, hint=_HINT["sheet"])
        data = list(islice(filled, n))
    finally:
        book.close()
    width = max([len(header), *map(len, data)])
    header, data = (
        header + [None] * (width - len(header)),
        [r + [None] * (width - len(r)) for r in data],
    )
    while width and header[width - 1] is None and all(r[width - 1] is None for r in data):
        width -= 1  # formatted but empty trailing columns
    names = _unique([f"_c{i}" if h is None else str(h) for i, h in enumerate(header[:width])])
    return _infer(names, [[row[i] for row in data] for i in range(width)])


def _excel_value(cell: Any) -> Any:
    value = cell.value
    if isinstance(value, dt.datetime) and not _TIME_FORMAT.search(
        _QUOTED.sub("", str(cell.number_format))
    ):
        return value.date()  # a date-only number format: Excel's way of saying "date"
    return value


_QUOTED = re.compile(r'"[^"]*"|\[[^\]]*\]|\\.')
_TIME_FORMAT = re.compile(r"[hs]|am/pm", re.IGNORECASE)


def _read_json(handle: IO[bytes], spec: SourceSpec, n: int) -> Typed:
    records: list[dict[str, Any]] = []
    with io.TextIOWrapper(handle, encoding=spec.encoding) as lines:
        for number, line in enumerate(lines, 1):
            if len(records) >= n:
                break
            if not line.strip():
                continue
            if not records and line.lstrip().startswith("["):
                raise SourceError("is a JSON array, not JSON Lines", hint=_HINT["json_array"])
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SourceError(
                    f"line {number} is not valid JSON ({exc.msg})", row=number, hint=_HINT["json"]
                ) from exc
            if not isinstance(record, dict):
                raise SourceError(
                    f"line {number} is not a JSON object", row=number, hint=_HINT["json"]
                )
            records.append(record)
    if not records and n:
        raise SourceError("holds no JSON records", hint=_HINT["json"])
    names = list(dict.fromkeys(key for record in records for key in record))
    return _infer(names, [[record.get(name) for record in records] for name in names])


_READERS: dict[str, Callable[[IO[bytes], SourceSpec, int], Typed]] = {
    "csv": _read_csv,
    "parquet": _read_parquet,
    "excel": _read_excel,
    "json": _read_json,
}
_HINT = {
    "csv": "Check the source's format, delimiter and header settings in the mapping",
    "parquet": "Check the source's format in the mapping; re-export the file if it was cut short",
    "excel": "Only .xlsx workbooks without a password can be read; save it as .xlsx",
    "sheet": "Set the source's excel_sheet to the sheet that holds the data",
    "json": "JSON sources must be JSON Lines (one object per line); check the source's format",
    "json_array": "Spark reads one object per line: convert it first, e.g. jq -c '.[]' in.json",
    "folder": "Point the source at a data file, or at a folder of part files",
}


# -- type inference for formats without a schema (Excel, JSON) ------------------------------


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint" if -(2**63) <= value < 2**63 else "string"
    if isinstance(value, float):
        return "double"
    if isinstance(value, dt.datetime):
        return "timestamp"
    return "date" if isinstance(value, dt.date) else "string"


def _text(value: Any) -> str:
    if isinstance(value, bool | dict | list):
        return json.dumps(value, ensure_ascii=False, default=str)
    return value if isinstance(value, str) else str(value)


_WIDER = {
    **{frozenset([kind]): kind for kind in ("boolean", "bigint", "double", "timestamp", "date")},
    frozenset(["bigint", "double"]): "double",
    frozenset(["date", "timestamp"]): "timestamp",
}


def _infer(names: list[str], columns: list[list[Any]]) -> Typed:
    """Spark's type for each column from its Python values; mixed columns become strings."""
    frame, schema = {}, {}
    for name, values in zip(names, columns, strict=True):
        kinds = {_kind(v) for v in values if v is not None}
        kind = _WIDER.get(frozenset(kinds), "string")
        if kind == "timestamp":
            stamps = [v if not isinstance(v, dt.date) else _at_midnight(v) for v in values]
            array: Any = pd.array(stamps, dtype="datetime64[us]")
        elif kind == "date":
            array = pd.array(values, dtype=object)
        elif kind == "string":
            array = pd.array([None if v is None else _text(v) for v in values], dtype="string")
        else:
            array = pd.array(values, dtype=_PANDAS_DTYPE[kind])
        frame[name], schema[name] = array, kind
    return pd.DataFrame(frame, index=pd.RangeIndex(len(columns[0]) if columns else 0)), schema


def _at_midnight(value: dt.date) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.combine(value, dt.time())


def _unique(names: list[str]) -> list[str]:
    """Duplicate headers get ``.1``, ``.2`` suffixes, as pandas gives CSV headers."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(f"{name}.{count}" if count else name)
    return out


_INT = re.compile(r"^-?\d+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _partition_column(value: str, rows: int) -> tuple[Any, str]:
    """A partition folder's value as a column typed the way Spark's discovery types it."""
    if value == "__HIVE_DEFAULT_PARTITION__":
        return pd.array([None] * rows, dtype="string"), "string"
    if _INT.match(value):
        small = -(2**31) <= int(value) < 2**31
        return pd.array([int(value)] * rows, dtype="Int32" if small else "Int64"), (
            "int" if small else "bigint"
        )
    if _DATE.match(value):
        try:
            return pd.array([dt.date.fromisoformat(value)] * rows, dtype=object), "date"
        except ValueError:
            pass
    return pd.array([value] * rows, dtype="string"), "string"
