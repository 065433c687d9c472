"""Benchmark the cache store and the audit log at realistic sizes.

Run: ``python bench/bench_store_audit.py [--entries 100000] [--events 1000000]``.
The figures are printed on the last line, as ``name=value`` pairs.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from dataeng_magics.canonical import canonical_json, sha256_text
from dataeng_magics.state.audit import GENESIS_HASH, AuditLog, record_hash
from dataeng_magics.state.store import Entry, Store, _entry_to_row


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bench_store(folder: Path, entries: int, lookups: int) -> dict[str, float]:
    store = Store(folder / "store.sqlite")
    code = "df = spark.read.parquet(path)\n" * 20
    keys = [sha256_text(f"key-{i}") for i in range(entries)]
    started = time.perf_counter()
    # One transaction for the whole load: this measures lookups, not 100,000 fsyncs.
    # put() is timed separately below.
    with store._tx() as conn:
        for i, key in enumerate(keys):
            entry = Entry(
                key=key,
                client=f"CLIENT{i % 1000}",
                mapping_file=f"mappings/client{i}.xlsx",
                plan_json='{"steps": []}' * 20,
                pseudocode="target.col = source.col\n" * 20,
                code=code,
                plan_sha256=sha256_text(str(i)),
                code_sha256=sha256_text(code),
            )
            row = _entry_to_row(entry)
            columns = ", ".join(row)
            values = ", ".join(":" + name for name in row)
            conn.execute(f"INSERT INTO entries ({columns}) VALUES ({values})", row)
    load_s = time.perf_counter() - started

    samples = 200
    started = time.perf_counter()
    for i in range(samples):
        store.put(
            Entry(
                key=keys[i],
                client="C",
                mapping_file="m.xlsx",
                plan_json="{}",
                pseudocode="",
                plan_sha256="x",
            )
        )
    put_ms = (time.perf_counter() - started) / samples * 1000

    rng = random.Random(0)
    timings = []
    for key in rng.choices(keys, k=lookups):
        t0 = time.perf_counter()
        found = store.get(key)
        timings.append((time.perf_counter() - t0) * 1e6)
        assert found is not None
    return {
        "store_load_s": load_s,
        "store_put_ms": put_ms,
        "store_get_p50_us": statistics.median(timings),
        "store_get_p99_us": _percentile(timings, 0.99),
    }


def bench_audit(folder: Path, events: int) -> dict[str, float]:
    path = folder / "audit.jsonl"
    started = time.perf_counter()
    prev_hash = GENESIS_HASH
    base = datetime(2025, 1, 1, tzinfo=UTC)
    with path.open("w", encoding="utf-8") as file:
        for seq in range(1, events + 1):
            record = {
                "seq": seq,
                "time": (base + timedelta(seconds=seq)).isoformat(timespec="microseconds"),
                "event": "run_end",
                "actor": "bench",
                "client": f"CLIENT{seq % 1000}",
                "key": sha256_text(str(seq % 5000)),
                "plan_sha256": sha256_text("plan"),
                "code_sha256": sha256_text("code"),
                "details": {"outcome": "succeeded", "rows_out": seq, "platform": "local"},
                "prev_hash": prev_hash,
            }
            record["hash"] = prev_hash = record_hash(record)
            file.write(canonical_json(record) + "\n")
        file.flush()
        os.fsync(file.fileno())  # so the first timed append does not pay for this write
    build_s = time.perf_counter() - started

    log = AuditLog(path)
    started = time.perf_counter()
    result = log.verify()
    verify_s = time.perf_counter() - started
    assert result.ok and result.count == events, result

    appends = []
    for _ in range(20):
        t0 = time.perf_counter()
        log.append("bench", actor="bench", details={"n": 1})
        appends.append((time.perf_counter() - t0) * 1000)
    append_ms = statistics.median(appends)
    assert log.verify().count == events + 20
    return {
        "audit_build_s": build_s,
        "audit_verify_1M_s": verify_s,
        "audit_append_p50_at_1M_ms": append_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        figures = bench_store(Path(tmp), args.entries, args.lookups)
        figures |= bench_audit(Path(tmp), args.events)
    print(f"entries={args.entries} lookups={args.lookups} events={args.events}")
    print(" ".join(f"{name}={value:.3g}" for name, value in figures.items()))


if __name__ == "__main__":
    main()
