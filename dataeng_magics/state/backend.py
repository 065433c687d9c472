"""Which store and audit log the settings name: every front end opens state here.

Unset ``store_url``: the SQLite file and the JSONL log in the state directory (``home``).
``postgresql://…``: both in that database, shared by a team and by clusters whose local
disk does not survive them.
"""

from __future__ import annotations

import functools
from pathlib import Path

from dataeng_magics.config import Settings
from dataeng_magics.state import db
from dataeng_magics.state.audit import AuditLog, AuditTrail
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


def open_store(settings: Settings, credential: db.TokenCredential | None = None) -> Store:
    if credential is None and settings.store_url and settings.store_auth == "entra_id":
        credential = _entra()
    return Store(store_target(settings), credential=credential)


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
