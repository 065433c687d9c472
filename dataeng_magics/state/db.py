"""Connecting to the store's database and checking its schema version.

One setting, ``store_url``, picks the backend: unset (or a ``sqlite:///`` URL) is the
embedded SQLite file in the state directory; ``postgresql://`` is PostgreSQL through
psycopg 3. SQLite files belong to the user and are upgraded when opened; a shared
PostgreSQL schema is upgraded only by ``dataeng-magics store upgrade`` with a privileged
URL, and normal use refuses an older (or absent) schema rather than altering it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from dataeng_magics.errors import StoreError
from dataeng_magics.redact import redact, register_secret
from dataeng_magics.state.schema import HEAD

#: The scope of an Entra ID token for Azure Database for PostgreSQL.
ENTRA_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
_UPGRADE_HINT = "Run `dataeng-magics store upgrade` with a URL whose user may create tables."


class TokenCredential(Protocol):
    """What azure-identity's credentials offer (``get_token(scope).token``)."""

    def get_token(self, *scopes: str) -> Any: ...


def parse_url(target: str | Path) -> URL:
    """The SQLAlchemy URL of a store: a path is a SQLite file; ``postgresql://`` means
    psycopg 3. The password, if any, is registered as a secret so it is never shown."""
    if isinstance(target, Path) or "://" not in target:
        return URL.create("sqlite", database=str(Path(target).expanduser()))
    try:
        url = make_url(target)
    except ArgumentError:
        raise StoreError(
            "store_url is not a database URL",
            hint="Write it as postgresql://user@host:5432/dbname or sqlite:////path/store.sqlite.",
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(
            f"store_url uses {url.get_backend_name()!r}; the store runs on sqlite or postgresql",
            hint="Write it as postgresql://user@host:5432/dbname.",
        )
    if url.password:
        register_secret(str(url.password))
    return url


def shown(url: URL) -> str:
    """The URL as messages, logs and records may show it: never its password."""
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    return url.render_as_string(hide_password=True)


def _sqlite_engine(url: URL) -> Engine:
    """SQLite with SQLAlchemy: WAL, pooled connections (QueuePool: one per thread at a
    time, reused, since opening a file costs far more than a lookup), and writes that
    begin themselves (``transaction``). Pooled connections never cross fork(): engines are
    per process (``engine_for``), and a parent's stay referenced in the child, so the
    child never uses nor closes them.

    Only a pool event here: any engine-level (connection) event listener sends every
    statement, each read included, through SQLAlchemy's event dispatch, which cost more
    than the lookup itself."""
    engine = create_engine(url, connect_args={"timeout": 30.0})

    @event.listens_for(engine, "connect")
    def _connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None  # we issue BEGIN ourselves; a read is its own statement
        dbapi.execute("PRAGMA busy_timeout = 30000")

    return engine


def _postgres_engine(url: URL, credential: TokenCredential | None) -> Engine:
    engine = create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=8)
    if credential is not None:
        # Entra ID: a fresh token as the password of every new connection (the
        # credential caches it until shortly before it expires).
        @event.listens_for(engine, "do_connect")
        def _token(_dialect: Any, _record: Any, _args: Any, params: dict[str, Any]) -> None:
            token = str(credential.get_token(ENTRA_SCOPE).token)
            register_secret(token)
            params["password"] = token

    return engine


#: Every engine made in this process and its parents (never dropped: see _sqlite_engine).
_engines: dict[tuple[str, int, int], Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: URL, credential: TokenCredential | None = None) -> Engine:
    """One engine per URL, credential and process (a pool inherited through fork() is
    never used by the child)."""
    cache_key = (url.render_as_string(hide_password=False), id(credential), os.getpid())
    with _engines_lock:
        engine = _engines.get(cache_key)
        if engine is None:
            if url.get_backend_name() == "sqlite":
                engine = _sqlite_engine(url)
            else:
                engine = _postgres_engine(url, credential)
            _engines[cache_key] = engine
        return engine


def entra_credential() -> TokenCredential:
    """azure-identity's default chain (managed identity, Azure CLI, environment...)."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise StoreError(
            "store_auth = 'entra_id' needs azure-identity",
            hint='pip install "dataeng-magics[azure,postgres]"',
        ) from None
    return DefaultAzureCredential()


def _alembic_config(connection: Connection) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    config.attributes["connection"] = connection
    return config


def current_revision(connection: Connection) -> str | None:
    """The schema's Alembic revision; "0001" for a SQLite store made before Alembic
    (its tables exist but no version table does); None for an empty database. Read
    with plain SQL: normal use never imports Alembic."""
    tables = inspect(connection)
    if tables.has_table("alembic_version"):
        found = connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()
        return None if found is None else str(found)
    return "0001" if tables.has_table("entries") else None


def upgrade(connection: Connection) -> tuple[str | None, str]:
    """Bring the schema to this release's revision; (before, after)."""
    from alembic import command

    before = current_revision(connection)
    if before == HEAD:
        return before, HEAD
    config = _alembic_config(connection)
    if before is not None:
        command.stamp(config, before)  # a pre-Alembic SQLite store: record what it holds
    command.upgrade(config, "head")
    return before, HEAD


def check_schema(connection: Connection, where: str) -> None:
    """Refuse a schema older or newer than this release, naming what to do."""
    revision = current_revision(connection)
    if revision == HEAD:
        return
    if revision is None:
        raise StoreError("the store has no tables yet", hint=_UPGRADE_HINT, file=where)
    if revision.isdigit() and int(revision) < int(HEAD):
        raise StoreError(
            f"the store has schema version {revision}; this release needs {HEAD}",
            hint=_UPGRADE_HINT,
            file=where,
        )
    raise StoreError(
        f"the store at {where} has schema version {revision}, newer than this release ({HEAD})",
        hint="Upgrade dataeng-magics (pip install -U dataeng-magics).",
        file=where,
    )


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """One write transaction, committed when the block ends. On SQLite it takes the
    write lock up front (BEGIN IMMEDIATE), so a read-modify-write cannot interleave with
    another process's; PostgreSQL writers lock the rows they read (FOR UPDATE)."""
    with engine.connect() as conn, conn.begin():
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        yield conn


@contextmanager
def wrapped(action: str, where: str) -> Iterator[None]:
    """Database errors as one-line StoreErrors naming the store (never its password)."""
    try:
        yield
    except SQLAlchemyError as exc:
        detail = redact(str(getattr(exc, "orig", None) or exc).strip().splitlines()[0])
        raise StoreError(f"cannot {action} the cache store: {detail}", file=where) from None


def upgrade_target(target: Path | str, credential: TokenCredential | None = None) -> str:
    """Create or upgrade the schema at ``target`` (``store upgrade``); what was done."""
    url = parse_url(target)
    where = shown(url)
    if url.get_backend_name() == "sqlite":
        Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
    with wrapped("upgrade", where), transaction(engine_for(url, credential)) as conn:
        before, after = upgrade(conn)
    if before == after:
        return f"the store at {where} is up to date (schema version {after})"
    return f"upgraded the store at {where} from schema version {before or 'none'} to {after}"


def grant_statements(role: str) -> list[str]:
    """What the runtime user needs on PostgreSQL, and no more: read and write the cache,
    runs and leases; only read and append the audit chain (never UPDATE or DELETE)."""
    return [
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON entries, runs, leases, batches TO {role}",
        f"GRANT USAGE ON SEQUENCE runs_id_seq TO {role}",
        f"GRANT SELECT, INSERT ON audit_events TO {role}",
        f"GRANT SELECT ON alembic_version TO {role}",
    ]
