from __future__ import annotations

import multiprocessing
import shutil
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dataeng_magics.canonical import sha256_text
from dataeng_magics.errors import StoreError
from dataeng_magics.state.schema import HEAD
from dataeng_magics.state.store import Entry, Store

CODE = "df = spark.read.parquet(path)\ndf.write.parquet(out)\n"


def make_entry(key: str = "a" * 64, **fields: Any) -> Entry:
    values: dict[str, Any] = {
        "key": key,
        "client": "NORTHWIND",
        "mapping_file": "mappings/northwind.xlsx",
        "plan_json": '{"steps": []}',
        "pseudocode": "trade_id = source.id",
        "code": CODE,
        "plan_sha256": sha256_text('{"steps": []}'),
        "code_sha256": sha256_text(CODE),
    }
    values.update(fields)
    return Entry(**values)


@pytest.fixture
def store(state_target: Path | str) -> Store:
    """A fresh store on each backend (SQLite; PostgreSQL as the runtime user)."""
    return Store(state_target)


def test_put_get_round_trip_and_schema_on_disk(store: Store) -> None:
    entry = make_entry(conversation=[{"role": "user", "content": "Beträge in Tausend"}])
    stored = store.put(entry)
    assert stored == store.get(entry.key)
    assert stored.model_dump(exclude={"updated_at"}) == entry.model_dump(exclude={"updated_at"})
    assert stored.updated_at.tzinfo is not None and stored.updated_at.utcoffset() == timedelta(0)
    assert store.get("b" * 64) is None
    if store.path is not None:
        mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"


def test_reopening_keeps_data(state_target: Path | str) -> None:
    Store(state_target).put(make_entry())
    assert Store(state_target).get("a" * 64) is not None


def test_put_replaces_plan_but_keeps_counters(store: Store) -> None:
    first = store.put(make_entry())
    now = datetime.now(UTC)
    store.record_run(
        first.key,
        outcome="succeeded",
        started_at=now,
        finished_at=now,
        platform="local",
        rows_in=1,
        rows_out=1,
        details={},
    )
    store.add_tokens(first.key, 10, 5)
    store.add_conversation(first.key, [{"role": "user", "content": "hi"}])
    code = CODE + "# revised\n"
    revised = store.put(make_entry(pseudocode="v2", code=code, code_sha256=sha256_text(code)))
    assert revised.pseudocode == "v2" and revised.code == code
    assert revised.runs == 1 and revised.last_outcome == "succeeded"
    assert (revised.tokens_in, revised.tokens_out) == (10, 5)
    assert revised.conversation == [{"role": "user", "content": "hi"}]
    assert revised.created_at == first.created_at
    assert revised.updated_at >= first.updated_at


def test_put_over_approved_entry_makes_a_new_draft(store: Store) -> None:
    store.put(make_entry())
    store.approve("a" * 64, "alice", sha256_text(CODE))
    redrafted = store.put(make_entry(pseudocode="v2"))
    assert redrafted.status == "draft"
    assert redrafted.reviewer is None and redrafted.approved_at is None


def test_put_refuses_non_drafts_and_wrong_code_hash(store: Store) -> None:
    with pytest.raises(StoreError, match="drafts only"):
        store.put(make_entry(status="approved"))
    with pytest.raises(StoreError, match="code_sha256"):
        store.put(make_entry(code_sha256=sha256_text("other")))


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone"):
        make_entry(created_at=datetime(2025, 1, 1))


def test_approve_records_reviewer(store: Store) -> None:
    store.put(make_entry())
    approved = store.approve("a" * 64, "alice", sha256_text(CODE))
    assert approved.status == "approved" and approved.reviewer == "alice"
    assert approved.approved_at is not None
    assert datetime.now(UTC) - approved.approved_at < timedelta(minutes=1)
    assert store.get("a" * 64) == approved


def test_approve_refuses_a_code_hash_mismatch(store: Store) -> None:
    store.put(make_entry())
    with pytest.raises(StoreError, match="hash mismatch") as info:
        store.approve("a" * 64, "alice", sha256_text(CODE + "# edited after review"))
    assert info.value.hint and "Review" in info.value.hint
    entry = store.get("a" * 64)
    assert entry is not None and entry.status == "draft" and entry.reviewer is None


def test_approve_refuses_code_edited_in_the_database(store: Store) -> None:
    store.put(make_entry())
    with store.engine.begin() as conn:  # someone with write access to the database
        conn.exec_driver_sql("UPDATE entries SET code = 'import os'")
    with pytest.raises(StoreError, match="hash mismatch"):
        store.approve("a" * 64, "alice", sha256_text(CODE))


def test_approve_refuses_a_plan_without_code(store: Store) -> None:
    store.put(make_entry(code="", code_sha256=""))
    with pytest.raises(StoreError, match="no compiled code"):
        store.approve("a" * 64, "alice", sha256_text(""))


