"""Stage history for fast reports: each row's stay (seconds to the card's next row), the stages a card
went through per pipeline, covering indexes, and one text format for every moment SQLite holds.

Revision ID: 0003
Revises: 0002

- ``stay_seconds`` and ``visited`` on both history tables, filled here from the rows already mirrored
  (the sync keeps them from now on);
- the (card, ID) and (pipeline, stage) indexes become (card, ID, pipeline, stage, time), which covers
  what the reports read of a card's rows, and (pipeline, stage, stay_seconds, card), which holds
  each stage's stays in order of length, and a partial index over the rows that carry ``visited``;
- SQLite: moments written without fractions (``2026-03-03 06:03:00``, by the bulk writer of earlier
  versions) get them (``2026-03-03 06:03:00.000000``), so that every moment has one fixed-width form.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# (table, card column, pipeline column or None, stage column)
HISTORY = (("crm_deal_stage_history", "deal_id", "category_id", "stage_id"),
           ("crm_lead_status_history", "lead_id", None, "status_id"))
OLD_INDEXES = (
    ("ix_crm_deal_stage_history_deal_id_id", "crm_deal_stage_history", ["deal_id", "id"]),
    ("ix_crm_deal_stage_history_category_id_stage_id", "crm_deal_stage_history", ["category_id", "stage_id"]),
    ("ix_crm_lead_status_history_lead_id_id", "crm_lead_status_history", ["lead_id", "id"]),
)
NEW_INDEXES = (
    ("ix_crm_deal_stage_history_cover", "crm_deal_stage_history", ["deal_id", "id", "category_id", "stage_id", "date_create"]),
    ("ix_crm_deal_stage_history_stays", "crm_deal_stage_history", ["category_id", "stage_id", "stay_seconds", "deal_id"]),
    ("ix_crm_lead_status_history_cover", "crm_lead_status_history", ["lead_id", "id", "status_id", "date_create"]),
    ("ix_crm_lead_status_history_stays", "crm_lead_status_history", ["status_id", "stay_seconds", "lead_id"]),
)
PARTIAL_INDEXES = (  # over the rows that carry ``visited`` only
    ("ix_crm_deal_stage_history_visited", "crm_deal_stage_history", ["category_id", "deal_id", "visited"]),
    ("ix_crm_lead_status_history_visited", "crm_lead_status_history", ["lead_id", "visited"]),
)
WHOLE_SECONDS = 19  # len("2026-03-03 06:03:00")


def _one_time_format() -> None:
    """SQLite: append the fractions to every stored moment written without them."""
    bind = op.get_bind()
    inspector = sa.inspect(bind)
    for table in inspector.get_table_names():
        for column in inspector.get_columns(table):
            if isinstance(column["type"], sa.DateTime):
                name = column["name"]
                op.execute(f'UPDATE "{table}" SET "{name}" = "{name}" || \'.000000\' '
                           f'WHERE length("{name}") = {WHOLE_SECONDS}')


def _fill_stays(table: str, card: str) -> None:
    """Each row's seconds to the next row (by ID) of its card; the card's last row keeps NULL."""
    if op.get_bind().dialect.name == "postgresql":
        seconds = "EXTRACT(EPOCH FROM (lead(date_create) OVER w - date_create))"
    else:
        seconds = "ROUND((julianday(lead(date_create) OVER w) - julianday(date_create)) * 86400.0)"
    op.execute(
        f"UPDATE {table} SET stay_seconds = following.seconds FROM "
        f"(SELECT id, {seconds} AS seconds FROM {table} WHERE {card} IS NOT NULL "
        f"WINDOW w AS (PARTITION BY {card} ORDER BY id)) AS following "
        f"WHERE {table}.id = following.id AND following.seconds IS NOT NULL"
    )


def _fill_visited(table: str, card: str, pipeline: str | None, stage: str) -> None:
    """On each card's last row per pipeline: its stages there, ``,A,B,`` (any order); the others keep NULL."""
    if op.get_bind().dialect.name == "postgresql":
        stages = f"string_agg(DISTINCT {stage}, ',')"
    else:
        stages = f"group_concat(DISTINCT {stage})"
    keys = f"{card}, {pipeline}" if pipeline else card
    op.execute(
        f"UPDATE {table} SET visited = paths.visited FROM "
        f"(SELECT max(id) AS last_id, ',' || coalesce({stages}, '') || ',' AS visited FROM {table} "
        f"WHERE {card} IS NOT NULL GROUP BY {keys}) AS paths "
        f"WHERE {table}.id = paths.last_id"
    )


def upgrade() -> None:
    """Normalise SQLite's moments, add and fill ``stay_seconds`` and ``visited``, replace the history indexes."""
    if op.get_bind().dialect.name == "sqlite":
        _one_time_format()
    for table, card, pipeline, stage in HISTORY:
        op.add_column(table, sa.Column("stay_seconds", sa.Float(), nullable=True))
        op.add_column(table, sa.Column("visited", sa.Text(), nullable=True))
        _fill_stays(table, card)
        _fill_visited(table, card, pipeline, stage)
    for name, table, _ in OLD_INDEXES:
        op.drop_index(name, table_name=table)
    for name, table, columns in NEW_INDEXES:
        op.create_index(name, table, columns, unique=False)
    for name, table, columns in PARTIAL_INDEXES:
        carries = sa.text("visited IS NOT NULL")
        op.create_index(name, table, columns, unique=False, sqlite_where=carries, postgresql_where=carries)


def downgrade() -> None:
    """Back to revision 0002's indexes and columns (moments keep their one format)."""
    for name, table, _ in (*reversed(PARTIAL_INDEXES), *reversed(NEW_INDEXES)):
        op.drop_index(name, table_name=table)
    for name, table, columns in OLD_INDEXES:
        op.create_index(name, table, columns, unique=False)
    for table, *_ in HISTORY:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("visited")
            batch.drop_column("stay_seconds")
