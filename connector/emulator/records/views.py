"""What the record methods return: legacy and crm.item views of a record, list schemas, field descriptions.

Legacy views keep the stored UPPER_CASE values; crm.item views rename them to camelCase and type
them (``values.item_value``). ``legacy_lists`` / ``item_lists`` give a list method its filter schema
and select groups; ``item_input`` turns crm.item ``fields`` into the legacy names the write path takes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connector.emulator import query
from connector.emulator.records.fields import MULTI_FIELDS, Entity, Field, camel_case
from connector.emulator.records.userfields import UF_KINDS, uf_by_name, uf_item_value, userfields
from connector.emulator.records.values import item_value

if TYPE_CHECKING:
    from connector.emulator.state import Portal


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [dict(v) if isinstance(v, dict) else v for v in value]
    return value


def legacy_view(entity: Entity, record: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """A record as crm.<entity>.get/list returns it; empty multi-fields are left out."""
    out: dict[str, Any] = {}
    multi = entity.multi
    for name in names:
        value = record.get(name)
        if name in multi:
            if value:
                out[name] = _copy(value)
        else:
            out[name] = _copy(value)
    return out


def all_legacy_names(portal: "Portal", entity: Entity) -> list[str]:
    """Every name crm.<entity>.get returns, in declaration order (user fields last)."""
    return [f.name for f in entity.fields if f.listed] + [row["FIELD_NAME"] for row in userfields(portal, entity)]


@dataclass
class Lists:
    """What a list method of one entity needs: the schema and the name groups of ``select``."""

    schema: query.Schema
    order: list[str]
    groups: dict[str, list[str]]
    ufs: dict[str, dict[str, Any]]


def legacy_lists(portal: "Portal", entity: Entity) -> Lists:
    """The filter schema and select groups of crm.<entity>.list (legacy names, lenient)."""
    ufs = uf_by_name(portal, entity)
    kinds = {name: entity.kinds[name] for name in entity.standard + entity.multi}
    kinds.update({name: UF_KINDS.get(row["USER_TYPE_ID"], "string") for name, row in ufs.items()})
    no_like = frozenset(f.name for f in entity.fields if f.type in ("crm_status", "crm_company", "crm_contact"))
    schema = query.Schema(kinds, query.upper_resolver(kinds), tz=portal.tz, no_like=no_like)
    groups = {
        "*": list(entity.standard),
        "UF_*": [name for name, row in ufs.items() if row["MULTIPLE"] != "Y"],
    }
    return Lists(schema, all_legacy_names(portal, entity), groups, ufs)


def uf_item_name(name: str, original: bool) -> str:
    """A user field's crm.item name: ``ufCrm_...``, or UF_CRM_... with ``useOriginalUfNames``."""
    return name if original else camel_case(name)


def item_lists(portal: "Portal", entity: Entity, original_uf: bool) -> Lists:
    """The filter schema and select groups of crm.item.list (camelCase names, strict)."""
    ufs = uf_by_name(portal, entity)
    kinds = {f.name: entity.kinds[f.name] for f in entity.fields if f.type != "crm_multifield"}
    kinds.update({name: UF_KINDS.get(row["USER_TYPE_ID"], "string") for name, row in ufs.items()})
    aliases = dict(entity.from_camel)
    aliases.update({uf_item_name(name, original_uf): name for name in ufs})

    def resolve(name: str) -> str | None:
        if name in aliases:
            return aliases[name]
        upper = name.upper()
        return upper if upper in kinds else None

    schema = query.Schema(kinds, resolve, tz=portal.tz, strict=True)
    order = list(kinds)
    return Lists(schema, order, {"*": order}, ufs)


def item_view(
    entity: Entity,
    record: Mapping[str, Any],
    names: Iterable[str],
    ufs: Mapping[str, Mapping[str, Any]],
    *,
    original_uf: bool = False,
    full: bool = True,
) -> dict[str, Any]:
    """A record as crm.item.* returns it: camelCase, typed; ``full`` adds ``fm`` and ``entityTypeId``."""
    out: dict[str, Any] = {}
    by_name, to_camel = entity.by_name, entity.to_camel
    for name in names:
        spec = by_name.get(name)
        if spec is not None:
            out[to_camel[name]] = item_value(spec, record.get(name))
        elif name in ufs:
            out[uf_item_name(name, original_uf)] = uf_item_value(ufs[name], record.get(name))
    if full:
        if entity.multi:
            out["fm"] = [
                {"id": int(item["ID"]), "valueType": item["VALUE_TYPE"], "value": item["VALUE"], "typeId": item["TYPE_ID"]}
                for type_id in entity.multi
                for item in record.get(type_id) or ()
            ]
        out["entityTypeId"] = entity.type_id
    return out


def item_input(portal: "Portal", entity: Entity, fields: Mapping[str, Any], original_uf: bool) -> dict[str, Any]:
    """crm.item ``fields`` (camelCase, ``fm``) as the legacy names the write path takes."""
    ufs = {uf_item_name(name, original_uf): name for name in uf_by_name(portal, entity)}
    legacy: dict[str, Any] = {}
    for key, value in fields.items():
        key = str(key)
        if key == "fm":
            for type_id, items in _fm_to_legacy(value).items():
                legacy[type_id] = items
        elif key in entity.from_camel:
            legacy[entity.from_camel[key]] = value
        elif key in ufs:
            legacy[ufs[key]] = value
        else:
            legacy[key.upper()] = value
    return legacy


def _fm_to_legacy(fm: Any) -> dict[str, list[dict[str, Any]]]:
    """``fm`` items ``{id?, typeId, valueType, value}`` (a list, or a dict keyed by id) per multi-field."""
    pairs = fm.items() if isinstance(fm, dict) else enumerate(fm if isinstance(fm, list) else [])
    grouped: dict[str, list[dict[str, Any]]] = {}
    for key, item in pairs:
        if not isinstance(item, dict):
            continue
        type_id = str(item.get("typeId") or "").upper()
        if type_id not in MULTI_FIELDS:
            continue
        item_id = item.get("id") or (key if isinstance(fm, dict) and str(key).isdigit() else None)
        grouped.setdefault(type_id, []).append(
            {"ID": item_id, "VALUE": item.get("value"), "VALUE_TYPE": item.get("valueType"), "DELETE": item.get("delete")}
        )
    return grouped


def field_description(spec: Field) -> dict[str, Any]:
    """A standard field as ``*.fields`` describes it."""
    desc: dict[str, Any] = {
        "type": spec.type,
        "isRequired": False,
        "isReadOnly": spec.read_only,
        "isImmutable": spec.immutable,
        "isMultiple": spec.multiple,
        "isDynamic": False,
    }
    if spec.status_type:
        desc["statusType"] = spec.status_type
    desc["title"] = spec.title
    if spec.settings:
        desc["settings"] = dict(spec.settings)
    return desc
