"""The plan cache: one SQLite file holding each key's current plan, its code and its status.

SQLite because it is in the standard library, needs no server and is safe for several
processes at once (WAL mode, ``BEGIN IMMEDIATE`` for every write). Keys are exact here;
``resolve`` turns a short prefix typed at the CLI into a key.
"""

from __future__ import annotations

import builtins
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from filelock import FileLock, Timeout
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python

from dataeng_magics.canonical import sha256_text
from dataeng_magics.errors import StoreError

Status = Literal["draft", "approved", "rejected", "revoked"]
Outcome = Literal["succeeded", "validation_failed", "failed"]

#: An aware datetime normalised to UTC, so stored text sorts and compares correctly.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(lambda value: value.astimezone(UTC))]

MIN_PREFIX = 8
_LIST_HINT = "Run `dataeng-magics cache list` to see keys."
_SCHEMA_VERSION = 2
_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    client TEXT NOT NULL,
    mapping_file TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'approved', 'rejected', 'revoked')),
    plan_json TEXT NOT NULL,
    pseudocode TEXT NOT NULL,
    code TEXT NOT NULL,
    plan_sha256 TEXT NOT NULL,
    code_sha256 TEXT NOT NULL,
    reviewer TEXT,
    approved_at TEXT,
    reason TEXT,
    revoked_by TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    runs INTEGER NOT NULL DEFAULT 0,
    last_run_at TEXT,
    last_outcome TEXT,
    conversation TEXT NOT NULL DEFAULT '[]',
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS entries_by_updated ON entries (updated_at);
CREATE INDEX IF NOT EXISTS entries_by_client ON entries (client, updated_at);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    outcome TEXT NOT NULL,
    platform TEXT NOT NULL,
    rows_in INTEGER,
    rows_out INTEGER,
    seconds REAL NOT NULL,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_key ON runs (key, id);
"""
#: Version 2 (additive): batches, and the batch a run belonged to (``batch`` command).
_SCHEMA_V2 = """
ALTER TABLE runs ADD COLUMN batch_id TEXT;
CREATE INDEX IF NOT EXISTS runs_by_batch ON runs (batch_id);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    manifest TEXT NOT NULL,
    clients INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    exit_code INTEGER
);
"""

# Connections inherited through fork() must never be used or closed by the child
# (SQLite's locks are per process); keeping them referenced stops the GC closing them.
_INHERITED: list[sqlite3.Connection] = []


def utcnow() -> datetime:
    return datetime.now(UTC)


def _ts(value: datetime) -> str:
    """Fixed-width UTC text, so ORDER BY on the column is chronological."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _json(value: Any) -> str:
    return json.dumps(to_jsonable_python(value), ensure_ascii=False, separators=(",", ":"))


class Entry(BaseModel):
    """The current state of one cache key: the plan, its code, who approved it, its runs."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=1)
    client: str
    mapping_file: str
    status: Status = "draft"
    plan_json: str
    pseudocode: str
    code: str = ""  # empty while the plan still has unresolved steps
    plan_sha256: str
    code_sha256: str = ""
    reviewer: str | None = None
    approved_at: UtcDatetime | None = None
    reason: str | None = None  # why it was rejected or revoked
    revoked_by: str | None = None
    created_at: UtcDatetime = Field(default_factory=utcnow)
    updated_at: UtcDatetime = Field(default_factory=utcnow)
    runs: int = 0
    last_run_at: UtcDatetime | None = None
    last_outcome: Outcome | None = None
    conversation: list[dict[str, Any]] = []
    tokens_in: int = 0
    tokens_out: int = 0

    def expired(self, ttl_days: float | None, now: datetime | None = None) -> bool:
        """True when the approval is older than the TTL, so replay must ask again."""
        if ttl_days is None or self.status != "approved" or self.approved_at is None:
            return False
        return (now or utcnow()) - self.approved_at > timedelta(days=ttl_days)


@dataclass(frozen=True)
class Revoked:
    """An approval a step took away (a revision, a re-draft, a revocation): whose, and
    why. Steps return it so every front end says the same thing, never works it out."""

    reviewer: str
    reason: str

    def __str__(self) -> str:
        return f"approval by {self.reviewer} revoked: {self.reason}"


class RunRecord(BaseModel):
    """One execution of an entry's code, kept so `dataeng-magics stats` can say how it went."""

    model_config = ConfigDict(extra="forbid")

    id: int
    key: str
    started_at: UtcDatetime
    finished_at: UtcDatetime
    outcome: Outcome
    platform: str
    rows_in: int | None
    rows_out: int | None
    seconds: float
    details: dict[str, Any]
    batch_id: str | None = None


