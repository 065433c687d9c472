"""Benchmark: what reading CSV with ``multiLine`` (as the compiled code does) costs.

A quoted line break must stay inside its record wherever it occurs, so the compiled
CSV read uses Spark's ``multiLine`` parser. That parser cannot split a file: one task
reads each file, where the line-based reader splits a large file into 128 MB tasks.
This measures one full parse (every column, ``noop`` sink) of one large CSV both ways,
and of the same data as parts, on local Spark.

Run: ``python bench/bench_csv_multiline.py [--gb 1] [--parts 8] [--data-dir DIR]``.
The machine's core count bounds what splitting can gain (2 cores here); on a cluster the
single-file cost of ``multiLine`` grows with the cores left idle.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

MB = 1 << 20
HEADER = b"id,amount,client,day,note\n"


def write(path: Path, size: int) -> None:
    rows = "".join(
        f'{i},{i * 1.25:.2f},client {i % 997},2024-{i % 12 + 1:02d}-01,"note, {i % 7}"\n'
        for i in range(20_000)
    ).encode()
    with path.open("wb") as out:
        out.write(HEADER)
        for _ in range(max(1, size // len(rows))):
            out.write(rows)


def parse_seconds(spark: object, path: str, multiline: bool) -> tuple[float, int]:
    reader = spark.read.options(  # type: ignore[attr-defined]
        header="true", multiLine=str(multiline).lower(), quote='"', escape='"'
    ).schema("id STRING, amount STRING, client STRING, day STRING, note STRING, "
             "_corrupt_record STRING")  # fmt: skip
    frame = reader.option("columnNameOfCorruptRecord", "_corrupt_record").csv(path)
    started = time.perf_counter()
    frame.write.format("noop").mode("overwrite").save()
    return time.perf_counter() - started, frame.rdd.getNumPartitions()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--data-dir", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from pyspark.sql import SparkSession

    folder = args.data_dir or Path(tempfile.mkdtemp(prefix="bench_multiline_"))
    folder.mkdir(parents=True, exist_ok=True)
    size = int(args.gb * 1024 * MB)
    single = folder / f"one_{size // MB}MB.csv"
    parts = folder / f"parts_{size // MB}MB_{args.parts}"
    try:
        if not single.exists():
            write(single, size)
        if not parts.exists():
            parts.mkdir()
            for index in range(args.parts):
                write(parts / f"part-{index:05d}.csv", size // args.parts)
        spark = SparkSession.builder.master("local[*]").config("spark.ui.enabled", "false")
        session = spark.getOrCreate()
        session.sparkContext.setLogLevel("ERROR")
        cores = session.sparkContext.defaultParallelism
        print(f"local Spark {session.version}, {cores} cores, {size / MB:,.0f} MB of CSV")
        parse_seconds(session, str(single), False)  # warm up the JVM and the page cache
        results = {}
        for label, path in (("one file", single), (f"{args.parts} parts", parts)):
            for multiline in (False, True):
                seconds, tasks = parse_seconds(session, str(path), multiline)
                results[(label, multiline)] = seconds
                print(f"{label:>9}, multiLine={str(multiline).lower():5}: {seconds:6.1f} s "
                      f"in {tasks} task(s)")  # fmt: skip
        for label in ("one file", f"{args.parts} parts"):
            ratio = results[(label, True)] / results[(label, False)]
            print(f"{label}: multiLine costs x{ratio:.2f}")
    finally:
        if args.data_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
