"""Append-only, hash-chained audit log (one JSON object per line).

Each record carries the sha256 of its own canonical JSON and the hash of the record
before it, so editing, deleting or reordering any line breaks the chain at that line and
``verify`` can name it. Appending reads only the file's tail, so it stays constant-time
however long the log grows; a file lock keeps the chain intact across processes.

A chain detects edits, not a rewrite of everything after an edit: keep ``last().hash``
somewhere else (a ticket, the run log) when that matters. With a PostgreSQL store the
same records live in a table (``audit_db.DbAuditLog``); ``AuditTrail`` is what both offer.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Protocol

from filelock import FileLock, Timeout
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

from dataeng_magics.canonical import canonical_json, sha256_text
from dataeng_magics.errors import AuditError

GENESIS_HASH = "0" * 64
_VERIFY_HINT = "Run `dataeng-magics audit verify` to find the damaged line."
_TAIL_CHUNK = 8192

UtcDatetime = Annotated[AwareDatetime, AfterValidator(lambda value: value.astimezone(UTC))]


class AuditEvent(BaseModel):
    """One line of the log, as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int = Field(ge=1)
    time: UtcDatetime
    event: str = Field(min_length=1)  # draft, revision, approval, revocation, run_start, ...
    actor: str
    client: str | None
    key: str | None
    plan_sha256: str | None
    code_sha256: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


class VerifyResult(BaseModel):
    """Outcome of ``verify``; on failure ``count`` is the number of good records before
    the first bad one, and ``first_bad_seq`` the seq that should have been on that line."""

    ok: bool
    count: int
    first_bad_seq: int | None = None
    first_bad_line: int | None = None
    reason: str | None = None

    def describe(self, path: Path | str) -> str:
        """The verdict in one line, as the CLI and the notebook say it."""
        if self.ok:
            return f"audit log intact: {self.count} records ({path})"
        return (
            f"audit log BROKEN at line {self.first_bad_line} (seq {self.first_bad_seq}): "
            f"{self.reason} ({path})"
        )


_FIELDS = frozenset(AuditEvent.model_fields)


