"""The store's tables, once, for SQLite and PostgreSQL (SQLAlchemy Core).

Timestamps are fixed-width UTC ISO text on both backends, so ORDER BY is chronological
and a row copies between backends unchanged. The migrations in ``migrations/`` create
exactly these tables; ``HEAD`` is the revision this release needs.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

HEAD = "0003"

metadata = MetaData()

entries = Table(
    "entries",
    metadata,
    Column("key", Text, primary_key=True),
    Column("client", Text, nullable=False),
    Column("mapping_file", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("plan_json", Text, nullable=False),
    Column("pseudocode", Text, nullable=False),
    Column("code", Text, nullable=False),
    Column("plan_sha256", Text, nullable=False),
    Column("code_sha256", Text, nullable=False),
    Column("reviewer", Text),
    Column("approved_at", Text),
    Column("reason", Text),
    Column("revoked_by", Text),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Column("runs", Integer, nullable=False, server_default="0"),
    Column("last_run_at", Text),
    Column("last_outcome", Text),
    Column("conversation", Text, nullable=False, server_default="[]"),
    Column("tokens_in", Integer, nullable=False, server_default="0"),
    Column("tokens_out", Integer, nullable=False, server_default="0"),
)

runs = Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", Text, nullable=False),
    Column("started_at", Text, nullable=False),
    Column("finished_at", Text, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("platform", Text, nullable=False),
    Column("rows_in", Integer),
    Column("rows_out", Integer),
    Column("seconds", Float, nullable=False),
    Column("details", Text, nullable=False),
    Column("run_id", String(32)),  # the run's uuid4 hex (run_start, lease, evidence)
    Column("batch_id", Text),  # set by batch runs
)
Index("runs_by_key", runs.c.key, runs.c.id)
Index("runs_by_batch", runs.c.batch_id)

#: One row per ``batch`` of clients (``--resume`` finds its clients' runs by batch id).
batches = Table(
    "batches",
    metadata,
    Column("batch_id", Text, primary_key=True),
    Column("manifest", Text, nullable=False),
    Column("clients", Integer, nullable=False),
    Column("started_at", Text, nullable=False),
    Column("finished_at", Text),
    Column("exit_code", Integer),
)

#: One row per run in progress: who runs it where, renewed while it runs, deleted at
#: its end; a row whose process is gone or whose lease expired is an interrupted run.
leases = Table(
    "leases",
    metadata,
    Column("run_id", String(32), primary_key=True),
    Column("key", Text, nullable=False),
    Column("host", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("actor", Text, nullable=False),
    Column("started_at", Text, nullable=False),
    Column("expires_at", Text, nullable=False),
)

#: The audit chain on a database backend (PostgreSQL); SQLite keeps its JSONL file.
#: Append-only: the runtime user is granted INSERT and SELECT only.
audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("time", Text, nullable=False),
    Column("event", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("client", Text),
    Column("key", Text),
    Column("plan_sha256", Text),
    Column("code_sha256", Text),
    Column("details", Text, nullable=False),  # canonical JSON, as hashed
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
)
Index("audit_events_by_key", audit_events.c.key, audit_events.c.seq)
