"""Stage history of deals and lead statuses, by its own ID (keyset ``>ID``); rows are kept once and never removed.

The probe brings the first page after the last committed ID and the highest ID; more rows continue
with ``list_all`` up to that ID. Bitrix24 drops a deal's rows when the deal is deleted and hides a
moved deal's rows of its old pipeline: the mirror keeps them (reconcile only marks them vanished).
"""

from __future__ import annotations

from typing import Any

from jobs.sync import paths, probe
from jobs.sync.context import Context
from jobs.sync.result import INTERRUPTED, StreamResult
from jobs.sync.state import INCREMENTAL, StreamState
from mappings import entities as ent


SETTLE_AT_END = 10_000  # more history IDs than this to read: settle the cards once at the end, not page by page


def run(ctx: Context, stream: ent.Stream, state: StreamState, first: list[dict[str, Any]] | None, top: int | None,
        result: StreamResult) -> StreamState:
    """Read history rows after ``state.cursor_id`` up to ``top``, committing each page with the new cursor."""
    ctx.progress.begin(stream.name, stream.title, state.cursor_id or 0, top)
    if first is not None:
        if first or state.phase != INCREMENTAL:
            state.phase = INCREMENTAL
            result.add(ctx.writer.history(stream, first, state))
        ctx.progress.advance(stream.name, len(first), state.cursor_id)
        if len(first) < probe.PAGE:
            return _settled(ctx, stream, state)
    last = state.cursor_id or 0
    if top is not None and top <= last:
        return _settled(ctx, stream, state)
    if ctx.stopped():
        result.status = INTERRUPTED
        return state
    state.phase = INCREMENTAL
    large = top is None or top - last > SETTLE_AT_END
    if large and paths.MARK not in state.extra:  # committed with the first page: a killed load is settled later
        state.extra = {**state.extra, paths.MARK: last + 1}
    complete = ctx.pages(stream.name,
                         lambda: ctx.client.list_all(stream.list_method, filter={">ID": last}, entity_type_id=stream.entity_type_id,
                                                     ceiling=top, concurrency=2),
                         lambda chunk: result.add(ctx.writer.history(stream, chunk, state, settle=not large)),
                         lambda: state.cursor_id)
    if not complete:
        result.status = INTERRUPTED
        return state
    return _settled(ctx, stream, state)


def _settled(ctx: Context, stream: ent.Stream, state: StreamState) -> StreamState:
    """The stream is read up to its top: settle what a large (or killed) load left unsettled."""
    if paths.MARK in state.extra and not ctx.stopped():
        ctx.writer.settle_history(stream, state)
    return state
