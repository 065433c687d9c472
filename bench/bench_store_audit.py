"""Benchmark the cache store and the audit log at realistic sizes, on both backends.

Run: ``python bench/bench_store_audit.py [--entries 100000] [--events 1000000]
[--backend sqlite|postgresql|both] [--postgres-url URL]``. PostgreSQL: the URL of an
empty database whose user may create tables, or else a throwaway server started as the
tests start theirs (Debian's postgresql package). Each backend's figures are printed on
one line, as ``name=value`` pairs.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # run from a checkout; tests/pg_server.py

from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

from sqlalchemy import insert  # noqa: E402

from dataeng_magics.canonical import sha256_text  # noqa: E402
from dataeng_magics.state.audit import GENESIS_HASH, record_hash  # noqa: E402
from dataeng_magics.state.backend import audit_of  # noqa: E402
from dataeng_magics.state.db import upgrade_target  # noqa: E402
from dataeng_magics.state.schema import entries as entries_table  # noqa: E402
from dataeng_magics.state.store import Entry, Store, _entry_to_row  # noqa: E402


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def bench_store(target: Path | str, entries: int, lookups: int) -> dict[str, float]:
    store = Store(target)
    code = "df = spark.read.parquet(path)\n" * 20
    keys = [sha256_text(f"key-{i}") for i in range(entries)]
    started = time.perf_counter()
    # One transaction for the whole load: this measures lookups, not 100,000 fsyncs.
    # put() is timed separately below.
    rows = []
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
        rows.append(_entry_to_row(entry))
    with store._tx() as conn:
        for chunk in range(0, len(rows), 10_000):
            conn.execute(insert(entries_table), rows[chunk : chunk + 10_000])
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


def _records(events: int) -> Iterator[dict[str, Any]]:
    prev_hash = GENESIS_HASH
    base = datetime(2025, 1, 1, tzinfo=UTC)
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
        yield record


def bench_audit(target: Path | str, events: int) -> dict[str, float]:
    log = audit_of(Store(target))
    started = time.perf_counter()
    log.extend(_records(events))  # one fsync (JSONL) or one transaction (PostgreSQL)
    build_s = time.perf_counter() - started

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
        "audit_verify_s": verify_s,
        "audit_append_p50_ms": append_ms,
    }


def _targets(args: argparse.Namespace, tmp: Path) -> Iterator[tuple[str, Path | str]]:
    """Each backend's empty store: a SQLite path; the given PostgreSQL URL, or a
    throwaway server's database."""
    if args.backend in ("sqlite", "both"):
        yield "sqlite", tmp / "sqlite" / "store.sqlite"
    if args.backend not in ("postgresql", "both"):
        return
    if args.postgres_url:
        upgrade_target(args.postgres_url)
        yield "postgresql", args.postgres_url
        return
    import pg_server

    root = tmp / "postgres"  # inside a mkdtemp folder, which nobody can reach
    root.mkdir()
    tmp.chmod(0o711)
    server = pg_server.start(root)
    try:
        server.admin("postgres", "CREATE DATABASE bench")
        upgrade_target(server.url("bench"))
        yield "postgresql", server.url("bench")
    finally:
        pg_server.stop(server)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--postgres-url", help="an empty database (default: a throwaway server)")
    args = parser.parse_args()
    print(f"entries={args.entries} lookups={args.lookups} events={args.events}")
    with tempfile.TemporaryDirectory() as tmp:
        for backend, target in _targets(args, Path(tmp)):
            figures = bench_store(target, args.entries, args.lookups)
            figures |= bench_audit(target, args.events)
            print(f"backend={backend} " + " ".join(f"{k}={v:.3g}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
