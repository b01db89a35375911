"""The mirror's tables (SQLAlchemy Core), named after Bitrix24's BI Builder datasets, plus sync bookkeeping.

Entity and history tables are built from the declarations in ``mappings.entities``; the schema
itself changes only through the Alembic revisions in ``mappings/migrations`` (user-field columns
of ``crm_*_uf`` are the one exception: the sync adds them when the portal gets a new field).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from mappings import entities as ent

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING)


class UtcDateTime(sa.types.TypeDecorator):
    """A moment in UTC: timestamptz on PostgreSQL, naive UTC on SQLite; always returned aware in UTC.

    SQLite keeps it as text of one fixed width, ``2026-03-03 06:03:00.000000`` (SQLAlchemy's storage
    format, which ``mappings.db.upsert`` applies too), so comparing the text is comparing moments.
    Binding a naive datetime is an error: every portal time carries its offset, and a naive one
    would silently mean the host's timezone.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Aware -> UTC (naive UTC on SQLite)."""
        if value is None:
            return None
        if value.__class__ is datetime and value.tzinfo is timezone.utc:  # what the sync binds: already UTC
            return value.replace(tzinfo=None) if dialect.name == "sqlite" else value
        if not isinstance(value, datetime):
            raise TypeError(f"UtcDateTime takes a datetime, not {type(value).__name__}")
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("UtcDateTime takes an aware datetime (with its offset), got a naive one")
        value = value.astimezone(timezone.utc)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        """Stored value -> aware UTC datetime."""
        if value is None:
            return None
        if isinstance(value, str):  # a raw SQLite value read through a text() query
            value = datetime.fromisoformat(value)
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


class Money(sa.types.TypeDecorator):
    """An exact amount: NUMERIC(20,2) on PostgreSQL; on SQLite stored as a number and read back as Decimal."""

    impl = sa.Numeric(20, 2)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        """SQLite has no decimal type: let it keep numbers and convert here (no lossy float warning)."""
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.Numeric(20, 2, asdecimal=False))
        return dialect.type_descriptor(sa.Numeric(20, 2))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        """Decimal -> its text on SQLite (SQLite parses it exactly as a literal), unchanged elsewhere."""
        if value is None:
            return None
        if dialect.name == "sqlite":
            return str(Decimal(value))
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        """Stored value -> Decimal with two places."""
        if value is None:
            return None
        if isinstance(value, Decimal):
            return value.quantize(Decimal("0.01"))
        return Decimal(repr(value) if isinstance(value, float) else str(value)).quantize(Decimal("0.01"))


JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def column_type(kind: str) -> Any:
    """The SQL type of a column kind from ``mappings.entities``."""
    return {
        ent.ID: sa.BigInteger(),
        ent.INT: sa.Integer(),
        ent.MONEY: Money(),
        ent.TEXT: sa.Text(),
        ent.FLAG: sa.Boolean(create_constraint=False),
        ent.DATE: sa.Date(),
        ent.DATETIME: UtcDateTime(),
        ent.JSON: JSONType,
    }[kind]


def _typed(stream: ent.Stream, *, pk: str = "id") -> list[sa.Column]:
    columns = []
    for col in stream.columns:
        if col.name == pk:
            columns.append(sa.Column(col.name, column_type(col.kind), primary_key=True, autoincrement=False))
        else:
            columns.append(sa.Column(col.name, column_type(col.kind), nullable=True))
    return columns


def _record_table(name: str, *bookkeeping: str) -> sa.Table:
    """A stream's table: its typed columns, ``raw``, then the bookkeeping columns named (nullable unless ``!``)."""
    stream = ent.STREAMS[name]
    tail = [sa.Column(c.rstrip("!"), UtcDateTime(), nullable=not c.endswith("!")) for c in bookkeeping]
    return sa.Table(stream.table, metadata, *_typed(stream), sa.Column("raw", JSONType, nullable=False), *tail)


def _entity_table(name: str) -> sa.Table:
    return _record_table(name, "deleted_at", "synced_at!")


