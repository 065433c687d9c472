from __future__ import annotations

import getpass
import hashlib
import json
import multiprocessing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dataeng_magics.canonical import canonical_json
from dataeng_magics.errors import AuditError
from dataeng_magics.state.audit import GENESIS_HASH, AuditLog, AuditTrail, record_hash
from dataeng_magics.state.backend import audit_of
from dataeng_magics.state.store import Store


@pytest.fixture
def trail(state_target: Path | str) -> AuditTrail:
    """A new audit log on each backend: the JSONL file, or the PostgreSQL table as the
    runtime user (INSERT and SELECT only)."""
    return audit_of(Store(state_target))


def filled_log(tmp_path: Path, count: int = 10) -> AuditLog:
    return fill(AuditLog(tmp_path / "audit" / "audit.jsonl"), count)


def fill(log: Any, count: int = 10) -> Any:
    for i in range(count):
        log.append(
            "run_end",
            actor="alice",
            client="NORTHWIND" if i % 2 else "CONTOSO",
            key=f"key{i % 3}",
            plan_sha256="p" * 64,
            code_sha256="c" * 64,
            details={"n": i},
        )
    return log


def read_lines(log: AuditLog) -> list[bytes]:
    return log.path.read_bytes().splitlines(keepends=True)


def write_lines(log: AuditLog, lines: list[bytes]) -> None:
    log.path.write_bytes(b"".join(lines))


def test_append_builds_a_chain(trail: AuditTrail) -> None:
    log = trail
    assert log.last() is None
    first = log.append("draft", actor="alice", client="NW", key="k1", plan_sha256="p" * 64)
    second = log.append("approval", actor="bob", key="k1", details={"when": datetime(2025, 1, 1)})
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    assert first.time.utcoffset() == timedelta(0)
    assert datetime.now(UTC) - second.time < timedelta(minutes=1)
    assert second.details == {"when": "2025-01-01T00:00:00"}
    assert log.last() == second
    assert list(log.events()) == [first, second]
    assert [record["hash"] for record in log.records()] == [first.hash, second.hash]
    assert log.verify().model_dump() == {
        "ok": True,
        "count": 2,
        "first_bad_seq": None,
        "first_bad_line": None,
        "reason": None,
    }


def test_the_jsonl_line_is_the_canonical_record(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "new" / "audit.jsonl")
    first = log.append("draft", actor="alice", client="NW", key="k1", plan_sha256="p" * 64)
    log.append("approval", actor="bob", key="k1", details={"when": datetime(2025, 1, 1)})

    lines = log.path.read_text(encoding="utf-8").splitlines()
    raw = json.loads(lines[0])
    assert raw["hash"] == first.hash == record_hash(raw)
    body = {k: v for k, v in raw.items() if k != "hash"}
    expected = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert raw["hash"] == hashlib.sha256(expected.encode()).hexdigest()


def test_actor_defaults_to_the_current_user(trail: AuditTrail) -> None:
    event = trail.append("draft")
    assert event.actor == getpass.getuser()


def test_events_filter_by_key_and_client(trail: AuditTrail, tmp_path: Path) -> None:
    log = fill(trail, 9)
    assert [e.seq for e in log.events(key="key1")] == [2, 5, 8]
    assert [e.seq for e in log.events(client="NORTHWIND")] == [2, 4, 6, 8]
    assert [e.seq for e in log.events(key="key1", client="NORTHWIND")] == [2, 8]
    assert [e.seq for e in log.events(client="northWind")] == [2, 4, 6, 8]  # as the store
    assert list(AuditLog(tmp_path / "none.jsonl").events()) == []


def test_unicode_and_long_records_round_trip(trail: AuditTrail) -> None:
    log = trail
    long_text = "Beträge in Tausend – ünïcode\u2028 " * 2000  # longer than the tail chunk
    log.append("revision", actor="zoë", details={"feedback": long_text})
    event = log.append("approval", actor="bob")
    assert event.seq == 2
    assert next(log.events()).details["feedback"] == long_text
    assert log.verify().ok and log.verify().count == 2


def test_details_must_be_json(trail: AuditTrail) -> None:
    log = trail
    with pytest.raises(AuditError, match="JSON"):
        log.append("draft", details={"x": object()})
    with pytest.raises(AuditError, match="JSON"):
        log.append("draft", details={"x": float("nan")})
    assert list(log.records()) == []


def test_verify_empty_and_missing(trail: AuditTrail, tmp_path: Path) -> None:
    assert trail.verify().model_dump(include={"ok", "count"}) == {"ok": True, "count": 0}
    assert AuditLog(tmp_path / "missing.jsonl").verify().ok
    (tmp_path / "empty.jsonl").write_bytes(b"")
    result = AuditLog(tmp_path / "empty.jsonl").verify()
    assert result.ok and result.count == 0


def test_edited_field_in_a_middle_line_is_named(tmp_path: Path) -> None:
    log = filled_log(tmp_path)
    lines = read_lines(log)
    record = json.loads(lines[4])
    record["actor"] = "mallory"
    lines[4] = (canonical_json(record) + "\n").encode()
    write_lines(log, lines)
    result = log.verify()
    assert not result.ok
    assert (result.first_bad_line, result.first_bad_seq, result.count) == (5, 5, 4)
    assert result.reason and "edited" in result.reason


def test_edit_with_a_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    log = filled_log(tmp_path)
    lines = read_lines(log)
    record = json.loads(lines[4])
    record["details"] = {"n": 999}
    record["hash"] = record_hash(record)
    lines[4] = (canonical_json(record) + "\n").encode()
    write_lines(log, lines)
    result = log.verify()
    assert (result.ok, result.first_bad_line, result.first_bad_seq) == (False, 6, 6)
    assert result.reason and "prev_hash" in result.reason