def test_status_transitions(store: Store) -> None:
    key = "a" * 64
    store.put(make_entry())
    rejected = store.reject(key, "bob", "wrong currency")
    assert (rejected.status, rejected.reviewer, rejected.reason) == (
        "rejected",
        "bob",
        "wrong currency",
    )
    with pytest.raises(StoreError, match="status is 'rejected'"):
        store.approve(key, "alice", sha256_text(CODE))

    store.put(make_entry())
    store.approve(key, "alice", sha256_text(CODE))
    with pytest.raises(StoreError, match=r"cannot approve .* status is 'approved'"):
        store.approve(key, "alice", sha256_text(CODE))
    with pytest.raises(StoreError, match="cannot reject"):
        store.reject(key, "bob", "late")

    revoked = store.revoke(key, "carol", "mapping changed")
    assert (revoked.status, revoked.reason, revoked.revoked_by) == (
        "revoked",
        "mapping changed",
        "carol",
    )
    assert revoked.reviewer == "alice"  # who approved it stays on record
    with pytest.raises(StoreError, match="cannot revoke"):
        store.revoke(key, "carol")


def test_reject_needs_a_reason(store: Store) -> None:
    store.put(make_entry())
    with pytest.raises(StoreError, match="reason"):
        store.reject("a" * 64, "bob", "  ")


@pytest.mark.parametrize(
    "call",
    [
        lambda s, k: s.approve(k, "alice", sha256_text(CODE)),
        lambda s, k: s.reject(k, "bob", "no"),
        lambda s, k: s.revoke(k, "carol"),
        lambda s, k: s.add_tokens(k, 1, 1),
        lambda s, k: s.add_conversation(k, []),
        lambda s, k: s.runs(k),
        lambda s, k: s.record_run(
            k,
            outcome="failed",
            started_at=datetime.now(UTC),
            finished_at=datetime.now(UTC),
            platform="local",
            rows_in=None,
            rows_out=None,
            details={},
        ),
    ],
)
def test_unknown_key_names_the_cli_command(store: Store, call: Any) -> None:
    with pytest.raises(StoreError, match="no cache entry") as info:
        call(store, "f" * 64)
    assert "dataeng-magics cache list" in str(info.value)


def test_ttl_expiry() -> None:
    approved_at = datetime(2025, 1, 1, tzinfo=UTC)
    entry = make_entry(status="approved", approved_at=approved_at)
    assert not entry.expired(None, now=approved_at + timedelta(days=10_000))
    assert not entry.expired(30, now=approved_at + timedelta(days=29))
    assert entry.expired(30, now=approved_at + timedelta(days=31))
    assert entry.expired(0.5, now=approved_at + timedelta(hours=13))
    assert not make_entry(approved_at=approved_at).expired(30, now=approved_at + timedelta(days=99))


def test_ttl_expiry_uses_the_clock_by_default(store: Store) -> None:
    store.put(make_entry())
    approved = store.approve("a" * 64, "alice", sha256_text(CODE))
    assert not approved.expired(1)
    old = approved.model_copy(update={"approved_at": datetime.now(UTC) - timedelta(days=2)})
    assert old.expired(1)


def test_resolve_prefix(store: Store) -> None:
    store.put(make_entry("abc12345" + "0" * 56))
    store.put(make_entry("abc12345" + "1" * 56))
    store.put(make_entry("abd00000" + "0" * 56))
    assert store.resolve("abc123450") == "abc12345" + "0" * 56
    assert store.resolve("abd00000") == "abd00000" + "0" * 56
    assert store.resolve("abc12345" + "1" * 56) == "abc12345" + "1" * 56
    with pytest.raises(StoreError, match="matches several"):
        store.resolve("abc12345")
    with pytest.raises(StoreError, match="too short"):
        store.resolve("abc")
    with pytest.raises(StoreError, match="no cache entry"):
        store.resolve("ffffffff")


def test_list_newest_first_and_by_client(store: Store) -> None:
    store.put(make_entry("1" * 64, client="A"))
    store.put(make_entry("2" * 64, client="B"))
    store.put(make_entry("3" * 64, client="A"))
    store.add_conversation("1" * 64, [{"role": "user", "content": "touch"}])
    assert [e.key[0] for e in store.list()] == ["1", "3", "2"]
    assert [e.key[0] for e in store.list("A")] == ["1", "3"]
    assert store.list("nobody") == []


def test_record_run_and_runs(store: Store) -> None:
    store.put(make_entry())
    started = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    entry = store.record_run(
        "a" * 64,
        outcome="validation_failed",
        started_at=started,
        finished_at=started + timedelta(seconds=90),
        platform="databricks",
        rows_in=1000,
        rows_out=990,
        details={"failed_checks": ["not_null(trade_id)"]},
    )
    assert entry.runs == 1 and entry.last_outcome == "validation_failed"
    assert entry.last_run_at == started + timedelta(seconds=90)
    [run] = store.runs("a" * 64)
    assert (run.key, run.outcome, run.platform, run.seconds) == (
        "a" * 64,
        "validation_failed",
        "databricks",
        90.0,
    )
    assert (run.rows_in, run.rows_out, run.started_at) == (1000, 990, started)
    assert run.details == {"failed_checks": ["not_null(trade_id)"]}


