"""The audit chain in the store's database (PostgreSQL): the same records, hashes and
verification as the JSONL log, in an append-only table.

Appends from every machine serialise on one transaction-scoped advisory lock, read the
chain head and insert the next record, so the chain never forks and the runtime user
needs only INSERT and SELECT on the table (``seq`` is the primary key as well, so even a
writer that skipped the lock could not fork it). A process killed mid-append leaves
nothing: its transaction is rolled back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, text
from sqlalchemy.exc import SQLAlchemyError

from dataeng_magics.canonical import canonical_json
from dataeng_magics.errors import AuditError
from dataeng_magics.redact import redact
from dataeng_magics.state.audit import (
    AuditEvent,
    Chain,
    VerifyResult,
    new_record,
    record_hash,
)
from dataeng_magics.state.schema import audit_events

#: The advisory lock every appender takes (any fixed 64-bit number; "dem-audit").
APPEND_LOCK = 0x64656D2D61756474
_COLUMNS = tuple(column.name for column in audit_events.columns)
_BATCH = 10_000


def _record(row: Any) -> dict[str, Any]:
    record = dict(row._mapping)
    record["details"] = json.loads(record["details"])
    return record


class DbAuditLog:
    """The audit trail in a database table, with AuditLog's interface."""

    def __init__(self, engine: Engine, where: str) -> None:
        self.engine = engine
        self.where = where

    def _fail(self, action: str, exc: SQLAlchemyError) -> AuditError:
        detail = redact(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0])
        return AuditError(f"cannot {action} the audit log: {detail}", file=self.where)

    @staticmethod
    def _head(conn: Connection) -> dict[str, Any] | None:
        row = conn.execute(
            select(audit_events).order_by(audit_events.c.seq.desc()).limit(1)
        ).first()
        return None if row is None else _record(row)

    def last(self) -> AuditEvent | None:
        try:
            with self.engine.connect() as conn:
                record = self._head(conn)
        except SQLAlchemyError as exc:
            raise self._fail("read", exc) from None
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
        """Add one event at the head of the chain; durable when this returns."""
        try:
            with self.engine.begin() as conn:
                conn.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": APPEND_LOCK})
                record = new_record(
                    self._head(conn), event, actor, client, key, plan_sha256, code_sha256, details
                )
                conn.execute(insert(audit_events).values(**self._row(record)))
        except SQLAlchemyError as exc:
            raise self._fail("write", exc) from None
        return AuditEvent.model_validate(record)

    @staticmethod
    def _row(record: dict[str, Any]) -> dict[str, Any]:
        return {**record, "details": canonical_json(record["details"])}

    def extend(self, records: Iterable[dict[str, Any]], conn: Connection | None = None) -> int:
        """Copy a whole chain, verbatim, into an empty table (``store migrate``), in one
        transaction: ``conn``'s when given (the migration's, which also holds the store's
        rows, so both commit or neither does), else its own."""
        try:
            if conn is not None:
                return self._extend(conn, records)
            with self.engine.begin() as own:
                return self._extend(own, records)
        except SQLAlchemyError as exc:
            raise self._fail("write", exc) from None

    def _extend(self, conn: Connection, records: Iterable[dict[str, Any]]) -> int:
        conn.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": APPEND_LOCK})
        if conn.execute(select(func.count()).select_from(audit_events)).scalar():
            raise AuditError("the target audit log is not empty", file=self.where)
        count = 0
        batch: list[dict[str, Any]] = []
        for record in records:
            batch.append(self._row(record))
            if len(batch) == _BATCH:
                conn.execute(insert(audit_events), batch)
                count, batch = count + len(batch), []
        if batch:
            conn.execute(insert(audit_events), batch)
            count += len(batch)
        return count

    def _rows(self, *conditions: Any, conn: Connection | None = None) -> Iterator[dict[str, Any]]:
        """Records in chain order, streamed (a server-side cursor); through ``conn`` when
        given, so a transaction sees what it has written and not yet committed."""
        query = select(audit_events).where(*conditions).order_by(audit_events.c.seq)
        try:
            if conn is not None:
                yield from self._stream(conn, query)
                return
            with self.engine.connect() as own:
                yield from self._stream(own, query)
        except SQLAlchemyError as exc:
            raise self._fail("read", exc) from None

    @staticmethod
    def _stream(conn: Connection, query: Any) -> Iterator[dict[str, Any]]:
        options = {"stream_results": True, "yield_per": _BATCH}  # for this statement only
        result = conn.execute(query, execution_options=options)
        for row in result:
            yield _record(row)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every record as stored (what ``store migrate`` copies)."""
        return self._rows()

    def events(self, *, key: str | None = None, client: str | None = None) -> Iterator[AuditEvent]:
        """Events in order, optionally for one key or one client (ignoring case)."""
        conditions = [] if key is None else [audit_events.c.key == key]
        wanted = None if client is None else client.casefold()
        for record in self._rows(*conditions):
            if wanted is None or (record["client"] or "").casefold() == wanted:
                yield AuditEvent.model_validate(record)

    def verify(self, conn: Connection | None = None) -> VerifyResult:
        """Walk the chain from seq 1, as ``AuditLog.verify`` walks its file (a "line" is
        the record's position in the chain); inside ``conn``'s transaction when given."""
        chain = Chain()
        for number, record in enumerate(self._rows(conn=conn), 1):
            broken = chain.link(number, record)
            if broken is not None:
                return broken
            if record_hash(record) != record["hash"]:
                return chain.bad(number, "hash does not match the record (the row was edited)")
            chain.accept(record["hash"])
        return VerifyResult(ok=True, count=chain.count)
