"""CSV (and every delimited text: ``|``, tab, ``;``, multi-character separators).

Sample and run read records the same way wherever a quoted field holds a line break:
the sample with pandas (or, for multi-character separators, ``records`` below), the run
with Spark's ``multiLine`` parser. ``multiLine`` costs parallelism (one task per file,
see bench/bench_csv_multiline.py); reading the file by lines would split such records
into wrong rows, which no check could tell from real ones. So ``multiLine`` is a run
parameter (``multiline``, default: on): a run that scanned a local source's files and
found no line break inside quotes (``sources.diagnose.spans_lines``) reads it by lines.
Records with the wrong number of fields, broken quoting or a cut-off last line are
counted with Spark's corrupt-record column in the same pass and fail the run.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pandas as pd

from dataeng_magics.compile.emit import call, chain
from dataeng_magics.compile.safety import comment_text, py_str
from dataeng_magics.sources.readers.base import (
    CORRUPT_COLUMN,
    ReadCode,
    Reader,
    Typed,
    observed_read,
    path_of,
    spark_type_of,
)

if TYPE_CHECKING:
    from dataeng_magics.mapping.model import SourceSpec
    from dataeng_magics.plan.model import SourceRead

QUOTE = '"'


def records(lines: Iterable[str], sep: str) -> Iterator[tuple[int, list[str], bool]]:
    """RFC 4180 records from text lines (each ending in its line break, as files iterate):
    (line the record starts on, its fields, whether its quotes were closed).

    A quote opens a quoted field only at the start of a field, and ``""`` inside one is a
    quote, as Spark's parser reads them; a quoted field may run over several lines.
    """
    number = 0
    pending = iter(lines)
    for line in pending:
        number += 1
        start = number
        if QUOTE not in line:
            yield start, line.rstrip("\r\n").split(sep), True
            continue
        fields: list[str] = []
        text, i, buf, quoted, closed = line, 0, [], False, True
        at_start = True
        while True:
            if i >= len(text):
                if quoted:  # the record goes on on the next line
                    nxt = next(pending, None)
                    if nxt is None:
                        closed = False
                        break
                    number += 1
                    text, i = nxt, 0
                    continue
                break
            if quoted:
                if text[i] == QUOTE:
                    if text.startswith(QUOTE, i + 1):
                        buf.append(QUOTE)
                        i += 2
                        continue
                    quoted = False
                    i += 1
                    continue
                buf.append(text[i])
                i += 1
                continue
            if at_start and text[i] == QUOTE:
                quoted, at_start = True, False
                i += 1
                continue
            if text.startswith(sep, i):
                fields.append("".join(buf))
                buf, at_start = [], True
                i += len(sep)
                continue
            if text[i] in "\r\n" and text[i:].strip("\r\n") == "":
                break
            buf.append(text[i])
            at_start = False
            i += 1
        fields.append("".join(buf))
        yield start, fields, closed


def _quote(value: str, sep: str) -> str:
    if any(s in value for s in (sep, QUOTE, "\n", "\r")):
        return QUOTE + value.replace(QUOTE, QUOTE * 2) + QUOTE
    return value


def _rows_as_csv(rows: Iterable[list[str]], sep: str) -> str:
    return "".join(sep.join(_quote(v, sep) for v in row) + "\n" for row in rows)


class CsvReader(Reader):
    format = "csv"
    label = "CSV"
    hint = "Check the source's format, delimiter and header settings in the mapping"

    def sample(self, handle: IO[bytes], spec: SourceSpec, n: int) -> Typed:
        source: IO[bytes] | io.StringIO = handle
        sep = spec.delimiter
        if len(sep) > 1:  # pandas' fast parser takes one character: re-quote the records
            wrapper = io.TextIOWrapper(handle, encoding=spec.encoding, newline="")
            wanted = n + (1 if spec.header else 0)
            rows = [fields for _, fields, _ in _first(records(wrapper, sep), wanted)]
            if not rows:
                raise pd.errors.EmptyDataError("no records")
            source, sep = io.StringIO(_rows_as_csv(rows, "\x1f")), "\x1f"
        # Only empty cells are null, as in Spark: "NA" or "None" may be real values (Namibia).
        frame = pd.read_csv(
            source,
            nrows=n,
            sep=sep,
            header=0 if spec.header else None,
            encoding=spec.encoding if source is handle else None,
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

    def header(self, handle: IO[bytes], spec: SourceSpec) -> str | None:
        if not spec.header:
            return None
        line = io.TextIOWrapper(handle, encoding=spec.encoding, newline="").readline()
        return line.rstrip("\r\n").lstrip("\ufeff")

    def options(self, read: SourceRead | SourceSpec) -> dict[str, str]:
        return {
            "header": str(read.header).lower(),
            "sep": read.delimiter,
            "encoding": read.encoding,
            "quote": QUOTE,
            "escape": QUOTE,
            "inferSchema": "false",  # every field is text; conversions are explicit
            "multiLine": "true",  # a quoted line break is part of its record, on any row
        }

    def run_options(self, name: str, read: SourceRead, **more: str) -> str:
        """The compiled ``.options(...)``: ``multiLine`` comes from the run parameter
        ``multiline`` (source -> "false" when the run found no record spanning lines),
        so one approved body reads by lines, split across cores, when it safely can."""
        items = [
            f'multiLine=multiline.get({py_str(name)}, "true")'
            if k == "multiLine"
            else f"{k}={py_str(v)}"
            for k, v in {**self.options(read), **more}.items()
        ]
        return call("options", items)

    def read_code(
        self, var: str, name: str, read: SourceRead, columns: list[str], fresh: Callable[[str], str]
    ) -> ReadCode:
        path = path_of(name)
        header = fresh(f"{var}_columns")
        options = self.run_options(name, read)
        # The header names the columns at run time (one record read), so columns the plan
        # does not use may come and go; the corrupt-record column is added to them.
        head = [
            f"# {comment_text(name)}: its header, read on its own, names the columns.",
            *chain(header, ["spark.read", options, f".csv({path})", ".schema"]),
        ]
        code = observed_read(
            var,
            name,
            "CSV read as text, records spanning lines read whole; malformed ones counted.",
            [
                "spark.read",
                f'.schema({header}.add({py_str(CORRUPT_COLUMN)}, "string"))',
                self.run_options(
                    name, read, mode="PERMISSIVE", columnNameOfCorruptRecord=CORRUPT_COLUMN
                ),
                f".csv({path})",
            ],
            f"F.col({py_str(CORRUPT_COLUMN)}).isNotNull()",
            None,
            fresh,
        )
        return code.after(head)

    def write_sample(self, frame: pd.DataFrame, spec: SourceSpec, path: Path) -> Path:
        if len(spec.delimiter) == 1:
            frame.to_csv(path, index=False, sep=spec.delimiter, header=spec.header,
                         encoding=spec.encoding)  # fmt: skip
            return path
        rows = [[str(c) for c in frame.columns]] if spec.header else []
        rows += [["" if pd.isna(v) else str(v) for v in row] for row in frame.itertuples(False)]
        path.write_text(_rows_as_csv(rows, spec.delimiter), encoding=spec.encoding)
        return path


def _first(
    items: Iterator[tuple[int, list[str], bool]], n: int
) -> list[tuple[int, list[str], bool]]:
    out: list[tuple[int, list[str], bool]] = []
    for item in items:
        if len(out) >= n:
            break
        if item[1] != [""]:  # blank lines are not records, as for pandas and Spark
            out.append(item)
    return out


READER = CsvReader()
