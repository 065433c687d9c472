"""Batches: one row per ``batch`` of clients; runs are found by their batch id."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("batch_id", sa.Text, primary_key=True),
        sa.Column("manifest", sa.Text, nullable=False),
        sa.Column("clients", sa.Integer, nullable=False),
        sa.Column("started_at", sa.Text, nullable=False),
        sa.Column("finished_at", sa.Text),
        sa.Column("exit_code", sa.Integer),
    )
    op.create_index("runs_by_batch", "runs", ["batch_id"])


def downgrade() -> None:
    op.drop_index("runs_by_batch", "runs")
    op.drop_table("batches")