def test_reformatted_but_unchanged_line_still_verifies(tmp_path: Path) -> None:
    log = filled_log(tmp_path, 3)
    lines = read_lines(log)
    lines[1] = (json.dumps(json.loads(lines[1]), indent=None) + "\n").encode()  # spaces
    write_lines(log, lines)
    assert log.verify().ok


def test_deleted_line(tmp_path: Path) -> None:
    log = filled_log(tmp_path)
    lines = read_lines(log)
    del lines[3]
    write_lines(log, lines)
    result = log.verify()
    assert (result.ok, result.first_bad_line, result.first_bad_seq) == (False, 4, 4)
    assert result.reason and "seq is 5 where 4 was expected" in result.reason


def test_swapped_lines(tmp_path: Path) -> None:
    log = filled_log(tmp_path)
    lines = read_lines(log)
    lines[6], lines[7] = lines[7], lines[6]
    write_lines(log, lines)
    result = log.verify()
    assert (result.ok, result.first_bad_line, result.first_bad_seq) == (False, 7, 7)


def test_renumbered_after_deletion_is_still_caught(tmp_path: Path) -> None:
    log = filled_log(tmp_path)
    lines = read_lines(log)
    del lines[3]
    for index in range(3, len(lines)):
        record = json.loads(lines[index])
        record["seq"] = index + 1
        lines[index] = (canonical_json(record) + "\n").encode()
    write_lines(log, lines)
    result = log.verify()
    assert (result.first_bad_line, result.first_bad_seq) == (4, 4)
    assert result.reason and "prev_hash" in result.reason


def test_truncated_last_line(tmp_path: Path) -> None:
    log = filled_log(tmp_path)
    data = log.path.read_bytes()
    log.path.write_bytes(data[: len(data) - 40])
    result = log.verify()
    assert (result.ok, result.first_bad_line, result.first_bad_seq, result.count) == (
        False,
        10,
        10,
        9,
    )
    assert result.reason and "incomplete" in result.reason
    with pytest.raises(AuditError, match="incomplete line"):
        log.append("run_start", actor="alice")


def test_garbage_line(tmp_path: Path) -> None:
    log = filled_log(tmp_path)
    lines = read_lines(log)
    lines[2] = b"{not json\n"
    write_lines(log, lines)
    result = log.verify()
    assert (result.first_bad_line, result.reason) == (3, "the line is not valid JSON")
    with pytest.raises(AuditError, match="line 3"):
        list(log.events())


def test_append_refuses_to_extend_an_edited_tail(tmp_path: Path) -> None:
    log = filled_log(tmp_path, 3)
    lines = read_lines(log)
    lines[-1] = lines[-1].replace(b'"actor":"alice"', b'"actor":"mallory"')
    write_lines(log, lines)
    with pytest.raises(AuditError, match="altered"):
        log.append("run_start", actor="alice")


def _append_many(target: Path | str, count: int, barrier: Any) -> None:
    log = audit_of(Store(target))
    barrier.wait(timeout=60)
    for i in range(count):
        log.append(
            "run_end", actor=f"worker-{multiprocessing.current_process().pid}", details={"i": i}
        )


def test_concurrent_appends_keep_the_chain(state_target: Path | str) -> None:
    path = state_target
    workers, per_worker = 4, 50
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(workers)
    processes = [
        ctx.Process(target=_append_many, args=(path, per_worker, barrier)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0] * workers

    log = audit_of(Store(path))
    result = log.verify()
    assert result.ok, result
    assert result.count == workers * per_worker
    events = list(log.events())
    assert [e.seq for e in events] == list(range(1, workers * per_worker + 1))
    assert len({e.actor for e in events}) == workers


def test_an_edited_database_row_is_named(postgres: Any, pg_database: str) -> None:
    """Someone with the admin's rights edits a record: verify names its seq."""
    from pg_server import runtime_url

    log = fill(audit_of(Store(runtime_url(postgres, pg_database))), 5)
    postgres.admin(pg_database, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
    result = log.verify()
    assert (result.ok, result.count, result.first_bad_seq) == (False, 2, 3)
    assert result.reason is not None and "edited" in result.reason
    postgres.admin(pg_database, "DELETE FROM audit_events WHERE seq = 3")
    assert log.verify().first_bad_seq == 3


def test_the_runtime_user_cannot_update_or_delete_audit_rows(
    postgres: Any, pg_database: str
) -> None:
    """With the documented grants, the database itself refuses to rewrite the chain."""
    import psycopg
    from pg_server import runtime_url

    url = runtime_url(postgres, pg_database)
    fill(audit_of(Store(url)), 2)
    for statement in ("UPDATE audit_events SET actor = 'x'", "DELETE FROM audit_events"):
        with psycopg.connect(url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)  # type: ignore[arg-type]
    assert audit_of(Store(url)).verify().count == 2


def test_a_copied_chain_appears_whole_or_not_at_all(trail: AuditTrail, tmp_path: Path) -> None:
    """``extend`` (store migrate) stops midway when the source does: the target holds no
    record of it and takes the whole chain on the next try, then refuses a second copy."""
    source = filled_log(tmp_path, 5)

    def broken() -> Any:
        yield from list(source.records())[:3]
        raise OSError("the source disk went away")

    with pytest.raises((AuditError, OSError)):
        trail.extend(broken())
    assert trail.last() is None
    if isinstance(trail, AuditLog):
        assert not trail.path.exists()
        assert not list(trail.path.parent.glob("*.tmp"))
    assert trail.extend(source.records()) == 5
    assert trail.verify().count == 5
    with pytest.raises(AuditError, match="not empty"):
        trail.extend(source.records())
    assert trail.verify().count == 5
