"""JSON Lines: one object per line. The sample stops reading after its records; the run
reads the used columns with their sampled types and counts malformed lines."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pandas as pd

from dataeng_magics.compile.safety import py_str
from dataeng_magics.errors import SourceError
from dataeng_magics.sources.readers.base import (
    CORRUPT_COLUMN,
    ReadCode,
    Reader,
    Typed,
    ddl,
    infer,
    observed_read,
    options_call,
    path_of,
)

if TYPE_CHECKING:
    from dataeng_magics.mapping.model import SourceSpec
    from dataeng_magics.plan.model import SourceRead

HINT = "JSON sources must be JSON Lines (one object per line); check the source's format"


class JsonLinesReader(Reader):
    format = "json"
    label = "JSON"
    hint = HINT

    def sample(self, handle: IO[bytes], spec: SourceSpec, n: int) -> Typed:
        records: list[dict[str, Any]] = []
        with io.TextIOWrapper(handle, encoding=spec.encoding) as lines:
            for number, line in enumerate(lines, 1):
                if len(records) >= n:
                    break
                if not line.strip():
                    continue
                if not records and line.lstrip().startswith("["):
                    raise SourceError(
                        "is a JSON array, not JSON Lines",
                        hint="Set the source's Record Path to $ (the document is one array of "
                        "records), or convert it to JSON Lines, e.g. jq -c '.[]' in.json",
                    )
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SourceError(
                        f"line {number} is not valid JSON ({exc.msg})", row=number, hint=HINT
                    ) from exc
                if not isinstance(record, dict):
                    raise SourceError(f"line {number} is not a JSON object", row=number, hint=HINT)
                records.append(record)
        if not records and n:
            raise SourceError("holds no JSON records", hint=HINT)
        return records_frame(records)

    def read_code(
        self, var: str, name: str, read: SourceRead, columns: list[str], fresh: Callable[[str], str]
    ) -> ReadCode:
        schema = ddl(
            {**{c: read.columns.get(c, "string") for c in columns}, CORRUPT_COLUMN: "string"}
        )
        return observed_read(
            var,
            name,
            "JSON Lines, reading only the columns used, with their types; malformed lines counted.",
            [
                "spark.read",
                f".schema({py_str(schema)})",
                options_call({"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT_COLUMN}),
                f".json({path_of(name)})",
            ],
            f"F.col({py_str(CORRUPT_COLUMN)}).isNotNull()",
            None,
            fresh,
        )

    def write_sample(self, frame: pd.DataFrame, spec: SourceSpec, path: Path) -> Path:
        frame.to_json(path, orient="records", lines=True, date_format="iso")
        return path


def records_frame(records: list[dict[str, Any]]) -> Typed:
    """Records (JSON objects) as a typed sample: columns in order of first appearance."""
    names = list(dict.fromkeys(key for record in records for key in record))
    return infer(names, [[record.get(name) for record in records] for name in names])


READER = JsonLinesReader()
