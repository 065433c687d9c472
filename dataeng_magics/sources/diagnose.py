"""After a run counted malformed records: which file, which line is the first one.

Spark counts malformed records in the run's single pass but cannot say where they are
(a count is all an ``Observation`` carries). This reads the source's files in order,
the way the run's reader parses them, until the first record it would refuse, so the
failed run names the file and the line. It runs only after such a failure, and stops
at the first bad record.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Collection, Iterator
from dataclasses import replace
from typing import IO, TYPE_CHECKING, Any

from dataeng_magics.errors import DataEngMagicsError
from dataeng_magics.mapping.model import Mapping, SourceSpec
from dataeng_magics.sources.files import list_files, open_binary
from dataeng_magics.sources.readers import reader_for

if TYPE_CHECKING:
    from dataeng_magics.run.validate import ValidationReport

_SHOWN = 100


def first_malformed(spec: SourceSpec, storage_options: dict[str, Any] | None = None) -> str | None:
    """``FILE line N: 'text'`` for the first malformed record of ``spec``, or None when
    none is found this way (for example, a JSON value of the wrong type)."""
    reader = reader_for(spec)
    source = list_files(spec.url, storage_options or {})
    for file in source.files:
        with open_binary(source.fs, file, reader.compressible) as handle:
            found = _FINDERS.get(reader.format if not spec.record_path else "document")
            hit = found(handle, spec) if found else None
        if hit is not None:
            line, text = hit
            where = f"line {line}" if line else "the document"
            return f"first in {source.shown(spec.path, file)}, {where}: {_cut(text)!r}"
    return None


def _cut(text: str) -> str:
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _lines(handle: IO[bytes], spec: SourceSpec) -> Iterator[str]:
    return io.TextIOWrapper(handle, encoding=spec.encoding, errors="replace", newline="")


def _csv(handle: IO[bytes], spec: SourceSpec) -> tuple[int, str] | None:
    from dataeng_magics.sources.readers.csv import records

    width: int | None = None
    for line, fields, closed in records(_lines(handle, spec), spec.delimiter):
        if fields == [""]:
            continue  # a blank line
        text = spec.delimiter.join(fields)
        if not closed:
            return line, f"{text} (a quote opened here is never closed)"
        if width is None:
            width = len(fields)
        elif len(fields) != width:
            return line, f"{text} ({len(fields)} fields, not {width})"
    return None


def _fixed_width(handle: IO[bytes], spec: SourceSpec) -> tuple[int, str] | None:
    from dataeng_magics.sources.readers.fixed_width import record_length

    need = record_length(spec.layout)
    for number, raw in enumerate(io.TextIOWrapper(handle, encoding=spec.encoding), 1):
        line = raw.rstrip("\n")
        if line and len(line) < need:
            return number, f"{line} ({len(line)} characters, the layout needs {need})"
    return None


def _json_lines(handle: IO[bytes], spec: SourceSpec) -> tuple[int, str] | None:
    for number, line in enumerate(io.TextIOWrapper(handle, encoding=spec.encoding), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            return number, f"{line.strip()} ({exc.msg})"
        if not isinstance(record, dict):
            return number, f"{line.strip()} (not a JSON object)"
    return None


def _document(handle: IO[bytes], spec: SourceSpec) -> tuple[int, str] | None:
    import ijson

    try:
        for _ in ijson.parse(handle):
            pass
    except ijson.JSONError as exc:
        return 0, f"not valid JSON: {exc}"
    return None


def _xml(handle: IO[bytes], spec: SourceSpec) -> tuple[int, str] | None:
    from xml.etree.ElementTree import ParseError

    from defusedxml.ElementTree import iterparse

    try:
        for _, element in iterparse(handle, events=("end",)):
            element.clear()
    except ParseError as exc:
        return exc.position[0], f"not well-formed XML: {exc}"
    return None


_FINDERS = {
    "csv": _csv,
    "fixed-width": _fixed_width,
    "json": _json_lines,
    "document": _document,
    "xml": _xml,
}


def locate_malformed(report: ValidationReport, mapping: Mapping, storage: Any) -> None:
    """Add to each failed ``malformed`` check of ``report`` where its first bad record is.
    ``storage`` is the settings' named storage connections."""
    from dataeng_magics.connections import storage_options

    found: dict[str, str] = {}
    for table in report.tables:
        for index, check in enumerate(table.checks):
            spec = mapping.sources.get(check.column)
            if check.kind != "malformed" or check.passed or spec is None:
                continue
            if spec.name not in found:
                try:
                    where = first_malformed(spec, storage_options(spec.path, storage))
                except (DataEngMagicsError, OSError, ValueError) as exc:
                    where = f"could not read the files again to locate them ({exc})"
                found[spec.name] = where or "not located by re-reading the files"
            table.checks[index] = replace(check, detail=found[spec.name])


def unclosed_quotes(
    report: ValidationReport, mapping: Mapping, scanned: Collection[str] = ()
) -> None:
    """Count a local CSV cut off inside a quoted field as one malformed record: Spark's
    parser reads such a last record to the end of the file without complaint. An odd
    number of quote characters (counted at C speed) makes a file a suspect; the record
    parser then confirms it, so a stray quote in an unquoted field is not reported.
    ``scanned`` sources are not read again: ``spans_lines`` already found their quote
    count even (they were read by lines)."""
    for table in report.tables:
        for index, check in enumerate(table.checks):
            spec = mapping.sources.get(check.column)
            if check.kind != "malformed" or not check.passed or spec is None:
                continue
            if spec.format != "csv" or "://" in spec.path or check.column in scanned:
                continue
            try:  # the run read the files; a platform may have read them elsewhere
                hit = first_malformed(spec) if _odd_quotes(spec) else None
            except (DataEngMagicsError, OSError):
                continue
            if hit is not None and "never closed" in hit:
                table.checks[index] = replace(check, failed=1)


