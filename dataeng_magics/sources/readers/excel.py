"""Excel (.xlsx): the sample stops iterating the sheet after its rows; Spark has no
native reader, so the run reads the workbook as text with pandas-on-Spark."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pandas as pd

from dataeng_magics.compile.safety import comment_text, py_str
from dataeng_magics.errors import SourceError
from dataeng_magics.sources.readers.base import ReadCode, Reader, Typed, infer, path_of, unique

if TYPE_CHECKING:
    from dataeng_magics.mapping.model import SourceSpec
    from dataeng_magics.plan.model import SourceRead

_QUOTED = re.compile(r'"[^"]*"|\[[^\]]*\]|\\.')
_TIME_FORMAT = re.compile(r"[hs]|am/pm", re.IGNORECASE)
_SHEET_HINT = "Set the source's excel_sheet to the sheet that holds the data"


class ExcelReader(Reader):
    format = "excel"
    label = "an Excel .xlsx workbook"
    hint = "Only .xlsx workbooks without a password can be read; save it as .xlsx"
    compressible = False  # a workbook is a zip already
    multi_file = False  # pandas-on-Spark reads one workbook

    def sample(self, handle: IO[bytes], spec: SourceSpec, n: int) -> Typed:
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
                raise SourceError("sheet is empty", sheet=sheet.title, hint=_SHEET_HINT)
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
        names = unique([f"_c{i}" if h is None else str(h) for i, h in enumerate(header[:width])])
        return infer(names, [[row[i] for row in data] for i in range(width)])

    def read_code(
        self, var: str, name: str, read: SourceRead, columns: list[str], fresh: Callable[[str], str]
    ) -> ReadCode:
        sheet = py_str(read.excel_sheet) if read.excel_sheet else "0"
        return ReadCode(
            [
                f"# {comment_text(name)}: Excel has no native Spark reader; "
                "pandas-on-Spark reads it as text.",
                "import pyspark.pandas as ps",
                f"{var} = ps.read_excel("
                f'{path_of(name)}, sheet_name={sheet}, dtype="str").to_spark()',
            ]
        )

    def write_sample(self, frame: pd.DataFrame, spec: SourceSpec, path: Path) -> Path:
        path = path.with_suffix(".xlsx")
        frame.to_excel(path, index=False, sheet_name=spec.excel_sheet or "Sheet1")
        return path


def _excel_value(cell: Any) -> Any:
    value = cell.value
    if isinstance(value, dt.datetime) and not _TIME_FORMAT.search(
        _QUOTED.sub("", str(cell.number_format))
    ):
        return value.date()  # a date-only number format: Excel's way of saying "date"
    return value


READER = ExcelReader()
