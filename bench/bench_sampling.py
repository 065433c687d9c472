"""Benchmark: ``sample()`` must take the same time on a 2 MB file and a file of gigabytes.

Run: ``python bench/bench_sampling.py [--data-dir DIR] [--only csv,gzip,...] [--repeats 7]``
with the sizes below (defaults: CSV 2 GB, Parquet 512 MB, gzip CSV 2 GB, fixed-width 1 GB,
JSON document 500 MB, XML 500 MB), each against a 2 MB file of the same format. The
target is a ratio of at most 1.5 for every format but Parquet (reported only: its footer
lists every row group, so it grows with the file); the exit status is 1 when one misses.

Files are written once into ``--data-dir`` and reused by later runs (without it, into a
temporary folder deleted at the end). Big files are timed from the page cache like the
small ones, so the ratio isolates what ``sample`` reads, not the disk.

The JSON document is timed through its reader's sample side: ``sample()`` itself refuses
documents over 256 MB before reading them, because Spark could not run them (see
``sources/readers/json_document.py``); the streaming read is what is measured here.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dataeng_magics.mapping.model import LayoutField, SourceSpec
from dataeng_magics.sources.files import open_binary
from dataeng_magics.sources.readers import reader_for
from dataeng_magics.sources.sampling import sample

MB = 1 << 20
TARGET = 1.5
LAYOUT = (
    LayoutField(name="id", start=1, length=10),
    LayoutField(name="amount", start=11, length=12),
    LayoutField(name="client", start=23, length=20),
    LayoutField(name="day", start=43, length=8),
    LayoutField(name="active", start=51, length=1),
)


def rows(size: int) -> list[tuple[int, str, str, str, bool]]:
    """About ``size`` bytes worth of realistic rows, to be repeated to any file size."""
    out, total, i = [], 0, 0
    while total < size:
        row = (i, f"{i * 1.25:.2f}", f"client {i % 997}", f"2024{i % 12 + 1:02d}01", i % 2 == 0)
        out.append(row)
        total += 60
        i += 1
    return out


def repeat(path: Path, size: int, head: bytes, block: bytes, tail: bytes = b"") -> None:
    with path.open("wb") as out:
        out.write(head)
        for _ in range(max(1, -(-(size - len(head) - len(tail)) // len(block)))):
            out.write(block)
        out.write(tail)


def write_csv(path: Path, size: int) -> None:
    block = "".join(f"{i},{a},{c},{d},{x}\n" for i, a, c, d, x in rows(MB)).encode()
    repeat(path, size, b"id,amount,client,day,active\n", block)


def write_gzip(path: Path, size: int) -> None:
    """Concatenated gzip members (a valid gzip file, as ``cat a.gz b.gz`` makes): the first
    holds the header, each later one the same varied rows."""
    block = "".join(f"{i},{a},{c},{d},{x}\n" for i, a, c, d, x in rows(4 * MB)).encode()
    member = gzip.compress(block, compresslevel=6, mtime=0)
    head = gzip.compress(b"id,amount,client,day,active\n" + block, compresslevel=6, mtime=0)
    repeat(path, size, head, member)


def write_fixed(path: Path, size: int) -> None:
    block = "".join(
        f"{i:010d}{a:>12}{c:<20}{d:<8}{'Y' if x else 'N'}\n" for i, a, c, d, x in rows(MB)
    ).encode()
    repeat(path, size, b"", block)


def write_json_document(path: Path, size: int) -> None:
    records = [
        json.dumps({"id": i, "amount": float(a), "client": c, "day": d, "active": x})
        for i, a, c, d, x in rows(MB)
    ]
    block = (",\n".join(records) + ",\n").encode()
    last = json.dumps({"id": -1, "amount": 0.0, "client": "", "day": "", "active": False})
    repeat(path, size, b'{"export": {"generated": "2025-01-01", "rows": [\n', block,
           f"{last}\n]}}}}\n".encode())  # fmt: skip


def write_xml(path: Path, size: int) -> None:
    block = "".join(
        f'<row id="{i}"><amount currency="EUR">{a}</amount><client>{c}</client>'
        f"<day>{d}</day><active>{str(x).lower()}</active></row>\n"
        for i, a, c, d, x in rows(MB)
    ).encode()
    repeat(path, size, b'<?xml version="1.0"?>\n<rows>\n', block, b"</rows>\n")


def write_parquet(path: Path, size: int) -> None:
    """Repeats one row group until the file reaches ``size``: many row groups, as in real files."""
    data = rows(MB)
    table = pa.table({"id": [r[0] for r in data], "client": [r[2] for r in data]})
    with pq.ParquetWriter(path, table.schema) as writer:
        writer.write_table(table)
        while path.stat().st_size < size:
            writer.write_table(table)


Writer = Callable[[Path, int], None]
FORMATS: dict[str, tuple[str, Writer, SourceSpec]] = {
    "csv": (".csv", write_csv, SourceSpec(name="csv", path="", format="csv")),
    "parquet": (".parquet", write_parquet, SourceSpec(name="pq", path="", format="parquet")),
    "gzip": (".csv.gz", write_gzip, SourceSpec(name="gz", path="", format="csv")),
    "fixed": (".txt", write_fixed,
              SourceSpec(name="fw", path="", format="fixed-width", header=False, layout=LAYOUT)),
    "json_document": (".json", write_json_document,
                      SourceSpec(name="doc", path="", format="json", record_path="export.rows")),
    "xml": (".xml", write_xml, SourceSpec(name="xml", path="", format="xml", row_tag="row")),
}  # fmt: skip


def timed(spec: SourceSpec) -> int:
    """One sample of ``spec``; the JSON document through its reader (see the docstring)."""
    if spec.record_path:
        from dataeng_magics.sources.files import list_files

        source = list_files(spec.path, {})
        with open_binary(source.fs, source.first, True) as handle:
            frame, _ = reader_for(spec).sample(handle, spec, 100)
        return len(frame)
    return len(sample(spec).frame)


def median_ms(spec: SourceSpec, repeats: int) -> float:
    timed(spec)  # warm up: imports, page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        count = timed(spec)
        times.append((time.perf_counter() - start) * 1000)
        assert count == 100, count
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="write files here once and reuse them")
    parser.add_argument("--only", default=",".join(FORMATS), help="comma-separated formats")
    parser.add_argument("--csv-gb", type=float, default=2.0)
    parser.add_argument("--parquet-mb", type=float, default=512.0)
    parser.add_argument("--gzip-gb", type=float, default=2.0)
    parser.add_argument("--fixed-gb", type=float, default=1.0)
    parser.add_argument("--json-mb", type=float, default=500.0)
    parser.add_argument("--xml-mb", type=float, default=500.0)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    big = {
        "csv": args.csv_gb * 1024 * MB, "parquet": args.parquet_mb * MB,
        "gzip": args.gzip_gb * 1024 * MB, "fixed": args.fixed_gb * 1024 * MB,
        "json_document": args.json_mb * MB, "xml": args.xml_mb * MB,
    }  # fmt: skip
    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="bench_sampling_"))
    folder.mkdir(parents=True, exist_ok=True)
    ratios: dict[str, float] = {}
    try:
        for name in args.only.split(","):
            suffix, write, base = FORMATS[name]
            ms: dict[str, float] = {}
            for label, size in (("2MB", 2 * MB), ("big", int(big[name]))):
                path = folder / f"{name}_{size // MB}MB{suffix}"
                started = time.perf_counter()
                if not path.exists():
                    write(path, size)
                written = time.perf_counter() - started
                spec = base.model_copy(update={"path": str(path)})
                ms[label] = median_ms(spec, args.repeats)
                print(
                    f"{name}_{label}: {path.stat().st_size / MB:,.0f} MB (written in "
                    f"{written:.1f}s), sample median {ms[label]:.2f} ms over {args.repeats} runs"
                )
            ratios[name] = ms["big"] / ms["2MB"]
            print(f"{name}_big_over_2MB_ratio={ratios[name]:.2f} (target <= {TARGET})")
    finally:
        if args.data_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    missed = [n for n, r in ratios.items() if r > TARGET and n != "parquet"]
    print("all within target" if not missed else f"over target: {', '.join(missed)}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
