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
from dataeng_magics.state.audit import GENESIS_HASH, AuditLog, record_hash


def filled_log(tmp_path: Path, count: int = 10) -> AuditLog:
    log = AuditLog(tmp_path / "audit" / "audit.jsonl")
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


def test_append_builds_a_chain(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "new" / "audit.jsonl")
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

    lines = log.path.read_text(encoding="utf-8").splitlines()
    raw = json.loads(lines[0])
    assert raw["hash"] == first.hash == record_hash(raw)
    body = {k: v for k, v in raw.items() if k != "hash"}
    expected = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert raw["hash"] == hashlib.sha256(expected.encode()).hexdigest()
    assert log.verify().model_dump() == {
        "ok": True,
        "count": 2,
        "first_bad_seq": None,
        "first_bad_line": None,
        "reason": None,
    }


def test_actor_defaults_to_the_current_user(tmp_path: Path) -> None:
    event = AuditLog(tmp_path / "a.jsonl").append("draft")
    assert event.actor == getpass.getuser()


def test_events_filter_by_key_and_client(tmp_path: Path) -> None:
    log = filled_log(tmp_path, 9)
    assert [e.seq for e in log.events(key="key1")] == [2, 5, 8]
    assert [e.seq for e in log.events(client="NORTHWIND")] == [2, 4, 6, 8]
    assert [e.seq for e in log.events(key="key1", client="NORTHWIND")] == [2, 8]
    assert [e.seq for e in log.events(client="northWind")] == [2, 4, 6, 8]  # as the store
    assert list(AuditLog(tmp_path / "none.jsonl").events()) == []


def test_unicode_and_long_records_round_trip(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    long_text = "Beträge in Tausend – ünïcode\u2028 " * 2000  # longer than the tail chunk
    log.append("revision", actor="zoë", details={"feedback": long_text})
    event = log.append("approval", actor="bob")
    assert event.seq == 2
    assert next(log.events()).details["feedback"] == long_text
    assert log.verify().ok and log.verify().count == 2


def test_details_must_be_json(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.jsonl")
    with pytest.raises(AuditError, match="JSON"):
        log.append("draft", details={"x": object()})
    with pytest.raises(AuditError, match="JSON"):
        log.append("draft", details={"x": float("nan")})
    assert not log.path.exists() or log.path.read_bytes() == b""


def test_verify_empty_and_missing(tmp_path: Path) -> None:
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


def _append_many(path: Path, count: int, barrier: Any) -> None:
    log = AuditLog(path)
    barrier.wait(timeout=60)
    for i in range(count):
        log.append(
            "run_end", actor=f"worker-{multiprocessing.current_process().pid}", details={"i": i}
        )


def test_concurrent_appends_keep_the_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
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

    log = AuditLog(path)
    result = log.verify()
    assert result.ok, result
    assert result.count == workers * per_worker
    events = list(log.events())
    assert [e.seq for e in events] == list(range(1, workers * per_worker + 1))
    assert len({e.actor for e in events}) == workers
