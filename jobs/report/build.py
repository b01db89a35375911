"""The two report entry points: ``funnel`` (figures per stage, per slice) and ``cards`` (a stage's drill-down).

Both read the mirror in one transaction (a snapshot on PostgreSQL) and run the aggregate queries over
the cohort (one row per card: a subquery read in one grouped pass, or a temporary table when the
drill-down lists join it); the transaction is rolled back, so the mirror is never written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import date, datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from jobs.report import figures, queries, scope as sc, stays
from jobs.report.access import access_for
from jobs.report.cohort import Scope, cohort_of
from jobs.report.drill import stage_cards
from jobs.report.model import ENTITIES, MODES, PERIODS, SLICES, CardList, Channel, FunnelReport, Slice, Stage
from jobs.report.modes import Funnel as Stages, Tally, tally
from jobs.report.period import month_starts, parse_period
from jobs.report.queries import TOTAL
from mappings import db

DateLike = str | date | datetime | None
WORK_MEM = "64MB"
PARALLEL_TUPLE_COST = 0.01  # PostgreSQL's default is 0.1
SORTER_THREADS = min(4, os.cpu_count() or 1)  # SQLite
NO_SLICE = {"assigned": "(no manager)", "source": "(no source)", "month": "(no creation date)"}


def _choice(name: str, value: str | None, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise sc.ReportError(f"unknown {name} {value!r}: use one of {', '.join(choices)}")


@contextlib.contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection in one read transaction (REPEATABLE READ on PostgreSQL), always rolled back.

    A database that holds no mirror (never synced; a SQLite file is not created) or cannot be
    reached is refused with one line naming it.
    """
    try:
        present = db.exists(engine)
    except SQLAlchemyError as exc:
        raise sc.ReportError(str(db.unreachable(engine, exc))) from None
    if not present:
        raise sc.ReportError(f"no mirror in {db.shown(engine)}: run `b24sync sync` first")
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="REPEATABLE READ")
        transaction = conn.begin()
        try:
            if conn.dialect.name == "postgresql":
                # sorts and hashes of one report stay in memory (bounded), and no JIT compile per query
                conn.exec_driver_sql(f"SET LOCAL work_mem = '{WORK_MEM}'")
                conn.exec_driver_sql("SET LOCAL jit = off")
                # a report's grouped passes return a few rows per path, which the planner estimates as one
                # per card: priced at that, handing rows back from parallel workers never looked worth it
                conn.exec_driver_sql(f"SET LOCAL parallel_tuple_cost = {PARALLEL_TUPLE_COST}")
            else:  # SQLite's GROUP BY sorts: let its sorter use helper threads (none by default)
                conn.exec_driver_sql(f"PRAGMA threads = {SORTER_THREADS}")
            sc.check_mirror(conn)
            yield conn
        finally:
            transaction.rollback()


def _scope(
    conn: Connection,
    *,
    entity: str,
    pipeline: str | int | None,
    mode: str,
    date_from: DateLike,
    date_to: DateLike,
    period: str,
    by: str | None,
    assigned: str | int | None,
    source: str | None,
    include_deleted: bool,
    default_keys: Sequence[str],
) -> tuple[Scope, sc.Portal]:
    _choice("entity", entity, ENTITIES)
    _choice("mode", mode, MODES)
    _choice("period", period, PERIODS)
    _choice("slice (--by)", by, SLICES)
    kind = sc.entity_of(entity)
    portal = sc.portal_of(conn)
    the_pipeline = sc.resolve_pipeline(conn, kind, pipeline, default_keys=default_keys)
    stages = sc.load_stages(conn, kind, the_pipeline)
    the_period = parse_period(date_from, date_to, period, portal.timezone)
    scope = Scope(
        entity=kind, pipeline=the_pipeline, stages=stages, period=the_period,
        assigned=sc.resolve_manager(conn, kind, assigned), source=sc.resolve_source(conn, kind, source),
        include_deleted=include_deleted, by=by,
    )
    if by == "month":
        span = queries.creation_range(conn, scope)
        if span is not None:
            scope = replace(scope, months=month_starts(span[0], span[1], portal.timezone))
    current = {s.id for s in stages.current}
    removed = tuple(s for s in queries.stages_in_history(conn, scope) if s not in current)
    flagged = (*(s.id for s in stages.current), *removed) if mode == "entered" else removed
    access = access_for(conn, kind, narrow=scope.narrow)
    return replace(scope, removed=removed, flagged=flagged, access=access), portal


def _slices(conn: Connection, scope: Scope, keys: Sequence[str | None]) -> list[Slice]:
    """The slices found, labelled and in a reading order (names, dictionary order, months), empty key last."""
    by = scope.by or ""
    present = [k for k in keys if k is not None]
    if by == "assigned":
        names = sc.user_names(conn, sorted({int(k) for k in present}))
        found = [Slice(by, k, names.get(int(k), f"user {k}")) for k in present]
        found.sort(key=lambda s: (s.label.casefold(), s.key or ""))
    elif by == "source":
        labels = sc.source_names(conn)
        found = [Slice(by, k, labels.get(k, (k, 0))[0]) for k in present]
        found.sort(key=lambda s: (labels.get(s.key or "", ("", 1 << 30))[1], s.key or ""))
    else:
        found = sorted((Slice(by, k, k) for k in present), key=lambda s: s.key or "")
    if any(k is None for k in keys):
        found.append(Slice(by, None, NO_SLICE.get(by, "(none)")))
    return found


