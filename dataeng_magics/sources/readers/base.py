"""What every reader shares: the two sides a format implements, and type inference.

A reader's sample side reads the first ``n`` records of one file from an open binary
stream (already decompressed) and names every column's Spark type; its compile side
emits the Spark read for the whole source (all its files), so what the sample saw is
what the run reads. The run reads text formats (``compile.safety.TEXT_FORMATS``: CSV,
Excel, fixed-width, XML) as text; their sample types say how SQL rules and lookup keys
compare them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

import pandas as pd
import pyarrow as pa

from dataeng_magics.compile.emit import call, chain
from dataeng_magics.compile.safety import comment_text, py_str, sql_ident

if TYPE_CHECKING:
    from dataeng_magics.mapping.model import SourceSpec
    from dataeng_magics.plan.model import SourceRead

Typed = tuple[pd.DataFrame, dict[str, str]]

#: Spark's column for records it could not parse (PERMISSIVE mode); never a source column.
CORRUPT_COLUMN = "_corrupt_record"
_PANDAS_DTYPE: dict[str, Any] = {"boolean": "boolean", "bigint": "Int64", "double": "Float64"}


#: The helper column a folded read (see ``ReadCode``) marks its malformed records with,
#: when the read ends in a select that would drop the column they are recognised by.
MALFORMED_FLAG = "_malformed"


@dataclass(frozen=True)
class ReadCode:
    """The compiled read of one source: code lines that leave a DataFrame in ``var``,
    and the ``Observation`` (if any) that counts its malformed records in the same pass.

    ``folded`` is the same read with no ``Observation`` of its own: its malformed records
    stay in the frame, marked by the Column expression ``malformed``, for the one table
    that reads the source to count and drop in its own observation (each
    ``Observation`` splits Spark's generated code and costs a pass over the rows). None
    when the read cannot pass them on (a JSON document's records only exist once parsed).
    """

    lines: list[str]
    observation: str | None = None
    folded: list[str] | None = None
    malformed: str | None = None

    def after(self, head: list[str]) -> ReadCode:
        """The read with ``head`` lines before both variants."""
        folded = None if self.folded is None else [*head, *self.folded]
        return ReadCode([*head, *self.lines], self.observation, folded, self.malformed)


class Reader:
    """One source format: its sample side and its compile side."""

    format: ClassVar[str]
    label: ClassVar[str]  # "CSV": how messages name the format
    hint: ClassVar[str]  # what to check when a file cannot be read as this format
    compressible: ClassVar[bool] = True  # .gz / .bz2 are decompressed as a stream
    multi_file: ClassVar[bool] = True  # a folder or glob of parts is one source

    def sample(self, handle: IO[bytes], spec: SourceSpec, n: int) -> Typed:
        """The first ``n`` records of one file and the Spark type of every column."""
        raise NotImplementedError

    def header(self, handle: IO[bytes], spec: SourceSpec) -> str | None:
        """The part of a file that must be the same in every part file (CSV: the first
        line), read without reading the rest; None when parts have nothing to compare."""
        return None

    def check_size(self, size: int, file: str, spec: SourceSpec) -> None:
        """Refuse a file the run could not read (JSON documents: one record for Spark)."""

    def read_code(
        self, var: str, name: str, read: SourceRead, columns: list[str], fresh: Callable[[str], str]
    ) -> ReadCode:
        """The Spark read of the whole source into ``var``, typed for ``columns`` (the
        ones the plan uses); ``fresh`` gives any further variable a name no other takes."""
        raise NotImplementedError

    def write_sample(self, frame: pd.DataFrame, spec: SourceSpec, path: Path) -> Path:
        """Write sample rows as a file this format's read code reads back the same
        (the preview runs the compiled code on them)."""
        raise NotImplementedError


def path_of(name: str) -> str:
    return f"source_paths[{py_str(name)}]"


def observed_read(
    var: str,
    name: str,
    comment: str,
    reader_calls: list[str],
    malformed: str,
    select: list[str] | None,
    fresh: Callable[[str], str],
    valid: str | None = None,
    foldable: bool = True,
) -> ReadCode:
    """A read chain that counts malformed records (``malformed``, a Column expression)
    into its own ``Observation`` and passes on only the well-formed ones (``valid``, by
    default the others), then ``select``s its columns; and (``foldable``) the folded
    variant, which passes the malformed records on, marked, for the table to count.

    Counting happens before any filter, so junk a filter would remove still counts.
    This is the hook for quarantine: the rows the ``where`` leaves out are the ones to
    keep aside instead of failing the run.
    """
    obs = fresh(f"{var}_malformed")
    metric = py_str(f"malformed:{name}")
    keep = [call("select", select)] if select else []
    calls = [
        *reader_calls,
        call("observe", [obs, f"F.count_if({malformed}).alias({metric})"]),
        f".where({valid or f'~({malformed})'})",
        *keep,
    ]
    head = f"# {comment_text(name)}: {comment}"
    lines = [head, f"{obs} = Observation()", *chain(var, calls)]
    if not foldable:
        return ReadCode(lines, observation=obs)
    # Records that are neither (a fixed-width file's blank lines) are no records at all.
    folded = [*reader_calls, *([f".where({valid} | ({malformed}))"] if valid else [])]
    marked = malformed
    if select:  # the select drops what the test reads: carry its answer as a column
        marked = f"F.col({py_str(MALFORMED_FLAG)})"
        folded.append(call("select", [*select, f"({malformed}).alias({py_str(MALFORMED_FLAG)})"]))
    return ReadCode(lines, obs, [head, *chain(var, folded)], marked)


def options_call(options: dict[str, str]) -> str:
    return call("options", [f"{k}={py_str(v)}" for k, v in options.items()])


def ddl(columns: dict[str, str]) -> str:
    """A DDL schema string: ``name TYPE, ...`` with every name quoted."""
    return ", ".join(f"{sql_ident(c)} {t.upper()}" for c, t in columns.items())


def nested_ddl(columns: dict[str, str]) -> str:
    """A DDL schema where dotted names (``address.city``) become nested structs, as
    Spark's XML and JSON readers nest child elements and objects."""
    tree: dict[str, Any] = {}
    for name, type_name in columns.items():
        node = tree
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"{name!r} is both a value and a parent of values")
        node[leaf] = type_name.upper()

    def render(node: dict[str, Any]) -> str:
        fields = []
        for key, value in node.items():
            kind = f"STRUCT<{render(value)}>" if isinstance(value, dict) else value
            fields.append(f"{sql_ident(key)} {kind}")
        return ", ".join(fields)

    return render(tree)


def flatten_columns(columns: list[str]) -> list[str] | None:
    """A select's columns that lift nested fields (``address.city``) to top-level columns
    of that name, so the rest of the code addresses every used column the same way."""
    if not any("." in c for c in columns):
        return None
    return [
        f"F.col({py_str('.'.join(sql_ident(p) for p in c.split('.')))}).alias({py_str(c)})"
        for c in columns
    ]


# -- type inference -------------------------------------------------------------------------


def spark_type_of(dtype: Any) -> str:
    """Spark's name for a pandas or Arrow dtype.

    Nested and unusual types come back as "string": a sample has to name every column,
    and a string is what the plan can always cast from.
    """
    if isinstance(dtype, pd.ArrowDtype):
        dtype = dtype.pyarrow_dtype
    if isinstance(dtype, pa.DataType):
        return arrow_type(dtype)
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


def arrow_type(t: pa.DataType) -> str:
    types = pa.types
    if types.is_dictionary(t):
        return arrow_type(t.value_type)
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


def infer(names: list[str], columns: list[list[Any]]) -> Typed:
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


_INTEGER = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")
_BOOLEAN = {"true", "false"}


def text_kind(values: list[str | None]) -> str:
    """The type a column of text reads as, the way pandas types a CSV column: integers
    (leading zeros too: ``0000000066`` is 66), decimals, true/false; surrounding spaces
    and blank values do not count."""
    kinds = set()
    for value in values:
        text = (value or "").strip()
        if not text:
            continue
        if _INTEGER.fullmatch(text) and -(2**63) <= int(text) < 2**63:
            kinds.add("bigint")
        elif _FLOAT.fullmatch(text):
            kinds.add("double")
        elif text.lower() in _BOOLEAN:
            kinds.add("boolean")
        else:
            return "string"
    return _WIDER.get(frozenset(kinds), "string") if kinds else "string"


def text_frame(names: list[str], columns: list[list[str | None]]) -> Typed:
    """Text values kept exactly as read (trailing spaces too), each column typed by
    ``text_kind``: what a text source looks like to the plan."""
    frame = {n: pd.array(v, dtype="string") for n, v in zip(names, columns, strict=True)}
    schema = {n: text_kind(v) for n, v in zip(names, columns, strict=True)}
    rows = len(columns[0]) if columns else 0
    return pd.DataFrame(frame, index=pd.RangeIndex(rows)), schema


def unique(names: list[str]) -> list[str]:
    """Duplicate headers get ``.1``, ``.2`` suffixes, as pandas gives CSV headers."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        count = seen.get(name, 0)
        seen[name] = count + 1
        out.append(f"{name}.{count}" if count else name)
    return out


def cell_text(value: Any) -> str | None:
    """A sample value as the text a text format holds (None stays None)."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return _text(value)
