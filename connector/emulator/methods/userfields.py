"""User field methods: ``crm.{lead,deal,contact,company}.userfield.{add,get,list,update,delete}``.

Definitions live in ``portal.userfields`` (``connector/emulator/records/userfields.py``); every
change drops that entity's cached field table and queues its ``ONCRM*USERFIELD*`` event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connector.emulator import costs, query
from connector.emulator.records.fields import Entity
from connector.emulator.records.params import connector_key, fields_param, id_param, register_per_entity
from connector.emulator.records.userfields import (
    LANGS, UF_FLAG_DEFAULTS, UF_FLAGS, UF_LABELS, UF_NAME_RE, UF_TYPES, uf_by_name, uf_changed, userfields,
)
from connector.emulator.registry import ApiError, Call, Result

if TYPE_CHECKING:
    from connector.emulator.state import Portal


def _uf_settings(kind: str, given: Any) -> dict[str, Any]:
    defaults: dict[str, dict[str, Any]] = {
        "string": {"SIZE": 20, "ROWS": 1, "REGEXP": "", "MIN_LENGTH": 0, "MAX_LENGTH": 0, "DEFAULT_VALUE": ""},
        "integer": {"SIZE": 20, "MIN_VALUE": 0, "MAX_VALUE": 0, "DEFAULT_VALUE": None},
        "double": {"PRECISION": 2, "SIZE": 20, "MIN_VALUE": 0, "MAX_VALUE": 0, "DEFAULT_VALUE": None},
        "boolean": {"DEFAULT_VALUE": 0, "DISPLAY": "CHECKBOX", "LABEL": ["", ""], "LABEL_CHECKBOX": ""},
        "date": {"DEFAULT_VALUE": {"VALUE": "", "TYPE": "NONE"}},
        "datetime": {"DEFAULT_VALUE": {"VALUE": "", "TYPE": "NONE"}, "USE_SECOND": "Y"},
        "enumeration": {"DISPLAY": "LIST", "LIST_HEIGHT": 1, "CAPTION_NO_VALUE": "", "SHOW_NO_VALUE": "Y"},
    }
    settings = dict(defaults.get(kind, {}))
    if isinstance(given, dict):
        settings.update({str(k).upper(): v for k, v in given.items()})
    return settings


def _uf_labels(row: dict[str, Any], fields: Mapping[str, Any], creating: bool) -> None:
    label = fields.get("LABEL")
    for key in UF_LABELS:
        given = fields.get(key)
        current = dict(row.get(key) or {lang: "" for lang in LANGS})
        if isinstance(given, dict):
            current.update({str(lang): str(text) for lang, text in given.items()})
            for lang in LANGS:
                if not current.get(lang) and label:
                    current[lang] = str(label)
        elif given not in (None, ""):
            current = {lang: str(given) for lang in LANGS}
        elif label not in (None, "") and (creating or key in ("EDIT_FORM_LABEL", "LIST_COLUMN_LABEL", "LIST_FILTER_LABEL")):
            current = {lang: str(label) for lang in LANGS}
        row[key] = current


def _enum_items(portal: "Portal", field_name: str, current: list[dict[str, Any]], given: Any) -> list[dict[str, Any]]:
    """Apply LIST entries: with ID change or (DEL=Y) delete an option; without ID add one."""
    items = [dict(item) for item in current]
    entries = list(given.values()) if isinstance(given, dict) else given if isinstance(given, list) else []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        entry = {str(k).upper(): v for k, v in entry.items()}
        existing = next((i for i in items if i["ID"] == str(entry.get("ID") or "")), None)
        if existing is not None:
            if str(entry.get("DEL", "")).upper() == "Y":
                items.remove(existing)
                continue
            for key in ("VALUE", "SORT", "XML_ID"):
                if entry.get(key) not in (None, ""):
                    existing[key] = str(entry[key])
            if "DEF" in entry:
                existing["DEF"] = "Y" if query.coerce("bool", entry["DEF"]) else "N"
            continue
        value = str(entry.get("VALUE") or "").strip()
        if not value:
            continue
        option_id = portal.next_id("userfield_enum")
        xml_id = str(entry.get("XML_ID") or f"{field_name}_{option_id}")
        if any(i["XML_ID"] == xml_id for i in items):
            raise ApiError("", f"List item with value XML_ID='{xml_id}' already exists", 400)
        items.append({
            "ID": str(option_id),
            "SORT": str(query.coerce("int", entry.get("SORT")) or 0),
            "VALUE": value,
            "DEF": "Y" if query.coerce("bool", entry.get("DEF", "N")) else "N",
            "XML_ID": xml_id,
        })
    items.sort(key=lambda i: (int(i["SORT"]), int(i["ID"])))
    return items


def _uf_add(call: Call, entity: Entity) -> int:
    fields = {str(k).upper(): v for k, v in fields_param(call).items()}
    name = str(fields.get("FIELD_NAME") or "").strip().upper()
    if not name:
        raise ApiError("", "The 'FIELD_NAME' field is not found.", 400)
    if not name.startswith("UF_CRM_"):
        name = "UF_CRM_" + name
    if not UF_NAME_RE.match(name):
        raise ApiError("", "Field name contains invalid characters. Allowed characters are: A-Z, 0-9, and _.", 400)
    if len(name) > 50:
        raise ApiError("", "Field name is too long (more than 50 characters).", 400)
    kind = str(fields.get("USER_TYPE_ID") or "").strip().lower()
    if not kind:
        raise ApiError("", "The 'USER_TYPE_ID' field is not found.", 400)
    if kind not in UF_TYPES:
        raise ApiError("", "Invalid custom type specified.", 400)
    portal = call.portal
    with portal.lock:
        if name in uf_by_name(portal, entity):
            raise ApiError("", f"A user field with the code {name} already exists.", 400)
        uf_id = portal.next_id("userfield")
        row: dict[str, Any] = {
            "ID": str(uf_id),
            "ENTITY_ID": entity.uf_entity,
            "FIELD_NAME": name,
            "USER_TYPE_ID": kind,
            "XML_ID": str(fields["XML_ID"]) if fields.get("XML_ID") else None,
            "SORT": str(query.coerce("int", fields.get("SORT")) or 100),
        }
        for flag in UF_FLAGS:
            given = fields.get(flag)
            row[flag] = UF_FLAG_DEFAULTS[flag] if given in (None, "") else ("Y" if query.coerce("bool", given) else "N")
        if kind == "boolean":
            row["MULTIPLE"] = "N"  # boolean fields cannot be multiple
        row["SETTINGS"] = _uf_settings(kind, fields.get("SETTINGS"))
        _uf_labels(row, fields, creating=True)
        if kind == "enumeration":
            row["LIST"] = _enum_items(portal, name, [], fields.get("LIST"))
        portal.userfields.setdefault(entity.name, {})[uf_id] = row
        uf_changed(portal, entity)
        portal.emit(f"ONCRM{entity.event}USERFIELDADD", {"ID": uf_id}, connector_key(call), user_id=call.user_id)
        call.charge(costs.WRITE)
    return uf_id


def _uf_row(call: Call, entity: Entity) -> dict[str, Any]:
    uf_id = id_param(call)
    row = call.portal.userfields.get(entity.name, {}).get(uf_id)
    if row is None:
        raise ApiError("ERROR_NOT_FOUND", f"The entity with ID '{uf_id}' is not found.", 400)
    return row


def _uf_copy(row: Mapping[str, Any], lang: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in UF_LABELS and lang:
            out[key] = (value or {}).get(lang, "")
        elif isinstance(value, dict):
            out[key] = dict(value)
        elif isinstance(value, list):
            out[key] = [dict(v) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out


def _uf_get(call: Call, entity: Entity) -> dict[str, Any]:
    with call.portal.lock:
        call.charge(costs.CALL)
        return _uf_copy(_uf_row(call, entity))


_UF_LIST_KINDS = {"ID": "int", "SORT": "int", **{flag: "char" for flag in UF_FLAGS},
                  "ENTITY_ID": "string", "FIELD_NAME": "string", "USER_TYPE_ID": "string", "XML_ID": "string"}


def _uf_list(call: Call, entity: Entity) -> Result:
    raw_filter = query.as_mapping(call.param("filter"), "filter")
    lang = next((str(v) for k, v in raw_filter.items() if str(k).upper() == "LANG"), None)
    raw_filter = {k: v for k, v in raw_filter.items() if str(k).upper() != "LANG"}
    schema = query.Schema(_UF_LIST_KINDS, query.upper_resolver(_UF_LIST_KINDS), tz=call.portal.tz)
    flt = query.compile_filter(raw_filter, schema)
    order = query.compile_order(call.param("order"), schema) or [query.OrderBy("SORT", "int"), query.OrderBy("ID", "int")]
    with call.portal.lock:
        rows = [row for row in userfields(call.portal, entity) if flt.test(row)]
        query.sort_rows(rows, order, call.portal.tz)
        call.charge(costs.list_page(matched=len(rows), offset=0, counted=True, returned=len(rows)))
        result = [_uf_copy(row, lang) for row in rows]
    return Result(result, len(result))


def _uf_update(call: Call, entity: Entity) -> bool:
    portal = call.portal
    with portal.lock:
        row = _uf_row(call, entity)
        fields = {str(k).upper(): v for k, v in fields_param(call).items()}
        if fields.get("XML_ID") not in (None, ""):
            row["XML_ID"] = str(fields["XML_ID"])
        if fields.get("SORT") not in (None, ""):
            row["SORT"] = str(query.coerce("int", fields["SORT"]) or row["SORT"])
        for flag in UF_FLAGS:
            if flag != "MULTIPLE" and fields.get(flag) not in (None, ""):
                row[flag] = "Y" if query.coerce("bool", fields[flag]) else "N"
        if isinstance(fields.get("SETTINGS"), dict):
            row["SETTINGS"] = {**row["SETTINGS"], **{str(k).upper(): v for k, v in fields["SETTINGS"].items()}}
        _uf_labels(row, fields, creating=False)
        if row["USER_TYPE_ID"] == "enumeration" and "LIST" in fields:
            row["LIST"] = _enum_items(portal, row["FIELD_NAME"], row.get("LIST") or [], fields["LIST"])
        uf_changed(portal, entity)
        portal.emit(f"ONCRM{entity.event}USERFIELDUPDATE", {"ID": int(row["ID"])}, connector_key(call), user_id=call.user_id)
        call.charge(costs.WRITE)
    return True


def _uf_delete(call: Call, entity: Entity) -> bool:
    portal = call.portal
    with portal.lock:
        row = _uf_row(call, entity)
        del portal.userfields[entity.name][int(row["ID"])]
        for record in portal.records[entity.name].values():
            record.pop(row["FIELD_NAME"], None)
        uf_changed(portal, entity)
        portal.emit(f"ONCRM{entity.event}USERFIELDDELETE", {"ID": int(row["ID"])}, connector_key(call), user_id=call.user_id)
        call.charge(costs.WRITE)
    return True


register_per_entity({
    "userfield.add": _uf_add,
    "userfield.get": _uf_get,
    "userfield.list": _uf_list,
    "userfield.update": _uf_update,
    "userfield.delete": _uf_delete,
})