class BatchRecord(BaseModel):
    """One ``batch`` of clients: what it ran from and how it ended (None: still running,
    or killed)."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str
    manifest: str
    clients: int
    started_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    exit_code: int | None = None


_ENTRY_COLUMNS = tuple(Entry.model_fields)
_DATETIME_COLUMNS = ("approved_at", "created_at", "updated_at", "last_run_at")


def _row_to_entry(row: sqlite3.Row) -> Entry:
    data = dict(row)
    data["conversation"] = json.loads(data["conversation"])
    return Entry.model_validate(data)


def _entry_to_row(entry: Entry) -> dict[str, Any]:
    data = {name: getattr(entry, name) for name in _ENTRY_COLUMNS}
    for name in _DATETIME_COLUMNS:
        if data[name] is not None:
            data[name] = _ts(data[name])
    data["conversation"] = _json(entry.conversation)
    return data


def _casefold(text: str | None) -> str | None:
    """Python's Unicode case folding for SQL (SQLite's own lower() folds ASCII only)."""
    return None if text is None else text.casefold()


def _wrong_status(key: str, action: str, status: str, allowed: tuple[Status, ...]) -> StoreError:
    return StoreError(
        f"cannot {action} entry {key[:12]}: its status is {status!r}, "
        f"not {' or '.join(map(repr, allowed))}",
        key=key,
        status=status,
    )


def _unknown(key: str) -> StoreError:
    return StoreError(f"no cache entry with key {key!r}", hint=_LIST_HINT, key=key)


class Store:
    """SQLite-backed cache; one connection per thread and process, every write atomic."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder: {exc}", file=str(self.path)) from exc
        # Switching to WAL fails at once (no busy wait) if another process is doing the
        # same, so first-time setup is serialised with a file lock.
        try:
            with FileLock(str(self.path) + ".lock", timeout=30):
                conn = self._conn()
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode=WAL")
                with self._tx() as tx:
                    version = tx.execute("PRAGMA user_version").fetchone()[0]
                    for since, schema in ((1, _SCHEMA), (2, _SCHEMA_V2)):
                        if version < since:
                            for statement in schema.split(";"):
                                if statement.strip():
                                    tx.execute(statement)
                    if version < _SCHEMA_VERSION:
                        tx.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except (sqlite3.Error, Timeout) as exc:
            raise StoreError(f"cannot open the cache store: {exc}", file=str(self.path)) from exc

    # -- connections -------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection; a fresh one after fork, as SQLite requires."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        if conn is not None:
            _INHERITED.append(conn)
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.create_function("casefold", 1, _casefold, deterministic=True)
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            conn.close()
        elif conn is not None:
            _INHERITED.append(conn)
        self._local.conn = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that takes the write lock up front, so read-modify-write
        sequences cannot interleave with another process."""
        try:
            conn = self._conn()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write the cache store: {exc}", file=str(self.path)) from exc
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cache store error: {exc}", file=str(self.path)) from exc
            raise

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        try:
            return self._conn().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the cache store: {exc}", file=str(self.path)) from exc

    @staticmethod
    def _row(conn: sqlite3.Connection, key: str) -> sqlite3.Row:
        row: sqlite3.Row | None = conn.execute(
            "SELECT * FROM entries WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            raise _unknown(key)
        return row

    def _transition(
        self, key: str, action: str, allowed: tuple[Status, ...], status: Status, **values: Any
    ) -> Entry:
        """Move an entry whose status is one of ``allowed`` to ``status``."""
        with self._tx() as conn:
            row = self._row(conn, key)
            if row["status"] not in allowed:
                raise _wrong_status(key, action, row["status"], allowed)
            values.update(status=status, updated_at=_ts(utcnow()))
            assignments = ", ".join(f"{name} = :{name}" for name in values)
            conn.execute(
                f"UPDATE entries SET {assignments} WHERE key = :key", {**values, "key": key}
            )
            return _row_to_entry(self._row(conn, key))

    # -- reads -------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        rows = self._read("SELECT * FROM entries WHERE key = ?", (key,))
        return _row_to_entry(rows[0]) if rows else None

    def resolve(self, prefix: str) -> str:
        """The one key starting with ``prefix`` (at least 8 characters), for the CLI."""
        if self._read("SELECT 1 FROM entries WHERE key = ?", (prefix,)):
            return prefix
        if len(prefix) < MIN_PREFIX:
            raise StoreError(
                f"key prefix {prefix!r} is too short; give at least {MIN_PREFIX} characters",
                hint=_LIST_HINT,
            )
        upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        rows = self._read(
            "SELECT key FROM entries WHERE key >= ? AND key < ? ORDER BY key LIMIT 2",
            (prefix, upper),
        )
        if not rows:
            raise _unknown(prefix)
        if len(rows) > 1:
            raise StoreError(
                f"key prefix {prefix!r} matches several entries ({rows[0][0]}, {rows[1][0]}, …)",
                hint="Give more characters of the key.",
            )
        return str(rows[0][0])

    def list(self, client: str | None = None) -> list[Entry]:
        """Entries, most recently updated first; ``client`` matches ignoring case, as
        everywhere a client is a filter (the audit log, stats, the side panel)."""
        if client is None:
            rows = self._read("SELECT * FROM entries ORDER BY updated_at DESC, key")
        else:
            rows = self._read(
                "SELECT * FROM entries WHERE casefold(client) = ? ORDER BY updated_at DESC, key",
                (client.casefold(),),
            )
        return [_row_to_entry(row) for row in rows]

    def runs(self, key: str | None = None) -> builtins.list[RunRecord]:
        """Recorded runs, oldest first; an unknown key is an error, not an empty list."""
        if key is None:
            rows = self._read("SELECT * FROM runs ORDER BY id")
        else:
            if not self._read("SELECT 1 FROM entries WHERE key = ?", (key,)):
                raise _unknown(key)
            rows = self._read("SELECT * FROM runs WHERE key = ? ORDER BY id", (key,))
        return [
            RunRecord.model_validate({**dict(row), "details": json.loads(row["details"])})
            for row in rows
        ]

    # -- writes ------------------------------------------------------------------------

    def put(self, entry: Entry) -> Entry:
        """Store ``entry`` as the draft for its key, replacing any earlier plan.

        An existing key keeps what accumulates over its life (created_at, runs,
        last run, conversation, tokens); those grow only through their own atomic methods.
        """
        if entry.status != "draft":
            raise StoreError(
                f"put() stores drafts only, got status {entry.status!r}",
                hint="Use approve(), reject() or revoke() to change a status.",
                key=entry.key,
            )
        if entry.code and entry.code_sha256 != sha256_text(entry.code):
            raise StoreError("code_sha256 does not match the code", key=entry.key)
        row = _entry_to_row(entry.model_copy(update={"updated_at": utcnow()}))
        for name in ("reviewer", "approved_at", "reason", "revoked_by"):
            row[name] = None
        kept = {"created_at", "runs", "last_run_at", "last_outcome", "conversation"}
        kept |= {"tokens_in", "tokens_out"}
        replaced = [name for name in _ENTRY_COLUMNS if name != "key" and name not in kept]
        with self._tx() as conn:
            conn.execute(
                f"INSERT INTO entries ({', '.join(_ENTRY_COLUMNS)}) "
                f"VALUES ({', '.join(':' + name for name in _ENTRY_COLUMNS)}) "
                f"ON CONFLICT (key) DO UPDATE SET "
                f"{', '.join(f'{name} = excluded.{name}' for name in replaced)}",
                row,
            )
            return _row_to_entry(self._row(conn, entry.key))

    def approve(self, key: str, reviewer: str, code_sha256: str) -> Entry:
        """Approve a draft, but only the exact code the reviewer saw (by its hash)."""
        if not reviewer.strip():
            raise StoreError("an approval needs a reviewer name", key=key)
        with self._tx() as conn:
            entry = _row_to_entry(self._row(conn, key))
            if entry.status != "draft":
                raise _wrong_status(key, "approve", entry.status, ("draft",))
            if not entry.code:
                raise StoreError(
                    f"entry {key[:12]} has no compiled code yet (the plan has unresolved steps)",
                    key=key,
                )
            actual = sha256_text(entry.code)
            if not code_sha256 == entry.code_sha256 == actual:
                raise StoreError(
                    f"code hash mismatch for entry {key[:12]}: approving {code_sha256[:12]!r}, "
                    f"stored code is {actual[:12]!r}",
                    hint="Review the current code again before approving.",
                    key=key,
                )
            now = _ts(utcnow())
            conn.execute(
                "UPDATE entries SET status = 'approved', reviewer = ?, approved_at = ?, "
                "updated_at = ? WHERE key = ?",
                (reviewer, now, now, key),
            )
            return _row_to_entry(self._row(conn, key))

    def reject(self, key: str, reviewer: str, reason: str) -> Entry:
        if not reason.strip():
            raise StoreError("a rejection needs a reason", key=key)
        return self._transition(
            key, "reject", ("draft",), "rejected", reviewer=reviewer, reason=reason
        )

    def revoke(self, key: str, actor: str, reason: str = "") -> Entry:
        """Revoke an entry so replay stops using it; a new draft must be approved again."""
        return self._transition(
            key,
            "revoke",
            ("draft", "approved", "rejected"),
            "revoked",
            reason=reason or None,
            revoked_by=actor,
        )

    def record_run(
        self,
        key: str,
        *,
        outcome: Outcome,
        started_at: datetime,
        finished_at: datetime,
        platform: str,
        rows_in: int | None = None,
        rows_out: int | None = None,
        details: dict[str, Any] | None = None,
        batch_id: str | None = None,
    ) -> Entry:
        """Count a run and keep its record; one transaction, so parallel runs add up."""
        record = RunRecord(
            id=0,
            key=key,
            started_at=started_at,
            finished_at=finished_at,
            outcome=outcome,
            platform=platform,
            rows_in=rows_in,
            rows_out=rows_out,
            seconds=0.0,
            details=details or {},
            batch_id=batch_id,
        )
        record.seconds = max(0.0, (record.finished_at - record.started_at).total_seconds())
        with self._tx() as conn:
            self._row(conn, key)
            conn.execute(
                "INSERT INTO runs (key, started_at, finished_at, outcome, platform, rows_in, "
                "rows_out, seconds, details, batch_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    _ts(record.started_at),
                    _ts(record.finished_at),
                    outcome,
                    platform,
                    rows_in,
                    rows_out,
                    record.seconds,
                    _json(record.details),
                    batch_id,
                ),
            )
            conn.execute(
                "UPDATE entries SET runs = runs + 1, last_run_at = ?, last_outcome = ? "
                "WHERE key = ?",
                (_ts(record.finished_at), outcome, key),
            )
            return _row_to_entry(self._row(conn, key))

    def add_conversation(self, key: str, turns: builtins.list[dict[str, Any]]) -> Entry:
        """Append chat turns; read and write in one transaction so no turn is lost."""
        with self._tx() as conn:
            stored = json.loads(self._row(conn, key)["conversation"])
            conn.execute(
                "UPDATE entries SET conversation = ?, updated_at = ? WHERE key = ?",
                (_json(stored + list(turns)), _ts(utcnow()), key),
            )
            return _row_to_entry(self._row(conn, key))

    def add_tokens(self, key: str, tokens_in: int, tokens_out: int) -> Entry:
        if tokens_in < 0 or tokens_out < 0:
            raise StoreError("token counts cannot be negative", key=key)
        with self._tx() as conn:
            self._row(conn, key)
            conn.execute(
                "UPDATE entries SET tokens_in = tokens_in + ?, tokens_out = tokens_out + ? "
                "WHERE key = ?",
                (tokens_in, tokens_out, key),
            )
            return _row_to_entry(self._row(conn, key))

    # -- batches -----------------------------------------------------------------------

    def start_batch(self, batch_id: str, manifest: str, clients: int) -> BatchRecord:
        """Record a batch (or a resumed one: its end is cleared until it ends again)."""
        record = BatchRecord(
            batch_id=batch_id, manifest=manifest, clients=clients, started_at=utcnow()
        )
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO batches (batch_id, manifest, clients, started_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (batch_id) DO UPDATE SET finished_at = NULL, exit_code = NULL",
                (batch_id, manifest, clients, _ts(record.started_at)),
            )
        return record

    def end_batch(self, batch_id: str, exit_code: int) -> None:
        with self._tx() as conn:
            conn.execute(
                "UPDATE batches SET finished_at = ?, exit_code = ? WHERE batch_id = ?",
                (_ts(utcnow()), exit_code, batch_id),
            )

    def batch(self, batch_id: str) -> BatchRecord:
        rows = self._read("SELECT * FROM batches WHERE batch_id = ?", (batch_id,))
        if not rows:
            raise StoreError(
                f"no batch {batch_id!r} in the store",
                hint="Pass the batch id a `batch` printed (its first line).",
                file=str(self.path),
            )
        return BatchRecord.model_validate(dict(rows[0]))

    def batch_succeeded(self, batch_id: str) -> set[str]:
        """The clients (as the manifest spells them) with a succeeded run in this batch."""
        rows = self._read(
            "SELECT DISTINCT entries.client FROM runs JOIN entries ON entries.key = runs.key "
            "WHERE runs.batch_id = ? AND runs.outcome = 'succeeded'",
            (batch_id,),
        )
        return {row["client"] for row in rows}
