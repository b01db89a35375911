"""The report's aggregate queries over the cohort and the history rows: grouped facts, entered stages, the
stages in history, cycle time, the creation range (time in stage is ``stays``'s). Each returns a few rows
per stage and slice, never a row per history entry.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.report.cohort import Scope, card_conditions, card_filter, is_active, last_here, slice_key
from jobs.report.modes import EnteredGroup, FactGroup
from jobs.report.portable import MEDIAN, money, percentiles, plain, seconds_between

TOTAL = "\x00total"  # the slice key of the total in per-slice results (a slice key is never this)


class Facts(NamedTuple):
    """The cohort in groups: ``groups`` (facts), ``entered`` (entered stages) and ``with_rows``, how many
    of its cards have rows in the pipeline."""

    groups: list[FactGroup]
    entered: list[EnteredGroup]
    with_rows: int


def facts(conn: Connection, scope: Scope, cohort: sa.FromClause, key: str = "slice") -> Facts:
    """The cohort's cards in groups, from one pass over it: the facts and the entered stages.

    SQL groups the cards by (``key``, visited, position, semantics letter, moved, currency) with count
    and cents: a few groups per path through the pipeline. ``key`` is the cohort column the groups are
    sliced by: ``slice`` (the ``--by`` key) or ``source``. Each group's reach and entered stages
    (``scope.flagged``) follow from its visited stages and position.
    """
    k = cohort.c
    keys = (k[key].label("slice"), k.visited, k.position, k.letter, k.moved, k.currency)
    query = sa.select(*keys, sa.func.count().label("n"), sa.func.sum(k.cents).label("cents")).group_by(*keys)
    by_facts: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    by_entered: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    with_rows = 0
    for row in conn.execute(query):
        n, cents = int(row.n), int(row.cents or 0)
        with_rows += n if row.visited is not None else 0
        currency = row.currency or ""
        reach = scope.reach(row.visited, row.position)
        fact = by_facts[(row.slice, reach, row.position or "", row.letter, bool(row.moved), currency)]
        fact[0] += n
        fact[1] += cents
        for stage_id in scope.entered(row.visited, row.position):
            entry = by_entered[(row.slice, stage_id, currency)]
            entry[0] += n
            entry[1] += cents
    return Facts([FactGroup(*key_, n, money(cents)) for key_, (n, cents) in by_facts.items()],
                 [EnteredGroup(*key_, n, money(cents)) for key_, (n, cents) in by_entered.items()], with_rows)


def stages_in_history(conn: Connection, scope: Scope) -> list[str]:
    """Every STATUS_ID the pipeline's history rows name, found by a loose index scan (one seek per stage).

    ``WITH RECURSIVE`` walks the (category, stage) index from one stage to the next instead of
    reading every row; it runs the same on SQLite and PostgreSQL.
    """
    e = scope.entity
    h = e.history
    stage = h.c[e.stage]
    first = sa.select(sa.func.min(stage).label("stage")).where(scope.in_pipeline(h), stage.is_not(None))
    walk = first.cte("walk", recursive=True)
    inner = h.alias("later")
    following = (sa.select(sa.func.min(inner.c[e.stage]))
                 .where(scope.in_pipeline(inner), inner.c[e.stage] > walk.c.stage)
                 .scalar_subquery())
    walk = walk.union_all(sa.select(following.label("stage")).where(walk.c.stage.is_not(None)))
    return [row.stage for row in conn.execute(sa.select(walk.c.stage).where(walk.c.stage.is_not(None)))]


def _won(scope: Scope, cohort: sa.FromClause) -> sa.CTE:
    """The cohort's won cards, still in the pipeline, with their slice and seconds from creation to won (NULL
    when either moment is unknown).

    Won at: the card's last history row (by ID) in the pipeline's success stage, among the rows written
    before an ``active`` period's end. Outside such a period these are the cards at the success stage
    now, found through the card table's (pipeline, stage) index, and that row is nearly always the
    card's last row in the pipeline, which the partial ``visited`` index holds with its time.
    """
    e = scope.entity
    h = e.history.alias("won_row")

    def last_success(card: sa.ColumnElement[Any]) -> sa.ScalarSelect[Any]:
        # read along the card's rows: SQLite is kept off the (pipeline, stage) index here
        return (sa.select(h.c.date_create)
                .where(h.c[e.owner] == card, scope.in_pipeline(h, by_card=True), plain(h.c[e.stage]).in_(scope.success_ids),
                       *scope.history_window(h))
                .order_by(h.c.id.desc()).limit(1).scalar_subquery())

    if is_active(scope):
        k = cohort.c
        cards = (sa.select(k.slice.label("slice"), seconds_between(last_success(k.id), k.created).label("seconds"))
                 .where(k.position.in_(scope.success_ids), k.moved == 0))
    else:
        c = e.cards
        last, picked = last_here(scope)
        where = [c.c[e.stage].in_(scope.success_ids), scope.in_pipeline(c), *card_conditions(scope)]
        won_at = sa.case((last.c[e.stage].in_(scope.success_ids), last.c.date_create), else_=last_success(c.c.id))
        cards = (sa.select(slice_key(scope).label("slice"), seconds_between(won_at, c.c.date_create).label("seconds"))
                 .select_from(c.outerjoin(last, sa.and_(last.c[e.owner] == c.c.id, *picked))).where(*where))
    # MATERIALIZED: each card's lookups run once (merged into the outer query, SQLite repeats them per use)
    return cards.cte("won").prefix_with("MATERIALIZED")


def cycle_times(conn: Connection, scope: Scope, cohort: sa.FromClause) -> dict[Any, float | None]:
    """Per slice (``TOTAL`` for all cards): the median time from creation to won over the won cards."""
    won = _won(scope, cohort)
    result: dict[Any, float | None] = {}
    for _, (n, values) in percentiles(conn, won, [], "seconds", (MEDIAN,)).items():
        result[TOTAL] = values.get(MEDIAN)
    if scope.by is not None:
        for (slice_key_,), (n, values) in percentiles(conn, won, ["slice"], "seconds", (MEDIAN,)).items():
            result[slice_key_] = values.get(MEDIAN)
    return result


def creation_range(conn: Connection, scope: Scope) -> tuple[datetime, datetime] | None:
    """The first and last creation moments of the cards the filters let through (for ``--by month``)."""
    c = scope.entity.cards.c
    ids = card_filter(scope).subquery("filtered")
    row = conn.execute(sa.select(sa.func.min(c.date_create), sa.func.max(c.date_create))
                       .where(c.id.in_(sa.select(ids.c.id)))).first()
    if row is None or row[0] is None:
        return None
    return row[0], row[1]
