"""Pipeline and stage methods of the emulator: crm.category.*, crm.status.* and legacy crm.dealcategory.*.

Rules and error texts follow the Bitrix24 docs and the CRM module's REST proxy (CCrmStatusRestProxy,
DealCategory): legacy crm.status.* answer with an empty error code and the message as description.
"""

from __future__ import annotations

import re
from typing import Any

from connector.catalog import DEAL, TYPE_LABELS
from connector.emulator import costs, pipelines, query
from connector.emulator.registry import ApiError, Call, Result, method

PAGE = 50  # rows per page of list methods

MSG_AFTER_FINAL = (
    "Cannot create more stages after the final stage because the final successful stage already exists. "
    "Try using sort order values less than that of the final stage."
)
MSG_SEMANTICS_SORT = "Cannot add semantics with the specified sort order"
MSG_FORCED = 'CRM System Status can be deleted only if parameter FORCED is specified and equal to "Y".'
MSG_ACTIVE_ITEMS = "There are active items in this status."
MSG_STATUS_NOT_FOUND = "Status is not found."
MSG_INVALID_ID = "Invalid identifier."

_STAGE_CODE_RE = re.compile(r"^[0-9A-Z_-]+$", re.IGNORECASE)


# ---------------------------------------------------------------------------- small parsing helpers


def _int_or_none(value: Any) -> int | None:
    """A parameter as int (form bodies carry strings); None when it is not an integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d+\s*", value):
        return int(value)
    return None


def _mapping(value: Any) -> dict[str, Any] | None:
    """A PHP array parameter as a dict: dicts stay, lists become index-keyed, "" (empty array) -> {}."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if value in ("", None):
        return {} if value == "" else None
    return None


def _get_ci(mapping: dict[str, Any], name: str, default: Any = None) -> Any:
    """A key of a nested parameter, case-insensitively (fields[NAME] or fields[name])."""
    if name in mapping:
        return mapping[name]
    lowered = name.lower()
    for key, value in mapping.items():
        if str(key).lower() == lowered:
            return value
    return default


# ---------------------------------------------------------------------------- crm.category.*


def _category_type(call: Call) -> int:
    """Validate ``entityTypeId``: only deals have pipelines here; leads are refused as the portal does."""
    raw = call.param("entityTypeId")
    if raw in (None, ""):
        raise ApiError("INVALID_ARG_VALUE", "Could not find value for parameter {entityTypeId}")
    entity_type = _int_or_none(raw)
    if entity_type == DEAL:
        return entity_type
    if entity_type in TYPE_LABELS:
        raise ApiError("ENTITY_TYPE_NOT_SUPPORTED", f"Entity type {TYPE_LABELS[entity_type]} is not supported")
    raise ApiError("NOT_FOUND", "Smart process not found")


def _category_id(call: Call) -> int:
    raw = call.param("id")
    category_id = _int_or_none(raw)
    if raw in (None, ""):
        raise ApiError("INVALID_ARG_VALUE", "Could not find value for parameter {id}")
    if category_id is None or category_id not in call.portal.categories:
        raise ApiError("NOT_FOUND", "Element not found")
    return category_id


def _category_fields(call: Call) -> dict[str, Any]:
    fields = _mapping(call.param("fields"))
    if fields is None:
        raise ApiError("INVALID_ARG_VALUE", "Could not find value for parameter {fields}")
    return fields


def _clean_name(fields: dict[str, Any], *, required: bool) -> str | None:
    """The pipeline name from fields; blank or missing -> the portal's "required" error (code 0)."""
    name = _get_ci(fields, "name")
    if name is None and not required:
        return None
    name = str(name or "").strip()
    if not name:
        raise ApiError(0, "Field 'NAME' is required")
    return name


def _clean_sort(fields: dict[str, Any], default: int | None) -> int | None:
    """Sort from fields: negative becomes 0, unparsable keeps the default."""
    raw = _get_ci(fields, "sort")
    value = _int_or_none(raw)
    if value is None:
        return default
    return max(value, 0)


def deals_in_category(portal: Any, category_id: int) -> int:
    """Number of deals whose CATEGORY_ID is this pipeline."""
    wanted = str(category_id)
    return sum(1 for deal in portal.records["deal"].values() if str(deal.get("CATEGORY_ID") or "0") == wanted)


