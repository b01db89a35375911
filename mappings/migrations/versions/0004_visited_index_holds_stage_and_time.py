"""The partial indexes over the rows that carry ``visited`` also hold the row's stage, its semantics and time;
the covering (card, ID, ...) indexes also hold the row's stay.

Revision ID: 0004
Revises: 0003

A report reads, per card with rows in the pipeline, its row there that carries ``visited`` (the
card's last row in the pipeline); for a card that moved to another pipeline, that row's stage and
semantics (where it left from); for a won card, when that row was written (its last entry into the
success stage). With them in the index that read is index-only: without them SQLite fetches each
history row from the table (about three times slower at a million rows). A report by slice, or for a
few cards, reads each card's stays along its (card, ID, ...) index entries, now index-only too.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# (name, table, revision 0003's columns, this revision's, partial: over the rows that carry ``visited``)
INDEXES = (
    ("ix_crm_deal_stage_history_visited", "crm_deal_stage_history", ["category_id", "deal_id", "visited"],
     ["category_id", "deal_id", "visited", "stage_id", "stage_semantic_id", "date_create"], True),
    ("ix_crm_lead_status_history_visited", "crm_lead_status_history", ["lead_id", "visited"],
     ["lead_id", "visited", "status_id", "status_semantic_id", "date_create"], True),
    ("ix_crm_deal_stage_history_cover", "crm_deal_stage_history",
     ["deal_id", "id", "category_id", "stage_id", "date_create"],
     ["deal_id", "id", "category_id", "stage_id", "date_create", "stay_seconds"], False),
    ("ix_crm_lead_status_history_cover", "crm_lead_status_history", ["lead_id", "id", "status_id", "date_create"],
     ["lead_id", "id", "status_id", "date_create", "stay_seconds"], False),
)


def _replace(name: str, table: str, columns: list[str], partial: bool) -> None:
    op.drop_index(name, table_name=table)
    if partial:
        carries = sa.text("visited IS NOT NULL")
        op.create_index(name, table, columns, unique=False, sqlite_where=carries, postgresql_where=carries)
    else:
        op.create_index(name, table, columns, unique=False)


def upgrade() -> None:
    """The partial indexes on (pipeline, card, visited, stage, semantics, time), the covering ones with the stay."""
    for name, table, _, columns, partial in INDEXES:
        _replace(name, table, columns, partial)


def downgrade() -> None:
    """Back to revision 0003's indexes."""
    for name, table, columns, _, partial in INDEXES:
        _replace(name, table, columns, partial)
