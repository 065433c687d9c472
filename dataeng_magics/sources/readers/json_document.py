"""A JSON document with the records in one array inside it (the source's Record Path).

The sample streams the document with ijson up to the first ``n`` records of the array,
so a large document costs no more than a small one. Spark reads a whole document as one
record (``multiLine``) and then makes one row per array element (``inline``), so the
whole document has to fit in one task's memory: documents larger than
``DOCUMENT_LIMIT_BYTES`` are refused at sampling time with a pointer to JSON Lines.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pandas as pd

from dataeng_magics.compile.safety import py_str, sql_ident
from dataeng_magics.errors import MissingDependency, SourceError
from dataeng_magics.sources.readers.base import (
    CORRUPT_COLUMN,
    ReadCode,
    Reader,
    Typed,
    ddl,
    observed_read,
    options_call,
    path_of,
)
from dataeng_magics.sources.readers.json_lines import records_frame

if TYPE_CHECKING:
    from dataeng_magics.mapping.model import SourceSpec
    from dataeng_magics.plan.model import SourceRead

#: Spark parses a JSON document into one row. Measured on local Spark with its default
#: 1 GB of driver memory: a 256 MB document reads (1.75 M records, 23 s), 512 MB fails
#: out of memory. Larger executors go further, but JSON Lines has no limit at all.
DOCUMENT_LIMIT_BYTES = 256 * 1024 * 1024
ROOT = "$"
HINT = (
    "Check the source's Record Path: the dotted path to the array of records, e.g. "
    "export.rows, or $ when the document itself is the array"
)


def path_parts(record_path: str) -> list[str]:
    """``$.export.rows`` / ``export.rows`` -> ["export", "rows"]; ``$`` -> []."""
    text = record_path.strip()
    if text == ROOT:
        return []
    if text.startswith(ROOT + "."):
        text = text[2:]
    return [part.strip() for part in text.split(".")]


class JsonDocumentReader(Reader):
    format = "json"
    label = "a JSON document"
    hint = HINT

    def sample(self, handle: IO[bytes], spec: SourceSpec, n: int) -> Typed:
        try:
            import ijson
        except ImportError as exc:  # a dependency: only a broken install lacks it
            raise MissingDependency("ijson", "json", "Reading JSON documents") from exc
        parts = path_parts(spec.record_path or ROOT)
        prefix = ".".join([*parts, "item"])
        records: list[dict[str, Any]] = []
        try:
            for number, item in enumerate(ijson.items(handle, prefix, use_float=True), 1):
                if len(records) >= n:
                    break
                if not isinstance(item, dict):
                    raise SourceError(
                        f"record {number} at {spec.record_path!r} is not a JSON object",
                        hint=HINT,
                    )
                records.append(item)
        except ijson.JSONError as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise SourceError(f"is not valid JSON ({reason})", hint=HINT) from exc
        if not records and n:
            raise SourceError(f"holds no records at record path {spec.record_path!r}", hint=HINT)
        return records_frame(records)

    def check_size(self, size: int, file: str, spec: SourceSpec) -> None:
        if size > DOCUMENT_LIMIT_BYTES:
            path = ".".join(path_parts(spec.record_path or ROOT)) or "."
            raise SourceError(
                f"is a JSON document of {size / 2**20:,.0f} MB; Spark reads a document as one "
                f"record, which works up to {DOCUMENT_LIMIT_BYTES // 2**20} MB",
                file=file,
                hint=f"Export it as JSON Lines (one record per line), e.g. jq -c '.{path}[]' "
                "in.json > out.jsonl, and set the source's format to json without a Record Path",
            )

    def read_code(
        self, var: str, name: str, read: SourceRead, columns: list[str], fresh: Callable[[str], str]
    ) -> ReadCode:
        parts = path_parts(read.record_path or ROOT)
        record = ddl({c: read.columns.get(c, "string") for c in columns})
        schema = record
        for depth in reversed(range(len(parts))):  # the records' array, inside the path
            inner = f"ARRAY<STRUCT<{schema}>>" if depth == len(parts) - 1 else f"STRUCT<{schema}>"
            schema = f"{sql_ident(parts[depth])} {inner}"
        schema += f", {sql_ident(CORRUPT_COLUMN)} STRING"
        array = ".".join(sql_ident(p) for p in parts)
        select = [f"F.inline(F.col({py_str(array)}))"] if parts else None
        where = f"at {'.'.join(parts)}" if parts else "(a top-level array)"
        return observed_read(
            var,
            name,
            f"a JSON document, one row per record {where}; a malformed document is counted.",
            [
                "spark.read",
                f".schema({py_str(schema)})",
                options_call(
                    {
                        "multiLine": "true",
                        "mode": "PERMISSIVE",
                        "columnNameOfCorruptRecord": CORRUPT_COLUMN,
                    }
                ),
                f".json({path_of(name)})",
            ],
            f"F.col({py_str(CORRUPT_COLUMN)}).isNotNull()",
            select,
            fresh,
            foldable=not parts,  # a malformed document has no records to pass on
        )

    def write_sample(self, frame: pd.DataFrame, spec: SourceSpec, path: Path) -> Path:
        rows: Any = json.loads(frame.to_json(orient="records", date_format="iso"))
        for part in reversed(path_parts(spec.record_path or ROOT)):
            rows = {part: rows}
        path.write_text(json.dumps(rows), encoding="utf-8")
        return path


READER = JsonDocumentReader()