@method("crm.category.list")
def category_list(call: Call) -> Result:
    """Deal pipelines sorted by sort then id, wrapped in ``categories``; 50 a page from ``start``."""
    _category_type(call)
    start = max(_int_or_none(call.param("start")) or 0, 0)
    with call.portal.lock:
        everything = pipelines.categories_sorted(call.portal)
        rows = [dict(c) for c in everything[start:start + PAGE]]
    call.charge(costs.list_page(matched=len(everything), offset=start, counted=True, returned=len(rows)))
    more = start + PAGE < len(everything)
    return Result({"categories": rows}, total=len(everything), next=start + PAGE if more else None)


@method("crm.category.get")
def category_get(call: Call) -> dict[str, Any]:
    """One pipeline as ``{"category": {...}}``."""
    _category_type(call)
    call.charge(costs.CALL)
    with call.portal.lock:
        return {"category": dict(call.portal.categories[_category_id(call)])}


@method("crm.category.add")
def category_add(call: Call) -> dict[str, Any]:
    """Create a deal pipeline with the default stage template (``C{N}:`` stages in ``DEAL_STAGE_{N}``)."""
    _category_type(call)
    fields = _category_fields(call)
    name = _clean_name(fields, required=True)
    sort = _clean_sort(fields, 500)
    call.charge(costs.WRITE)
    with call.portal.lock:
        category = pipelines.new_category(call.portal, name, sort)
        category["originId"] = str(_get_ci(fields, "originId", "") or "")
        category["originatorId"] = str(_get_ci(fields, "originatorId", "") or "")
        call.portal.extra.setdefault("category_created", {})[category["id"]] = call.portal.now().date().isoformat()
        return {"category": dict(category)}


@method("crm.category.update")
def category_update(call: Call) -> dict[str, Any]:
    """Rename or re-sort a pipeline; ``isDefault`` cannot change for deals and is ignored."""
    _category_type(call)
    with call.portal.lock:
        category_id = _category_id(call)
        fields = _category_fields(call)
        name = _clean_name(fields, required=False)
        sort = _clean_sort(fields, None)
        call.charge(costs.WRITE)
        category = call.portal.categories[category_id]
        if name is not None:
            category["name"] = name
        if sort is not None:
            category["sort"] = sort
        for key in ("originId", "originatorId"):
            value = _get_ci(fields, key)
            if value is not None and category_id != 0:
                category[key] = str(value)
        return {"category": dict(category)}


@method("crm.category.delete")
def category_delete(call: Call) -> None:
    """Delete a pipeline and its stages; refused for the default one and for one that holds deals."""
    _category_type(call)
    with call.portal.lock:
        category_id = _category_id(call)
        if category_id == 0:
            raise ApiError(0, "Default deal category cannot be deleted")
        if deals_in_category(call.portal, category_id):
            name = call.portal.categories[category_id]["name"]
            raise ApiError(0, f"Deals related to the funnel {name} found")
        call.charge(costs.WRITE)
        pipelines.remove_category(call.portal, category_id)
        call.portal.extra.get("category_created", {}).pop(category_id, None)
    return None


def _field(type_: str, title: str, *, required: bool = False, read_only: bool = False,
           immutable: bool = False, upper: str | None = None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "type": type_, "isRequired": required, "isReadOnly": read_only, "isImmutable": immutable,
        "isMultiple": False, "isDynamic": False, "title": title,
    }
    if upper is not None:
        info["upperName"] = upper
    return info


CATEGORY_FIELDS = {
    "id": _field("integer", "ID", read_only=True, upper="ID"),
    "name": _field("string", "NAME", upper="NAME"),
    "sort": _field("integer", "SORT", upper="SORT"),
    "entityTypeId": _field("integer", "ENTITY_TYPE_ID", required=True, read_only=True, upper="ENTITY_TYPE_ID"),
    "isDefault": _field("boolean", "IS_DEFAULT", read_only=True, upper="IS_DEFAULT"),
    "originId": _field("string", "ORIGIN_ID", upper="ORIGIN_ID"),
    "originatorId": _field("string", "ORIGINATOR_ID", upper="ORIGINATOR_ID"),
}


@method("crm.category.fields")
def category_fields(call: Call) -> dict[str, Any]:
    """Field descriptions of a deal pipeline."""
    _category_type(call)
    call.charge(costs.CALL)
    return {"fields": {k: dict(v) for k, v in CATEGORY_FIELDS.items()}}


# ---------------------------------------------------------------------------- crm.status.*

