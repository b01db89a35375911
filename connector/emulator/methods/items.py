"""The universal ``crm.item.*`` methods over the same leads, deals, contacts and companies as the legacy ones.

camelCase, typed values, ``{"item": ...}`` / ``{"items": [...]}`` replies, strict list parameters;
``crm.item.update`` with ``categoryId`` is the one way to move a deal to another pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from connector.catalog import ENTITY_NAMES
from connector.emulator import costs, query
from connector.emulator.records.fields import ENTITIES, Entity
from connector.emulator.records.index import sorted_ids
from connector.emulator.records.params import ITEM, fields_param, id_param
from connector.emulator.records.userfields import uf_description, userfields
from connector.emulator.records.views import field_description, item_input, item_lists, item_view, uf_item_name
from connector.emulator.records.write import add_record, delete_record, update_record
from connector.emulator.registry import ApiError, Call, Result, method

if TYPE_CHECKING:
    from connector.emulator.state import Portal


def _item_entity(call: Call) -> Entity:
    type_id = query.coerce("int", call.param("entityTypeId"))
    name = ENTITY_NAMES.get(type_id) if type_id is not None else None
    if name is None:
        raise ApiError("NOT_FOUND", "Smart process not found", 400)
    return ENTITIES[name]


def _original_uf(call: Call) -> bool:
    return query.coerce("bool", call.param("useOriginalUfNames") or "N") is True


@method("crm.item.list")
def item_list(call: Call) -> Result:
    """crm.item.list: camelCase typed items, strict filter/order, ``{"items": [...]}``."""
    entity = _item_entity(call)
    original = _original_uf(call)
    portal = call.portal
    with portal.lock:
        lists = item_lists(portal, entity, original)
        flt = query.compile_filter(call.param("filter"), lists.schema)
        order = query.compile_order(call.param("order"), lists.schema)
        picked = query.select_list(call.param("select"))
        names = query.choose_fields(
            picked, order=lists.order, groups=lists.groups, default=("*",), resolve=lists.schema.resolve
        )
        full = not picked or "*" in picked
        source = query.Source(sorted_ids(portal, entity.name), fetch=portal.records[entity.name].get)
        page = query.paginate(source, flt, order, query.parse_start(call.param("start")))
        call.charge(page.cost())
        items = [item_view(entity, r, names, lists.ufs, original_uf=original, full=full) for r in page.rows]
    return Result({"items": items}, page.total, page.next)


def _item_reply(portal: "Portal", entity: Entity, record: Mapping[str, Any], original: bool) -> dict[str, Any]:
    lists = item_lists(portal, entity, original)
    return {"item": item_view(entity, record, lists.order, lists.ufs, original_uf=original)}


@method("crm.item.get")
def item_get(call: Call) -> dict[str, Any]:
    """crm.item.get: ``{"item": {...}}``; an unknown id is 400 NOT_FOUND."""
    entity = _item_entity(call)
    record_id = id_param(call, ITEM)
    with call.portal.lock:
        call.charge(costs.CALL)
        record = call.portal.records[entity.name].get(record_id)
        if record is None:
            raise ITEM.not_found()
        return _item_reply(call.portal, entity, record, _original_uf(call))


@method("crm.item.add")
def item_add(call: Call) -> dict[str, Any]:
    """crm.item.add: create from camelCase fields; returns ``{"item": {...}}``."""
    entity = _item_entity(call)
    original = _original_uf(call)
    with call.portal.lock:
        fields = item_input(call.portal, entity, fields_param(call), original)
        record = add_record(call, entity, fields, ITEM)
        return _item_reply(call.portal, entity, record, original)


@method("crm.item.update")
def item_update(call: Call) -> dict[str, Any]:
    """crm.item.update: like crm.deal.update, but ``categoryId`` moves a deal to another pipeline."""
    entity = _item_entity(call)
    original = _original_uf(call)
    record_id = id_param(call, ITEM)
    with call.portal.lock:
        fields = item_input(call.portal, entity, fields_param(call), original)
        record = update_record(call, entity, record_id, fields, ITEM, move_category=True)
        return _item_reply(call.portal, entity, record, original)


@method("crm.item.delete")
def item_delete(call: Call) -> list[Any]:
    """crm.item.delete: answers ``[]``."""
    entity = _item_entity(call)
    record_id = id_param(call, ITEM)
    with call.portal.lock:
        delete_record(call, entity, record_id, ITEM)
    return []


@method("crm.item.fields")
def item_fields(call: Call) -> dict[str, Any]:
    """crm.item.fields: ``{"fields": {camelName: description + upperName}}``."""
    entity = _item_entity(call)
    original = _original_uf(call)
    with call.portal.lock:
        call.charge(costs.CALL)
        result: dict[str, Any] = {}
        for spec in entity.fields:
            if spec.type != "crm_multifield":
                result[spec.item_name] = {**field_description(spec), "upperName": spec.name}
        if entity.multi:
            result["fm"] = {"type": "crm_multifield", "isRequired": False, "isReadOnly": False,
                            "isImmutable": False, "isMultiple": True, "isDynamic": False,
                            "title": "Multifields", "upperName": "FM"}
        for row in userfields(call.portal, entity):
            result[uf_item_name(row["FIELD_NAME"], original)] = {
                **uf_description(row), "upperName": row["FIELD_NAME"]}
    return {"fields": result}
