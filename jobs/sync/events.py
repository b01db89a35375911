"""Offline events (OAuth applications only): changes and deletions the portal queued since the last run.

The CRM add/update/delete events are bound once as offline (``event.bind event_type=offline``,
an admin right). Each run reads the queue with ``clear=0`` under the mirror's own process id, so
what it took stays reserved for it; the records named there are fetched again (present: written,
gone: marked deleted) and only after that commit is the queue cleared (``event.offline.clear``).
A run killed in between reads the same reserved records again next time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from connector import errors
from connector.auth import OAuthAuth
from jobs.sync import reconcile
from jobs.sync.context import Context
from jobs.sync.result import StreamResult
from jobs.sync.state import StreamState
from mappings import entities as ent, fields

log = logging.getLogger(__name__)

STREAM = "offline_events"  # its b24sync_state row: extra = {bound, process_id, unavailable}
ACTIONS = ("ADD", "UPDATE", "DELETE")
EVENTS = tuple(f"ONCRM{name.upper()}{action}" for name in ent.ENTITIES for action in ACTIONS) + ("ONCRMDEALMOVETOCATEGORY",)
LIMIT = 50
MAX_ROUNDS = 200  # queue pages per run (10,000 events); the rest waits for the next run


def available(client: Any) -> bool:
    """Offline events need application (OAuth) auth; an incoming webhook cannot read them."""
    return isinstance(getattr(client, "auth", None), OAuthAuth)


def ensure_bound(ctx: Context, state: StreamState) -> bool:
    """Bind the offline CRM events once (state remembers it); False when the portal refuses (not an admin)."""
    if state.extra.get("bound"):
        return True
    if state.extra.get("unavailable") and not ctx.full:
        return False
    state.extra.setdefault("process_id", f"b24sync-{uuid.uuid4().hex}")
    outcomes = ctx.client.batch([("event.bind", {"event": name, "event_type": "offline"}) for name in EVENTS], collect=True)
    refused = [o for o in outcomes if isinstance(o, errors.BatchCommandError)]
    if refused:
        reason = str(refused[0])
        log.warning("offline events are not available (%s); deletions are found by --reconcile only", reason)
        state.extra["unavailable"] = reason[:300]
        return False
    state.extra["bound"] = True
    state.extra.pop("unavailable", None)
    return True


def entity_of(event_name: Any) -> str | None:
    """``ONCRMDEALUPDATE`` -> ``deal`` (None for events that are not about CRM records)."""
    name = str(event_name or "").upper()
    for entity in ent.ENTITIES:
        if name.startswith(f"ONCRM{entity.upper()}") and not name.startswith(f"ONCRM{entity.upper()}USERFIELD"):
            return entity
    return None


def ids_by_entity(events: Sequence[Mapping[str, Any]]) -> dict[str, set[int]]:
    """The record IDs each entity's events name (``EVENT_DATA.FIELDS.ID``)."""
    found: dict[str, set[int]] = {}
    for event in events:
        entity = entity_of(event.get("EVENT_NAME"))
        data = event.get("EVENT_DATA")
        data = data.get("FIELDS") if isinstance(data, Mapping) else None
        if entity is None or not isinstance(data, Mapping):
            continue
        try:
            record_id = fields.parse_id(data.get("ID"))
        except fields.FieldError:
            continue
        if record_id:
            found.setdefault(entity, set()).add(record_id)
    return found


def apply(ctx: Context, state: StreamState, first: Mapping[str, Any] | None, selects: Mapping[str, list[str]],
          results: dict[str, StreamResult]) -> int:
    """Apply the queue (its first page came with the probe), clearing it after each page is committed.

    Only entities in ``selects`` (the run's entity streams) are applied; returns the events handled.
    """
    handled = 0
    page = first
    for _ in range(MAX_ROUNDS):
        if page is None:
            page = ctx.client.result("event.offline.get", {"clear": 0, "limit": LIMIT, "process_id": state.extra["process_id"]})
        queued = page.get("events") if isinstance(page, Mapping) else None
        queued = list(queued.values()) if isinstance(queued, Mapping) else list(queued or [])
        process_id = page.get("process_id") if isinstance(page, Mapping) else None
        if not queued:
            return handled
        for entity, ids in ids_by_entity(queued).items():
            if entity not in selects:
                continue
            stream = ent.STREAMS[entity]
            wanted = sorted(ids)
            rows = reconcile.fetch_records(ctx, stream, wanted, selects[entity])
            result = results.setdefault(entity, StreamResult())
            if rows:
                page_result = ctx.writer.records(stream, rows)
                result.inserted += page_result.inserted
                result.updated += page_result.updated
            present = {fields.record_id(stream, row) for row in rows}
            gone = [i for i in wanted if i not in present]
            if gone:
                result.deleted += ctx.writer.mark_deleted(stream, gone)
        ctx.client.call("event.offline.clear", {"process_id": process_id or state.extra["process_id"]})
        handled += len(queued)
        if len(queued) < LIMIT:
            return handled
        page = None
    return handled
