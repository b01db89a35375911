"""Deletions caught by comparing ID sets: the portal's IDs (keyset, ``select ID`` only) against the mirror's.

Walked chunk by chunk in ID order, so memory stays flat: a mirror row whose ID the portal no
longer lists gets ``deleted_at``; a row marked deleted that the portal lists again (restored from
the recycle bin) and a record the mirror lacks are fetched and written (which clears the mark).
Stage history is re-read whole: rows the portal rewrote are updated, rows it dropped are marked,
never removed. The portal's IDs are read up to the top ID probed at the start; every mirror row
is older than that probe (the run wrote them before), so a mirror row the walk did not meet, above
the top ID included, is gone from the portal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from jobs.sync import probe
from jobs.sync.context import Context
from jobs.sync.pump import Pump
from jobs.sync.result import INTERRUPTED, StreamResult
from mappings import entities as ent

log = logging.getLogger(__name__)

ID_CHUNK = 5000  # portal IDs compared per step
END = 2**63 - 1  # above every ID
FETCH_BATCH = 50  # IDs per list command when fetching records by ID (50 commands per batch)


def top_id(ctx: Context, stream: ent.Stream) -> int:
    """The highest ID the portal lists for a stream right now (0 when it lists nothing)."""
    export = probe.export_of(stream)
    reply = ctx.client.call(stream.list_method, export.probe())
    return max((export.row_id(row) for row in export.rows_of(reply.result)), default=0)


def fetch_records(ctx: Context, stream: ent.Stream, ids: Sequence[int], select: Sequence[str]) -> list[dict[str, Any]]:
    """The current records of ``ids`` (the ones still on the portal), 2,500 per request."""
    calls = []
    for start in range(0, len(ids), FETCH_BATCH):
        part = list(ids[start:start + FETCH_BATCH])
        calls.append((stream.list_method, {"filter": {"@ID": part}, "select": list(select), "order": {"ID": "ASC"}, "start": -1}))
    rows: list[dict[str, Any]] = []
    export = probe.export_of(stream)
    for result in ctx.client.batch(calls):
        rows.extend(export.rows_of(result))
    return rows


def _chunks(ids: Iterator[int], size: int) -> Iterator[list[int]]:
    chunk: list[int] = []
    for value in ids:
        chunk.append(value)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def records(ctx: Context, stream: ent.Stream, select: Sequence[str], result: StreamResult) -> None:
    """Reconcile one CRM entity: mark vanished rows, fetch missing and restored ones."""
    top = top_id(ctx, stream)
    ctx.progress.begin(f"{stream.name}:reconcile", f"{stream.title} (reconcile)", 0, top)
    low = 0
    ids = (int(row["ID"]) for row in ctx.client.list_all(stream.list_method, select=["ID"], ceiling=top)) if top else iter(())
    for chunk in _chunks(ids, ID_CHUNK):
        high = max(chunk[-1], low)
        _compare(ctx, stream, select, set(chunk), low, high, result)
        result.fetched += len(chunk)
        ctx.progress.advance(f"{stream.name}:reconcile", len(chunk), high)
        low = high
        if ctx.stopped():
            result.status = INTERRUPTED
            return
    _compare(ctx, stream, select, set(), low, END, result)


def _compare(ctx: Context, stream: ent.Stream, select: Sequence[str], portal: set[int], low: int, high: int,
             result: StreamResult) -> None:
    """Compare ``low < ID <= high``: the portal lists ``portal``; the mirror has what ``present`` says."""
    if high <= low and not portal:
        return
    mirror: dict[int, bool] = {}
    after = low
    while True:
        part = ctx.writer.present(stream, after, ID_CHUNK)
        inside = [(k, d) for k, d in part if k <= high]
        mirror.update(inside)
        if len(inside) < len(part) or len(part) < ID_CHUNK:
            break
        after = part[-1][0]
    vanished = sorted(k for k, deleted in mirror.items() if not deleted and k not in portal)
    wanted = sorted(k for k in portal if k not in mirror or mirror[k])
    if vanished:
        result.deleted += ctx.writer.mark_deleted(stream, vanished)
        log.info("%s: %d record(s) no longer on the portal", stream.name, len(vanished))
    if wanted:
        rows = fetch_records(ctx, stream, wanted, select)
        if rows:
            page = ctx.writer.records(stream, rows)
            result.inserted += page.inserted
            result.updated += page.updated
            result.problems += page.problems


def history(ctx: Context, stream: ent.Stream, result: StreamResult) -> None:
    """Re-read a history stream whole: update rewritten rows, mark rows the portal no longer lists."""
    top = top_id(ctx, stream)
    ctx.progress.begin(f"{stream.name}:reconcile", f"{stream.title} (reconcile)", 0, top)
    low = 0
    pump = Pump(lambda: ctx.client.list_all(stream.list_method, entity_type_id=stream.entity_type_id, ceiling=top),
                name=f"{stream.name}-reconcile")
    try:
        for chunk in pump if top else ():
            page = ctx.writer.history(stream, chunk)
            result.fetched += page.fetched
            result.inserted += page.inserted
            result.updated += page.updated
            export = probe.export_of(stream)
            listed = {export.row_id(row) for row in chunk}
            high = max(max(listed), low)
            result.deleted += _mark_unlisted(ctx, stream, listed, low, high)
            ctx.progress.advance(f"{stream.name}:reconcile", len(chunk), high)
            low = high
            if ctx.stopped():
                result.status = INTERRUPTED
                return
    finally:
        pump.close()
    result.deleted += _mark_unlisted(ctx, stream, set(), low, END)


def _mark_unlisted(ctx: Context, stream: ent.Stream, listed: set[int], low: int, high: int) -> int:
    """Mark history rows in ``low < ID <= high`` that the portal did not list (they stay in the mirror)."""
    if high <= low:
        return 0
    gone: list[int] = []
    after = low
    while True:
        part = ctx.writer.present(stream, after, ID_CHUNK)
        for key, deleted in part:
            if key <= high and not deleted and key not in listed:
                gone.append(key)
        if not part or part[-1][0] >= high or len(part) < ID_CHUNK:
            break
        after = part[-1][0]
    return ctx.writer.mark_deleted(stream, gone) if gone else 0