def _channels(conn: Connection, scope: Scope, funnel: Stages, cohort: sa.FromClause) -> list[Channel]:
    """Lead quality per source: leads, qualified, converted (success), junk (failure)."""
    groups = queries.facts(conn, scope, cohort, key="source").groups
    per_source = tally(funnel, "classic", groups, [])
    labels = sc.source_names(conn)
    channels = [
        Channel(source_id=key, name=labels.get(key, (key, 0))[0] if key else "(no source)", leads=t.cards,
                qualified=t.qualified, converted=t.won, junk=t.lost)
        for key, t in per_source.items()
    ]
    channels.sort(key=lambda c: (-c.leads, c.name.casefold()))
    return channels


def funnel(
    engine: Engine,
    *,
    entity: str = "deal",
    pipeline: str | int | None = None,
    mode: str = "conversion",
    date_from: DateLike = None,
    date_to: DateLike = None,
    period: str = "created",
    by: str | None = None,
    assigned: str | int | None = None,
    source: str | None = None,
    include_deleted: bool = False,
    cards_per_stage: int = 0,
    default_keys: Sequence[str] = (),
    now: datetime | None = None,
) -> "FunnelReport":
    """The funnel report of one pipeline (or of the lead statuses) from the mirror behind ``engine``.

    ``mode``: conversion | classic | entered; ``period``: created | active over ``date_from`` ..
    ``date_to`` (portal-local dates unless an offset is given); ``by``: assigned | source | month for
    one funnel per slice beside the total; ``assigned`` (a user ID or name) and ``source`` (a
    SOURCE_ID) narrow the cards. ``cards_per_stage`` > 0 also lists up to that many cards per stage
    of the total funnel (the HTML page's drill-down). Raises ``jobs.errors.UserError`` subclasses
    for anything unknown (pipeline, manager, source, option) and for an empty mirror.
    """
    now = now or datetime.now(timezone.utc)
    with reading(engine) as conn:
        scope, portal = _scope(
            conn, entity=entity, pipeline=pipeline, mode=mode, date_from=date_from, date_to=date_to, period=period,
            by=by, assigned=assigned, source=source, include_deleted=include_deleted, default_keys=default_keys,
        )
        cohort = cohort_of(conn, scope, reused=cards_per_stage > 0)
        groups, entered, with_rows = queries.facts(conn, scope, cohort)
        seen = {g.stage for g in entered}
        stages = [*scope.stages.current, *(scope.stages.removed(r) for r in scope.removed if r in seen)]
        order = Stages(stages)
        total = tally(order, mode, [replace(g, slice=None) for g in groups], [replace(g, slice=None) for g in entered])
        times = stays.durations(conn, scope, cohort, with_rows)
        cycles = queries.cycle_times(conn, scope, cohort)
        channels = _channels(conn, scope, order, cohort) if scope.entity.name == "lead" else None
        total_funnel = figures.funnel(stages, total.get(None, Tally()), durations=times.get(TOTAL),
                                      cycle_median=cycles.get(TOTAL), channels=channels)
        slices = []
        if by is not None:
            per_slice = tally(order, mode, groups, entered)
            for piece in _slices(conn, scope, list(per_slice)):
                slices.append(figures.funnel(stages, per_slice[piece.key], durations=times.get(piece.key),
                                             cycle_median=cycles.get(piece.key), slice=piece))
        lists: dict[str, CardList] = {}
        if cards_per_stage > 0:
            for stage in stages:
                lists[stage.id] = stage_cards(conn, scope, cohort, stage, mode, portal, limit=cards_per_stage, now=now)
    filters: dict[str, Any] = {"assigned": scope.assigned, "source": scope.source, "include_deleted": include_deleted}
    return FunnelReport(
        entity=scope.entity.name, pipeline=scope.pipeline, mode=mode, period=scope.period, total=total_funnel,
        slices=slices, by=by, filters=filters, portal=portal.address, generated_at=now, cards=lists,
    )


def cards(
    engine: Engine,
    *,
    stage: str,
    entity: str = "deal",
    pipeline: str | int | None = None,
    mode: str = "conversion",
    date_from: DateLike = None,
    date_to: DateLike = None,
    period: str = "created",
    assigned: str | int | None = None,
    source: str | None = None,
    include_deleted: bool = False,
    limit: int | None = None,
    default_keys: Sequence[str] = (),
    now: datetime | None = None,
) -> CardList:
    """The cards counted at ``stage`` (a STATUS_ID) under the same mode, period and filters as ``funnel``.

    Newest entry into the stage first (by history row ID); ``limit`` cuts the list (``.total`` keeps the full count).
    Raises ``jobs.errors.UserError`` subclasses for an unknown stage (naming the stages there are).
    """
    with reading(engine) as conn:
        scope, portal = _scope(
            conn, entity=entity, pipeline=pipeline, mode=mode, date_from=date_from, date_to=date_to, period=period,
            by=None, assigned=assigned, source=source, include_deleted=include_deleted, default_keys=default_keys,
        )
        target: Stage = sc.resolve_stage(scope.stages, scope.removed, stage)
        cohort = cohort_of(conn, scope, reused=False)  # one count and one list: each reads it once
        return stage_cards(conn, scope, cohort, target, mode, portal, limit=limit, now=now)
