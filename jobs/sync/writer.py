"""Writes pages into the mirror: one transaction per page with the state that follows it, unchanged rows skipped.

Every transaction first renews the lease (``Lease.fence``), so a run that lost its lease writes
nothing more. Records keep their typed row, their user-field row and their multi-field rows in
step; history rows are inserted once and updated only when the portal rewrote them; full lists
(dictionaries) mark what the portal no longer lists with ``deleted_at`` instead of deleting it.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from jobs.sync import paths, state as st
from jobs.sync.result import StreamResult
from mappings import db, entities as ent, fields, tables

log = logging.getLogger(__name__)

_COLUMN_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_KIND_OF_TYPE = (
    (sa.BigInteger, ent.ID),
    (sa.Integer, ent.ID),
    (sa.Boolean, ent.FLAG),
    (sa.DateTime, ent.DATETIME),
    (sa.Date, ent.DATE),
    (sa.JSON, ent.JSON),
)


def utcnow() -> datetime:
    """The host's current time, aware in UTC (synced_at, deleted_at, first_seen_at)."""
    return datetime.now(timezone.utc)


def _among(column: Any, keys: Sequence[int], conn: Connection) -> Any:
    """``column IN keys``: one array parameter on PostgreSQL (no plan per list length), an IN list elsewhere."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == sa.any_(sa.cast(sa.literal(list(keys), ARRAY(sa.BigInteger())), ARRAY(sa.BigInteger())))
    return column.in_(keys)


def _kind_of(column_type: Any) -> str:
    for cls, kind in _KIND_OF_TYPE:
        if isinstance(column_type, cls):
            return kind
    if type(column_type).__name__.upper() in ("JSONB", "JSON"):
        return ent.JSON
    return ent.TEXT


@dataclass
class UserFields:
    """An entity's user fields as the mirror knows them: definitions by FIELD_NAME and the uf table's columns."""

    definitions: dict[str, dict[str, Any]] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)  # column name -> kind, as the table has them

    def multiple(self) -> list[str]:
        """FIELD_NAMEs of the live multiple fields (``UF_*`` in a select leaves them out)."""
        return sorted(n for n, d in self.definitions.items() if d.get("multiple") and d.get("deleted_at") is None)


class Writer:
    """Writes into one mirror for one run; thread-safe (each call opens its own transaction)."""

    def __init__(self, engine: Engine, lease: Any = None, portal_tz: tzinfo = timezone.utc):
        self.engine = engine
        self.lease = lease
        self.portal_tz = portal_tz
        self._ddl = threading.Lock()
        self.userfields: dict[str, UserFields] = {}
        self._uf_tables: dict[tuple[str, tuple[tuple[str, str], ...]], sa.Table] = {}

    # ---------------------------------------------------------------- transactions

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction whose first statement renews the lease (``LeaseLost`` rolls it back)."""
        with db.begin_write(self.engine) as conn:
            if self.lease is not None:
                self.lease.fence(conn)
            yield conn

    def save_state(self, state: st.StreamState, *, unless_equal: bool = False) -> None:
        """Write one stream's state on its own (``unless_equal``: not when the mirror already has exactly this)."""
        if unless_equal:
            with self.engine.connect() as conn:
                if st.load(conn, state.stream).values() == state.values():
                    return
        with self.transaction() as conn:
            st.save(conn, state)

    # ---------------------------------------------------------------- CRM records

    def records(
        self,
        stream: ent.Stream,
        records: Sequence[Mapping[str, Any]],
        state: st.StreamState | None = None,
        *,
        on_commit: Callable[[Connection], None] | None = None,
        save_if_unchanged: bool = True,
    ) -> StreamResult:
        """Write one page of records (typed row, user fields, multi-fields) and ``state`` in one transaction.

        ``state`` (when given) gets the page's keyset position and largest DATE_MODIFY before it is
        saved. Rows whose stored ``raw`` is the same (and not marked deleted) are not written; a page
        with nothing to write opens no write transaction when ``save_if_unchanged`` is False.
        """
        result = StreamResult(fetched=len(records))
        synced_at = utcnow()
        table = tables.table_of(stream)
        problems: list[str] = []
        rows = {}
        for record in records:
            row = fields.record_row(stream, record, self.portal_tz, synced_at, problems)
            rows[row["id"]] = (row, record)
        result.problems = len(problems)
        for problem in problems[:5]:
            log.warning("%s", problem)
        if state is not None and rows:
            state.window_last_id = max(max(rows), state.window_last_id or 0)
            moments = [r["date_modify"] for r, _ in rows.values() if r.get("date_modify") is not None]
            if moments:
                top = max(moments)
                state.window_max = top if state.window_max is None else max(state.window_max, top)
        with self.engine.connect() as conn:  # only this run writes (the lease), and only this stream this table
            stored = self._stored(conn, table, list(rows))
        changed = [rows[key] for key, (row, _) in rows.items() if stored.get(key) != (row["raw"], None)]
        if not changed and on_commit is None and (state is None or not save_if_unchanged):
            return result
        with self.transaction() as conn:
            new = [row for row, _ in changed if row["id"] not in stored]
            result.inserted = len(new)
            result.updated = len(changed) - result.inserted
            if changed:
                db.insert_new(conn, table, new)
                db.upsert(conn, table, [row for row, _ in changed if row["id"] in stored])
                self._write_userfields(conn, stream, [record for _, record in changed], synced_at, result,
                                       new={row["id"] for row in new})
                self._write_multifields(conn, stream, [record for _, record in changed])
            if state is not None:
                st.save(conn, state)
            if on_commit is not None:
                on_commit(conn)
        return result

    def _stored(self, conn: Connection, table: sa.Table, keys: list[int]) -> dict[int, tuple[Any, Any]]:
        """``raw`` and ``deleted_at`` of the rows among ``keys`` the mirror has (IDs first: a new page costs little)."""
        found: dict[int, tuple[Any, Any]] = {}
        for part in db.chunks(keys, 5000):
            present = [k for (k,) in conn.execute(sa.select(table.c.id).where(_among(table.c.id, part, conn)))]
            for few in db.chunks(present):
                query = sa.select(table.c.id, table.c.raw, table.c.deleted_at).where(_among(table.c.id, few, conn))
                for key, raw, deleted_at in conn.execute(query):
                    found[key] = (raw, deleted_at)
        return found

    def _write_userfields(self, conn: Connection, stream: ent.Stream, records: Sequence[Mapping[str, Any]],
                          synced_at: datetime, result: StreamResult, new: AbstractSet[int] = frozenset()) -> None:
        if not stream.uf_table:
            return
        known = self.userfields.get(stream.name)
        if known is None:
            known = self.userfields[stream.name] = self.load_userfields(conn, stream)
        carried = {name for record in records for name in fields.uf_names(record)}
        missing = [name for name in carried if name.lower() not in known.columns]
        if missing:  # a field the definitions did not show yet: keep its values as text
            self._add_columns(conn, stream, known, [(name, None, False) for name in sorted(missing)])
        problems: list[str] = []
        rows = [fields.uf_row(stream, record, known.columns, known.definitions, self.portal_tz, synced_at, problems)
                for record in records]
        result.problems += len(problems)
        for problem in problems[:5]:
            log.warning("%s", problem)
        table = self._uf_table(conn, stream, known)
        by_columns: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for row in rows:  # rows carry different user fields (a deleted field is left out): group them
            by_columns.setdefault(tuple(row), []).append(row)
        key = stream.uf_key
        for group in by_columns.values():  # rows of records new to the mirror are new too
            db.insert_new(conn, table, [row for row in group if row[key] in new])
            db.upsert(conn, table, [row for row in group if row[key] not in new])

    def _write_multifields(self, conn: Connection, stream: ent.Stream, records: Sequence[Mapping[str, Any]]) -> None:
        if not stream.multi_fields:
            return
        table = tables.crm_multifield
        owners = [fields.record_id(stream, record) for record in records]
        for part in db.chunks(owners):
            conn.execute(table.delete().where((table.c.entity_type_id == stream.entity_type_id) & table.c.owner_id.in_(part)))
        rows = [row for record in records for row in fields.multifield_rows(stream, record)]
        unique = {(r["entity_type_id"], r["owner_id"], r["item_id"]): r for r in rows}
        db.insert_new(conn, table, list(unique.values()))  # the owners' rows were deleted just above

    # ---------------------------------------------------------------- user-field definitions and columns

    def load_userfields(self, conn: Connection, stream: ent.Stream) -> UserFields:
        """The definitions and uf-table columns the mirror has for an entity."""
        table = tables.crm_userfield
        definitions = {
            row["field_name"]: dict(row)
            for row in conn.execute(sa.select(table).where(table.c.entity_id == stream.uf_entity)).mappings()
        }
        return UserFields(definitions, self._uf_columns(conn, stream))

    def _uf_columns(self, conn: Connection, stream: ent.Stream) -> dict[str, str]:
        assert stream.uf_table and stream.uf_key
        base = {stream.uf_key, "synced_at", *(c.name for c in stream.uf_base)}
        return {c["name"]: _kind_of(c["type"]) for c in sa.inspect(conn).get_columns(stream.uf_table) if c["name"] not in base}

    def _uf_table(self, conn: Connection, stream: ent.Stream, known: UserFields) -> sa.Table:
        base = tables.UF_TABLES[stream.name]
        extra = [sa.Column(name, tables.column_type(kind)) for name, kind in known.columns.items() if name not in base.c]
        key = (stream.name, tuple(sorted(known.columns.items())))
        table = self._uf_tables.get(key)
        if table is None:
            own = [sa.Column(c.name, c.type, primary_key=c.primary_key) for c in base.columns]
            table = self._uf_tables[key] = sa.Table(base.name, sa.MetaData(), *own, *extra)
        return table

    def _add_columns(self, conn: Connection, stream: ent.Stream, known: UserFields,
                     wanted: Iterable[tuple[str, str | None, bool]]) -> list[str]:
        """ALTER TABLE ADD COLUMN for user fields the uf table does not have yet; returns the columns added."""
        added = []
        preparer = conn.dialect.identifier_preparer
        with self._ddl:
            known.columns = self._uf_columns(conn, stream)  # another stream of this run may have added some
            for field_name, user_type_id, multiple in wanted:
                kind = tables.uf_column_kind(user_type_id, multiple)
                for column in tables.uf_column_names(field_name, user_type_id):
                    if column in known.columns:
                        continue
                    if not _COLUMN_RE.match(column):
                        log.warning("%s: user field %s has a name that cannot be a column; kept in raw only", stream.name, field_name)
                        continue
                    column_kind = kind if column == field_name.lower() else ent.TEXT
                    sql_type = tables.column_type(column_kind).compile(dialect=conn.dialect)
                    conn.execute(sa.text(f"ALTER TABLE {preparer.quote(stream.uf_table)} ADD COLUMN {preparer.quote(column)} {sql_type}"))
                    known.columns[column] = column_kind
                    added.append(column)
        if added:
            log.info("%s: added user-field column(s) %s", stream.uf_table, ", ".join(added))
        return added

    def definitions(self, stream: ent.Stream, items: Sequence[Mapping[str, Any]], complete: bool = True) -> StreamResult:
        """Write an entity's user-field definitions (``stream`` is ``<entity>_userfield``) and add their columns.

        Renamed fields keep their first label and their column; deleted ones keep their row
        (``deleted_at``) and their column with what was stored; renamed enumeration options
        update the labels already stored for single-valued fields.
        """
        owner = next(s for s in ent.STREAMS.values() if s.userfields == stream.name)
        table = tables.crm_userfield
        now = utcnow()
        result = StreamResult(fetched=len(items))
        with self.transaction() as conn:
            known = self.load_userfields(conn, owner)
            seen: set[str] = set()
            rows = []
            for item in items:
                row = fields.userfield_row(item, known.definitions.get(str(item.get("FIELD_NAME"))), now)
                if row["entity_id"] != owner.uf_entity:
                    continue
                seen.add(row["field_name"])
                previous = known.definitions.get(row["field_name"])
                if previous is not None and previous["raw"] == row["raw"] and previous["deleted_at"] is None:
                    continue
                if previous is None:
                    result.inserted += 1
                else:
                    result.updated += 1
                    row["synced_at"] = now
                rows.append(row)
            db.upsert(conn, table, rows)
            vanished = [n for n, d in known.definitions.items() if n not in seen and d["deleted_at"] is None] if complete else []
            if vanished:
                conn.execute(table.update().where((table.c.entity_id == owner.uf_entity) & table.c.field_name.in_(vanished))
                             .values(deleted_at=now))
                result.deleted += len(vanished)
            for row in rows:
                known.definitions[row["field_name"]] = row
            for name in vanished:
                known.definitions[name] = {**known.definitions[name], "deleted_at": now}
            self._add_columns(conn, owner, known, [(r["field_name"], r["user_type_id"], bool(r["multiple"])) for r in rows])
            self._relabel(conn, owner, known, rows)
            self.userfields[owner.name] = known
        return result

    def _relabel(self, conn: Connection, stream: ent.Stream, known: UserFields, rows: Sequence[Mapping[str, Any]]) -> None:
        """Stored labels of single-valued enumeration fields whose options were renamed."""
        assert stream.uf_table
        for row in rows:
            if (row.get("user_type_id") or "").lower() != "enumeration" or row.get("multiple"):
                continue
            column = row["field_name"].lower()
            if known.columns.get(column) != ent.ID or f"{column}_label" not in known.columns:
                continue
            for option, label in (row.get("enum_items") or {}).items():
                option_id = fields.parse_id(option) if str(option).strip().lstrip("-").isdigit() else None
                if option_id is None:
                    continue
                conn.execute(sa.text(
                    f"UPDATE {stream.uf_table} SET {column}_label = :label WHERE {column} = :option AND "
                    f"({column}_label IS NULL OR {column}_label <> :label)"
                ), {"label": label, "option": option_id})

    # ---------------------------------------------------------------- stage history

    def history(self, stream: ent.Stream, items: Sequence[Mapping[str, Any]], state: st.StreamState | None = None,
                *, mark_seen: bool = True, settle: bool = True) -> StreamResult:
        """Insert new history rows, update the ones the portal rewrote, advance ``state.cursor_id``; one transaction.

        Rows are never removed; a row listed again after it was marked vanished is un-marked. The
        stays and paths (``jobs.sync.paths``) of every card a new or rewritten row belongs to are
        brought up to date in the same transaction; with ``settle=False`` (a large load, settled
        at its end by ``settle_history``) only those of the rewritten rows' cards.
        """
        table = tables.table_of(stream)
        owner = table.c[paths.card_column(stream)]
        now = utcnow()
        rows = {}
        for item in items:
            row = fields.history_row(stream, item, self.portal_tz, now)
            rows[row["id"]] = row
        result = StreamResult(fetched=len(items))
        if state is not None and rows:
            state.cursor_id = max(max(rows), state.cursor_id or 0)
        with self.transaction() as conn:
            stored = self._stored(conn, table, list(rows))
            new = [row for key, row in rows.items() if key not in stored]
            changed = [row for key, row in rows.items() if key in stored and stored[key] != (row["raw"], None)]
            cards = {row[owner.name] for row in (*(new if settle else ()), *changed)}
            for part in db.chunks([row["id"] for row in changed]):  # a rewritten row may have named another card
                cards.update(k for (k,) in conn.execute(sa.select(owner).where(_among(table.c.id, part, conn))))
            db.insert_new(conn, table, new)
            if changed:  # first_seen_at stays as it was
                db.upsert(conn, table, changed, update=[k for k in changed[0] if k not in ("id", "first_seen_at")])
            paths.settle(conn, stream, list(cards))
            result.inserted, result.updated = len(new), len(changed)
            if state is not None:
                st.save(conn, state)
        return result

    def settle_history(self, stream: ent.Stream, state: st.StreamState) -> int:
        """Settle the cards of every row from ``state``'s mark on (``paths.MARK``), then drop the mark; cards settled."""
        first = state.extra.get(paths.MARK)
        if first is None:
            return 0
        settled = sum(paths.settle_from(self.transaction, stream, int(first)))
        state.extra = {k: v for k, v in state.extra.items() if k != paths.MARK}
        self.save_state(state)
        return settled

    # ---------------------------------------------------------------- full lists

    def full_list(self, stream: ent.Stream, rows: Sequence[Mapping[str, Any]], complete: bool = True) -> StreamResult:
        """Write a dictionary read in full (pipelines, statuses, users): changed rows upserted, missing ones marked."""
        table = tables.table_of(stream)
        now = utcnow()
        result = StreamResult(fetched=len(rows))
        key = table.c.id
        by_key = {row["id"]: row for row in rows}
        with self.transaction() as conn:
            stored = {k: (raw, deleted) for k, raw, deleted in conn.execute(sa.select(key, table.c.raw, table.c.deleted_at))}
            changed = [row for k, row in by_key.items() if stored.get(k) != (row["raw"], None)]
            result.inserted = sum(1 for row in changed if row["id"] not in stored)
            result.updated = len(changed) - result.inserted
            db.upsert(conn, table, changed)
            if complete:
                vanished = [k for k, (_, deleted) in stored.items() if k not in by_key and deleted is None]
                for part in db.chunks(vanished):
                    conn.execute(table.update().where(key.in_(part)).values(deleted_at=now))
                result.deleted = len(vanished)
        return result

    # ---------------------------------------------------------------- deletions

    def mark_deleted(self, stream: ent.Stream, ids: Sequence[int], *, on_commit: Callable[[Connection], None] | None = None) -> int:
        """Set ``deleted_at`` on rows of ``ids`` that are not marked yet; returns how many were marked."""
        table = tables.table_of(stream)
        now = utcnow()
        marked = 0
        with self.transaction() as conn:
            for part in db.chunks(list(ids)):
                marked += conn.execute(table.update().where(table.c.id.in_(part) & table.c.deleted_at.is_(None))
                                       .values(deleted_at=now)).rowcount or 0
            if on_commit is not None:
                on_commit(conn)
        return marked

    def present(self, stream: ent.Stream, after: int, limit: int) -> list[tuple[int, bool]]:
        """The mirror's (id, deleted?) after ``after`` in ID order, at most ``limit`` of them."""
        table = tables.table_of(stream)
        with self.engine.connect() as conn:
            query = (sa.select(table.c.id, table.c.deleted_at.is_not(None)).where(table.c.id > after)
                     .order_by(table.c.id).limit(limit))
            return [(int(k), bool(d)) for k, d in conn.execute(query)]
