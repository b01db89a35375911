"""CRM records (leads, deals, contacts, companies) in DATE_MODIFY windows: the initial load and every incremental run.

A window reads ``DATE_MODIFY >= since`` (no bound on the initial load) by ID keyset, starting with
the first page the probe brought; a full first page continues with ``list_all`` up to the probed
top ID (one chained batch per 2,500 rows, no further probe). Each page commits with the window's
position; when the window is complete the cursor becomes the largest DATE_MODIFY committed, never
past the portal time at which the window began. The next window starts at the cursor itself
(inclusive), so a change made in the same second, or during the run, is read again, not missed.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from jobs.sync import probe
from jobs.sync.context import Context
from jobs.sync.result import INTERRUPTED, StreamResult
from jobs.sync.state import StreamState
from mappings import entities as ent

log = logging.getLogger(__name__)


def open_or_resume(state: StreamState, *, full: bool, overlap: timedelta) -> StreamState:
    """The window this run reads: the one a killed run left open, or a fresh one from the cursor.

    ``--full`` starts a fresh window without a lower bound. A fresh window has no cap yet: the
    run sets it to the portal time of its probe (``StreamState.window_cap``).
    """
    if state.window_open and not full:
        return state
    since = None if full or state.cursor_at is None else state.cursor_at - overlap
    return state.open_window(since, None)


def run(ctx: Context, stream: ent.Stream, state: StreamState, first: list[dict[str, Any]] | None, top: int | None,
        select: list[str], result: StreamResult) -> StreamState:
    """Read the rest of the window, committing page by page; returns the state as finally saved."""
    started = time.monotonic()
    position = state.window_last_id or 0
    ctx.progress.begin(stream.name, stream.title, position, top)
    if first is not None:
        page = ctx.writer.records(stream, first, state, save_if_unchanged=False)
        result.add(page)
        ctx.progress.advance(stream.name, len(first), state.window_last_id)
        if len(first) < probe.PAGE:
            return _close(ctx, stream, state, result, started)
    if ctx.stopped():
        result.status = INTERRUPTED
        ctx.writer.save_state(state)
        return state
    last = state.window_last_id or 0
    if top is not None and top <= last:
        return _close(ctx, stream, state, result, started)
    flt = {**probe.window_filter(state, ctx.portal_tz), ">ID": last}
    concurrency = 2 if state.window_since is None else 1  # an initial load is dense; changes are sparse
    complete = ctx.pages(stream.name,
                         lambda: ctx.client.list_all(stream.list_method, filter=flt, select=select, ceiling=top, concurrency=concurrency),
                         lambda chunk: result.add(ctx.writer.records(stream, chunk, state)),
                         lambda: state.window_last_id)
    if not complete:
        result.status = INTERRUPTED
        return state
    return _close(ctx, stream, state, result, started)


def _close(ctx: Context, stream: ent.Stream, state: StreamState, result: StreamResult, started: float) -> StreamState:
    closed = state.close_window()
    ctx.writer.save_state(closed, unless_equal=True)
    log.debug("%s: window complete in %.1f s, cursor %s", stream.name, time.monotonic() - started, closed.cursor_at)
    return closed
