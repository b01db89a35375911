"""The one batch that opens every run: "has anything changed?" for every stream in a single HTTP request.

Per CRM entity the first page of its window (full select) and a probe of the highest matching ID;
per history stream the first page after its last ID and the same probe; the small dictionaries
(pipelines, every crm.status dictionary, user-field lists, the pages of users) in full; and, with
OAuth, the offline-event queue. The reply's ``time.date_start`` is the portal's clock (with its
offset) at the start of the run: the cap of every window opened by the run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from connector import errors
from connector.encoding import command_text
from connector.envelope import BatchParts, command_error
from connector.keyset import KeysetExport
from jobs.sync.state import StreamState
from mappings import entities as ent, fields

log = logging.getLogger(__name__)

PAGE = 50
MAX_COMMANDS = 50
USER_PAGES_MAX = 20  # user pages in the probe; more users continue by keyset afterwards
EVENTS_LIMIT = 50


def window_filter(state: StreamState, portal_tz: tzinfo) -> dict[str, Any]:
    """The DATE_MODIFY condition of a stream's open window (none for an initial load)."""
    if state.window_since is None:
        return {}
    return {">=DATE_MODIFY": fields.to_filter_time(state.window_since, portal_tz)}


def entity_select(stream: ent.Stream, multiple_ufs: Sequence[str]) -> list[str]:
    """What a page of records asks for: ``*``, ``UF_*``, the multi-fields, and the multiple user fields by name."""
    return [*stream.select, *(name for name in multiple_ufs if name not in stream.select)]


def export_of(stream: ent.Stream, flt: Mapping[str, Any] | None = None, select: Sequence[str] | None = None) -> KeysetExport:
    """The keyset paginator of a stream (the client's own, so pages look exactly like list_all's)."""
    return KeysetExport(stream.list_method, dict(flt or {}), list(select) if select else None,
                        stream.entity_type_id if stream.kind == ent.HISTORY else None)


@dataclass
class Request:
    """What the probe asks for, per stream."""

    entities: dict[str, tuple[StreamState, list[str]]] = field(default_factory=dict)  # name -> (state, select)
    histories: dict[str, StreamState] = field(default_factory=dict)
    dictionaries: list[ent.Stream] = field(default_factory=list)
    user_pages: int = 1
    events_process_id: str | None = None  # set when the offline queue is read (OAuth, bound)


@dataclass
class Reply:
    """The probe's results: portal time, and per command its rows (or its error)."""

    time: datetime
    results: dict[str, Any]
    errors: dict[str, errors.B24Error]
    nexts: dict[str, Any]

    def ok(self, name: str) -> bool:
        """True when the command ran."""
        return name in self.results and name not in self.errors

    def rows(self, stream: ent.Stream, name: str) -> list[dict[str, Any]] | None:
        """The rows of a page command (None when it failed)."""
        if not self.ok(name):
            return None
        return export_of(stream).rows_of(self.results[name])

    def top(self, stream: ent.Stream, name: str) -> int | None:
        """The highest matching ID from a probe command (None when it failed); 0 when nothing matches."""
        rows = self.rows(stream, name)
        if rows is None:
            return None
        export = export_of(stream)
        return max((export.row_id(row) for row in rows), default=0)


def commands(request: Request, portal_tz: tzinfo) -> dict[str, tuple[str, dict[str, Any]]]:
    """The batch commands of a probe, named ``<stream>.page``, ``<stream>.top``, ``<stream>`` ..."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, (state, select) in request.entities.items():
        stream = ent.STREAMS[name]
        export = export_of(stream, {**window_filter(state, portal_tz), ">ID": state.window_last_id or 0}, select)
        out[f"{name}.page"] = (stream.list_method, export.page(export.cursor))
        out[f"{name}.top"] = (stream.list_method, export.probe())
    for name, state in request.histories.items():
        stream = ent.STREAMS[name]
        export = export_of(stream, {">ID": state.cursor_id or 0})
        out[f"{name}.page"] = (stream.list_method, export.page(export.cursor))
        out[f"{name}.top"] = (stream.list_method, export.probe())
    for stream in request.dictionaries:
        if stream.name == "user":
            continue
        out[stream.name] = (stream.list_method, dictionary_params(stream, 0))
    if request.events_process_id is not None:
        out["events"] = ("event.offline.get", {"clear": 0, "limit": EVENTS_LIMIT, "process_id": request.events_process_id})
    if any(s.name == "user" for s in request.dictionaries):
        room = MAX_COMMANDS - len(out)
        for page in range(max(1, min(request.user_pages, room, USER_PAGES_MAX))):
            out[f"user.{page}"] = ("user.get", dictionary_params(ent.STREAMS["user"], page * PAGE))
    if len(out) > MAX_COMMANDS:  # pragma: no cover - the declarations hold far fewer streams
        raise ValueError(f"the probe needs {len(out)} commands; a batch holds {MAX_COMMANDS}")
    return out


def dictionary_params(stream: ent.Stream, start: int) -> dict[str, Any]:
    """Parameters of one page of a dictionary read in full."""
    if stream.name == "user":
        return {"sort": "ID", "order": "ASC", "start": start}
    if stream.name == "status":
        return {"order": {"ENTITY_ID": "ASC", "SORT": "ASC", "ID": "ASC"}}
    if stream.name == "deal_category":
        return {**stream.params, "start": start}
    return {"order": {"SORT": "ASC", "ID": "ASC"}}  # crm.*.userfield.list


def send(client: Any, cmds: Mapping[str, tuple[str, Mapping[str, Any]]]) -> Reply:
    """Send the commands as one ``batch`` (halt=0) and take the reply apart; HTTP failures raise."""
    reply = client.call("batch", {"halt": 0, "cmd": {name: command_text(method, params) for name, (method, params) in cmds.items()}})
    parts = BatchParts.from_reply(reply)
    failed = {}
    for name, (method, _) in cmds.items():
        if name in parts.errors:
            failed[name] = command_error(parts.errors[name], method)
            log.warning("probe: %s failed: %s", name, failed[name])
        elif name not in parts.results:
            failed[name] = errors.BadReplyError("", "no result and no error in the batch reply", 200, method)
    return Reply(fields.portal_time(reply.time), parts.results, failed, parts.nexts)
