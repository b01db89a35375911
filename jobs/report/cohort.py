"""The cards a report covers, one row each, computed in SQL and kept in a temporary table for the report.

Per card: its slice, how far it got in the pipeline (``reach``), where it is (``position``: its stage,
or the stage it left the pipeline from), whether it moved out, its money in cents, when it was won.
One pass over the history rows builds it; every figure of the report is then read from it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.report.access import Access
from jobs.report.model import PROCESS, SUCCESS, Period, Pipeline
from jobs.report.portable import cents, earlier, larger, not_earlier
from jobs.report.scope import Entity, Stages
from mappings.tables import UtcDateTime


@dataclass(frozen=True)
class Scope:
    """Everything that decides which cards a report counts and how: entity, pipeline, stages, period, filters."""

    entity: Entity
    pipeline: Pipeline
    stages: Stages
    period: Period = field(default_factory=Period)
    assigned: int | None = None
    source: str | None = None
    include_deleted: bool = False
    by: str | None = None
    months: list[tuple[str, datetime]] = field(default_factory=list)  # by month: (label, start in UTC)
    removed: tuple[str, ...] = ()  # STATUS_IDs in the pipeline's history that are no current stage
    flagged: tuple[str, ...] = ()  # stages whose "entered" flag the cohort carries (columns e0, e1, ...)
    access: Access = field(default_factory=Access)  # how the whole-pipeline scans read the history table

    @property
    def narrow(self) -> bool:
        """The filters leave only some cards (a manager, a source, a period): read their rows by card."""
        return self.assigned is not None or self.source is not None or self.period.bounded

    @property
    def as_of(self) -> datetime | None:
        """The moment figures are taken at: the period's end for ``active``, else now (None)."""
        return self.period.end if self.period.kind == "active" else None

    @property
    def success_ids(self) -> list[str]:
        """STATUS_IDs of the success stage(s)."""
        return [s.id for s in self.stages.current if s.semantics == SUCCESS]

    def index_of(self, stage: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The stage's place in the funnel: 1..n in progress, n + 1 success, 0 anything else."""
        ordered = {s.id: s.index for s in self.stages.current if s.semantics in (PROCESS, SUCCESS)}
        if not ordered:
            return sa.literal(0)
        return sa.case(ordered, value=stage, else_=0)

    def in_pipeline(self, table: sa.Table | sa.sql.Alias, *, scan: bool = False) -> sa.ColumnElement[bool]:
        """A history (or card) row belongs to this funnel's pipeline (always, for leads); ``scan``: as the
        filter of a whole-pipeline scan."""
        if self.entity.category is None:
            return sa.true()
        column = table.c[self.entity.category]
        return (self.access.filter(column) if scan else column) == self.pipeline.id

    def history_window(self, h: sa.Table | sa.sql.Alias) -> list[sa.ColumnElement[bool]]:
        """History rows visible to the report: all, or those written before the end of an ``active`` period."""
        return [] if self.as_of is None else [earlier(h.c.date_create, self.as_of)]


# a card's key in the report's own tables: on SQLite the rowid itself (INTEGER PRIMARY KEY), one lookup less
CARD_KEY = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", CARD_KEY, primary_key=True, autoincrement=False),
        sa.Column("slice", sa.Text),
        sa.Column("reach", sa.Integer),
        sa.Column("position", sa.Text),
        sa.Column("letter", sa.Text),
        sa.Column("moved", sa.Integer),
        sa.Column("currency", sa.Text),
        sa.Column("cents", sa.BigInteger),
        sa.Column("created", UtcDateTime()),
        sa.Column("won_at", UtcDateTime()),
        sa.Column("assigned_by_id", sa.BigInteger),
        sa.Column("source", sa.Text),
    ]


COLUMNS = tuple(col.name for col in _columns())


def flag(index: int) -> str:
    """The cohort column that says whether a card entered ``scope.flagged[index]``."""
    return f"e{index}"


def _entered_flags(scope: Scope, h: sa.Table, here: sa.ColumnElement[bool] | None = None) -> list[sa.ColumnElement[Any]]:
    """Per flagged stage: 1 when the card has a history row there (in this pipeline), as aggregates."""
    e = scope.entity
    flags = []
    for index, stage_id in enumerate(scope.flagged):
        hit = h.c[e.stage] == stage_id if here is None else sa.and_(here, h.c[e.stage] == stage_id)
        flags.append(sa.func.max(sa.case((hit, 1), else_=0)).label(flag(index)))
    return flags