STATUS_FIELDS = {
    "ID": _field("integer", "ID", read_only=True),
    "ENTITY_ID": _field("string", "Entity ID", required=True, immutable=True),
    "STATUS_ID": _field("string", "Status", required=True, immutable=True),
    "SORT": _field("integer", "Sorting"),
    "NAME": _field("string", "Name", required=True),
    "NAME_INIT": _field("string", "Default Name", read_only=True),
    "SYSTEM": _field("char", "System", read_only=True),
    "CATEGORY_ID": _field("integer", "CATEGORY_ID", immutable=True),
    "COLOR": _field("string", "COLOR"),
    "SEMANTICS": _field("char", "SEMANTICS", immutable=True),
    "EXTRA": _field("crm_status_extra", "Additional Fields"),
}

_FILTERABLE = ("ID", "ENTITY_ID", "STATUS_ID", "NAME", "SORT", "SYSTEM", "CATEGORY_ID", "SEMANTICS")
_NUMERIC = ("ID", "SORT", "CATEGORY_ID")
# how crm.status.list compares (text exactly, NAME as a substring, CATEGORY_ID with NULL as 0) and orders
_FILTER_SCHEMA = query.Schema(
    {name: "int0" if name == "CATEGORY_ID" else "exact" for name in _FILTERABLE},
    query.upper_resolver(_FILTERABLE), id_field="", plain_contains=True,
)
_ORDER_SCHEMA = query.Schema(
    {name: "int0" if name in _NUMERIC else "exact" for name in _FILTERABLE}, query.upper_resolver(_FILTERABLE),
)


def _status_filter(raw: dict[str, Any]) -> query.Filter:
    """The legacy GetList filter: known keys only (a leading "=" is tolerated), empty values skipped.

    Every kept key is one AND-ed condition: NAME is a case-insensitive substring, SYSTEM is Y or N,
    CATEGORY_ID an integer, the rest exact text.
    """
    conditions: dict[str, Any] = {}
    for key, value in raw.items():
        name = str(key).upper().lstrip("=")
        if name not in _FILTERABLE or value is None or isinstance(value, (dict, list)):
            continue
        text = str(value)
        if text == "" or text == "NOT_REF":
            continue
        if name == "NAME":
            condition: dict[str, Any] = {"%NAME": text}
        elif name == "SYSTEM":
            condition = {name: "Y" if text == "Y" else "N"}
        elif name == "CATEGORY_ID":
            condition = {name: _int_or_none(text) or 0}
        else:
            condition = {name: text}
        conditions[str(len(conditions))] = condition  # a group each: a key given twice keeps both
    return query.compile_filter(conditions, _FILTER_SCHEMA)


def _status_order(raw: dict[str, Any]) -> list[query.OrderBy]:
    """Order entries: unknown fields are ignored, anything but ASC is DESC; nothing known -> ID DESC (as the SQL does)."""
    order: dict[str, str] = {}
    for key, direction in raw.items():
        name = str(key).upper()
        if name in _FILTERABLE:
            order.setdefault(name, "ASC" if str(direction).upper() == "ASC" else "DESC")
    return query.compile_order(order or {"ID": "DESC"}, _ORDER_SCHEMA)


def _array_param(call: Call, name: str) -> dict[str, Any]:
    raw = call.param(name)
    if raw is None:
        return {}
    value = _mapping(raw)
    if value is None:
        raise ApiError("", f"Parameter '{name}' must be array.")
    return value


def _public(row: dict[str, Any]) -> dict[str, Any]:
    """A copy of a status row as list/get return it (EXTRA copied so callers cannot change state)."""
    out = dict(row)
    if "EXTRA" in out:
        out["EXTRA"] = dict(out["EXTRA"])
    return out


@method("crm.status.list")
def status_list(call: Call) -> Result:
    """Dictionary rows by filter and order (default SORT ASC); all matching rows, with ``total``."""
    order_raw = _array_param(call, "order")
    filter_raw = _array_param(call, "filter")
    order = _status_order(order_raw) if order_raw else query.compile_order({"SORT": "ASC"}, _ORDER_SCHEMA)
    flt = _status_filter(filter_raw)
    with call.portal.lock:
        rows = sorted((r for r in call.portal.statuses.values() if flt.test(r)), key=lambda r: int(r["ID"]))
        result = [_public(r) for r in query.sort_rows(rows, order, call.portal.tz)]
    call.charge(costs.list_page(matched=len(result), offset=0, counted=True,
                                scanned=len(call.portal.statuses), returned=len(result)))
    return Result(result, total=len(result))


