"""Fixed-width text: each field at a position given by the mapping's Layout sheet.

Every field is read as text with its spaces kept (rules trim); the sample types a
field by its text (``0000000066`` is a number). The run reads lines with Spark's text
reader and cuts the fields with ``substring`` in one select: no Python UDF. A line
shorter than the layout is malformed: counted, and the run fails.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pandas as pd

from dataeng_magics.compile.safety import py_str
from dataeng_magics.errors import SourceError
from dataeng_magics.sources.readers.base import (
    ReadCode,
    Reader,
    Typed,
    cell_text,
    observed_read,
    path_of,
    text_frame,
)

if TYPE_CHECKING:
    from dataeng_magics.mapping.model import LayoutField, SourceSpec
    from dataeng_magics.plan.model import SourceRead

HINT = "Check the source's Layout sheet: Start and Length (or End) of each field"


def record_length(layout: tuple[LayoutField, ...]) -> int:
    return max((f.end for f in layout), default=0)


def _layout_error(message: str, field: LayoutField, hint: str = HINT) -> SourceError:
    return SourceError(
        message, file=field.file, sheet=field.sheet, row=field.row, column=field.column,
        hint=hint,
    )  # fmt: skip


class FixedWidthReader(Reader):
    format = "fixed-width"
    label = "fixed-width text"
    hint = HINT

    def sample(self, handle: IO[bytes], spec: SourceSpec, n: int) -> Typed:
        layout = spec.layout
        if not layout:
            raise SourceError("has no layout", hint="Add the source's fields to a Layout sheet")
        need = record_length(layout)
        lines: list[tuple[int, str]] = []
        with io.TextIOWrapper(handle, encoding=spec.encoding, newline=None) as text:
            for number, raw in enumerate(text, 1):
                if len(lines) >= n:
                    break
                line = raw.rstrip("\n")
                if line:  # blank lines are skipped, by the run too
                    lines.append((number, line))
        if not lines and n:
            raise SourceError("holds no records", hint=HINT)
        longest = max((len(line) for _, line in lines), default=need)
        for field in layout:
            if field.end > longest:
                raise _layout_error(
                    f"field {field.name!r} (positions {field.start}-{field.end}) runs past the "
                    f"end of the records of {spec.path} ({longest} characters)",
                    field,
                )
        for number, line in lines:
            if len(line) < need:
                last = max(layout, key=lambda f: f.end)
                raise _layout_error(
                    f"line {number} of {spec.path} is {len(line)} characters, shorter than the "
                    f"layout ({need})",
                    last,
                    hint="Fix the file (a record cut short?) or the layout",
                )
        names = [f.name for f in layout]
        columns = [[line[f.start - 1 : f.end] for _, line in lines] for f in layout]
        return text_frame(names, [list(c) for c in columns])

    def read_code(
        self, var: str, name: str, read: SourceRead, columns: list[str], fresh: Callable[[str], str]
    ) -> ReadCode:
        fields = {f.name: f for f in read.layout}
        need = record_length(read.layout)
        value = 'F.col("value")'
        cuts = [
            f"F.substring({value}, {fields[c].start}, {fields[c].length}).alias({py_str(c)})"
            for c in columns
            if c in fields
        ]
        return observed_read(
            var,
            name,
            f"fixed-width text, {len(read.layout)} fields in {need} characters, cut with "
            "substring (spaces kept); shorter lines counted as malformed.",
            [f"spark.read.text({path_of(name)})"],
            f'({value} != "") & (F.length({value}) < {need})',
            cuts or [value],
            fresh,
            valid=f"~(F.length({value}) < {need})",  # blank lines are no records either
        )

    def write_sample(self, frame: pd.DataFrame, spec: SourceSpec, path: Path) -> Path:
        need = record_length(spec.layout)
        lines = []
        for values in frame.itertuples(index=False):
            line = [" "] * need
            for field, value in zip(spec.layout, values, strict=False):
                text = (cell_text(value) or "").ljust(field.length)[: field.length]
                line[field.start - 1 : field.end] = text
            lines.append("".join(line))
        path.write_text("".join(f"{line}\n" for line in lines), encoding=spec.encoding)
        return path


READER = FixedWidthReader()
