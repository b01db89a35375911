"""The report's aggregate queries over the cohort table: grouped facts, entered stages, time in stage,
cycle time. Each returns a few rows per stage and slice, never a row per history entry.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.report.cohort import Scope, card_filter, flag
from jobs.report.figures import Durations
from jobs.report.modes import EnteredGroup, FactGroup
from jobs.report.portable import MEDIAN, P90, interpolate, money, percentiles, plain, seconds_between

TOTAL = "\x00total"  # the slice key of the total in per-slice results (a slice key is never this)


def facts(conn: Connection, scope: Scope, cohort: sa.Table, key: str = "slice") -> tuple[list[FactGroup], list[EnteredGroup]]:
    """The cohort's cards in groups, from one pass over it: the facts and the entered stages.

    Facts: cards grouped by (``key``, reach, position, semantics letter, moved, currency), with count
    and cents; ``key`` is the cohort column the groups are sliced by: ``slice`` (the ``--by`` key) or
    ``source``. Entered: per (slice, currency) and flagged stage, the cards that entered it (a history
    row there in the pipeline, or positioned there; the cohort carries one flag per ``scope.flagged``).
    """
    k = cohort.c
    flags = [k[flag(index)] for index in range(len(scope.flagged))]
    keys = (k[key].label("slice"), k.reach, k.position, k.letter, k.moved, k.currency)
    query = (sa.select(*keys, *flags, sa.func.count().label("n"), sa.func.sum(k.cents).label("cents"))
             .group_by(*keys, *flags))
    by_facts: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    by_entered: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0, 0])
    for row in conn.execute(query):
        n, cents = int(row.n), int(row.cents or 0)
        fact = by_facts[(row.slice, int(row.reach or 0), row.position or "", row.letter, bool(row.moved), row.currency or "")]
        fact[0] += n
        fact[1] += cents
        for index, stage_id in enumerate(scope.flagged):
            if row[len(keys) + index] == 1:
                entry = by_entered[(row.slice, stage_id, row.currency or "")]
                entry[0] += n
                entry[1] += cents
    return ([FactGroup(*key_, n, money(cents)) for key_, (n, cents) in by_facts.items()],
            [EnteredGroup(*key_, n, money(cents)) for key_, (n, cents) in by_entered.items()])


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


def stays(scope: Scope, cohort: sa.Table) -> sa.Subquery:
    """Completed stays of the cohort's cards in the pipeline's stages: (slice, stage, seconds).

    A stay runs from a history row to the card's next history row (in any pipeline), rows in ID order;
    the stay a card is still in has no next row and is left out. Each row keeps its stay
    (``stay_seconds``); an ``active`` period pairs the rows written before its end instead.
    """
    if scope.as_of is not None:
        return _stays_as_of(scope, cohort)
    e = scope.entity
    h, k = e.history, cohort.c
    return (
        sa.select(k.slice.label("slice"), h.c[e.stage].label("stage"), h.c.stay_seconds.label("seconds"))
        .select_from(h.join(cohort, k.id == h.c[e.owner]))
        .where(scope.in_pipeline(h), h.c.stay_seconds.is_not(None))
        .subquery("stays")
    )


def _stays_as_of(scope: Scope, cohort: sa.Table) -> sa.Subquery:
    """The stays as they were at ``scope.as_of``: each visible row paired with the card's next visible row."""
    e = scope.entity
    h, k = e.history, cohort.c
    left_at = sa.func.lead(h.c.date_create).over(partition_by=scope.access.order(h.c[e.owner]),
                                                 order_by=scope.access.order(h.c.id))
    following = (  # a window's rows are written out before they are filtered: keep them narrow
        sa.select(
            h.c[e.owner].label("card_id"),
            h.c[e.stage].label("stage"),
            scope.in_pipeline(h).label("here") if e.category is not None else sa.true().label("here"),
            seconds_between(left_at, h.c.date_create).label("seconds"),
        )
        .where(*scope.history_window(h), *([h.c[e.owner].in_(sa.select(k.id))] if scope.narrow else []))
        .subquery("following")
    )
    return (
        sa.select(k.slice.label("slice"), following.c.stage, following.c.seconds)
        .select_from(following.join(cohort, cohort.c.id == following.c.card_id))
        .where(following.c.here, following.c.seconds.is_not(None))
        .subquery("stays")
    )


def _durations(found: dict[tuple[Any, ...], tuple[int, dict[int, float | None]]]) -> dict[tuple[Any, ...], Durations]:
    return {key: Durations(n, values.get(MEDIAN), values.get(P90)) for key, (n, values) in found.items()}


