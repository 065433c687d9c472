"""Which store and audit log the settings name: every front end opens state here.

Unset ``store_url``: the SQLite file and the JSONL log in the state directory (``home``).
``postgresql://…``: both in that database, shared by a team and by clusters whose local
disk does not survive them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from dataeng_magics.config import Settings
from dataeng_magics.errors import StoreError
from dataeng_magics.state import db
from dataeng_magics.state.audit import AuditLog, AuditTrail, VerifyResult
from dataeng_magics.state.schema import HEAD
from dataeng_magics.state.store import Store


@functools.cache
def _entra() -> db.TokenCredential:
    """One credential per process, so its token cache is shared by every engine."""
    return db.entra_credential()


def store_target(settings: Settings) -> Path | str:
    return settings.store_url or settings.store_path


def exists(settings: Settings) -> bool:
    """Whether there is state to read (reading must not create a state directory)."""
    return settings.store_url is not None or settings.store_path.exists()


def open_store(settings: Settings) -> Store:
    return Store(store_target(settings), credential=_credential(settings))


def audit_of(store: Store) -> AuditTrail:
    """The audit log that goes with ``store``: the JSONL file beside a SQLite store, or
    the audit table of its database."""
    if store.path is not None:
        return AuditLog(store.path.parent / "audit.jsonl")
    from dataeng_magics.state.audit_db import DbAuditLog

    return DbAuditLog(store.engine, store.where)


def open_audit(settings: Settings) -> AuditTrail:
    if settings.store_url is None:  # no need to open the store
        return AuditLog(settings.audit_path)
    return audit_of(open_store(settings))


def _credential(settings: Settings) -> db.TokenCredential | None:
    return _entra() if settings.store_url and settings.store_auth == "entra_id" else None


def info(settings: Settings) -> dict[str, Any]:
    """What ``store info`` says: backend, where (never a password), schema version,
    rows, runs in progress, and the audit chain's length and head."""
    url = db.parse_url(store_target(settings))
    facts: dict[str, Any] = {
        "backend": url.get_backend_name(),
        "store": db.shown(url),
        "schema": None,
        "needed": HEAD,
    }
    if not exists(settings):
        return facts
    engine = db.engine_for(url, _credential(settings))
    with db.wrapped("read", facts["store"]), engine.connect() as conn:
        facts["schema"] = db.current_revision(conn)
    if facts["schema"] != HEAD and url.get_backend_name() != "sqlite":
        return facts  # normal use would refuse it: say so, and what upgrades it
    store = open_store(settings)
    facts["schema"] = HEAD
    facts.update(store.count())
    states = list(store.run_states().values())
    facts.update(running=states.count("running"), interrupted=states.count("interrupted"))
    audit = audit_of(store)
    head = audit.last()
    facts.update(
        audit=audit.where,
        audit_records=0 if head is None else head.seq,
        audit_head=None if head is None else head.hash,
    )
    return facts


def info_text(facts: dict[str, Any]) -> str:
    lines = [f"store: {facts['store']} ({facts['backend']})"]
    if facts["schema"] != facts["needed"]:
        lines.append(
            f"schema version: {facts['schema'] or 'none'}; this release needs "
            f"{facts['needed']}: run `dataeng-magics store upgrade`"
        )
        return "\n".join(lines)
    lines += [
        f"schema version: {facts['schema']} (current)",
        f"entries: {facts['entries']}, runs: {facts['runs']} "
        f"({facts['running']} running, {facts['interrupted']} interrupted), "
        f"batches: {facts['batches']}",
        f"audit log: {facts['audit']}: {facts['audit_records']} records"
        + (f", head {facts['audit_head'][:16]}" if facts["audit_head"] else ""),
    ]
    return "\n".join(lines)


def upgrade(settings: Settings, url: str | None = None) -> str:
    """``store upgrade``: create or migrate the schema, with ``url`` (a user that may
    create tables) or the store_url setting."""
    return db.upgrade_target(url or store_target(settings), _credential(settings))


def migrate(settings: Settings, to: str) -> str:
    """``store migrate --to URL``: copy every entry, run and the whole audit chain into
    an empty store, and verify the chain there, all or nothing (``_copy``). The source
    chain must verify first."""
    source = open_store(settings)
    source_audit = audit_of(source)
    checked = source_audit.verify()
    if not checked.ok:
        raise StoreError(
            f"the source audit log does not verify: {checked.describe(source_audit.where)}",
            hint="Find the damage with `dataeng-magics audit verify` before migrating.",
        )
    db.upgrade_target(to)
    target = Store(to)
    target_audit = audit_of(target)
    if target_audit.last() is not None:
        raise StoreError(
            f"the target audit log is not empty ({target_audit.where})",
            hint="Migrate into a new, empty database.",
        )
    rows = source.dump()
    copied = _copy(target, target_audit, rows, source_audit.records(), checked.count)
    return (
        f"copied {len(rows['entries'])} entries, {len(rows['runs'])} runs, "
        f"{len(rows['batches'])} batches and {copied} audit records "
        f"from {source.where} to {target.where}; the chain verifies there "
        f"({copied} records)"
    )


def _copy(
    target: Store,
    audit: AuditTrail,
    rows: dict[str, list[dict[str, Any]]],
    records: Iterable[dict[str, Any]],
    expected: int,
) -> int:
    """Copy the rows and the chain so that a failure anywhere leaves the target empty,
    and ``migrate`` can be run again. With the chain in the same database, one
    transaction holds both. Beside a SQLite file, the JSONL log is written whole
    (atomically) inside the rows' transaction, before it commits, and deleted again if
    the rows do not commit."""

    def verified(result: VerifyResult) -> None:
        if not result.ok or result.count != expected:
            raise StoreError(
                f"the copied audit chain does not verify: {result.describe(audit.where)}",
                file=target.where,
            )

    if not isinstance(audit, AuditLog):
        from dataeng_magics.state.audit_db import DbAuditLog

        assert isinstance(audit, DbAuditLog)
        with target.transaction() as conn:
            target.load(rows, conn)
            copied = audit.extend(records, conn)
            verified(audit.verify(conn))
        return copied
    written = False
    try:
        with target.transaction() as conn:
            target.load(rows, conn)
            copied = audit.extend(records)
            written = True
            verified(audit.verify())
    except BaseException:
        if written:
            audit.discard()
        raise
    return copied


def store_command(settings: Settings, action: str, url: str | None, to: str | None,
                  role: str) -> str:  # fmt: skip
    """``dataeng-magics store ACTION`` and ``%transform store ACTION``: what to print."""
    if action == "upgrade":
        return upgrade(settings, url)
    if action == "migrate":
        assert to is not None  # the command's check
        return migrate(settings, to)
    if action == "grants":
        return ";\n".join(db.grant_statements(role)) + ";"
    return info_text(info(settings))