def _status_id_param(call: Call) -> int:
    value = _int_or_none(call.param("id"))
    if value is None or value <= 0:
        raise ApiError("", MSG_INVALID_ID)
    return value


def _status_row(call: Call) -> dict[str, Any]:
    row = call.portal.statuses.get(_status_id_param(call))
    if row is None:
        raise ApiError("", MSG_STATUS_NOT_FOUND)
    return row


@method("crm.status.get")
def status_get(call: Call) -> dict[str, Any]:
    """One dictionary row by its numeric ID."""
    call.charge(costs.CALL)
    with call.portal.lock:
        return _public(_status_row(call))


def _max_code_length(entity_id: str, prefix: str) -> tuple[int, bool]:
    """(max STATUS_ID length without prefix, latin-only) as CCrmStatus::validateStatusId computes them."""
    permission_room = 30 - len(prefix)
    if entity_id == pipelines.LEAD_ENTITY:
        return permission_room - len("STATUS_ID"), True
    if entity_id == pipelines.QUOTE_ENTITY:
        return permission_room - len("QUOTE_ID"), True
    if pipelines.category_of_entity(entity_id) is not None:
        return permission_room - len("STAGE_ID"), True
    return 50 - len(prefix), False


def _success_row(portal: Any, entity_id: str) -> dict[str, Any] | None:
    for row in pipelines.entity_rows(portal, entity_id):
        if row.get("SEMANTICS") == "S":
            return row
    return None


def _check_order(portal: Any, entity_id: str, semantics: str | None, sort: int) -> None:
    """In-progress stages < the single success stage < failure stages (by SORT)."""
    success = _success_row(portal, entity_id)
    if success is None:
        return
    success_sort = int(success["SORT"])
    if semantics == "S" or (semantics is None and sort > success_sort):
        raise ApiError("", MSG_AFTER_FINAL)
    if semantics == "F" and sort < success_sort:
        raise ApiError("", MSG_SEMANTICS_SORT)


def _color(value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value)
    return text if text.startswith("#") else "#" + text


@method("crm.status.add")
def status_add(call: Call) -> int:
    """Add a dictionary row; deal stages of pipeline N get the ``C{N}:`` prefix; REST rows are never SYSTEM."""
    fields = _mapping(call.param("fields"))
    if fields is None:
        raise ApiError("", "Parameter 'fields' must be array.")
    entity_id = str(_get_ci(fields, "ENTITY_ID", "") or "")
    status_id = str(_get_ci(fields, "STATUS_ID", "") or "")
    missing = []
    if entity_id == "":
        missing.append("The field ENTITY_ID is required.")
    if status_id == "":
        missing.append("The field STATUS_ID is required.")
    if missing:
        raise ApiError("", "\n".join(missing))
    portal = call.portal
    with portal.lock:
        if not pipelines.is_known_entity(portal, entity_id):
            raise ApiError("", "Specified entity type is not supported.")
        category = pipelines.category_of_entity(entity_id)
        prefix = pipelines.stage_prefix(category)
        code = status_id.split(":", 1)[1] if ":" in status_id else status_id
        full_code = prefix + code
        max_length, latin_only = _max_code_length(entity_id, prefix)
        if len(code) > max_length:
            raise ApiError("", f"The maximum length of STATUS_ID is {max_length} characters.")
        if latin_only and not _STAGE_CODE_RE.match(code):
            raise ApiError("", "STATUS_ID may contain only Latin letters, digits, hyphens and underscores.")
        if pipelines.entity_status(portal, entity_id, full_code) is not None:
            raise ApiError("ERROR_CORE", "The specified status ID already exists.")
        name = str(_get_ci(fields, "NAME", "") or "").strip()
        if not name:
            raise ApiError("", "The field Title is required.")
        sort = _int_or_none(_get_ci(fields, "SORT"))
        sort = sort if sort is not None and sort > 0 else 10
        semantics = None
        if pipelines.is_stage_entity(entity_id):
            raw_semantics = str(_get_ci(fields, "SEMANTICS", "") or "").upper()
            semantics = raw_semantics if raw_semantics in ("S", "F") else None
            _check_order(portal, entity_id, semantics, sort)
        call.charge(costs.WRITE)
        row = pipelines.new_status_row(portal, entity_id, full_code, name, sort=sort,
                                       color=_color(_get_ci(fields, "COLOR")), semantics=semantics)
        return int(row["ID"])


