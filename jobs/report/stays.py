"""Time in stage: the completed stays of the cohort's cards per stage (and slice), their count, median and p90.

A stay runs from a history row to the card's next history row (in any pipeline), rows in ID order;
each row keeps its stay (``stay_seconds``, kept by the sync). For the whole pipeline the stays are
read off the (pipeline, stage, stay) index, skipping the few cards the filters leave out: ranked
there on SQLite, ``percentile_cont`` along it on PostgreSQL. For slices and filtered cards they are
read card by card; an ``active`` period with an end pairs the rows written before it anew.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.report.cohort import Scope, card_conditions, is_active, last_here, slice_key
from jobs.report.figures import Durations
from jobs.report.portable import MEDIAN, P90, bytewise, interpolate, ordered_join, percentiles, plain, seconds_between
from jobs.report.queries import TOTAL
from mappings import db


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
