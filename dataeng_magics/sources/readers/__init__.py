"""One reader per source format, each with a sample side and a compile side.

``reader_for`` picks the reader of a source from its format and options (``json`` with
a Record Path is a JSON document, without one JSON Lines). Compression and multi-file
sources are properties of a source (``sources.files``), not formats.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from dataeng_magics.sources.readers.base import CORRUPT_COLUMN, ReadCode, Reader

if TYPE_CHECKING:
    from dataeng_magics.mapping.model import SourceSpec
    from dataeng_magics.plan.model import SourceRead

__all__ = ["CORRUPT_COLUMN", "ReadCode", "Reader", "reader_for"]

_MODULES = {
    "csv": "csv",
    "parquet": "parquet",
    "excel": "excel",
    "json": "json_lines",
    "json document": "json_document",
    "xml": "xml",
    "fixed-width": "fixed_width",
}


def reader_for(source: SourceSpec | SourceRead) -> Reader:
    """The reader for a source (its spec when sampling, its plan entry when compiling)."""
    kind = "json document" if source.format == "json" and source.record_path else source.format
    module = import_module(f"{__name__}.{_MODULES[kind]}")
    reader: Reader = module.READER
    return reader
