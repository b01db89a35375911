"""User fields (UF_CRM_*) of the CRM entities: their definitions, and the values records hold for them.

``portal.userfields[entity][id]`` holds the definitions as userfield.get returns them; ``uf_table``
is their read index (SORT, ID order and by FIELD_NAME), which every record write reads, so it is
cached per container and dropped by ``uf_changed`` after each userfield.* write.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connector.emulator import query
from connector.emulator.records.fields import Entity
from connector.emulator.records.values import json_number, number_text

if TYPE_CHECKING:
    from connector.emulator.state import Portal

UF_TYPES = {
    "string", "integer", "double", "boolean", "datetime", "date", "money", "url", "address",
    "enumeration", "file", "employee", "crm_status", "iblock_section", "iblock_element", "crm",
}
UF_KINDS = {"integer": "int", "enumeration": "int", "employee": "int", "double": "double",
            "boolean": "bool", "date": "datetime", "datetime": "datetime"}
UF_FLAGS = ("MULTIPLE", "MANDATORY", "SHOW_FILTER", "SHOW_IN_LIST", "EDIT_IN_LIST", "IS_SEARCHABLE")
UF_FLAG_DEFAULTS = {"MULTIPLE": "N", "MANDATORY": "N", "SHOW_FILTER": "N", "SHOW_IN_LIST": "Y",
                    "EDIT_IN_LIST": "Y", "IS_SEARCHABLE": "N"}
UF_LABELS = ("EDIT_FORM_LABEL", "LIST_COLUMN_LABEL", "LIST_FILTER_LABEL", "ERROR_MESSAGE", "HELP_MESSAGE")
LANGS = ("ru", "en")
UF_NAME_RE = re.compile(r"^[A-Z0-9_]+$")


@dataclass(frozen=True)
class UfTable:
    """An entity's user field rows in SORT, ID order and by FIELD_NAME (shared, never mutated)."""

    source: dict[int, dict[str, Any]]  # the portal.userfields[entity] container it was built from
    members: tuple[int, ...]  # id() of each row it was built from, in container order
    rows: tuple[dict[str, Any], ...]
    by_name: dict[str, dict[str, Any]]


# Keyed by id() of a portal.userfields[entity] container; an entry holds its container, so the id
# cannot be reused while the entry lives. Dropped by every userfield.* write, rebuilt when the
# container's rows changed behind our back. Every write of a record reads it.
_UF_TABLES: dict[int, UfTable] = {}
_UF_TABLES_MAX = 64  # containers of discarded portals are forgotten when there are more
_NO_UF = UfTable({}, (), (), {})


def uf_table(portal: "Portal", entity: Entity) -> UfTable:
    """The entity's user field definitions in SORT, ID order and by name (cached; see the module docstring)."""
    container = portal.userfields.get(entity.name)
    if not container:
        return _NO_UF
    table = _UF_TABLES.get(id(container))
    members = tuple(map(id, container.values()))
    if table is None or table.members != members:
        if len(_UF_TABLES) >= _UF_TABLES_MAX:
            _UF_TABLES.clear()
        rows = tuple(sorted(container.values(), key=lambda r: (int(r["SORT"]), int(r["ID"]))))
        table = _UF_TABLES[id(container)] = UfTable(container, members, rows, {r["FIELD_NAME"]: r for r in rows})
    return table


def uf_changed(portal: "Portal", entity: Entity) -> None:
    """Forget the cached user field table of an entity (after userfield.add/update/delete)."""
    _UF_TABLES.pop(id(portal.userfields.get(entity.name)), None)


def userfields(portal: "Portal", entity: Entity) -> list[dict[str, Any]]:
    """User field definitions of an entity in SORT, ID order."""
    return list(uf_table(portal, entity).rows)


def uf_by_name(portal: "Portal", entity: Entity) -> dict[str, dict[str, Any]]:
    """User field definitions of an entity by FIELD_NAME."""
    return dict(uf_table(portal, entity).by_name)


def _uf_label(row: Mapping[str, Any], key: str) -> str:
    labels = row.get(key) or {}
    return next((labels[lang] for lang in LANGS if labels.get(lang)), "") or row["FIELD_NAME"]