@method("crm.status.update")
def status_update(call: Call) -> bool:
    """Change NAME, SORT, COLOR of a row; other fields are ignored.

    As CCrmStatus::Update does, a missing or non-positive SORT is written as 10, so callers that
    rename a stage must send its SORT too.
    """
    fields = _mapping(call.param("fields"))
    with call.portal.lock:
        row = _status_row(call)
        if fields is None:
            raise ApiError("", "Parameter 'fields' must be array.")
        call.charge(costs.WRITE)
        sort = _int_or_none(_get_ci(fields, "SORT"))
        row["SORT"] = str(sort if sort is not None and sort > 0 else 10)
        name = str(_get_ci(fields, "NAME", "") or "").strip()
        if name:
            row["NAME"] = name
        if _get_ci(fields, "COLOR") not in (None, ""):
            row["COLOR"] = _color(_get_ci(fields, "COLOR"))
        pipelines.refresh_extra(call.portal, row["ENTITY_ID"])
        pipelines.touch(call.portal)
        return True


def records_in_status(portal: Any, row: dict[str, Any]) -> int:
    """Leads (lead statuses) or deals (deal stages) that currently sit in this dictionary row."""
    entity_id = row["ENTITY_ID"]
    if entity_id == pipelines.LEAD_ENTITY:
        records, key = portal.records["lead"].values(), "STATUS_ID"
    elif pipelines.category_of_entity(entity_id) is not None:
        records, key = portal.records["deal"].values(), "STAGE_ID"
    else:
        return 0
    code = row["STATUS_ID"]
    return sum(1 for record in records if record.get(key) == code)


@method("crm.status.delete")
def status_delete(call: Call) -> bool:
    """Delete a row: system rows need ``params[FORCED]=Y``; a stage that holds records is refused."""
    params = _mapping(call.param("params")) or {}
    forced = str(_get_ci(params, "FORCED", "N") or "N").upper() == "Y"
    portal = call.portal
    with portal.lock:
        row = _status_row(call)
        if row.get("SYSTEM") == "Y" and not forced:
            raise ApiError("", MSG_FORCED)
        if records_in_status(portal, row):
            raise ApiError("", MSG_ACTIVE_ITEMS)
        call.charge(costs.WRITE)
        del portal.statuses[int(row["ID"])]
        pipelines.refresh_extra(portal, row["ENTITY_ID"])
        pipelines.touch(portal)
        return True


@method("crm.status.fields")
def status_fields(call: Call) -> dict[str, Any]:
    """Field descriptions of a dictionary row."""
    call.charge(costs.CALL)
    return {k: dict(v) for k, v in STATUS_FIELDS.items()}


@method("crm.status.entity.types")
def status_entity_types(call: Call) -> list[dict[str, Any]]:
    """The dictionaries of the portal, one deal-stage entry per pipeline once there are several."""
    call.charge(costs.CALL)
    with call.portal.lock:
        return pipelines.entity_types(call.portal)


@method("crm.status.entity.items")
def status_entity_items(call: Call) -> list[dict[str, Any]]:
    """``[{NAME, SORT (int), STATUS_ID}]`` of one dictionary by SORT; an unknown one gives []."""
    entity_id = call.param("entityId")
    if entity_id is None:
        entity_id = call.param("entity_id")
    if entity_id in (None, "") or isinstance(entity_id, (dict, list)):
        raise ApiError("", "The parameter entityId is not defined or invalid.")
    call.charge(costs.CALL)
    with call.portal.lock:
        rows = pipelines.entity_rows(call.portal, str(entity_id).upper())
        return [{"NAME": r["NAME"], "SORT": int(r["SORT"]), "STATUS_ID": r["STATUS_ID"]} for r in rows]


# ---------------------------------------------------------------------------- legacy crm.dealcategory.*


def _legacy_row(portal: Any, category: dict[str, Any]) -> dict[str, Any]:
    created = portal.extra.get("category_created", {}).get(category["id"], portal.now().date().isoformat())
    return {
        "ID": str(category["id"]),
        "CREATED_DATE": f"{created}T00:00:00{portal.tz_text}",
        "NAME": category["name"],
        "IS_LOCKED": "N",
        "SORT": str(category["sort"]),
        "ORIGIN_ID": category.get("originId", ""),
        "ORIGINATOR_ID": category.get("originatorId", ""),
    }


def _legacy_id(call: Call) -> int:
    value = _int_or_none(call.param("id"))
    if value is None or value <= 0:
        raise ApiError("", "ID is not defined or invalid.")
    if value not in call.portal.categories:
        raise ApiError("", "Not found")
    return value


