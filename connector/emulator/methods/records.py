"""Legacy CRM record methods: ``crm.{lead,deal,contact,company}.{list,get,add,update,delete,fields}``.

Rules in ``connector/emulator/records/``; these handlers read the parameters and shape the replies.
"""

from __future__ import annotations

from typing import Any

from connector.emulator import costs, query
from connector.emulator.records.fields import Entity
from connector.emulator.records.index import sorted_ids
from connector.emulator.records.params import LEGACY, fields_param, id_param, register_per_entity
from connector.emulator.records.userfields import uf_description, userfields
from connector.emulator.records.views import all_legacy_names, field_description, legacy_lists, legacy_view
from connector.emulator.records.write import add_record, delete_record, update_record
from connector.emulator.registry import Call, Result


def _legacy_list(call: Call, entity: Entity) -> Result:
    portal = call.portal
    with portal.lock:
        lists = legacy_lists(portal, entity)
        flt = query.compile_filter(call.param("filter"), lists.schema)
        order = query.compile_order(call.param("order"), lists.schema)
        names = query.choose_fields(
            call.param("select"), order=lists.order, groups=lists.groups, default=("*", "UF_*"),
            resolve=lists.schema.resolve,
        )
        source = query.Source(sorted_ids(portal, entity.name), fetch=portal.records[entity.name].get)
        page = query.paginate(source, flt, order, query.parse_start(call.param("start")))
        call.charge(page.cost())
        rows = [legacy_view(entity, record, names) for record in page.rows]
    return Result(rows, page.total, page.next)


def _legacy_get(call: Call, entity: Entity) -> dict[str, Any]:
    portal = call.portal
    record_id = id_param(call)
    with portal.lock:
        call.charge(costs.CALL)
        record = portal.records[entity.name].get(record_id)
        if record is None:
            raise LEGACY.not_found()
        return legacy_view(entity, record, all_legacy_names(portal, entity))


def _legacy_add(call: Call, entity: Entity) -> int:
    fields = fields_param(call)
    with call.portal.lock:
        return int(add_record(call, entity, fields)["ID"])


def _legacy_update(call: Call, entity: Entity) -> bool:
    record_id = id_param(call)
    with call.portal.lock:
        if record_id not in call.portal.records[entity.name]:
            raise LEGACY.not_found()
        update_record(call, entity, record_id, fields_param(call))
    return True


def _legacy_delete(call: Call, entity: Entity) -> bool:
    record_id = id_param(call)
    with call.portal.lock:
        delete_record(call, entity, record_id)
    return True


def _legacy_fields(call: Call, entity: Entity) -> dict[str, Any]:
    portal = call.portal
    with portal.lock:
        call.charge(costs.CALL)
        result = {spec.name: field_description(spec) for spec in entity.fields}
        for row in userfields(portal, entity):
            result[row["FIELD_NAME"]] = uf_description(row)
    return result


register_per_entity({
    "list": _legacy_list,
    "get": _legacy_get,
    "add": _legacy_add,
    "update": _legacy_update,
    "delete": _legacy_delete,
    "fields": _legacy_fields,
})
