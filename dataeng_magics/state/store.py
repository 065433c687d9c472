"""The plan cache: each key's current plan, its code, its status and its runs.

Two backends behind this one class (SQLAlchemy Core), chosen by ``store_url``: the
embedded SQLite file in the state directory (WAL, ``BEGIN IMMEDIATE`` for every write,
safe for several processes on one machine, not on a network mount), or PostgreSQL for a
team and for clusters whose local disk does not outlive them (row locks for every
read-modify-write). Keys are exact here; ``resolve`` turns a short prefix typed at the
CLI into a key.
"""

from __future__ import annotations

import builtins
import json
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from filelock import FileLock, Timeout
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_core import from_json, to_jsonable_python
from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from dataeng_magics.canonical import sha256_text
from dataeng_magics.errors import StoreError
from dataeng_magics.state import db
from dataeng_magics.state.schema import batches, entries, leases, runs

#: What ``store migrate`` copies, in an order that keeps references valid.
_COPIED = (entries, batches, runs)

Status = Literal["draft", "approved", "rejected", "revoked"]
Outcome = Literal["succeeded", "validation_failed", "failed"]

#: An aware datetime normalised to UTC, so stored text sorts and compares correctly.
UtcDatetime = Annotated[AwareDatetime, AfterValidator(lambda value: value.astimezone(UTC))]

MIN_PREFIX = 8
_LIST_HINT = "Run `dataeng-magics cache list` to see keys."


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
    run_id: str | None = None  # None for runs recorded before run ids
    batch_id: str | None = None


class Lease(BaseModel):
    """A run in progress as the store knows it: renewed while the run goes on, deleted
    when it ends. ``state`` says whether it is still running or was interrupted."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    key: str
    host: str
    pid: int
    actor: str
    started_at: UtcDatetime
    expires_at: UtcDatetime

    def state(self, now: datetime | None = None) -> Literal["running", "interrupted"]:
        """Interrupted when the lease expired, or its process on this host is gone."""
        if (now or utcnow()) > self.expires_at:
            return "interrupted"
        if self.host == socket.gethostname() and not _alive(self.pid):
            return "interrupted"
        return "running"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


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

#: The per-key statements, built once: building a select of every column and its cache
#: key costs more than SQLite's lookup, and a statement reused keeps its cache key.
_ENTRY_BY_KEY = select(entries).where(entries.c.key == bindparam("key"))
_ENTRY_FOR_UPDATE = _ENTRY_BY_KEY.with_for_update()
_KEY_EXISTS = select(entries.c.key).where(entries.c.key == bindparam("key"))


def _row_to_entry(row: Row[Any]) -> Entry:
    """Validated, not constructed: a row is only as trusted as the file holding it, and
    validation is a small part of a lookup. The conversation (a long chat can be 100 kB)
    is decoded by pydantic's JSON parser, about twice as fast as ``json.loads``."""
    data = dict(row._mapping)
    data["conversation"] = from_json(data["conversation"])
    return Entry.model_validate(data)