@method("crm.dealcategory.list")
def dealcategory_list(call: Call) -> Result:
    """Extra deal pipelines (the default one is not listed) in legacy upper-case shape."""
    call.charge(costs.CALL)
    with call.portal.lock:
        rows = [_legacy_row(call.portal, c) for c in pipelines.categories_sorted(call.portal) if c["id"] != 0]
    return Result(rows, total=len(rows))


@method("crm.dealcategory.get")
def dealcategory_get(call: Call) -> dict[str, Any]:
    """One extra pipeline in legacy shape."""
    call.charge(costs.CALL)
    with call.portal.lock:
        return _legacy_row(call.portal, call.portal.categories[_legacy_id(call)])


@method("crm.dealcategory.add")
def dealcategory_add(call: Call) -> int:
    """Create a pipeline (``fields: {NAME, SORT}``) with the default stages; returns its id."""
    fields = _mapping(call.param("fields")) or {}
    name = str(_get_ci(fields, "NAME", "") or "").strip()
    if not name:
        raise ApiError("", "Field 'NAME' is required.")
    sort = max(_int_or_none(_get_ci(fields, "SORT")) or 0, 0)
    call.charge(costs.WRITE)
    with call.portal.lock:
        category = pipelines.new_category(call.portal, name, sort)
        call.portal.extra.setdefault("category_created", {})[category["id"]] = call.portal.now().date().isoformat()
        return category["id"]


@method("crm.dealcategory.update")
def dealcategory_update(call: Call) -> bool:
    """Rename or re-sort an extra pipeline; a blank NAME keeps the old one."""
    fields = _mapping(call.param("fields")) or {}
    with call.portal.lock:
        category = call.portal.categories[_legacy_id(call)]
        call.charge(costs.WRITE)
        name = str(_get_ci(fields, "NAME", "") or "").strip()
        if name:
            category["name"] = name
        sort = _int_or_none(_get_ci(fields, "SORT"))
        if sort is not None:
            category["sort"] = max(sort, 0)
        return True


@method("crm.dealcategory.delete")
def dealcategory_delete(call: Call) -> bool:
    """Delete an extra pipeline and its stages; refused while it holds deals."""
    with call.portal.lock:
        category_id = _legacy_id(call)
        if deals_in_category(call.portal, category_id):
            name = call.portal.categories[category_id]["name"]
            raise ApiError("", f"Deals related to the funnel {name} found")
        call.charge(costs.WRITE)
        pipelines.remove_category(call.portal, category_id)
        return True


@method("crm.dealcategory.fields")
def dealcategory_fields(call: Call) -> dict[str, Any]:
    """Field descriptions of the legacy pipeline object."""
    call.charge(costs.CALL)
    return {
        "ID": _field("integer", "ID", read_only=True),
        "CREATED_DATE": _field("date", "Дата создания", read_only=True),
        "NAME": _field("string", "Название", required=True),
        "IS_LOCKED": _field("char", "Заблокировано", read_only=True),
        "SORT": _field("integer", "Сортировка"),
    }


@method("crm.dealcategory.status")
def dealcategory_status(call: Call) -> str:
    """The stage dictionary ENTITY_ID of a pipeline (``DEAL_STAGE_{id}``)."""
    call.charge(costs.CALL)
    value = _int_or_none(call.param("id")) or 0
    return pipelines.stage_entity_id(value)


@method("crm.dealcategory.stage.list")
def dealcategory_stage_list(call: Call) -> list[dict[str, Any]]:
    """Stages of a pipeline (0 or absent = default); an unknown pipeline gives an empty list."""
    call.charge(costs.CALL)
    value = _int_or_none(call.param("id")) or 0
    with call.portal.lock:
        if not pipelines.category_exists(call.portal, value):
            return []
        return [_public(r) for r in pipelines.stages_of(call.portal, value)]


@method("crm.dealcategory.default.get")
def dealcategory_default_get(call: Call) -> dict[str, Any]:
    """Name of the default pipeline."""
    call.charge(costs.CALL)
    with call.portal.lock:
        return {"ID": 0, "NAME": call.portal.categories[0]["name"]}


@method("crm.dealcategory.default.set")
def dealcategory_default_set(call: Call) -> bool:
    """Rename the default pipeline (a blank name restores the portal's default)."""
    name = str(call.param("name", "") or "").strip()
    call.charge(costs.WRITE)
    with call.portal.lock:
        call.portal.categories[0]["name"] = name or pipelines.DEFAULT_CATEGORY_NAME
    return True
