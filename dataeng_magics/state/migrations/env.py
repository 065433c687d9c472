"""Alembic environment: always run programmatically on a connection we pass in
(``dataeng_magics.state.db.upgrade``), never from an alembic.ini."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None)
with context.begin_transaction():
    context.run_migrations()