def _entry_to_row(entry: Entry) -> dict[str, Any]:
    data = {name: getattr(entry, name) for name in _ENTRY_COLUMNS}
    for name in _DATETIME_COLUMNS:
        if data[name] is not None:
            data[name] = _ts(data[name])
    data["conversation"] = _json(entry.conversation)
    return data


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
    """The cache on SQLite (a path) or PostgreSQL (a URL); every write one transaction."""

    def __init__(self, target: Path | str, *, credential: db.TokenCredential | None = None) -> None:
        self.url = db.parse_url(target)
        self.where = db.shown(self.url)
        self.sqlite = self.url.get_backend_name() == "sqlite"
        self.path = Path(str(self.url.database)) if self.sqlite else None
        self.engine = db.engine_for(self.url, credential)
        if self.path is not None:
            self._open_sqlite(self.path)
        else:
            with db.wrapped("open", self.where), self.engine.connect() as conn:
                db.check_schema(conn, self.where)

    def _open_sqlite(self, path: Path) -> None:
        """Create or upgrade the user's own SQLite file. Switching to WAL fails at once
        (no busy wait) if another process is doing the same, so this is serialised
        with a file lock."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder: {exc}", file=self.where) from exc
        try:
            with FileLock(str(path) + ".lock", timeout=30), db.wrapped("open", self.where):
                with self.engine.connect() as conn:  # outside a transaction, as WAL needs
                    raw = conn.connection.driver_connection
                    assert raw is not None
                    if raw.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        raw.execute("PRAGMA journal_mode=WAL")
                with self._tx() as conn:
                    db.upgrade(conn)
        except Timeout as exc:
            raise StoreError(f"cannot open the cache store: {exc}", file=self.where) from exc

    def close(self) -> None:
        """Nothing to release per store: engines are shared per URL and process."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A write transaction; on SQLite it takes the write lock up front."""
        with db.wrapped("write", self.where), db.transaction(self.engine) as conn:
            yield conn

    def _read(
        self, statement: Any, params: dict[str, Any] | None = None
    ) -> builtins.list[Row[Any]]:
        with db.wrapped("read", self.where), self.engine.connect() as conn:
            return builtins.list(conn.execute(statement, params).fetchall())

    @staticmethod
    def _row(conn: Connection, key: str) -> Row[Any]:
        """The entry's row, locked until the transaction ends (PostgreSQL)."""
        row = conn.execute(_ENTRY_FOR_UPDATE, {"key": key}).first()
        if row is None:
            raise _unknown(key)
        return row

    def _get(self, conn: Connection, key: str) -> Entry:
        row = conn.execute(_ENTRY_BY_KEY, {"key": key}).first()
        assert row is not None  # read inside the transaction that just wrote it
        return _row_to_entry(row)

    def _transition(
        self, key: str, action: str, allowed: tuple[Status, ...], status: Status, **values: Any
    ) -> Entry:
        """Move an entry whose status is one of ``allowed`` to ``status``."""
        with self._tx() as conn:
            row = self._row(conn, key)
            if row.status not in allowed:
                raise _wrong_status(key, action, row.status, allowed)
            values.update(status=status, updated_at=_ts(utcnow()))
            conn.execute(update(entries).where(entries.c.key == key).values(**values))
            return self._get(conn, key)

    # -- reads -------------------------------------------------------------------------

    def get(self, key: str) -> Entry | None:
        rows = self._read(_ENTRY_BY_KEY, {"key": key})
        return _row_to_entry(rows[0]) if rows else None

    def resolve(self, prefix: str) -> str:
        """The one key starting with ``prefix`` (at least 8 characters), for the CLI."""
        if self._read(_KEY_EXISTS, {"key": prefix}):
            return prefix
        if len(prefix) < MIN_PREFIX:
            raise StoreError(
                f"key prefix {prefix!r} is too short; give at least {MIN_PREFIX} characters",
                hint=_LIST_HINT,
            )
        rows = self._read(
            select(entries.c.key)
            .where(entries.c.key.startswith(prefix, autoescape=True))
            .order_by(entries.c.key)
            .limit(2)
        )
        if not rows:
            raise _unknown(prefix)
        if len(rows) > 1:
            raise StoreError(
                f"key prefix {prefix!r} matches several entries ({rows[0][0]}, {rows[1][0]}, …)",
                hint="Give more characters of the key.",
            )
        return str(rows[0][0])

    def list(self, client: str | None = None) -> builtins.list[Entry]:
        """Entries, most recently updated first; ``client`` matches ignoring case, as
        everywhere a client is a filter (the audit log, stats, the side panel), with
        Python's Unicode case folding (neither database's lower() does the same)."""
        rows = self._read(select(entries).order_by(entries.c.updated_at.desc(), entries.c.key))
        found = [_row_to_entry(row) for row in rows]
        if client is None:
            return found
        wanted = client.casefold()
        return [entry for entry in found if entry.client.casefold() == wanted]

    def runs(self, key: str | None = None) -> builtins.list[RunRecord]:
        """Recorded runs, oldest first; an unknown key is an error, not an empty list."""
        query = select(runs).order_by(runs.c.id)
        if key is not None:
            if not self._read(_KEY_EXISTS, {"key": key}):
                raise _unknown(key)
            query = query.where(runs.c.key == key)
        return self._runs(query)

    def runs_by_id(self, prefix: str) -> builtins.list[RunRecord]:
        """Runs whose run id starts with ``prefix``, oldest first."""
        query = select(runs).where(runs.c.run_id.startswith(prefix, autoescape=True))
        return self._runs(query.order_by(runs.c.id))

    def _runs(self, query: Any) -> builtins.list[RunRecord]:
        return [
            RunRecord.model_validate({**row._mapping, "details": from_json(row.details)})
            for row in self._read(query)
        ]

    def count(self) -> dict[str, int]:
        """Rows per table, for `dataeng-magics store info`."""
        return {
            table.name: int(self._read(select(func.count()).select_from(table))[0][0])
            for table in (entries, runs, batches, leases)
        }

    def dump(self) -> dict[str, builtins.list[dict[str, Any]]]:
        """Every entry, batch and run row as stored, by table (``store migrate``). Leases
        stay: they belong to runs in progress on this store."""
        return {
            table.name: [
                dict(row._mapping)
                for row in self._read(select(table).order_by(*table.primary_key.columns))
            ]
            for table in _COPIED
        }

    # -- writes ------------------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One write transaction for steps that must commit together (``store migrate``:
        the rows and, in the same database, the audit chain)."""
        with self._tx() as conn:
            yield conn

    def load(
        self, rows: dict[str, builtins.list[dict[str, Any]]], conn: Connection | None = None
    ) -> None:
        """Copy ``dump()``'s rows into this empty store in one transaction (``conn``'s
        when given: ``store migrate``); runs keep their order and get this store's ids."""
        if conn is None:
            with self._tx() as own:
                self.load(rows, own)
            return
        for table in _COPIED:
            if conn.execute(select(func.count()).select_from(table)).scalar():
                raise StoreError(
                    f"the target store is not empty (its {table.name} table has rows)",
                    hint="Migrate into a new, empty database.",
                    file=self.where,
                )
        for table in _COPIED:
            copied = [
                {k: v for k, v in r.items() if not (table is runs and k == "id")}
                for r in rows.get(table.name, [])
            ]
            if copied:
                conn.execute(insert(table), copied)

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
        dialect = sqlite if self.sqlite else postgresql
        upsert = dialect.insert(entries).values(**row)
        upsert = upsert.on_conflict_do_update(
            index_elements=["key"], set_={name: upsert.excluded[name] for name in replaced}
        )
        with self._tx() as conn:
            conn.execute(upsert)
            return self._get(conn, entry.key)

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
                update(entries)
                .where(entries.c.key == key)
                .values(status="approved", reviewer=reviewer, approved_at=now, updated_at=now)
            )
            return self._get(conn, key)

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
        run_id: str | None = None,
        batch_id: str | None = None,
    ) -> Entry:
        """Count a run and keep its record, and end its lease; one transaction, so
        parallel runs add up."""
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
                insert(runs).values(
                    key=key,
                    started_at=_ts(record.started_at),
                    finished_at=_ts(record.finished_at),
                    outcome=outcome,
                    platform=platform,
                    rows_in=rows_in,
                    rows_out=rows_out,
                    seconds=record.seconds,
                    details=_json(record.details),
                    run_id=run_id,
                    batch_id=batch_id,
                )
            )
            conn.execute(
                update(entries)
                .where(entries.c.key == key)
                .values(
                    runs=entries.c.runs + 1,
                    last_run_at=_ts(record.finished_at),
                    last_outcome=outcome,
                )
            )
            if run_id is not None:
                conn.execute(delete(leases).where(leases.c.run_id == run_id))
            return self._get(conn, key)

    def add_conversation(self, key: str, turns: builtins.list[dict[str, Any]]) -> Entry:
        """Append chat turns; read and write in one transaction so no turn is lost."""
        with self._tx() as conn:
            stored = from_json(self._row(conn, key).conversation)
            conn.execute(
                update(entries)
                .where(entries.c.key == key)
                .values(conversation=_json(stored + list(turns)), updated_at=_ts(utcnow()))
            )
            return self._get(conn, key)

    def add_tokens(self, key: str, tokens_in: int, tokens_out: int) -> Entry:
        if tokens_in < 0 or tokens_out < 0:
            raise StoreError("token counts cannot be negative", key=key)
        with self._tx() as conn:
            self._row(conn, key)
            conn.execute(
                update(entries)
                .where(entries.c.key == key)
                .values(
                    tokens_in=entries.c.tokens_in + tokens_in,
                    tokens_out=entries.c.tokens_out + tokens_out,
                )
            )
            return self._get(conn, key)

    # -- leases: runs in progress ---------------------------------------------------------

    def start_lease(self, run_id: str, key: str, actor: str, seconds: float) -> Lease:
        """Say that run ``run_id`` of ``key`` is going on here, for ``seconds``."""
        now = utcnow()
        lease = Lease(
            run_id=run_id,
            key=key,
            host=socket.gethostname(),
            pid=os.getpid(),
            actor=actor,
            started_at=now,
            expires_at=now + timedelta(seconds=seconds),
        )
        row = lease.model_dump()
        row.update(started_at=_ts(lease.started_at), expires_at=_ts(lease.expires_at))
        with self._tx() as conn:
            conn.execute(insert(leases).values(**row))
        return lease

    def renew_lease(self, run_id: str, seconds: float) -> None:
        expires = _ts(utcnow() + timedelta(seconds=seconds))
        with self._tx() as conn:
            conn.execute(update(leases).where(leases.c.run_id == run_id).values(expires_at=expires))

    def leases(self) -> builtins.list[Lease]:
        """Runs started and not finished: running, or interrupted (``Lease.state``)."""
        rows = self._read(select(leases).order_by(leases.c.started_at))
        return [Lease.model_validate(dict(row._mapping)) for row in rows]

    def run_states(self, found: Iterable[Entry] | None = None) -> dict[str, str]:
        """Key -> "running" (a run of it is going on, here or elsewhere) or
        "interrupted" (its latest run started and never finished), for the keys of
        ``found`` (default: all) that have one."""
        last_run = {e.key: e.last_run_at for e in (self.list() if found is None else found)}
        now, states = utcnow(), dict[str, str]()
        for lease in self.leases():
            if lease.key not in last_run or states.get(lease.key) == "running":
                continue
            state, finished = lease.state(now), last_run[lease.key]
            if state == "running" or finished is None or finished < lease.started_at:
                states[lease.key] = state
        return states

    # -- batches -----------------------------------------------------------------------

    def start_batch(self, batch_id: str, manifest: str, clients: int) -> BatchRecord:
        """Record a batch (or a resumed one: its end is cleared until it ends again)."""
        record = BatchRecord(
            batch_id=batch_id, manifest=manifest, clients=clients, started_at=utcnow()
        )
        with self._tx() as conn:
            known = conn.execute(
                select(batches.c.batch_id).where(batches.c.batch_id == batch_id)
            ).first()
            if known is None:
                conn.execute(insert(batches).values(batch_id=batch_id, manifest=manifest,
                             clients=clients, started_at=_ts(record.started_at)))  # fmt: skip
            else:
                conn.execute(update(batches).where(batches.c.batch_id == batch_id)
                             .values(finished_at=None, exit_code=None))  # fmt: skip
        return record

    def end_batch(self, batch_id: str, exit_code: int) -> None:
        with self._tx() as conn:
            conn.execute(update(batches).where(batches.c.batch_id == batch_id)
                         .values(finished_at=_ts(utcnow()), exit_code=exit_code))  # fmt: skip

    def batch(self, batch_id: str) -> BatchRecord:
        rows = self._read(select(batches).where(batches.c.batch_id == batch_id))
        if not rows:
            raise StoreError(
                f"no batch {batch_id!r} in the store",
                hint="Pass the batch id a `batch` printed (its first line).",
                file=self.where,
            )
        return BatchRecord.model_validate(dict(rows[0]._mapping))

    def batch_succeeded(self, batch_id: str) -> dict[str, str | None]:
        """The clients (as the manifest spells them) with a succeeded run in this batch,
        each with that run's id (which names its evidence record)."""
        rows = self._read(
            select(entries.c.client, runs.c.run_id)
            .select_from(runs.join(entries, entries.c.key == runs.c.key))
            .where(runs.c.batch_id == batch_id, runs.c.outcome == "succeeded")
            .order_by(runs.c.id)
        )  # fmt: skip
        return {row.client: row.run_id for row in rows}
