"""Drill-down: the cards counted at one stage, newest entry first, with the figures a person checks.

Which cards a stage lists follows the mode exactly as the counts do (``modes.Funnel.members``), so a
list always holds as many cards as the stage's count.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from jobs.report.cohort import Scope
from jobs.report.model import PROCESS, REMOVED, Card, CardList, Stage
from jobs.report.portable import money
from jobs.report.scope import Portal, user_names
from jobs.report.text import DASH


def membership(scope: Scope, cohort: sa.FromClause, stage: Stage, mode: str, entered_row: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """SQL for "this cohort card counts at ``stage`` in ``mode``" (``entered_row``: its last row there, or NULL)."""
    k = cohort.c
    at_position = k.position == stage.id
    if stage.semantics == REMOVED or mode == "entered":
        return sa.or_(entered_row.is_not(None), at_position)
    if mode == "classic":
        return at_position
    if stage.semantics == PROCESS:
        return sa.true() if stage.index <= 1 else scope.reach_at_least(cohort, stage.index)
    return at_position


def stage_cards(
    conn: Connection,
    scope: Scope,
    cohort: sa.FromClause,
    stage: Stage,
    mode: str,
    portal: Portal,
    *,
    limit: int | None = None,
    now: datetime | None = None,
) -> CardList:
    """The cards counted at ``stage``: id, title, amount, manager, when they entered it, days there, link."""
    e = scope.entity
    h, k, c = e.history, cohort.c, e.cards
    last_entry = (  # on SQLite one pass along the covering (card, ID, ...) index: no row lookups, no sort
        sa.select(h.c[e.owner].label("card_id"), sa.func.max(h.c.id).label("row_id"))
        .where(scope.in_pipeline(h, scan=True), scope.access.filter(h.c[e.stage]) == stage.id, *scope.history_window(h))
        .group_by(scope.access.order(h.c[e.owner]))
        .subquery("last_entry")
    )
    counted = membership(scope, cohort, stage, mode, last_entry.c.row_id)
    by_entry = stage.semantics == REMOVED or mode == "entered"  # membership reads the last entry only then
    members = cohort.outerjoin(last_entry, last_entry.c.card_id == k.id) if by_entry else cohort
    total = int(conn.execute(sa.select(sa.func.count()).select_from(members).where(counted)).scalar() or 0)
    newest_first = (last_entry.c.row_id.desc().nulls_last(), k.id.desc())  # history IDs follow the portal's order
    listed = (
        sa.select(k.id, k.cents, k.currency, k.assigned_by_id, k.slice, last_entry.c.row_id)
        .select_from(cohort.outerjoin(last_entry, last_entry.c.card_id == k.id))
        .where(counted)
        .order_by(*newest_first)
    )
    if limit is not None:
        listed = listed.limit(limit)
    page = listed.subquery("page")  # the entry rows are read for the listed cards only
    entry = h.alias("entry")
    after = h.alias("after")
    left_at = (
        sa.select(after.c.date_create)
        .where(after.c[e.owner] == page.c.id, after.c.id > page.c.row_id, *scope.history_window(after))
        .order_by(after.c.id)
        .limit(1)
        .scalar_subquery()
    )
    query = (
        sa.select(page, c.c.title, entry.c.date_create.label("entered_at"), left_at.label("left_at"))
        .select_from(page.join(c, c.c.id == page.c.id).outerjoin(entry, entry.c.id == page.c.row_id))
        .order_by(page.c.row_id.desc().nulls_last(), page.c.id.desc())
    )
    rows = list(conn.execute(query))
    names = user_names(conn, sorted({int(r.assigned_by_id) for r in rows if r.assigned_by_id is not None}))
    now = now or datetime.now(timezone.utc)
    until = min(scope.as_of, now) if scope.as_of is not None else now
    cards = []
    for row in rows:
        days = None
        if row.entered_at is not None:
            end = row.left_at if row.left_at is not None else until
            days = max(0.0, (end - row.entered_at).total_seconds() / 86400)
        manager_id = None if row.assigned_by_id is None else int(row.assigned_by_id)
        cards.append(Card(
            id=int(row.id), title=row.title or "", amount=money(row.cents), currency=row.currency or "",
            manager_id=manager_id, manager=names.get(manager_id, DASH if manager_id is None else f"user {manager_id}"),
            entered_at=row.entered_at, days_in_stage=days, url=portal.card_url(e, int(row.id)), slice_key=row.slice,
        ))
    return CardList(stage, cards, total, mode=mode, timezone=portal.timezone)