#: Encodings whose bytes for ``"``, ``\n`` and ``\r`` are those characters and nothing
#: else (UTF-16 spreads a character over bytes that may equal them: never scanned).
_BYTE_SAFE = ("utf-8", "utf-8-sig", "ascii", "latin-1", "iso8859-", "cp125")
_CHUNK = 1 << 23


def spans_lines(spec: SourceSpec, chunk: int = _CHUNK) -> bool:
    """Whether any record of the local CSV ``spec`` may run over a line break, so the
    run must read it with ``multiLine`` (one task per file) rather than by lines (split
    across cores). Exact for a well-formed file; anything it cannot prove, a file it
    cannot read, an encoding or a stray quote it cannot reason about, answers True."""
    import codecs

    try:
        encoding = codecs.lookup(spec.encoding).name
        sep = spec.delimiter.encode(encoding)
    except (LookupError, UnicodeError):
        return True
    if not encoding.startswith(_BYTE_SAFE) or b'"' in sep or b"\n" in sep or b"\r" in sep:
        return True
    try:
        source = list_files(spec.path, {})
        reader = reader_for(spec)
        for file in source.files:
            with open_binary(source.fs, file, reader.compressible) as handle:
                if quoted_break(handle, sep, chunk):
                    return True
    except (DataEngMagicsError, OSError, ValueError):
        return True
    return False


def quoted_break(handle: IO[bytes], sep: bytes = b",", chunk: int = _CHUNK) -> bool:
    """Whether a ``\n`` or ``\r`` byte sits inside quotes, for quote = escape = ``"``
    (a doubled quote keeps the count's parity): the running count of quotes is odd at
    some line break, or at the end (a file cut inside a quote). Parity is what Spark's
    parser sees only if every quote that makes the count odd opens a field (after the
    separator, a line break, the file's start or its BOM) or follows a quote (``""``);
    a quote anywhere else is a literal character of an unquoted field, which parity
    cannot follow, so the file counts as spanning lines (``multiLine`` reads it right
    either way). ``chunk`` bytes at a time, on every core (numpy works without the
    GIL): each chunk is judged for both parities before it, and the verdicts are read
    in order, the parity carried over."""
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    workers = os.cpu_count() or 1
    back = max(len(sep), 3)  # the bytes before a chunk that a quote's field start looks back on
    tail = b""
    odd = 0  # quotes before the oldest pending chunk, modulo 2
    pending: deque[Future[tuple[int, bool, bool]]] = deque()

    def settled() -> bool:
        """The oldest pending chunk's verdict, given the quotes before it."""
        nonlocal odd
        parity, *broken = pending.popleft().result()
        before, odd = odd, odd ^ parity
        return broken[before]

    first = True
    with ThreadPoolExecutor(workers, thread_name_prefix="dem-scan") as pool:
        while data := handle.read(chunk):
            if first and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]  # a quote right after the BOM opens the first field
            first = False
            pending.append(pool.submit(_chunk_breaks, tail, data, sep))
            tail = (tail + data[-back:])[-back:]
            if len(pending) > workers and settled():
                return True  # leaving the pool waits for the few chunks in flight
        while pending:
            if settled():
                return True
    return bool(odd)


def _chunk_breaks(tail: bytes, data: bytes, sep: bytes) -> tuple[int, bool, bool]:
    """For one chunk (``tail``: the bytes just before it): its count of quotes modulo 2,
    and whether it breaks a quote, with an even and with an odd count before it."""
    if b'"' not in data:
        return 0, False, b"\n" in data or b"\r" in data
    import numpy as np

    body = np.frombuffer(data, dtype=np.uint8)
    quoted = np.flatnonzero(body == 0x22)  # positions: the count before a byte is a search
    breaks = np.flatnonzero((body == 0x0A) | (body == 0x0D))
    before = np.searchsorted(quoted, breaks) & 1
    buf = np.frombuffer(tail + data, dtype=np.uint8)

    def broken(odd: int) -> bool:  # ``quoted[odd::2]``: the quotes that make the count odd
        return bool((before != odd).any()) or not _open_fields(buf, quoted[odd::2] + len(tail), sep)

    return len(quoted) & 1, broken(0), broken(1)


def _open_fields(buf: Any, at: Any, sep: bytes) -> bool:
    """Whether every quote at ``at`` in ``buf`` opens a field or follows a quote."""
    import numpy as np

    first = at == 0  # the file's first byte (or the first after its BOM)
    prev = buf[np.maximum(at - 1, 0)]
    fine = first | (prev == 0x0A) | (prev == 0x0D) | (prev == 0x22)
    after_sep = at >= len(sep)
    for k, byte in enumerate(sep):
        after_sep &= buf[np.maximum(at - len(sep) + k, 0)] == byte
    return bool((fine | after_sep).all())


def _odd_quotes(spec: SourceSpec) -> bool:
    source = list_files(spec.path, {})
    reader = reader_for(spec)
    for file in source.files:
        count = 0
        with open_binary(source.fs, file, reader.compressible) as handle:
            while chunk := handle.read(1 << 23):
                count += chunk.count(b'"')
        if count % 2:
            return True
    return False