def _flag_columns(scope: Scope, reached: sa.Subquery, position: sa.ColumnElement[Any]) -> list[sa.ColumnElement[Any]]:
    """The flags of the final select: entered by history, or positioned there now."""
    return [sa.case((position == stage_id, 1), else_=sa.func.coalesce(reached.c[flag(i)], 0)).label(flag(i))
            for i, stage_id in enumerate(scope.flagged)]


def _filters(scope: Scope) -> list[sa.ColumnElement[bool]]:
    c = scope.entity.cards.c
    where: list[sa.ColumnElement[bool]] = []
    if not scope.include_deleted:
        where.append(c.deleted_at.is_(None))
    if scope.assigned is not None:
        where.append(c.assigned_by_id == scope.assigned)
    if scope.source is not None:
        where.append(c.source_id == scope.source)
    period = scope.period
    if period.kind == "created":
        if period.start is not None:
            where.append(not_earlier(c.date_create, period.start))
        if period.end is not None:
            where.append(earlier(c.date_create, period.end))
    elif period.end is not None:
        where.append(sa.or_(c.date_create.is_(None), earlier(c.date_create, period.end)))
    return where


def _slice(scope: Scope) -> sa.ColumnElement[Any]:
    c = scope.entity.cards.c
    if scope.by == "assigned":
        return sa.cast(c.assigned_by_id, sa.Text)
    if scope.by == "source":
        return sa.func.nullif(c.source_id, "")
    if scope.by == "month":
        if not scope.months:
            return sa.null()
        return sa.case(*[(not_earlier(c.date_create, start), label) for label, start in reversed(scope.months)],
                       else_=sa.null())
    return sa.null()


def _restricted(scope: Scope, h: sa.Table) -> list[sa.ColumnElement[bool]]:
    """History rows of the filtered cards only, when a filter narrows the cards (else every row is read anyway)."""
    return [h.c[scope.entity.owner].in_(card_filter(scope))] if scope.narrow else []


def card_filter(scope: Scope) -> sa.Select[Any]:
    """IDs of the cards that pass the report's card filters (deleted, manager, source, creation period)."""
    return sa.select(scope.entity.cards.c.id).where(*_filters(scope))


def _active(scope: Scope) -> bool:
    return scope.period.kind == "active" and scope.period.bounded


def cohort_select(scope: Scope, reached: sa.FromClause | None = None) -> sa.Select[Any]:
    """One row per card of the funnel, with the ``COLUMNS`` (``reached``: ``reached_select`` kept in a table)."""
    if _active(scope):
        return _active_select(scope)
    return _current_select(scope, reached if reached is not None else reached_select(scope).subquery("reached"))


def _common(scope: Scope) -> dict[str, sa.ColumnElement[Any]]:
    c = scope.entity.cards.c
    return {
        "id": c.id,
        "slice": _slice(scope),
        "currency": sa.func.coalesce(c.currency_id, ""),
        "cents": cents(c.opportunity),
        "created": c.date_create,
        "assigned_by_id": c.assigned_by_id,
        "source": sa.func.nullif(c.source_id, ""),
    }


def _went_through(visited: sa.ColumnElement[Any], stage_id: str) -> sa.ColumnElement[bool]:
    """``visited`` (``,NEW,NEEDS,``) names the stage."""
    return visited.contains(f",{stage_id},", autoescape=True)