def record_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``record`` without its ``hash`` field."""
    body = {name: value for name, value in record.items() if name != "hash"}
    return sha256_text(canonical_json(body))


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # containers without a passwd entry
        return "unknown"


class AuditTrail(Protocol):
    """What every holder of the audit chain offers: the JSONL file or a database table."""

    where: str

    def append(
        self,
        event: str,
        *,
        actor: str | None = None,
        client: str | None = None,
        key: str | None = None,
        plan_sha256: str | None = None,
        code_sha256: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent: ...

    def last(self) -> AuditEvent | None: ...

    def events(
        self, *, key: str | None = None, client: str | None = None
    ) -> Iterator[AuditEvent]: ...

    def records(self) -> Iterator[dict[str, Any]]: ...

    def extend(self, records: Iterable[dict[str, Any]]) -> int: ...

    def verify(self) -> VerifyResult: ...


def new_record(
    previous: dict[str, Any] | None,
    event: str,
    actor: str | None,
    client: str | None,
    key: str | None,
    plan_sha256: str | None,
    code_sha256: str | None,
    details: dict[str, Any] | None,
) -> dict[str, Any]:
    """The record that follows ``previous`` (None: the first), with its hash."""
    try:
        details_json = to_jsonable_python(details or {})
    except ValueError as exc:
        raise AuditError(f"audit details are not JSON-serialisable: {exc}") from exc
    record: dict[str, Any] = {
        "seq": 1 if previous is None else previous["seq"] + 1,
        "time": datetime.now(UTC).isoformat(timespec="microseconds"),
        "event": event,
        "actor": actor if actor is not None else _current_user(),
        "client": client,
        "key": key,
        "plan_sha256": plan_sha256,
        "code_sha256": code_sha256,
        "details": details_json,
        "prev_hash": GENESIS_HASH if previous is None else previous["hash"],
    }
    try:
        record["hash"] = record_hash(record)
    except ValueError as exc:  # NaN, lone surrogates
        raise AuditError(f"audit event cannot be written as JSON: {exc}") from exc
    return record


class Chain:
    """What the chain checks, whatever holds it: walks records in order and reports the
    first that is wrong."""

    def __init__(self) -> None:
        self.expected_seq, self.prev_hash, self.count = 1, GENESIS_HASH, 0

    def bad(self, line: int, reason: str) -> VerifyResult:
        return VerifyResult(
            ok=False,
            count=self.count,
            first_bad_seq=self.expected_seq,
            first_bad_line=line,
            reason=reason,
        )

    def link(self, number: int, record: dict[str, Any]) -> VerifyResult | None:
        """Check seq and prev_hash of the next record; a failure, or None."""
        seq = record["seq"]
        if type(seq) is not int or seq != self.expected_seq:
            return self.bad(
                number,
                f"seq is {seq!r} where {self.expected_seq} was expected "
                "(a line was deleted, inserted or moved)",
            )
        if record["prev_hash"] != self.prev_hash:
            return self.bad(
                number,
                "prev_hash does not match the previous record "
                "(a line was deleted, inserted, moved or rewritten)",
            )
        return None

    def accept(self, stated: str) -> None:
        self.prev_hash, self.expected_seq, self.count = (
            stated,
            self.expected_seq + 1,
            self.count + 1,
        )


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX; Windows has no folder handles)."""
    if os.name != "posix":
        return
    handle = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class AuditLog:
    """The audit trail of drafts, approvals, rejections, revocations and runs (JSONL)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()
        self.where = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AuditError(f"cannot create the audit folder: {exc}", file=str(self.path)) from exc
        self._lock = FileLock(str(self.path) + ".lock", timeout=30)

    def _error(self, message: str, line: int | None = None) -> AuditError:
        return AuditError(message, file=str(self.path), row=line, hint=_VERIFY_HINT)

    def _tail(self) -> dict[str, Any] | None:
        """The last record, read backwards from the end of the file; None if empty."""
        try:
            with self.path.open("rb") as file:
                position = file.seek(0, os.SEEK_END)
                data = b""
                while position > 0:
                    step = min(_TAIL_CHUNK, position)
                    position -= step
                    file.seek(position)
                    data = file.read(step) + data
                    if data.rfind(b"\n", 0, len(data) - 1) >= 0:
                        break
        except FileNotFoundError:
            return None
        if not data:
            return None
        if not data.endswith(b"\n"):
            raise self._error("the audit log ends with an incomplete line")
        last = data[data.rfind(b"\n", 0, len(data) - 1) + 1 :]
        try:
            record = json.loads(last)
        except ValueError:
            raise self._error("the last line of the audit log is not valid JSON") from None
        if (
            not isinstance(record, dict)
            or set(record) != _FIELDS
            or record_hash(record) != record["hash"]
        ):
            raise self._error("the last record of the audit log has been altered")
        return record

    def last(self) -> AuditEvent | None:
        """The newest event (its ``hash`` is the head of the chain)."""
        record = self._tail()
        return None if record is None else AuditEvent.model_validate(record)

    def append(
        self,
        event: str,
        *,
        actor: str | None = None,
        client: str | None = None,
        key: str | None = None,
        plan_sha256: str | None = None,
        code_sha256: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEvent:
        """Add one event at the end of the chain; durable (fsync) when this returns."""
        try:
            with self._lock:
                record = new_record(
                    self._tail(), event, actor, client, key, plan_sha256, code_sha256, details
                )
                line = (canonical_json(record) + "\n").encode("utf-8")
                written = AuditEvent.model_validate(record)
                with self.path.open("ab") as file:
                    file.write(line)
                    file.flush()
                    os.fsync(file.fileno())
                return written
        except Timeout:
            raise AuditError(
                "timed out waiting for the audit log lock",
                file=str(self.path),
                hint=f"Another process holds {self._lock.lock_file}.",
            ) from None
        except OSError as exc:
            raise AuditError(f"cannot write the audit log: {exc}", file=str(self.path)) from exc

    def events(self, *, key: str | None = None, client: str | None = None) -> Iterator[AuditEvent]:
        """Events in order, optionally for one key or one client (matched ignoring case,
        as the store matches it); streams the file."""
        wanted = None if client is None else client.casefold()
        try:
            file = self.path.open("rb")
        except FileNotFoundError:
            return
        with file:
            for number, line in enumerate(file, 1):
                try:
                    record = json.loads(line)
                    if key is not None and record["key"] != key:
                        continue
                    if wanted is not None and (record["client"] or "").casefold() != wanted:
                        continue
                    yield AuditEvent.model_validate(record)
                except (ValueError, TypeError, KeyError):
                    raise self._error(
                        f"line {number} is not a valid audit record", number
                    ) from None

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record as written (what ``store migrate`` copies; verify first)."""
        try:
            file = self.path.open("rb")
        except FileNotFoundError:
            return
        with file:
            for line in file:
                yield json.loads(line)

    def extend(self, records: Iterable[dict[str, Any]]) -> int:
        """Copy a whole chain, verbatim, into an empty log (``store migrate``). Written
        to a temporary file beside the log and renamed into place, so a copy that fails
        midway leaves no log at all and can simply be retried."""
        count = 0
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
        try:
            with self._lock:  # every appender takes it: nobody writes the log meanwhile
                if self.path.exists() and self.path.stat().st_size:
                    raise AuditError("the target audit log is not empty", file=self.where)
                with temp.open("xb") as file:
                    for record in records:
                        file.write((canonical_json(record) + "\n").encode("utf-8"))
                        count += 1
                    file.flush()
                    os.fsync(file.fileno())
                temp.replace(self.path)
                _fsync_folder(self.path.parent)
        except Timeout:
            raise AuditError(
                "timed out waiting for the audit log lock",
                file=self.where,
                hint=f"Another process holds {self._lock.lock_file}.",
            ) from None
        except (OSError, ValueError) as exc:  # ValueError: a record canonical JSON refuses
            raise AuditError(f"cannot write the audit log: {exc}", file=self.where) from exc
        finally:
            temp.unlink(missing_ok=True)
        return count

    def discard(self) -> None:
        """Delete the log: only to undo ``extend`` when what it was copied with did not
        commit (``store migrate``), so the target is empty again for a retry."""
        try:
            with self._lock:
                self.path.unlink(missing_ok=True)
        except OSError as exc:
            raise AuditError(f"cannot remove the audit log: {exc}", file=self.where) from exc

    def verify(self) -> VerifyResult:
        """Check the whole chain line by line and report the first record that is wrong."""
        chain = Chain()
        bad = chain.bad
        try:
            file = self.path.open("rb")
        except FileNotFoundError:
            return VerifyResult(ok=True, count=0)
        with file:
            for number, line in enumerate(file, 1):
                if not line.endswith(b"\n"):
                    return bad(number, "the last line is incomplete (cut short or truncated)")
                try:
                    record = json.loads(line)
                except ValueError:
                    return bad(number, "the line is not valid JSON")
                if not isinstance(record, dict) or set(record) != _FIELDS:
                    return bad(number, "the line does not have the fields of an audit record")
                broken = chain.link(number, record)
                if broken is not None:
                    return broken
                stated = record["hash"]
                # Fast path: a line as append wrote it is the canonical body with the hash
                # member inserted, so hashing the line minus that member avoids re-dumping
                # (a match proves the bytes are the original body). Otherwise re-serialise.
                body = line.rstrip(b"\n").replace(f',"hash":"{stated}"'.encode(), b"", 1)
                if hashlib.sha256(body).hexdigest() != stated:
                    try:
                        actual = record_hash(record)
                    except ValueError:
                        return bad(number, "the record cannot be serialised canonically")
                    if actual != stated:
                        return bad(number, "hash does not match the record (the line was edited)")
                chain.accept(stated)
        return VerifyResult(ok=True, count=chain.count)
