"""The report's aggregate queries over the cohort and the history rows: grouped facts, entered stages, time in stage,
cycle time. Each returns a few rows per stage and slice, never a row per history entry.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.report.cohort import Scope, card_conditions, card_filter, is_active, last_here, slice_key
from jobs.report.figures import Durations
from jobs.report.modes import EnteredGroup, FactGroup
from jobs.report.portable import MEDIAN, P90, bytewise, interpolate, money, ordered_join, percentiles, plain, seconds_between
from mappings import db

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


def stays(scope: Scope, cohort: sa.FromClause) -> sa.Subquery:
    """Completed stays of the cohort's cards in the pipeline's stages: (slice, stage, seconds).

    A stay runs from a history row to the card's next history row (in any pipeline), rows in ID order;
    the stay a card is still in has no next row and is left out. Each row keeps its stay
    (``stay_seconds``). Outside an ``active`` period the cohort's rows there are those of the cards the
    filters let through (a card with rows in the pipeline is in the cohort); in one, of the cards of the
    (materialized) cohort, and with an end the rows written before it are paired anew.
    """
    if scope.as_of is not None:
        return _stays_as_of(scope, cohort)
    e = scope.entity
    h = e.history
    if is_active(scope):
        cards, slice_, where = cohort, cohort.c.slice, []
    else:
        cards, slice_, where = e.cards, slice_key(scope), card_conditions(scope)
    # card by card, each card's rows read along the covering (card, ID, ..., stay) index
    members = ordered_join(cards, h, h.c[e.owner] == cards.c.id)
    return (  # grouped by slice and stage for the percentiles: sorted byte by byte
        sa.select(bytewise(slice_).label("slice"), bytewise(h.c[e.stage]).label("stage"),
                  h.c.stay_seconds.label("seconds"))
        .select_from(members)
        .where(scope.in_pipeline(h, by_card=True), plain(h.c.stay_seconds).is_not(None), *where)
        .subquery("stays")
    )


def _stays_as_of(scope: Scope, cohort: sa.FromClause) -> sa.Subquery:
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


def _left_out(conn: Connection, scope: Scope, with_rows: int | None) -> list[int]:
    """The cards with rows in the pipeline that the card filters leave out (deleted, or no card row).

    ``with_rows``: how many cohort cards have rows there (``Facts.with_rows``). When that and the
    cards that fail the filters account for every card with rows, there is no row without its card
    and the cards that fail are the answer, found from the card table (a few); else every card with
    rows is checked against the card table.
    """
    e = scope.entity
    last, here = last_here(scope)
    c = e.cards.c
    passes = sa.and_(sa.true(), *card_conditions(scope))
    if with_rows is not None:
        fail = sa.select(c.id).where(~passes)  # read off the card table first, then a seek per card that fails
        failing = [card for (card,) in conn.execute(sa.select(last.c[e.owner]).where(*here, last.c[e.owner].in_(fail)))]
        if conn.execute(sa.select(sa.func.count()).select_from(last).where(*here)).scalar() == with_rows + len(failing):
            return failing
    kept = sa.exists().where(c.id == last.c[e.owner], passes)
    return [card for (card,) in conn.execute(sa.select(last.c[e.owner]).where(*here, ~kept))]


def _pipeline_stays(conn: Connection, scope: Scope, with_rows: int | None) -> dict[str, Durations]:
    """Per stage: the stays of every card with rows in the pipeline but the few the filters leave out.

    PostgreSQL takes ``percentile_cont`` along the (pipeline, stage, stay) index, the left-out cards
    excluded by a hashed list; SQLite reads the ranks off that index (``_stays_by_index``).
    """
    left_out = _left_out(conn, scope, with_rows)
    if conn.dialect.name != "postgresql":
        return _stays_by_index(conn, scope, left_out)
    from sqlalchemy.dialects import postgresql

    e = scope.entity
    h = e.history
    where = [scope.in_pipeline(h), h.c.stay_seconds.is_not(None)]
    if left_out:
        ids = sa.literal(left_out, postgresql.ARRAY(sa.BigInteger))
        if (conn.dialect.server_version_info or (0,)) >= (15,):  # 15 hashes a constant "<> ALL" list itself
            where.append(h.c[e.owner] != sa.all_(ids))
        else:  # before 15 that list is searched row by row: a hashed subplan instead
            where.append(h.c[e.owner].not_in(sa.select(sa.func.unnest(ids))))
    source = sa.select(h.c[e.stage].label("stage"), h.c.stay_seconds.label("seconds")).where(*where).subquery("stays")
    return {stage: value for (stage,), value in _durations(percentiles(conn, source, ["stage"], "seconds")).items()}


def _stays_by_index(conn: Connection, scope: Scope, left_out: list[int]) -> dict[str, Durations]:
    """Per stage: the cohort's stays counted and ranked off the (pipeline, stage, stay) index, nothing sorted.

    The index holds the stays of every card with rows in the pipeline; the stays of the few cards the
    filters leave out (``left_out``) are read apart, and each wanted rank skips them: the k-th counted
    stay is the j-th in the index, j = k + (left-out stays up to it), found in a few steps.
    """
    e = scope.entity
    h = e.history
    stage, seconds = h.c[e.stage], h.c.stay_seconds
    here = [scope.in_pipeline(h), seconds.is_not(None)]
    counts = {row[0]: int(row[1]) for row in conn.execute(sa.select(stage, sa.func.count()).where(*here).group_by(stage))}
    skipped_stays: dict[str, list[float]] = defaultdict(list)
    by_card = [plain(seconds).is_not(None), scope.in_pipeline(h, by_card=True)]  # not along the stays index
    for part in db.chunks(left_out):
        outside = sa.select(stage, seconds).where(*by_card, h.c[e.owner].in_(part))
        for stage_id, value in conn.execute(outside):
            skipped_stays[stage_id].append(float(value))
    result = {}
    for stage_id, indexed in counts.items():
        skipped = sorted(skipped_stays.get(stage_id, []))
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


def durations(conn: Connection, scope: Scope, cohort: sa.FromClause, with_rows: int | None = None) -> dict[Any, dict[str, Durations]]:
    """Per slice (``TOTAL`` for all cards) and stage: how many completed stays, their median and p90
    (``with_rows``: ``Facts.with_rows`` of this cohort, when known)."""
    source = stays(scope, cohort)
    result: dict[Any, dict[str, Durations]] = {TOTAL: {}}
    if scope.as_of is None and not scope.narrow:
        result[TOTAL] = _pipeline_stays(conn, scope, with_rows)
    else:
        for (stage,), value in _durations(percentiles(conn, source, ["stage"], "seconds")).items():
            result[TOTAL][stage] = value
    if scope.by is not None:
        for (slice_key, stage), value in _durations(percentiles(conn, source, ["slice", "stage"], "seconds")).items():
            result.setdefault(slice_key, {})[stage] = value
    return result


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