def _uf_single(portal: "Portal", row: Mapping[str, Any], value: Any) -> Any:
    """One user field value in the legacy (string) form it is stored and listed in."""
    kind = row["USER_TYPE_ID"]
    if value is None or value == "" or value is False and kind != "boolean":
        return None
    if kind in ("integer", "employee"):
        number = query.coerce("int", value)
        return None if number is None else str(number)
    if kind == "double":
        number = query.coerce("double", value)
        return None if number is None else number_text(number)
    if kind == "boolean":
        flag = query.coerce("bool", value)
        return "1" if flag else "0"
    if kind == "date":
        moment = query.parse_moment(value, portal.tz)
        return None if moment is None else moment.date().isoformat()
    if kind == "datetime":
        moment = query.parse_moment(value, portal.tz)
        return None if moment is None else portal.format_time(moment)
    if kind == "enumeration":
        for item in row.get("LIST") or ():
            if str(value) in (item["ID"], item["VALUE"], item.get("XML_ID")):
                return item["ID"]
        return None
    return str(value)


def uf_store(portal: "Portal", row: Mapping[str, Any], value: Any) -> Any:
    """A written user field value as the record keeps it (a list for a multiple field)."""
    if row["MULTIPLE"] == "Y":
        values = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
        stored = [_uf_single(portal, row, v) for v in values]
        return [v for v in stored if v is not None]
    if isinstance(value, list):
        value = value[0] if value else None
    return _uf_single(portal, row, value)


def uf_default(portal: "Portal", row: Mapping[str, Any]) -> Any:
    """The value a new record gets for a user field (SETTINGS.DEFAULT_VALUE or DEF=Y items)."""
    if row["USER_TYPE_ID"] == "enumeration":
        defaults = [item["ID"] for item in row.get("LIST") or () if item.get("DEF") == "Y"]
        if row["MULTIPLE"] == "Y":
            return defaults
        return defaults[0] if defaults else None
    default = (row.get("SETTINGS") or {}).get("DEFAULT_VALUE")
    if isinstance(default, dict):  # date/datetime: {"VALUE": ..., "TYPE": "NONE|NOW|FIXED"}
        mode = str(default.get("TYPE", "NONE")).upper()
        default = portal.now_text() if mode == "NOW" else default.get("VALUE") if mode == "FIXED" else None
    if default in (None, ""):
        return [] if row["MULTIPLE"] == "Y" else None
    return uf_store(portal, row, default)


def uf_item_value(row: Mapping[str, Any], value: Any) -> Any:
    """A stored user field value as crm.item types it (numbers as numbers, booleans Y/N [inferred])."""
    if isinstance(value, list):
        return [uf_item_value({**row, "MULTIPLE": "N"}, v) for v in value]
    if value is None:
        return None
    kind = row["USER_TYPE_ID"]
    if kind in ("integer", "employee", "enumeration"):
        return query.coerce("int", value)
    if kind == "double":
        return json_number(float(value))
    if kind == "boolean":
        return "Y" if value == "1" else "N"
    return value


def uf_description(row: Mapping[str, Any]) -> dict[str, Any]:
    """A user field as ``*.fields`` describes it."""
    desc: dict[str, Any] = {
        "type": row["USER_TYPE_ID"],
        "isRequired": row["MANDATORY"] == "Y",
        "isReadOnly": False,
        "isImmutable": False,
        "isMultiple": row["MULTIPLE"] == "Y",
        "isDynamic": True,
        "title": row["FIELD_NAME"],
        "listLabel": _uf_label(row, "LIST_COLUMN_LABEL"),
        "formLabel": _uf_label(row, "EDIT_FORM_LABEL"),
        "filterLabel": _uf_label(row, "LIST_FILTER_LABEL"),
        "settings": dict(row.get("SETTINGS") or {}),
    }
    if row["USER_TYPE_ID"] == "enumeration":
        desc["items"] = [{"ID": item["ID"], "VALUE": item["VALUE"]} for item in row.get("LIST") or ()]
    return desc
