"""The cards a report covers, one row each: a SELECT over the card table joined with each card's last
history row in the pipeline, which the sync marks with every stage the card's rows there name (``visited``).

Per card: its slice, the stages it went through in the pipeline (``visited``, ``,NEW,NEEDS,``), where it
is (``position``: its stage, or the stage it left the pipeline from), whether it moved out, its money in
cents. How far it got and which stages it entered follow from ``visited`` and ``position`` (``Scope.reach``,
``Scope.entered``): in Python for the grouped figures, in SQL for the drill-down. A report reads the
cohort once as a subquery (one grouped pass), or keeps it in a temporary table when several queries
join it (``materialize``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.report.access import Access
from jobs.report.model import PROCESS, SUCCESS, Period, Pipeline
from jobs.report.portable import cents, earlier, not_earlier, plain, stage_set
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
    flagged: tuple[str, ...] = ()  # stages whose entries the report counts (every stage for "entered", else removed ones)
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

    @cached_property
    def _indexes(self) -> dict[str, int]:
        return {s.id: s.index for s in self.stages.current if s.index > 0}

    def reach(self, visited: str | None, position: str | None) -> int:
        """How far a card got: the highest stage index among the stages it went through and its position."""
        indexes = self._indexes
        return max((indexes.get(stage, 0) for stage in (*stages_of(visited), position)), default=0)

    def entered(self, visited: str | None, position: str | None) -> list[str]:
        """The flagged stages a card entered: a history row there in the pipeline, or positioned there now."""
        went = stages_of(visited)
        return [stage for stage in self.flagged if stage == position or stage in went]

    def reach_at_least(self, cohort: sa.FromClause, index: int) -> sa.ColumnElement[bool]:
        """SQL for ``reach >= index`` of a cohort row (the drill-down's test, ``reach`` as above)."""
        k = cohort.c
        later = [went_through(k.visited, s.id) for s in self.stages.current if s.index >= index]
        return sa.or_(self.index_of(k.position) >= index, *later)

    def index_of(self, stage: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        """The stage's place in the funnel: 1..n in progress, n + 1 success, 0 anything else."""
        ordered = {s.id: s.index for s in self.stages.current if s.semantics in (PROCESS, SUCCESS)}
        if not ordered:
            return sa.literal(0)
        return sa.case(ordered, value=stage, else_=0)

    def in_pipeline(self, table: sa.Table | sa.sql.Alias, *, scan: bool = False, by_card: bool = False) -> sa.ColumnElement[bool]:
        """A history (or card) row belongs to this funnel's pipeline (always, for leads); ``scan``: as the
        filter of a whole-pipeline scan; ``by_card``: of rows read card by card, kept off SQLite's
        (pipeline, ...) indexes."""
        if self.entity.category is None:
            return sa.true()
        column = table.c[self.entity.category]
        if by_card:
            return plain(column) == self.pipeline.id
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
        sa.Column("visited", sa.Text),
        sa.Column("position", sa.Text),
        sa.Column("letter", sa.Text),
        sa.Column("moved", sa.Integer),
        sa.Column("currency", sa.Text),
        sa.Column("cents", sa.BigInteger),
        sa.Column("created", UtcDateTime()),
        sa.Column("assigned_by_id", sa.BigInteger),
        sa.Column("source", sa.Text),
    ]


COLUMNS = tuple(col.name for col in _columns())


def stages_of(visited: str | None) -> set[str]:
    """The STATUS_IDs a ``visited`` value (``,NEW,NEEDS,``) names."""
    return {stage for stage in (visited or "").split(",") if stage}


def went_through(visited: sa.ColumnElement[Any], stage_id: str) -> sa.ColumnElement[bool]:
    """SQL for "``visited`` names the stage"."""
    return visited.contains(f",{stage_id},", autoescape=True)


def card_conditions(scope: Scope) -> list[sa.ColumnElement[bool]]:
    """The report's card filters on the card table: deleted, manager, source, creation period."""
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


def slice_key(scope: Scope) -> sa.ColumnElement[Any]:
    """A card's slice (``--by``) as SQL on the card table: manager ID, source, creation month, or NULL."""
    c = scope.entity.cards.c
    if scope.by == "assigned":
        return sa.cast(c.assigned_by_id, sa.Text)
    if scope.by == "source":
        return sa.type_coerce(sa.func.nullif(c.source_id, ""), sa.Text)
    if scope.by == "month" and scope.months:
        return sa.type_coerce(sa.case(*[(not_earlier(c.date_create, start), label) for label, start in reversed(scope.months)],
                                      else_=sa.null()), sa.Text)
    return sa.type_coerce(sa.null(), sa.Text)


def card_filter(scope: Scope) -> sa.Select[Any]:
    """IDs of the cards that pass the report's card filters (deleted, manager, source, creation period)."""
    return sa.select(scope.entity.cards.c.id).where(*card_conditions(scope))


def _restricted(scope: Scope, h: sa.Table) -> list[sa.ColumnElement[bool]]:
    """History rows of the filtered cards only, when a filter narrows the cards (else every row is read anyway)."""
    return [h.c[scope.entity.owner].in_(card_filter(scope))] if scope.narrow else []


def is_active(scope: Scope) -> bool:
    """An ``active`` period with a bound: the cards as they were then, from the history rows written before its end."""
    return scope.period.kind == "active" and scope.period.bounded


def cohort_select(scope: Scope) -> sa.Select[Any]:
    """One row per card of the funnel, with the ``COLUMNS``."""
    return _active_select(scope) if is_active(scope) else _current_select(scope)


def _select(scope: Scope, visited: sa.ColumnElement[Any], position: sa.ColumnElement[Any],
            letter: sa.ColumnElement[Any], moved: sa.ColumnElement[bool]) -> sa.Select[Any]:
    c = scope.entity.cards.c
    return sa.select(
        c.id, slice_key(scope).label("slice"), visited.label("visited"), position.label("position"),
        letter.label("letter"), sa.case((moved, 1), else_=0).label("moved"),
        sa.func.coalesce(c.currency_id, "").label("currency"), cents(c.opportunity).label("cents"),
        c.date_create.label("created"), c.assigned_by_id, sa.func.nullif(c.source_id, "").label("source"),
    )


def last_here(scope: Scope) -> tuple[sa.sql.Alias, list[sa.ColumnElement[bool]]]:
    """Each card's last history row in the pipeline, and the conditions that pick it: the one row per
    card and pipeline that the sync marks with ``visited`` (the partial index holds exactly these)."""
    last = scope.entity.history.alias("last_here")
    return last, [last.c.visited.is_not(None), scope.in_pipeline(last)]


def _current_select(scope: Scope) -> sa.Select[Any]:
    """Cards as they are now: the stage in the card row, or the card's last row in the pipeline when it moved out.

    That last row is ``last_here``'s, found through the partial index: one row per card with rows in the pipeline.
    """
    e = scope.entity
    c = e.cards
    last, picked = last_here(scope)
    on = [last.c[e.owner] == c.c.id, *picked]
    if e.category is None:
        moved: sa.ColumnElement[bool] = sa.false()
        position, letter = c.c[e.stage], c.c[e.semantic]
        member: sa.ColumnElement[bool] = sa.true()
    else:
        moved = c.c[e.category] != scope.pipeline.id
        position = sa.case((moved, last.c[e.stage]), else_=c.c[e.stage])
        letter = sa.case((moved, last.c[e.semantic]), else_=c.c[e.semantic])
        member = sa.or_(c.c[e.category] == scope.pipeline.id, last.c[e.owner].is_not(None))
    return (_select(scope, last.c.visited, position, letter, moved)
            .select_from(c.outerjoin(last, sa.and_(*on)))
            .where(member, *card_conditions(scope)))


def _active_select(scope: Scope) -> sa.Select[Any]:
    """Cards as they were at the end of an ``active`` period, among those in the funnel during it.

    In the funnel during [start, end): a history row in the pipeline before the end, and either a
    row in the pipeline during the period or, at its start, a place in the pipeline that was not
    closed (success or failure). ``visited`` here names the stages of the rows written before the end.
    """
    e = scope.entity
    c, h = e.cards, e.history
    start = scope.period.start
    here = scope.in_pipeline(h)
    aggregates = [
        h.c[e.owner].label("card_id"),
        stage_set(sa.case((here, h.c[e.stage]))).label("visited"),
        sa.func.max(sa.case((here, h.c.id))).label("last_here_id"),
        sa.func.max(h.c.id).label("last_id"),
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
    last, here_at_end = h.alias("last_row"), h.alias("last_here")
    source = (c.join(reached, reached.c.card_id == c.c.id)
              .join(last, last.c.id == reached.c.last_id)
              .join(here_at_end, here_at_end.c.id == reached.c.last_here_id))
    member: list[sa.ColumnElement[bool]] = [reached.c.last_here_id.is_not(None)]
    if start is not None:
        at_start = h.alias("at_start")
        source = source.outerjoin(at_start, at_start.c.id == reached.c.start_id)
        open_at_start = sa.and_(scope.in_pipeline(at_start),
                                sa.func.coalesce(at_start.c[e.semantic], "P").not_in(["S", "F"]))
        member.append(sa.or_(reached.c.touched == 1, open_at_start))
    moved = sa.false() if e.category is None else last.c[e.category] != scope.pipeline.id
    return (_select(scope, reached.c.visited, here_at_end.c[e.stage], here_at_end.c[e.semantic], moved)
            .select_from(source)
            .where(*member, *card_conditions(scope)))


def materialize(conn: Connection, scope: Scope) -> sa.Table:
    """The cohort in a temporary table of this connection (dropped with the report's transaction), for
    reports whose several queries join it by card (drill-down lists, an ``active`` period).

    On SQLite the card is the rowid (free); PostgreSQL fills the table first, then indexes it and
    gathers its statistics (temporary tables get none otherwise).
    """
    postgresql = conn.dialect.name == "postgresql"
    key, *rest = _columns()
    key = sa.Column(key.name, key.type, primary_key=not postgresql, autoincrement=False)
    table = sa.Table(f"b24sync_report_{uuid.uuid4().hex[:12]}", sa.MetaData(), key, *rest, prefixes=["TEMPORARY"])
    table.create(conn)
    conn.execute(table.insert().from_select(list(COLUMNS), cohort_select(scope)))
    if postgresql:
        conn.exec_driver_sql(f"CREATE UNIQUE INDEX ON {table.name} ({key.name})")
        conn.exec_driver_sql(f"ANALYZE {table.name}")
    return table


def cohort_of(conn: Connection, scope: Scope, *, reused: bool) -> sa.FromClause:
    """The cohort as the report reads it: a subquery for one grouped pass, or (``reused``: several queries
    join it, and always for an ``active`` period, whose stays and cycle times do) a temporary table."""
    if reused or is_active(scope):
        return materialize(conn, scope)
    return cohort_select(scope).subquery("cohort")
