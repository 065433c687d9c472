"""Benchmark: what the after-run check for a CSV cut off inside a quoted field costs.

Spark's ``multiLine`` parser reads a last record whose quote never closes to the end of
the file without counting it malformed, so after a local run each local CSV source is
read once more to count its quote characters (``bytes.count``, C speed); only an odd
count runs the record parser that confirms and locates it. This measures that count on
one large CSV, against reading the file without counting (the disk's and cache's share).

Run: ``python bench/bench_unclosed_quotes.py [--mb 512] [--data-dir DIR]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

MB = 1 << 20


def write(path: Path, size: int) -> None:
    rows = "".join(
        f'{i},{i * 1.25:.2f},client {i % 997},"note, {i % 7}"\n' for i in range(20_000)
    ).encode()
    with path.open("wb") as out:
        out.write(b"id,amount,client,note\n")
        for _ in range(max(1, size // len(rows))):
            out.write(rows)


def seconds(path: Path, count: bool) -> float:
    start = time.perf_counter()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 23):
            if count:
                chunk.count(b'"')
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(dir=args.data_dir))
    try:
        path = folder / "big.csv"
        write(path, args.mb * MB)
        size = path.stat().st_size / MB
        seconds(path, False)  # warm the page cache, as right after the run
        read = min(seconds(path, False) for _ in range(3))
        counted = min(seconds(path, True) for _ in range(3))
        print(f"{size:,.0f} MB: read {read:.2f} s, read and count quotes {counted:.2f} s "
              f"({size / counted:,.0f} MB/s)")  # fmt: skip
    finally:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