def _history_table(name: str) -> sa.Table:
    table = _record_table(name, "first_seen_at!", "deleted_at")
    # Both kept by the sync whenever it writes history rows (``jobs.sync.writer``):
    # seconds from this row to the card's next history row (by ID, in any pipeline): the time the card
    # spent in the stage; NULL on the card's last row
    table.append_column(sa.Column("stay_seconds", sa.Float(), nullable=True))
    # on the card's last row in each pipeline: every stage its rows there name, ",NEW,NEEDS,"; NULL elsewhere
    table.append_column(sa.Column("visited", sa.Text(), nullable=True))
    return table


def _uf_table(name: str) -> sa.Table:
    stream = ent.STREAMS[name]
    assert stream.uf_table and stream.uf_key
    return sa.Table(
        stream.uf_table, metadata,
        sa.Column(stream.uf_key, sa.BigInteger(), primary_key=True, autoincrement=False),
        *(sa.Column(col.name, column_type(col.kind), nullable=True) for col in stream.uf_base),
        sa.Column("synced_at", UtcDateTime(), nullable=False),
    )


# ---------------------------------------------------------------- CRM records

crm_lead = _entity_table("lead")
crm_deal = _entity_table("deal")
crm_contact = _entity_table("contact")
crm_company = _entity_table("company")

crm_lead_uf = _uf_table("lead")
crm_deal_uf = _uf_table("deal")
crm_contact_uf = _uf_table("contact")
crm_company_uf = _uf_table("company")

crm_multifield = sa.Table(
    "crm_multifield", metadata,
    sa.Column("entity_type_id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("owner_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("item_id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("type_id", sa.Text(), nullable=False),  # PHONE, EMAIL, WEB, IM
    sa.Column("value_type", sa.Text(), nullable=True),  # WORK, MOBILE, TELEGRAM...
    sa.Column("value", sa.Text(), nullable=True),
)

# ---------------------------------------------------------------- stage history (rows are never removed)

crm_deal_stage_history = _history_table("deal_stage_history")
crm_lead_status_history = _history_table("lead_status_history")

# ---------------------------------------------------------------- dictionaries

crm_status = sa.Table(
    "crm_status", metadata,
    *_typed(ent.STREAMS["status"]),
    sa.Column("semantics", sa.Text(), nullable=True),  # P, S, F for stage dictionaries; NULL for the others
    sa.Column("category_id", sa.BigInteger(), nullable=True),  # 0 for the default pipeline and lead statuses
    sa.Column("raw", JSONType, nullable=False),
    sa.Column("deleted_at", UtcDateTime(), nullable=True),
    sa.Column("synced_at", UtcDateTime(), nullable=False),
)

crm_deal_category = sa.Table(
    "crm_deal_category", metadata,
    *_typed(ent.STREAMS["deal_category"]),
    sa.Column("raw", JSONType, nullable=False),
    sa.Column("deleted_at", UtcDateTime(), nullable=True),
    sa.Column("synced_at", UtcDateTime(), nullable=False),
)

users = sa.Table(  # not "user": a reserved word in PostgreSQL
    "users", metadata,
    sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=False),
    sa.Column("active", sa.Boolean(create_constraint=False), nullable=True),
    sa.Column("name", sa.Text(), nullable=True),  # first + last name, as BI Builder's user.NAME
    *(c for c in _typed(ent.STREAMS["user"]) if c.name not in ("id", "active")),
    sa.Column("raw", JSONType, nullable=False),
    sa.Column("deleted_at", UtcDateTime(), nullable=True),
    sa.Column("synced_at", UtcDateTime(), nullable=False),
)

crm_userfield = sa.Table(
    "crm_userfield", metadata,
    sa.Column("entity_id", sa.Text(), primary_key=True),  # CRM_DEAL, CRM_LEAD, CRM_CONTACT, CRM_COMPANY
    sa.Column("field_name", sa.Text(), primary_key=True),  # UF_CRM_...
    sa.Column("id", sa.BigInteger(), nullable=True),
    sa.Column("user_type_id", sa.Text(), nullable=True),
    sa.Column("multiple", sa.Boolean(create_constraint=False), nullable=True),
    sa.Column("sort", sa.Integer(), nullable=True),
    sa.Column("label", sa.Text(), nullable=True),  # the current label
    sa.Column("first_label", sa.Text(), nullable=True),  # the label when first seen (kept on renames)
    sa.Column("enum_items", JSONType, nullable=True),  # {option ID: latest VALUE} of every option ever seen
    sa.Column("raw", JSONType, nullable=False),
    sa.Column("first_seen_at", UtcDateTime(), nullable=False),
    sa.Column("deleted_at", UtcDateTime(), nullable=True),
    sa.Column("synced_at", UtcDateTime(), nullable=False),
)

# ---------------------------------------------------------------- bookkeeping

b24sync_portal = sa.Table(
    "b24sync_portal", metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),  # always 1: one portal per mirror
    sa.Column("address", sa.Text(), nullable=False),  # scheme://host:port, never the webhook code
    sa.Column("member_id", sa.Text(), nullable=True),
    sa.Column("timezone", sa.Text(), nullable=True),  # the portal's UTC offset as it prints it: +03:00
    sa.Column("first_synced_at", UtcDateTime(), nullable=False),
    sa.Column("last_synced_at", UtcDateTime(), nullable=True),
)

