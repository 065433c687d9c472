"""Parquet: the sample reads only the row groups that hold its rows; the run reads only
the columns the plan uses, with the types the sample showed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from dataeng_magics.compile.emit import chain
from dataeng_magics.compile.safety import comment_text, py_str
from dataeng_magics.sources.readers.base import ReadCode, Reader, Typed, ddl, path_of, spark_type_of

if TYPE_CHECKING:
    from dataeng_magics.mapping.model import SourceSpec
    from dataeng_magics.plan.model import SourceRead

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


class ParquetReader(Reader):
    format = "parquet"
    label = "Parquet"
    hint = "Check the source's format in the mapping; re-export the file if it was cut short"
    compressible = False  # compressed inside, by column chunk

    def sample(self, handle: IO[bytes], spec: SourceSpec, n: int) -> Typed:
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

    def read_code(
        self, var: str, name: str, read: SourceRead, columns: list[str], fresh: Callable[[str], str]
    ) -> ReadCode:
        schema = ddl({c: read.columns.get(c, "string") for c in columns})
        return ReadCode(
            [
                f"# {comment_text(name)}: {read.format}, reading only the columns used, "
                "with their types.",
                *chain(
                    var, ["spark.read", f".schema({py_str(schema)})", f".parquet({path_of(name)})"]
                ),
            ]
        )

    def write_sample(self, frame: pd.DataFrame, spec: SourceSpec, path: Path) -> Path:
        table = pa.Table.from_pandas(frame, preserve_index=False)
        if "://" not in spec.path and Path(spec.path).is_file():
            schema = pq.ParquetFile(spec.path).schema_arrow
            table = table.cast(pa.schema([schema.field(c) for c in frame.columns]))
        pq.write_table(table, path)
        return path


READER = ParquetReader()