def _stays_by_index(conn: Connection, scope: Scope, reached: sa.Table) -> dict[str, Durations]:
    """Per stage: the cohort's stays counted and ranked off the (pipeline, stage, stay) index, nothing sorted
    (``reached``: the cards with rows in the pipeline, as ``materialize`` keeps them).

    The index holds the stays of every card with rows in the pipeline; the few such cards the filters
    leave out (deleted, no card row) are read apart, and each wanted rank skips their stays: the
    k-th counted stay is the j-th in the index, j = k + (left-out stays up to it), found in a few steps.
    """
    e = scope.entity
    h = e.history
    stage, seconds = h.c[e.stage], h.c.stay_seconds
    here = [scope.in_pipeline(h), seconds.is_not(None)]
    counts = {row[0]: int(row[1]) for row in conn.execute(sa.select(stage, sa.func.count()).where(*here).group_by(stage))}
    r = reached.c
    left_out: dict[str, list[float]] = defaultdict(list)
    cards = [k for (k,) in conn.execute(sa.select(r.card_id).where(r.card_id.not_in(card_filter(scope))))]
    by_card = [plain(seconds).is_not(None)]  # SQLite: read by card, not along the stays index
    if e.category is not None:
        by_card.append(plain(h.c[e.category]) == scope.pipeline.id)
    for start in range(0, len(cards), 500):
        outside = sa.select(stage, seconds).where(*by_card, h.c[e.owner].in_(cards[start:start + 500]))
        for stage_id, value in conn.execute(outside):
            left_out[stage_id].append(float(value))
    result = {}
    for stage_id, indexed in counts.items():
        skipped = sorted(left_out.get(stage_id, []))
        n = indexed - len(skipped)
        if n <= 0:
            continue
        found: dict[int, float] = {}

        def at(j: int, stage_id: str = stage_id, found: dict[int, float] = found, ahead: int = len(skipped) + 2) -> float:
            if j not in found:  # the j-th stay (from 1) of the stage in the index, and as many after it as a rank may need
                query = (sa.select(seconds).where(*here, stage == stage_id).order_by(seconds)
                         .limit(ahead).offset(j - 1))
                for offset, (value,) in enumerate(conn.execute(query)):
                    found[j + offset] = float(value)
            return found[j]

        def counted(k: int, skipped: list[float] = skipped, at: Any = at) -> float:
            j = k
            while True:
                value = at(j)
                following = k + bisect_right(skipped, value)
                if following == j:
                    return value
                j = following

        result[stage_id] = Durations(n, *(interpolate(n, tenths, lambda rank: counted(rank) if rank <= n else None)
                                          for tenths in (MEDIAN, P90)))
    return result


def durations(conn: Connection, scope: Scope, cohort: sa.Table) -> dict[Any, dict[str, Durations]]:
    """Per slice (``TOTAL`` for all cards) and stage: how many completed stays, their median and p90."""
    source = stays(scope, cohort)
    result: dict[Any, dict[str, Durations]] = {TOTAL: {}}
    reached = cohort.info.get("reached")
    if scope.as_of is None and not scope.narrow and reached is not None:
        result[TOTAL] = _stays_by_index(conn, scope, reached)
    else:
        for (stage,), value in _durations(percentiles(conn, source, ["stage"], "seconds")).items():
            result[TOTAL][stage] = value
    if scope.by is not None:
        for (slice_key, stage), value in _durations(percentiles(conn, source, ["slice", "stage"], "seconds")).items():
            result.setdefault(slice_key, {})[stage] = value
    return result


def cycle_times(conn: Connection, scope: Scope, cohort: sa.Table) -> dict[Any, float | None]:
    """Per slice (``TOTAL`` for all cards): the median time from creation to won over the won cards."""
    k = cohort.c
    won = (
        sa.select(k.slice.label("slice"), seconds_between(k.won_at, k.created).label("seconds"))
        .where(k.position.in_(scope.success_ids), k.moved == 0, k.won_at.is_not(None), k.created.is_not(None))
        .subquery("won")
    )
    result: dict[Any, float | None] = {}
    for _, (n, values) in percentiles(conn, won, [], "seconds", (MEDIAN,)).items():
        result[TOTAL] = values.get(MEDIAN)
    if scope.by is not None:
        for (slice_key,), (n, values) in percentiles(conn, won, ["slice"], "seconds", (MEDIAN,)).items():
            result[slice_key] = values.get(MEDIAN)
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