b24sync_state = sa.Table(
    "b24sync_state", metadata,
    sa.Column("stream", sa.Text(), primary_key=True),
    sa.Column("phase", sa.Text(), nullable=False),  # initial, incremental
    sa.Column("cursor_at", UtcDateTime(), nullable=True),  # entities: DATE_MODIFY of the last complete window
    sa.Column("cursor_id", sa.BigInteger(), nullable=True),  # history: the last row ID committed
    sa.Column("window_since", UtcDateTime(), nullable=True),  # the open window: DATE_MODIFY >= since
    sa.Column("window_cap", UtcDateTime(), nullable=True),  # portal time when the window began
    sa.Column("window_last_id", sa.BigInteger(), nullable=True),  # keyset position inside the window
    sa.Column("window_top", sa.BigInteger(), nullable=True),  # highest matching ID when the window began
    sa.Column("window_max", UtcDateTime(), nullable=True),  # largest DATE_MODIFY committed in the window
    sa.Column("window_started_at", UtcDateTime(), nullable=True),
    sa.Column("extra", JSONType, nullable=True),  # per-stream odds and ends (offline-event process id...)
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

b24sync_run = sa.Table(
    "b24sync_run", metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.Text(), nullable=False),
    sa.Column("job", sa.Text(), nullable=False),  # sync, reconcile, report
    sa.Column("entity", sa.Text(), nullable=False),
    sa.Column("started_at", UtcDateTime(), nullable=False),
    sa.Column("finished_at", UtcDateTime(), nullable=True),
    sa.Column("status", sa.Text(), nullable=False),  # running, ok, failed, interrupted
    sa.Column("fetched", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("inserted", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("updated", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("deleted", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("http_requests", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("worker", sa.Text(), nullable=True),
)

b24sync_lease = sa.Table(
    "b24sync_lease", metadata,
    sa.Column("name", sa.Text(), primary_key=True),
    sa.Column("owner", sa.Text(), nullable=False),
    sa.Column("acquired_at", UtcDateTime(), nullable=False),
    sa.Column("expires_at", UtcDateTime(), nullable=False),
)

# ---------------------------------------------------------------- indexes (revisions 0002, 0003, 0004)

sa.Index(None, crm_deal.c.category_id, crm_deal.c.stage_id)
sa.Index(None, crm_deal.c.date_create)
sa.Index(None, crm_deal.c.assigned_by_id)
sa.Index(None, crm_lead.c.status_id)
sa.Index(None, crm_lead.c.date_create)
# history (revisions 0003, 0004): a card's rows with what the reports read of them (covering), and each
# stage's stays in order of their length (percentiles are read off the index, nothing is sorted),
_dsh, _lsh = crm_deal_stage_history.c, crm_lead_status_history.c
sa.Index("ix_crm_deal_stage_history_cover", _dsh.deal_id, _dsh.id, _dsh.category_id, _dsh.stage_id, _dsh.date_create,
         _dsh.stay_seconds)
sa.Index("ix_crm_deal_stage_history_stays", _dsh.category_id, _dsh.stage_id, _dsh.stay_seconds, _dsh.deal_id)
sa.Index("ix_crm_lead_status_history_cover", _lsh.lead_id, _lsh.id, _lsh.status_id, _lsh.date_create, _lsh.stay_seconds)
sa.Index("ix_crm_lead_status_history_stays", _lsh.status_id, _lsh.stay_seconds, _lsh.lead_id)
# and one row per card and pipeline: the stages it went through there (how far it got, at a glance), and
# the row's stage, semantics and time (where a card left from, when a won card was won; revision 0004)
sa.Index("ix_crm_deal_stage_history_visited", _dsh.category_id, _dsh.deal_id, _dsh.visited, _dsh.stage_id,
         _dsh.stage_semantic_id, _dsh.date_create,
         sqlite_where=_dsh.visited.is_not(None), postgresql_where=_dsh.visited.is_not(None))
sa.Index("ix_crm_lead_status_history_visited", _lsh.lead_id, _lsh.visited, _lsh.status_id, _lsh.status_semantic_id,
         _lsh.date_create,
         sqlite_where=_lsh.visited.is_not(None), postgresql_where=_lsh.visited.is_not(None))
sa.Index(None, crm_status.c.entity_id, crm_status.c.status_id)
sa.Index(None, b24sync_run.c.entity, b24sync_run.c.started_at)
sa.Index(None, b24sync_run.c.run_id)

# ---------------------------------------------------------------- the crm_stages view (revision 0002)

# A view, not a table: it lives in its own MetaData so create_all and autogenerate leave it alone.
views = sa.MetaData()

CRM_STAGES_SQL = (
    "SELECT s.id AS id, "
    "CASE WHEN s.entity_id = 'STATUS' THEN 1 ELSE 2 END AS entity_type_id, "
    "s.entity_id AS entity_id, s.status_id AS status_id, s.name AS name, "
    "s.category_id AS category_id, c.name AS category_name, s.sort AS sort, s.semantics AS semantics "
    "FROM crm_status s "
    "LEFT JOIN crm_deal_category c ON s.entity_id <> 'STATUS' AND c.id = s.category_id "
    "WHERE (s.entity_id = 'STATUS' OR s.entity_id LIKE 'DEAL_STAGE%') AND s.deleted_at IS NULL"
)

crm_stages = sa.Table(
    "crm_stages", views,
    sa.Column("id", sa.BigInteger()),
    sa.Column("entity_type_id", sa.Integer()),  # 1 lead, 2 deal
    sa.Column("entity_id", sa.Text()),
    sa.Column("status_id", sa.Text()),
    sa.Column("name", sa.Text()),
    sa.Column("category_id", sa.BigInteger()),
    sa.Column("category_name", sa.Text()),
    sa.Column("sort", sa.Integer()),
    sa.Column("semantics", sa.Text()),
)

# ---------------------------------------------------------------- lookups

ENTITY_TABLES: dict[str, sa.Table] = {"lead": crm_lead, "deal": crm_deal, "contact": crm_contact, "company": crm_company}
UF_TABLES: dict[str, sa.Table] = {"lead": crm_lead_uf, "deal": crm_deal_uf, "contact": crm_contact_uf, "company": crm_company_uf}
HISTORY_TABLES: dict[str, sa.Table] = {
    "deal_stage_history": crm_deal_stage_history,
    "lead_status_history": crm_lead_status_history,
}


def table_of(stream: ent.Stream) -> sa.Table:
    """The table a stream is written to."""
    return metadata.tables[stream.table]


def uf_column_kind(user_type_id: str | None, multiple: bool) -> str:
    """The column kind of a user field's values: BI keeps single dates typed; numbers and flags typed here too."""
    if multiple:
        return ent.JSON
    return {
        "date": ent.DATE,
        "datetime": ent.DATETIME,
        "boolean": ent.FLAG,
        "integer": ent.ID,
        "employee": ent.ID,
        "enumeration": ent.ID,
        "double": ent.TEXT,  # any precision: the exact text the portal sent
    }.get((user_type_id or "").lower(), ent.TEXT)


def uf_column_names(field_name: str, user_type_id: str | None) -> tuple[str, ...]:
    """Columns of one user field in ``crm_*_uf``: the value, and ``<name>_label`` for enumerations."""
    name = field_name.lower()
    if (user_type_id or "").lower() == "enumeration":
        return (name, f"{name}_label")
    return (name,)