def test_record_run_rejects_an_unknown_outcome(store: Store) -> None:
    store.put(make_entry())
    now = datetime.now(UTC)
    with pytest.raises(ValueError, match="outcome"):
        store.record_run(
            "a" * 64,
            outcome="maybe",  # type: ignore[arg-type]
            started_at=now,
            finished_at=now,
            platform="local",
        )
    assert store.runs("a" * 64) == []


def test_conversation_and_tokens_accumulate(store: Store) -> None:
    store.put(make_entry())
    store.add_conversation("a" * 64, [{"role": "user", "content": "exclude cancelled"}])
    entry = store.add_conversation("a" * 64, [{"role": "assistant", "content": "done"}])
    assert [turn["role"] for turn in entry.conversation] == ["user", "assistant"]
    store.add_tokens("a" * 64, 100, 20)
    entry = store.add_tokens("a" * 64, 1, 2)
    assert (entry.tokens_in, entry.tokens_out) == (101, 22)
    with pytest.raises(StoreError, match="negative"):
        store.add_tokens("a" * 64, -1, 0)


def test_list_matches_a_client_ignoring_case(store: Store) -> None:
    """As the audit log, stats and the side panel match it (Unicode case folding)."""
    store.put(make_entry("1" * 64, client="NORTHWIND"))
    store.put(make_entry("2" * 64, client="Straße"))
    store.put(make_entry("3" * 64, client="ACME"))
    assert [e.key for e in store.list("northwind")] == ["1" * 64]
    assert [e.key for e in store.list("STRASSE")] == ["2" * 64]
    assert store.list("NOBODY") == []
    assert len(store.list()) == 3


def test_unusable_path_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError):
        Store(blocker / "store.sqlite")


def _record_runs(path: Path | str, key: str, count: int, barrier: Any) -> None:
    store = Store(path)
    barrier.wait(timeout=60)
    for i in range(count):
        now = datetime.now(UTC)
        store.record_run(
            key,
            outcome="succeeded",
            started_at=now,
            finished_at=now,
            platform="local",
            rows_in=i,
            rows_out=i,
            details={"pid": multiprocessing.current_process().pid},
        )
        store.add_tokens(key, 1, 2)


def test_concurrent_record_run_counts_are_exact(state_target: Path | str) -> None:
    path = state_target
    key = Store(path).put(make_entry()).key
    workers, per_worker = 4, 50
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    processes = [
        ctx.Process(target=_record_runs, args=(path, key, per_worker, barrier))
        for _ in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * workers

    store = Store(path)
    entry = store.get(key)
    assert entry is not None
    assert entry.runs == workers * per_worker
    assert (entry.tokens_in, entry.tokens_out) == (workers * per_worker, 2 * workers * per_worker)
    runs = store.runs(key)
    assert len(runs) == workers * per_worker
    assert len({run.details["pid"] for run in runs}) == workers
    if store.path is not None:
        check = sqlite3.connect(store.path).execute("PRAGMA integrity_check").fetchone()[0]
        assert check == "ok"


def test_threads_sharing_one_store_lose_no_update(store: Store) -> None:
    """A batch's threads share one Store (and its pooled connections, more threads than
    the pool keeps): read-modify-writes from every thread add up, and reads in between
    see each thread's own writes."""
    key = store.put(make_entry()).key
    workers, per_worker = 8, 15
    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            barrier.wait(timeout=60)
            for i in range(per_worker):
                store.add_conversation(key, [{"worker": worker, "turn": i}])
                entry = store.get(key)
                assert entry is not None
                mine = [t["turn"] for t in entry.conversation if t["worker"] == worker]
                assert mine == list(range(i + 1))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    entry = store.get(key)
    assert entry is not None
    assert len(entry.conversation) == workers * per_worker


def _open_and_put(path: Path, index: int, barrier: Any) -> None:
    barrier.wait(timeout=60)
    Store(path).put(make_entry(f"{index:064d}"))


def test_concurrent_first_open_of_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "store.sqlite"
    workers = 8
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    processes = [ctx.Process(target=_open_and_put, args=(path, i, barrier)) for i in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * workers
    assert len(Store(path).list()) == workers


def test_a_store_made_before_schema_versions_is_upgraded_in_place(tmp_path: Path) -> None:
    """0.1's SQLite file (no Alembic table) keeps its rows and gains run and batch ids."""
    path = tmp_path / "store.sqlite"
    shutil.copy(Path(__file__).parent / "data" / "state-v0.1" / "store.sqlite", path)
    with sqlite3.connect(path) as conn:
        keys = [row[0] for row in conn.execute("SELECT key FROM entries ORDER BY key")]
    assert keys
    store = Store(path)
    assert sorted(e.key for e in store.list()) == keys
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD,)]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(runs)")]
    assert columns[-2:] == ["run_id", "batch_id"]
    assert [r.run_id for r in store.runs()] == [None] * len(store.runs())