def reached_select(scope: Scope) -> sa.Select[Any]:
    """Per card with rows in the pipeline: how far it got, when it was won, which flagged stages it entered.

    How far and which stages come from one row per card: its last row in the pipeline, which carries
    every stage its rows there name (``visited``, kept by the sync); when it was won from the few rows
    of the success stage, found through the (pipeline, stage) index.
    """
    e = scope.entity
    h = e.history
    visited = h.c.visited
    ordered = sorted((s for s in scope.stages.current if s.index > 0), key=lambda s: -s.index)
    reach = sa.case(*((_went_through(visited, s.id), s.index) for s in ordered), else_=0) if ordered else sa.literal(0)
    flags = [sa.case((_went_through(visited, stage_id), 1), else_=0).label(flag(i))
             for i, stage_id in enumerate(scope.flagged)]
    paths = (
        sa.select(h.c[e.owner].label("card_id"), reach.label("reach"), *flags)
        .where(scope.in_pipeline(h), visited.is_not(None), *_restricted(scope, h))
        .subquery("paths")
    )
    won = (
        sa.select(h.c[e.owner].label("card_id"), sa.func.max(h.c.date_create).label("won_at"))
        .where(scope.in_pipeline(h), h.c[e.stage].in_(scope.success_ids), *_restricted(scope, h))
        .group_by(h.c[e.owner])
        .subquery("won")
    )
    return (
        sa.select(paths.c.card_id, paths.c.reach, won.c.won_at, *(paths.c[flag(i)] for i in range(len(scope.flagged))))
        .select_from(paths.outerjoin(won, won.c.card_id == paths.c.card_id))
    )


def _last_here(scope: Scope, column: str) -> sa.ColumnElement[Any]:
    """One column of the card's last history row in the pipeline (read only for cards that moved out)."""
    e = scope.entity
    row = e.history.alias("last_here")
    return (sa.select(row.c[column]).where(row.c[e.owner] == e.cards.c.id, scope.in_pipeline(row))
            .order_by(row.c.id.desc()).limit(1).scalar_subquery())


def _current_select(scope: Scope, reached: sa.FromClause) -> sa.Select[Any]:
    """Cards as they are now: the stage in the card row, or the last row in the pipeline for moved cards."""
    e = scope.entity
    c, h = e.cards, e.history
    if e.category is None:
        moved: sa.ColumnElement[Any] = sa.false()
        source = c.outerjoin(reached, reached.c.card_id == c.c.id)
        position, letter = c.c[e.stage], c.c[e.semantic]
        member = sa.true()
    else:
        moved = c.c[e.category] != scope.pipeline.id
        source = c.outerjoin(reached, reached.c.card_id == c.c.id)
        position = sa.case((moved, _last_here(scope, e.stage)), else_=c.c[e.stage])
        letter = sa.case((moved, _last_here(scope, e.semantic)), else_=c.c[e.semantic])
        member = sa.or_(c.c[e.category] == scope.pipeline.id, reached.c.card_id.is_not(None))
    common = _common(scope)
    reach = larger(sa.func.coalesce(reached.c.reach, 0), scope.index_of(position))
    return (
        sa.select(
            common["id"], common["slice"].label("slice"), reach.label("reach"), position.label("position"),
            letter.label("letter"), sa.case((moved, 1), else_=0).label("moved"), common["currency"].label("currency"),
            common["cents"].label("cents"), common["created"].label("created"), reached.c.won_at.label("won_at"),
            common["assigned_by_id"], common["source"].label("source"), *_flag_columns(scope, reached, position),
        )
        .select_from(source)
        .where(member, *_filters(scope))
    )


