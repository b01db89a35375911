"""What a card's history rows say about each other, kept on the rows for the reports: its stays and its path.

- ``stay_seconds``: seconds from a row to the card's next row (by ID); NULL on the card's last row.
- ``visited``: on the card's last row in each pipeline, the stages its rows there name (``,NEW,WON,``,
  in any order); NULL on the other rows.

Both are recomputed in the database, set-based, for a set of cards (``settle``) and written only
where they differ: a page of new rows settles its own cards; a large load settles every card once
at its end, in chunks of cards (``settle_from``), instead of rewriting rows page after page. A
load killed before its end leaves a mark in the stream's state, so the next run settles it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from mappings import db, entities as ent, tables

MARK = "unsettled_from"  # the stream state's extra key: history rows from this ID on are not settled yet
CARDS_PER_SETTLE = 20_000  # cards per transaction when a whole load is settled


def card_column(stream: ent.Stream) -> str:
    """The history stream's column naming the card its rows belong to (REST ``OWNER_ID``): deal_id, lead_id."""
    return next(col.name for col in stream.columns if col.rest == "OWNER_ID")


def _names(stream: ent.Stream) -> tuple[str, str, str | None, str]:
    """(table, card column, pipeline column or None, stage column) of a history stream."""
    table = tables.table_of(stream)
    card = card_column(stream)
    pipeline = "category_id" if "category_id" in table.c else None
    stage = "stage_id" if "stage_id" in table.c else "status_id"
    return table.name, card, pipeline, stage


def settle(conn: Connection, stream: ent.Stream, cards: Sequence[int]) -> None:
    """Bring ``stay_seconds`` and ``visited`` up to date on every row of ``cards``."""
    for part in db.chunks(sorted({c for c in cards if c is not None})):
        _settle(conn, stream, "IN :cards", {"cards": list(part)}, expanding=True)


def settle_from(conn_factory: Any, stream: ent.Stream, first_id: int) -> Iterator[int]:
    """Settle every card with a row at or above ``first_id``, a chunk of cards per transaction.

    ``conn_factory()`` opens a write transaction (the writer's, which renews the lease); yields
    the number of cards settled after each chunk.
    """
    table, card, _, _ = _names(stream)
    after: int | None = None
    while True:
        with conn_factory() as conn:
            query = (f"SELECT min({card}), max({card}), count(*) FROM (SELECT DISTINCT {card} FROM {table} "
                     f"WHERE id >= :first AND {card} IS NOT NULL" + (f" AND {card} > :after" if after is not None else "")
                     + f" ORDER BY {card} LIMIT :n) AS chunk")
            low, high, count = conn.execute(sa.text(query), {"first": first_id, "after": after, "n": CARDS_PER_SETTLE}).one()
            if not count:
                return
            _settle(conn, stream, "BETWEEN :low AND :high", {"low": low, "high": high})
        after = high
        yield int(count)


def _settle(conn: Connection, stream: ent.Stream, cards: str, params: dict[str, Any], *, expanding: bool = False) -> None:
    table, card, pipeline, stage = _names(stream)
    postgresql = conn.dialect.name == "postgresql"
    differs = "IS DISTINCT FROM" if postgresql else "IS NOT"
    same = "IS NOT DISTINCT FROM" if postgresql else "IS"
    if postgresql:
        seconds = "EXTRACT(EPOCH FROM (lead(date_create) OVER w - date_create))"
        stages = f"string_agg(DISTINCT {stage}, ',')"
    else:  # portal times are whole seconds: rounding drops julianday's floating noise
        seconds = "ROUND((julianday(lead(date_create) OVER w) - julianday(date_create)) * 86400.0)"
        stages = f"group_concat(DISTINCT {stage})"
    keys = f"{card}, {pipeline}" if pipeline else card
    joined = f"r.{card} = l.{card}" + (f" AND r.{pipeline} {same} l.{pipeline}" if pipeline else "")
    statements = [
        f"UPDATE {table} SET stay_seconds = f.seconds FROM "
        f"(SELECT id, {seconds} AS seconds FROM {table} WHERE {card} {cards} "
        f"WINDOW w AS (PARTITION BY {card} ORDER BY id)) AS f "
        f"WHERE {table}.id = f.id AND {table}.stay_seconds {differs} f.seconds",
        f"UPDATE {table} SET visited = p.visited FROM "
        f"(SELECT r.id, CASE WHEN r.id = l.last_id THEN l.visited END AS visited FROM {table} AS r JOIN "
        f"(SELECT {keys}, max(id) AS last_id, ',' || coalesce({stages}, '') || ',' AS visited FROM {table} "
        f"WHERE {card} {cards} GROUP BY {keys}) AS l ON {joined} WHERE r.{card} {cards}) AS p "
        f"WHERE {table}.id = p.id AND {table}.visited {differs} p.visited",
    ]
    for sql in statements:
        text = sa.text(sql)
        if expanding:
            text = text.bindparams(sa.bindparam("cards", expanding=True))
        conn.execute(text, params)
