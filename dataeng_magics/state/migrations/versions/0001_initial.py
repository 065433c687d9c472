"""The 0.1 schema: entries and runs (what SQLite stores created before Alembic hold)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "entries",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("client", sa.Text, nullable=False),
        sa.Column("mapping_file", sa.Text, nullable=False),
        sa.Column(
            "status",
            sa.Text,
            sa.CheckConstraint("status IN ('draft', 'approved', 'rejected', 'revoked')"),
            nullable=False,
        ),
        sa.Column("plan_json", sa.Text, nullable=False),
        sa.Column("pseudocode", sa.Text, nullable=False),
        sa.Column("code", sa.Text, nullable=False),
        sa.Column("plan_sha256", sa.Text, nullable=False),
        sa.Column("code_sha256", sa.Text, nullable=False),
        sa.Column("reviewer", sa.Text),
        sa.Column("approved_at", sa.Text),
        sa.Column("reason", sa.Text),
        sa.Column("revoked_by", sa.Text),
        sa.Column("created_at", sa.Text, nullable=False),
        sa.Column("updated_at", sa.Text, nullable=False),
        sa.Column("runs", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_run_at", sa.Text),
        sa.Column("last_outcome", sa.Text),
        sa.Column("conversation", sa.Text, nullable=False, server_default="[]"),
        sa.Column("tokens_in", sa.Integer, nullable=False, server_default="0"),
        sa.Column("tokens_out", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_index("entries_by_updated", "entries", ["updated_at"])
    op.create_index("entries_by_client", "entries", ["client", "updated_at"])
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("started_at", sa.Text, nullable=False),
        sa.Column("finished_at", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("platform", sa.Text, nullable=False),
        sa.Column("rows_in", sa.Integer),
        sa.Column("rows_out", sa.Integer),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
    )
    op.create_index("runs_by_key", "runs", ["key", "id"])


def downgrade() -> None:
    op.drop_table("runs")
    op.drop_table("entries")
