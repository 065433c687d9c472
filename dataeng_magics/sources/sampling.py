"""The first rows and the schema of a source, in time that does not grow with the file.

Planning and review need only a glimpse of each source (its columns, their types, a few
rows), while client files run to 10 GB. So every reader stops after ``n`` records (see
``sources.readers``), compressed files are decompressed as a stream, and a source made
of many files (a folder, a glob) is sampled through its first file, after checking that
every part starts with the same header. Types are given as Spark type names because
that is the language of the plan and of the generated code.
"""

from __future__ import annotations

import codecs
import datetime as dt
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import ParseError

import pandas as pd
import pyarrow as pa

from dataeng_magics.errors import SourceError
from dataeng_magics.mapping.model import SourceSpec
from dataeng_magics.sources.files import SourceFiles, empty, list_files, missing, open_binary
from dataeng_magics.sources.readers import Reader, reader_for
from dataeng_magics.sources.readers.base import spark_type_of

__all__ = ["Sample", "sample", "spark_type_of"]

#: Errors that mean "this file cannot be read as this format", never a bug of ours.
_UNREADABLE = (
    ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile, pa.ArrowException, ParseError,
)  # fmt: skip


@dataclass(frozen=True, eq=False)  # eq=False: comparing DataFrames field-wise would raise
class Sample:
    """A few rows of a source, the Spark types of all its columns, and its files."""

    source: str
    path: str
    format: str
    frame: pd.DataFrame
    schema: dict[str, str]
    files: tuple[str, ...] = field(default=())  # every file the run reads, as the user spells it

    def columns(self) -> list[str]:
        return list(self.schema)


def sample(spec: SourceSpec, n: int = 100, storage_options: dict[str, Any] | None = None) -> Sample:
    """Read the first ``n`` records of ``spec`` (a local path or an fsspec URL; a file, a
    folder or a glob).

    A folder (Spark's own output: part files, ``key=value`` partition folders) is sampled
    through its first data file, with the partition keys added as columns as Spark does.
    Every failure a user can fix is raised as a one-line ``SourceError`` naming the file.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    reader = reader_for(spec)
    try:
        codecs.lookup(spec.encoding)
    except LookupError as exc:
        raise SourceError(
            f"names an unknown encoding {spec.encoding!r}",
            file=spec.path,
            hint="Set the source's encoding in the mapping to a name such as utf-8 or latin-1",
        ) from exc
    source = list_files(spec.url, storage_options or {})  # the credential, in memory
    shown = source.shown(spec.path, source.first)
    try:
        _check_parts(reader, source, spec)
        with open_binary(source.fs, source.first, reader.compressible) as handle:
            frame, schema = reader.sample(handle, spec, n)
    except SourceError as exc:
        exc.file = exc.file or shown
        raise
    except FileNotFoundError as exc:
        raise missing(spec.path) from exc
    except UnicodeDecodeError as exc:
        raise SourceError(
            f"is not valid {spec.encoding} text (byte {exc.object[exc.start : exc.start + 1]!r})",
            file=shown,
            hint=f"Set the source's encoding in the mapping (for example latin-1 or cp1252)"
            f" instead of {spec.encoding!r}",
        ) from exc
    except pd.errors.EmptyDataError as exc:
        raise empty(shown) from exc
    except _UNREADABLE as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise SourceError(
            f"cannot be read as {reader.label}: {reason}", file=shown, hint=reader.hint
        ) from exc
    for key, value in source.partitions.items():
        if key not in schema:
            frame[key], schema[key] = _partition_column(value, len(frame))
    files = tuple(source.shown(spec.path, f) for f in source.files)
    return Sample(spec.name, spec.path, spec.format, frame, schema, files)


def _check_parts(reader: Reader, source: SourceFiles, spec: SourceSpec) -> None:
    """Every file must be one the run can read, and every part must start like the first:
    a part with another header would be read into the wrong columns."""
    if len(source.files) > 1 and not reader.multi_file:
        raise SourceError(
            f"names {len(source.files)} files; {reader.label} sources are one file",
            file=spec.path,
            hint="Point the source at one file",
        )
    for file, size in zip(source.files, source.sizes, strict=True):
        reader.check_size(size, source.shown(spec.path, file), spec)
    if len(source.files) == 1:
        return
    first: str | None = None
    for index, file in enumerate(source.files):
        with open_binary(source.fs, file, reader.compressible) as handle:
            header = reader.header(handle, spec)
        if header is None:
            return
        if index == 0:
            first = header
        elif header != first:
            raise SourceError(
                f"has a different header from the first part "
                f"({source.shown(spec.path, source.first)}): {_cut(header)!r} instead of "
                f"{_cut(first or '')!r}",
                file=source.shown(spec.path, file),
                hint="Every part of a source must have the same columns in the same order; "
                "re-export it or move it out of the source",
            )


def _cut(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
