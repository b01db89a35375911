"""Alembic's entry point for the mirror: runs the revisions on the connection ``mappings.db`` hands over.

There is no alembic.ini: ``mappings.db.upgrade`` builds the config in code and passes an open
connection (inside its own write transaction) as ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from mappings.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reached by hand-run alembic commands
    raise RuntimeError("run migrations through mappings.db.upgrade(engine), which provides the connection")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
