"""``crm.stagehistory.list`` for leads (entityTypeId 1) and deals (2): ``{"items": [...]}`` with integer fields.

The rows and which of them are listed: ``connector/emulator/records/history.py``.
"""

from __future__ import annotations

from connector.catalog import TYPE_LABELS
from connector.emulator import query
from connector.emulator.records.history import HISTORY_KINDS, row_id, visible_filter
from connector.emulator.registry import ApiError, Call, Result, method


@method("crm.stagehistory.list")
def stagehistory_list(call: Call) -> Result:
    """crm.stagehistory.list for leads (1) and deals (2): ``{"items": [...]}`` with integer fields."""
    raw = call.param("entityTypeId")
    type_id = query.coerce("int", raw)
    if type_id not in HISTORY_KINDS:
        name = TYPE_LABELS.get(type_id or 0, "" if raw is None else str(raw))
        raise ApiError("ENTITY_TYPE_NOT_SUPPORTED", f"Entity type {name} is not supported", 400)
    kinds = HISTORY_KINDS[type_id]
    portal = call.portal
    schema = query.Schema(kinds, query.upper_resolver(kinds), tz=portal.tz, strict=True)
    flt = query.compile_filter(call.param("filter"), schema)
    order = query.compile_order(call.param("order"), schema)
    names = query.choose_fields(call.param("select"), order=list(kinds), groups={"*": list(kinds)},
                                default=("*",), resolve=schema.resolve)
    with portal.lock:
        rows = portal.history.setdefault(type_id, [])
        source = query.Source(rows, key=row_id, visible=visible_filter(portal, type_id))
        page = query.paginate(source, flt, order, query.parse_start(call.param("start")))
        call.charge(page.cost())
        items = [{name: row[name] for name in names} for row in page.rows]
    return Result({"items": items}, page.total, page.next)
