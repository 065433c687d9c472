"""Benchmark: ``sample()`` must take the same time on a 2 MB and a 2 GB file.

Run: ``python bench/bench_sampling.py [--csv-gb 2] [--parquet-mb 512] [--repeats 7]``.
Writes its files under a temporary folder and deletes them. The last line is the
verdict; the exit status is 1 when the CSV ratio misses its target. The big file is
timed from the page cache like the small one, so the ratio isolates what ``sample``
reads, not the disk.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from dataeng_magics.mapping.model import SourceFormat, SourceSpec
from dataeng_magics.sources.sampling import sample

MB = 1 << 20
TARGET = 1.5


def csv_block(size: int) -> bytes:
    """About ``size`` bytes of realistic rows, to be repeated to any file size."""
    rows, total, i = [], 0, 0
    while total < size:
        row = f"{i},{i * 1.25:.2f},client {i % 997},2024-{i % 12 + 1:02d}-01,{i % 2 == 0}\n"
        rows.append(row)
        total += len(row)
        i += 1
    return "".join(rows).encode()


def write_csv(path: Path, size: int, block: bytes) -> None:
    with path.open("wb") as out:
        out.write(b"id,amount,client,day,active\n")
        for _ in range(-(-size // len(block))):  # round up
            out.write(block)


def write_parquet(path: Path, size: int, block: bytes) -> None:
    """Repeats one row group until the file reaches ``size``: many row groups, as in real files."""
    lines = block.decode().splitlines()
    table = pa.table({"id": list(range(len(lines))), "line": lines})
    with pq.ParquetWriter(path, table.schema) as writer:
        writer.write_table(table)
        while path.stat().st_size < size:
            writer.write_table(table)


def median_ms(spec: SourceSpec, repeats: int) -> float:
    sample(spec)  # warm up: imports, page cache
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = sample(spec)
        times.append((time.perf_counter() - start) * 1000)
        assert len(result.frame) == 100
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv-gb", type=float, default=2.0)
    parser.add_argument("--parquet-mb", type=float, default=512.0)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench_sampling_"))
    try:
        block = csv_block(MB)
        files: dict[str, tuple[Path, int, SourceFormat]] = {
            "csv_2MB": (folder / "small.csv", 2 * MB, "csv"),
            "csv_2GB": (folder / "big.csv", int(args.csv_gb * 1024 * MB), "csv"),
            "parquet_2MB": (folder / "small.parquet", 2 * MB, "parquet"),
            "parquet_big": (folder / "big.parquet", int(args.parquet_mb * MB), "parquet"),
        }
        ms: dict[str, float] = {}
        for name, (path, size, fmt) in files.items():
            start = time.perf_counter()
            (write_csv if fmt == "csv" else write_parquet)(path, size, block)
            written = time.perf_counter() - start
            ms[name] = median_ms(SourceSpec(name=name, path=str(path), format=fmt), args.repeats)
            print(
                f"{name}: {path.stat().st_size / MB:,.0f} MB written in {written:.1f}s, "
                f"sample() median {ms[name]:.2f} ms over {args.repeats} runs"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    parquet_ratio = ms["parquet_big"] / ms["parquet_2MB"]
    print(
        f"parquet_big_over_2MB_ratio={parquet_ratio:.2f} parquet_2MB_ms={ms['parquet_2MB']:.2f} "
        f"parquet_big_ms={ms['parquet_big']:.2f}"
    )
    ratio = ms["csv_2GB"] / ms["csv_2MB"]
    print(
        f"csv_2GB_over_2MB_ratio={ratio:.2f} (target <= {TARGET}) "
        f"csv_2MB_ms={ms['csv_2MB']:.2f} csv_2GB_ms={ms['csv_2GB']:.2f}"
    )
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
