"""Event methods: ``event.bind/unbind/get``, the offline queue (``event.offline.*``) and ``events``.

All of them need application (OAuth) auth; the app refuses an incoming webhook with 403
``WRONG_AUTH_TYPE`` before the handler runs. The queue itself is filled by ``Portal.emit``.
Online handlers are stored and listed but not called (the emulator sends no outgoing HTTP).
"""

from __future__ import annotations

import secrets
from datetime import timezone
from typing import Any

from connector.emulator import costs, query
from connector.emulator.methods.batch import is_true
from connector.emulator.registry import ApiError, Call, Result, method

PAGE = 50

_CRM_OBJECTS = ("LEAD", "DEAL", "CONTACT", "COMPANY")
KNOWN_EVENTS = sorted(
    {f"ONCRM{obj}{action}" for obj in _CRM_OBJECTS for action in ("ADD", "UPDATE", "DELETE")}
    | {f"ONCRM{obj}USERFIELD{action}" for obj in _CRM_OBJECTS for action in ("ADD", "UPDATE", "DELETE", "SETENUMVALUES")}
    | {"ONCRMDEALMOVETOCATEGORY", "ONCRMDYNAMICITEMADD", "ONCRMDYNAMICITEMUPDATE", "ONCRMDYNAMICITEMDELETE"}
    | {"ONAPPINSTALL", "ONAPPUNINSTALL", "ONAPPUPDATE", "ONOFFLINEEVENT", "ONUSERADD"}
)

# fields event.offline.get / .list may filter and order by
_QUEUE_FIELDS = {"ID", "TIMESTAMP_X", "EVENT_NAME", "MESSAGE_ID", "PROCESS_ID", "ERROR"}


def _event_name(call: Call) -> str:
    name = str(call.param("event") or "").strip().upper()
    if name not in KNOWN_EVENTS:
        raise ApiError("ERROR_EVENT_NOT_FOUND", "Event not found", 400)
    return name


def _offline(call: Call) -> bool:
    return str(call.param("event_type") or "online").strip().lower() == "offline"


@method("event.bind", oauth_only=True, scope="basic")
def event_bind(call: Call) -> bool:
    """Register an online handler URL or an offline queue binding; a repeated binding is kept once [inferred]."""
    name = _event_name(call)
    offline = _offline(call)
    handler = "" if offline else str(call.param("handler") or "")
    if not offline and not handler:
        raise ApiError("ERROR_ARGUMENT", "Argument 'handler' is null or empty", 400)
    binding = {
        "event": name,
        "handler": handler,
        "auth_type": str(call.param("auth_type") or 0),
        "offline": 1 if offline else 0,
        "auth_connector": str(call.param("auth_connector") or ""),
        "app": call.app,
    }
    call.charge(costs.CALL)
    with call.portal.lock:
        same = [b for b in call.portal.event_handlers if _same_binding(b, binding)]
        if not same:
            call.portal.event_handlers.append(binding)
    return True


def _same_binding(a: dict[str, Any], b: dict[str, Any]) -> bool:
    keys = ("event", "handler", "auth_type", "offline", "auth_connector", "app")
    return all(a.get(k) == b.get(k) for k in keys)


@method("event.unbind", oauth_only=True, scope="basic")
def event_unbind(call: Call) -> dict[str, int]:
    """Remove this app's bindings of an event (and handler / auth_type when given); ``{"count": n}``."""
    name = _event_name(call)
    offline = 1 if _offline(call) else 0
    handler = call.param("handler")
    auth_type = call.param("auth_type")
    with call.portal.lock:
        keep, removed = [], 0
        for binding in call.portal.event_handlers:
            hit = (
                binding["event"] == name
                and binding.get("app") == call.app
                and binding["offline"] == offline
                and (offline or handler in (None, "") or binding["handler"] == str(handler))
                and (auth_type in (None, "") or binding["auth_type"] == str(auth_type))
            )
            removed += hit
            if not hit:
                keep.append(binding)
        call.portal.event_handlers[:] = keep
    return {"count": removed}


@method("event.get", oauth_only=True, scope="basic")
def event_get(call: Call) -> list[dict[str, Any]]:
    """This app's bindings: ``[{event, handler, auth_type, offline}]``."""
    with call.portal.lock:
        return [
            {"event": b["event"], "handler": b["handler"], "auth_type": b["auth_type"], "offline": b["offline"]}
            for b in call.portal.event_handlers
            if b.get("app") == call.app
        ]


@method("events", oauth_only=True, scope="basic")
def events(call: Call) -> list[str]:
    """Names of the events an app may bind."""
    return list(KNOWN_EVENTS)


# -------------------------------------------------------------------- offline queue


def _public(row: dict[str, Any], *, with_state: bool) -> dict[str, Any]:
    out = {
        "ID": str(row["ID"]),
        "TIMESTAMP_X": row["TIMESTAMP_X"],
        "EVENT_NAME": row["EVENT_NAME"],
        "EVENT_DATA": row["EVENT_DATA"],
        "EVENT_ADDITIONAL": row["EVENT_ADDITIONAL"],
        "MESSAGE_ID": str(row["MESSAGE_ID"]),
    }
    if with_state:
        out["PROCESS_ID"] = row.get("PROCESS_ID") or ""
        out["ERROR"] = str(row.get("ERROR") or 0)
    return out


def _comparable(field: str, value: Any) -> Any:
    if field in ("ID", "ERROR"):
        try:
            return int(value or 0)
        except (TypeError, ValueError):
            return 0
    return "" if value is None else str(value)


