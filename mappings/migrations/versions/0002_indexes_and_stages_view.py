"""Indexes the reports and the run log need, and the crm_stages view (BI Builder's stage dataset).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# the view's text as this revision created it (mappings.tables.CRM_STAGES_SQL is the current one)
CRM_STAGES_SQL = (
    "SELECT s.id AS id, "
    "CASE WHEN s.entity_id = 'STATUS' THEN 1 ELSE 2 END AS entity_type_id, "
    "s.entity_id AS entity_id, s.status_id AS status_id, s.name AS name, "
    "s.category_id AS category_id, c.name AS category_name, s.sort AS sort, s.semantics AS semantics "
    "FROM crm_status s "
    "LEFT JOIN crm_deal_category c ON s.entity_id <> 'STATUS' AND c.id = s.category_id "
    "WHERE (s.entity_id = 'STATUS' OR s.entity_id LIKE 'DEAL_STAGE%') AND s.deleted_at IS NULL"
)

INDEXES = (
    ('ix_b24sync_run_entity_started_at', 'b24sync_run', ['entity', 'started_at']),
    ('ix_b24sync_run_run_id', 'b24sync_run', ['run_id']),
    ('ix_crm_deal_assigned_by_id', 'crm_deal', ['assigned_by_id']),
    ('ix_crm_deal_category_id_stage_id', 'crm_deal', ['category_id', 'stage_id']),
    ('ix_crm_deal_date_create', 'crm_deal', ['date_create']),
    ('ix_crm_deal_stage_history_category_id_stage_id', 'crm_deal_stage_history', ['category_id', 'stage_id']),
    ('ix_crm_deal_stage_history_deal_id_id', 'crm_deal_stage_history', ['deal_id', 'id']),
    ('ix_crm_lead_date_create', 'crm_lead', ['date_create']),
    ('ix_crm_lead_status_id', 'crm_lead', ['status_id']),
    ('ix_crm_lead_status_history_lead_id_id', 'crm_lead_status_history', ['lead_id', 'id']),
    ('ix_crm_status_entity_id_status_id', 'crm_status', ['entity_id', 'status_id']),
)


def upgrade() -> None:
    """Create the indexes and the view."""
    for name, table, columns in INDEXES:
        op.create_index(op.f(name), table, columns, unique=False)
    op.execute(f"CREATE VIEW crm_stages AS {CRM_STAGES_SQL}")


def downgrade() -> None:
    """Drop the view and the indexes."""
    op.execute("DROP VIEW IF EXISTS crm_stages")
    for name, table, _ in reversed(INDEXES):
        op.drop_index(op.f(name), table_name=table)
