"""Team state: run ids and batch ids on runs, run leases, and (on a database backend)
the append-only audit chain."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("run_id", sa.String(32)))
    op.add_column("runs", sa.Column("batch_id", sa.Text))
    op.create_table(
        "leases",
        sa.Column("run_id", sa.String(32), primary_key=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("host", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("started_at", sa.Text, nullable=False),
        sa.Column("expires_at", sa.Text, nullable=False),
    )
    if op.get_bind().dialect.name != "sqlite":  # SQLite keeps the JSONL audit log
        op.create_table(
            "audit_events",
            sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("time", sa.Text, nullable=False),
            sa.Column("event", sa.Text, nullable=False),
            sa.Column("actor", sa.Text, nullable=False),
            sa.Column("client", sa.Text),
            sa.Column("key", sa.Text),
            sa.Column("plan_sha256", sa.Text),
            sa.Column("code_sha256", sa.Text),
            sa.Column("details", sa.Text, nullable=False),
            sa.Column("prev_hash", sa.String(64), nullable=False),
            sa.Column("hash", sa.String(64), nullable=False, unique=True),
        )
        op.create_index("audit_events_by_key", "audit_events", ["key", "seq"])


def downgrade() -> None:
    op.drop_table("audit_events", if_exists=True)
    op.drop_table("leases")
    op.drop_column("runs", "batch_id")
    op.drop_column("runs", "run_id")