_QUEUE_SCHEMA = query.Schema(
    {name: "int" if name in ("ID", "ERROR") else "exact" for name in _QUEUE_FIELDS}, query.upper_resolver(_QUEUE_FIELDS),
)
_QUEUE_OPERATORS = ("", "=", "!", "!=", ">", ">=", "<", "<=")


def _queue_filter(flt: Any) -> query.Filter:
    """The queue's small filter: ``=``, ``!``, ``>``, ``>=``, ``<``, ``<=`` before a field name.

    Other prefixes mean equality, unknown fields are ignored, and every value compares as its
    field does (ID and ERROR as integers, garbage as 0; the rest as exact text).
    """
    conditions: dict[str, Any] = {}
    for key, expected in (flt.items() if isinstance(flt, dict) else ()):
        op, name = "", str(key)
        while name and name[0] in "=!<>":
            op, name = op + name[0], name[1:]
        name = name.upper()
        if name in _QUEUE_FIELDS:
            prefix = op if op in _QUEUE_OPERATORS else ""
            conditions[str(len(conditions))] = {prefix + name: _comparable(name, expected)}  # a key twice keeps both
    return query.compile_filter(conditions, _QUEUE_SCHEMA)


def _ordered(rows: list[dict[str, Any]], order: Any, default: str) -> list[dict[str, Any]]:
    """Rows by ``order`` (known fields only, DESC or ASC); without an order, by ``default``."""
    spec: dict[str, str] = {}
    for field, direction in (order.items() if isinstance(order, dict) and order else [(default, "ASC")]):
        name = str(field).upper()
        if name in _QUEUE_FIELDS:
            spec.setdefault(name, "DESC" if str(direction).upper() == "DESC" else "ASC")
    return query.sort_rows(rows, query.compile_order(spec, _QUEUE_SCHEMA), tz=timezone.utc)


def _queue(call: Call) -> list[dict[str, Any]]:
    connector = str(call.param("auth_connector") or "")
    rows = [r for r in call.portal.offline_events.values() if (r.get("AUTH_CONNECTOR") or "") == connector]
    return sorted(rows, key=lambda r: int(r["ID"]))


@method("event.offline.get", oauth_only=True, scope="basic")
def event_offline_get(call: Call) -> dict[str, Any]:
    """Take the first queued records: ``clear=1`` deletes them, ``clear=0`` reserves them under a process_id."""
    limit = max(1, _int(call.param("limit"), PAGE))
    clear = is_true(call.param("clear", 1))
    want_error = 1 if is_true(call.param("error", 0)) else 0
    process_id = call.param("process_id") or None
    with call.portal.lock:
        flt = _queue_filter(call.param("filter"))
        rows = [
            r for r in _queue(call)
            if int(r.get("ERROR") or 0) == want_error
            and r.get("PROCESS_ID") in (None, "", process_id)
            and flt.test(r)
        ]
        picked = _ordered(rows, call.param("order"), "TIMESTAMP_X")[:limit]
        call.charge(costs.list_page(matched=len(rows), offset=0, counted=False, returned=len(picked)))
        if clear:
            ids = {id(r) for r in picked}
            for key, row in list(call.portal.offline_events.items()):
                if id(row) in ids:
                    del call.portal.offline_events[key]
            process_id = None
        elif picked:
            process_id = process_id or secrets.token_hex(16)
            for row in picked:
                row["PROCESS_ID"] = process_id
        return {"process_id": process_id, "events": [_public(r, with_state=False) for r in picked]}


def _int(value: Any, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except (TypeError, ValueError):
        raise ApiError("ERROR_ARGUMENT", f"Invalid number: {value!r}", 400) from None


def _ids(value: Any) -> set[str] | None:
    if value in (None, "", []):
        return None
    values = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
    return {str(v) for v in values}


def _reserved(call: Call) -> list[tuple[Any, dict[str, Any]]]:
    process_id = call.param("process_id")
    if not process_id:
        raise ApiError("ERROR_ARGUMENT", "Argument 'process_id' is null or empty", 400)
    ids, message_ids = _ids(call.param("id")), _ids(call.param("message_id"))
    return [
        (key, row)
        for key, row in call.portal.offline_events.items()
        if row.get("PROCESS_ID") == process_id
        and (ids is None or str(row["ID"]) in ids)
        and (message_ids is None or str(row["MESSAGE_ID"]) in message_ids)
    ]


@method("event.offline.clear", oauth_only=True, scope="basic")
def event_offline_clear(call: Call) -> bool:
    """Delete records reserved by ``process_id`` (all of them, or those named by ``id`` / ``message_id``)."""
    with call.portal.lock:
        for key, _ in _reserved(call):
            del call.portal.offline_events[key]
    return True


@method("event.offline.error", oauth_only=True, scope="basic")
def event_offline_error(call: Call) -> bool:
    """Mark reserved records as failed: they leave the process and come back with ``error=1``."""
    with call.portal.lock:
        for _, row in _reserved(call):
            row["ERROR"] = 1
            row["PROCESS_ID"] = None
    return True


@method("event.offline.list", oauth_only=True, scope="basic")
def event_offline_list(call: Call) -> Result:
    """Read the queue without changing it, 50 per page, with PROCESS_ID and ERROR."""
    start = max(0, _int(call.param("start"), 0))
    with call.portal.lock:
        flt = _queue_filter(call.param("filter"))
        rows = [r for r in _queue(call) if flt.test(r)]
        rows = _ordered(rows, call.param("order"), "ID")
        page = rows[start:start + PAGE]
        call.charge(costs.list_page(matched=len(rows), offset=start, counted=True, returned=len(page)))
        following = start + PAGE if start + PAGE < len(rows) else None
        return Result([_public(r, with_state=True) for r in page], total=len(rows), next=following)