def _active_select(scope: Scope) -> sa.Select[Any]:
    """Cards as they were at the end of an ``active`` period, among those in the funnel during it.

    In the funnel during [start, end): a history row in the pipeline before the end, and either a
    row in the pipeline during the period or, at its start, a place in the pipeline that was not
    closed (success or failure).
    """
    e = scope.entity
    c, h = e.cards, e.history
    start = scope.period.start
    here = scope.in_pipeline(h)
    aggregates = [
        h.c[e.owner].label("card_id"),
        sa.func.max(sa.case((here, scope.index_of(h.c[e.stage])), else_=0)).label("reach"),
        sa.func.max(sa.case((here, h.c.id))).label("last_here_id"),
        sa.func.max(h.c.id).label("last_id"),
        sa.func.max(sa.case((sa.and_(here, h.c[e.stage].in_(scope.success_ids)), h.c.date_create))).label("won_at"),
        *_entered_flags(scope, h, here),
    ]
    if start is not None:
        aggregates += [
            sa.func.max(sa.case((earlier(h.c.date_create, start), h.c.id))).label("start_id"),
            sa.func.max(sa.case((sa.and_(here, not_earlier(h.c.date_create, start)), 1), else_=0)).label("touched"),
        ]
    reached = (
        sa.select(*aggregates)
        .where(*scope.history_window(h), *_restricted(scope, h))
        .group_by(scope.access.order(h.c[e.owner]))
        .subquery("reached")
    )
    last, last_here = h.alias("last_row"), h.alias("last_here")
    source = (c.join(reached, reached.c.card_id == c.c.id)
              .join(last, last.c.id == reached.c.last_id)
              .join(last_here, last_here.c.id == reached.c.last_here_id))
    member: list[sa.ColumnElement[bool]] = [reached.c.last_here_id.is_not(None)]
    if start is not None:
        at_start = h.alias("at_start")
        source = source.outerjoin(at_start, at_start.c.id == reached.c.start_id)
        open_at_start = sa.and_(scope.in_pipeline(at_start),
                                sa.func.coalesce(at_start.c[e.semantic], "P").not_in(["S", "F"]))
        member.append(sa.or_(reached.c.touched == 1, open_at_start))
    moved = sa.false() if e.category is None else last.c[e.category] != scope.pipeline.id
    position = last_here.c[e.stage]
    letter = last_here.c[e.semantic]
    common = _common(scope)
    return (
        sa.select(
            common["id"], common["slice"].label("slice"), reached.c.reach.label("reach"), position.label("position"),
            letter.label("letter"), sa.case((moved, 1), else_=0).label("moved"), common["currency"].label("currency"),
            common["cents"].label("cents"), common["created"].label("created"), reached.c.won_at.label("won_at"),
            common["assigned_by_id"], common["source"].label("source"), *_flag_columns(scope, reached, position),
        )
        .select_from(source)
        .where(*member, *_filters(scope))
    )


def _temporary(conn: Connection, name: str, columns: list[sa.Column[Any]], rows: sa.Select[Any], *,
               joined: bool = False) -> sa.Table:
    """A temporary table of ``rows``, its first column the card. ``joined``: later queries join it by card.

    On SQLite the card is the rowid (free); PostgreSQL fills the table first and indexes it (and
    gathers its statistics) only when it will be joined.
    """
    postgresql = conn.dialect.name == "postgresql"
    key, *rest = columns
    key = sa.Column(key.name, key.type, primary_key=not postgresql, autoincrement=False)
    table = sa.Table(f"b24sync_{name}_{uuid.uuid4().hex[:12]}", sa.MetaData(), key, *rest, prefixes=["TEMPORARY"])
    table.create(conn)
    conn.execute(table.insert().from_select([c.name for c in columns], rows))
    if postgresql and joined:
        conn.exec_driver_sql(f"CREATE UNIQUE INDEX ON {table.name} ({key.name})")
        conn.exec_driver_sql(f"ANALYZE {table.name}")  # temporary tables get no statistics otherwise
    return table


def materialize(conn: Connection, scope: Scope, *, joined: bool = True) -> sa.Table:
    """Build the cohort into a temporary table of this connection (dropped with the report's transaction).

    Outside an ``active`` period the per-card pass over history is kept in a table of its own first
    (``cohort.info["reached"]``): joined by key it is cheaper than as a subquery, and it tells which
    cards have rows in the pipeline but are not counted (deleted, or no card row). ``joined``: the
    report will join the cohort with the history rows (slices, drill-down, filters), so PostgreSQL
    gets its statistics.
    """
    flags = [sa.Column(flag(i), sa.SmallInteger) for i in range(len(scope.flagged))]
    reached = None
    if not _active(scope):
        key = sa.Column("card_id", CARD_KEY, primary_key=True, autoincrement=False)
        if conn.dialect.name == "postgresql":  # one ordered pass along the (card, ID) index, not a hash of every card
            conn.exec_driver_sql("SET LOCAL enable_hashagg = off")
        reached = _temporary(conn, "reached", [
            key, sa.Column("reach", sa.Integer), sa.Column("won_at", UtcDateTime()),
            *(sa.Column(c.name, sa.SmallInteger) for c in flags)], reached_select(scope))
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL enable_hashagg = on")
    joined = joined or scope.narrow or _active(scope) or scope.by is not None
    cohort = _temporary(conn, "report", [*_columns(), *flags], cohort_select(scope, reached), joined=joined)
    cohort.info["reached"] = reached
    return cohort
