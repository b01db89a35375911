"""The write path of CRM records: add, update and delete, with the stage rules and what the portal derives.

A write reads its fields by UPPER_CASE name (``fields.given_by_upper``), stores each through the
field's writer (``values.writer``), resolves a deal's pipeline and stage or a lead's status, derives
the computed fields, then keeps the record index, the stage history and the offline queue in step.
Callers hold the portal lock.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from connector.emulator import costs, pipelines, query
from connector.emulator.records import history
from connector.emulator.records.fields import DEFAULT_CURRENCY, ENTITIES, Entity, Field, given_by_upper
from connector.emulator.records.index import index_add, index_remove
from connector.emulator.records.params import LEGACY, ErrorStyle, connector_key
from connector.emulator.records.userfields import UfTable, uf_default, uf_store, uf_table
from connector.emulator.records.values import currency_code, merge_multi, writer
from connector.emulator.registry import Call

if TYPE_CHECKING:
    from connector.emulator.state import Portal


@dataclass(slots=True)
class _Write:
    """One add/update in progress: the record, what changed and what the stage logic decided."""

    entity: Entity
    record: dict[str, Any]
    creating: bool
    style: ErrorStyle
    user: int
    now: str
    record_id: int
    written: Collection[str] = ()  # UPPER_CASE names the call gave
    stage_before: str | None = None
    category_before: int | None = None


# what a create or update does with a standard field: store it, hand it to the stage rules,
# ignore it (read-only), store it on creation only (immutable), or merge multi-field items
_STORE, _SPECIAL, _READ_ONLY, _IMMUTABLE, _MULTI = range(5)
_STAGE_FIELDS = frozenset(("STAGE_ID", "STATUS_ID", "CATEGORY_ID"))


def _step(spec: Field) -> tuple[int, Any, str]:
    """(step, writer, declared name): the declared name object is the one records and items share."""
    if spec.name in _STAGE_FIELDS:
        return _SPECIAL, None, spec.name
    if spec.read_only:
        return _READ_ONLY, None, spec.name
    if spec.type == "crm_multifield":
        if spec.immutable:
            raise TypeError(f"{spec.name}: an immutable multi-field is not supported")
        return _MULTI, None, spec.name
    return (_IMMUTABLE if spec.immutable else _STORE), writer(spec), spec.name


# how a write treats each field, by entity and UPPER_CASE name: (step, writer, declared name)
_STEPS: dict[str, dict[str, tuple[int, Any, str]]] = {
    entity.name: {spec.name: _step(spec) for spec in entity.fields} for entity in ENTITIES.values()
}


def _apply_fields(portal: "Portal", w: _Write, fields: Mapping[str, Any], uf: UfTable) -> dict[str, Any]:
    """Write ordinary fields onto the record, then user fields; unknown names are ignored.

    Returns the stage/category requests for the entity rules.
    """
    given = w.written = given_by_upper(fields)
    special: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    record, creating, steps, ufs = w.record, w.creating, _STEPS[w.entity.name], uf.by_name
    for name, value in given.items():
        entry = steps.get(name)
        if entry is None:
            row = ufs.get(name)
            if row is not None:
                custom[row["FIELD_NAME"]] = value
            continue
        step, write, declared = entry
        if step == _STORE or (step == _IMMUTABLE and creating):
            record[declared] = write(portal, value)
        elif step == _SPECIAL:
            special[declared] = value
        elif step == _MULTI:
            record[declared] = merge_multi(portal, declared, record.get(declared) or [], value)
        # read-only fields, and immutable ones on update, are ignored
    if "CURRENCY_ID" in given and "CURRENCY_ID" in steps:
        currency = currency_code(record.get("CURRENCY_ID"))
        if currency is None:
            raise w.style.invalid(w.entity.by_name["CURRENCY_ID"])
        record["CURRENCY_ID"] = currency
    for name, value in custom.items():
        record[name] = uf_store(portal, ufs[name], value)
    return special


def _first_status(portal: "Portal", entity_id: str) -> str | None:
    rows = pipelines.entity_rows(portal, entity_id)
    return rows[0]["STATUS_ID"] if rows else None


@functools.lru_cache(maxsize=4096)
def _deal_dates(tz: timezone, day: str) -> tuple[str, str]:
    """Default BEGINDATE (the creation day) and CLOSEDATE (a week later) of a deal created on ``day``."""
    today = datetime.fromisoformat(day).replace(tzinfo=tz)
    return today.isoformat(), (today + timedelta(days=7)).isoformat()


def _defaults(portal: "Portal", entity: Entity, record_id: int, user: int, uf: UfTable) -> dict[str, Any]:
    """A new record before the caller's fields: every declared field at its empty value plus the portal defaults."""
    now = portal.now_text()
    record = dict(entity.blank)
    for name in entity.list_fields:
        record[name] = []
    record["ID"] = str(record_id)
    user_text = str(user)
    for name in ("ASSIGNED_BY_ID", "CREATED_BY_ID", "MODIFY_BY_ID", "LAST_ACTIVITY_BY"):
        record[name] = user_text
    for name in ("DATE_CREATE", "DATE_MODIFY", "LAST_ACTIVITY_TIME"):
        record[name] = now
    if entity.title_template:
        record["TITLE"] = entity.title_template.format(id=record_id)
    if "CURRENCY_ID" in record:
        record["CURRENCY_ID"] = DEFAULT_CURRENCY
    if entity.name == "deal":
        record["TYPE_ID"] = _first_status(portal, "DEAL_TYPE")
        record["SOURCE_ID"] = _first_status(portal, "SOURCE")
        record["BEGINDATE"], record["CLOSEDATE"] = _deal_dates(portal.tz, now[:10])
    for row in uf.rows:
        record[row["FIELD_NAME"]] = uf_default(portal, row)
    return record


def _resolve_deal_stage(portal: "Portal", w: _Write, special: Mapping[str, Any], move_category: bool) -> None:
    """Pipeline and stage of a deal after this write (creation, legacy update, or crm.item move)."""
    record = w.record
    current_cat = int(record.get("CATEGORY_ID") or 0)
    wanted_stage = special.get("STAGE_ID")
    wanted_stage = None if wanted_stage in (None, "") else str(wanted_stage)
    stage = pipelines.stage_row(portal, "deal", wanted_stage) if wanted_stage else None
    if wanted_stage and stage is None:
        raise w.style.invalid(w.entity.by_name["STAGE_ID"])
    if stage:
        wanted_stage = stage["STATUS_ID"]  # the same text; records and history rows share the stage's string
    stage_cat = int(stage["CATEGORY_ID"] or 0) if stage else None

    if w.creating or move_category:
        raw_cat = special.get("CATEGORY_ID")
        if raw_cat not in (None, ""):
            category = query.coerce("int", raw_cat)
            if category is None or category < 0 or not pipelines.category_exists(portal, category):
                raise w.style.invalid(w.entity.by_name["CATEGORY_ID"])
        elif w.creating:
            category = stage_cat if stage_cat is not None else 0
        else:
            category = current_cat
        if w.creating and stage_cat is not None and stage_cat != category:
            raise w.style.invalid(w.entity.by_name["STAGE_ID"])
    else:
        category = current_cat  # crm.deal.update: CATEGORY_ID is immutable

    if category != current_cat or w.creating:
        new_stage = wanted_stage if stage_cat == category else pipelines.first_stage(portal, category)
    elif stage_cat == category:
        new_stage = wanted_stage
    else:
        new_stage = record.get("STAGE_ID")  # a stage of another pipeline is ignored
    record["CATEGORY_ID"] = str(category)
    record["STAGE_ID"] = new_stage


def _resolve_lead_status(portal: "Portal", w: _Write, special: Mapping[str, Any]) -> None:
    wanted = special.get("STATUS_ID")
    if wanted not in (None, ""):
        status = pipelines.stage_row(portal, "lead", str(wanted))
        if status is None:
            raise w.style.invalid(w.entity.by_name["STATUS_ID"])
        w.record["STATUS_ID"] = status["STATUS_ID"]  # the same text, one string per status
    elif w.creating:
        w.record["STATUS_ID"] = pipelines.first_lead_status(portal)


def _derive(portal: "Portal", w: _Write) -> None:
    """Fields the portal computes: semantics, CLOSED, IS_NEW, HAS_*, moved/modified stamps, link lists."""
    record, entity, now = w.record, w.entity, w.now
    if entity.name == "deal":
        stage = record["STAGE_ID"]
        semantic = pipelines.semantic_id(portal, "deal", stage)
        record["STAGE_SEMANTIC_ID"] = semantic
        record["CLOSED"] = "Y" if semantic in ("S", "F") else "N"
        record["IS_NEW"] = "Y" if stage == pipelines.first_stage(portal, int(record["CATEGORY_ID"])) else "N"
        _sync_links(record, "CONTACT_ID", "CONTACT_IDS", w.written)
    elif entity.name == "lead":
        semantic = pipelines.semantic_id(portal, "lead", record["STATUS_ID"])
        record["STATUS_SEMANTIC_ID"] = semantic
        if semantic in ("S", "F"):
            if w.creating or w.stage_before != record["STATUS_ID"] or not record.get("DATE_CLOSED"):
                record["DATE_CLOSED"] = now
        else:
            record["DATE_CLOSED"] = ""
    elif entity.name == "contact":
        _sync_links(record, "COMPANY_ID", "COMPANY_IDS", w.written)
    if entity.multi:
        record["HAS_PHONE"] = "Y" if record.get("PHONE") else "N"
        record["HAS_EMAIL"] = "Y" if record.get("EMAIL") else "N"
        im = record.get("IM")
        record["HAS_IMOL"] = "Y" if im and any(i.get("VALUE_TYPE") in ("OPENLINE", "IMOL") for i in im) else "N"
    if entity.stage_field and (w.creating or record[entity.stage_field] != w.stage_before):
        record["MOVED_TIME"] = now
        record["MOVED_BY_ID"] = str(w.user)
    if not w.creating:
        record["DATE_MODIFY"] = now
        record["MODIFY_BY_ID"] = str(w.user)


def _sync_links(record: dict[str, Any], single: str, many: str, written: Collection[str]) -> None:
    """Keep the deprecated single link (CONTACT_ID) the first of the link list (CONTACT_IDS).

    Writing the list decides the single link; writing only the single link puts it first.
    """
    links = [str(v) for v in record.get(many) or ()]
    if single in written and many not in written:
        first = record.get(single)
        links = ([first] if first else []) + [link for link in links[1:] if link != first]
    record[many] = links
    record[single] = links[0] if links else None


def _history(portal: "Portal", w: _Write) -> None:
    history.record_history(portal, w.entity, w.record, record_id=w.record_id, now=w.now, creating=w.creating,
                           stage_before=w.stage_before, category_before=w.category_before)


def add_record(call: Call, entity: Entity, fields: Mapping[str, Any], style: ErrorStyle = LEGACY) -> dict[str, Any]:
    """Create a record (history, events included) and return it; the caller holds the lock."""
    portal = call.portal
    record_id = portal.next_id(f"record.{entity.name}")
    uf = uf_table(portal, entity)
    record = _defaults(portal, entity, record_id, call.user_id, uf)
    w = _Write(entity, record, True, style, call.user_id, record["DATE_CREATE"], record_id)
    special = _apply_fields(portal, w, fields, uf)
    if entity.name == "deal":
        _resolve_deal_stage(portal, w, special, move_category=False)
    elif entity.name == "lead":
        _resolve_lead_status(portal, w, special)
    _derive(portal, w)
    portal.records[entity.name][record_id] = record
    index_add(portal, entity.name, record_id)
    _history(portal, w)
    portal.emit(entity.add_event, {"ID": record_id}, connector_key(call), user_id=call.user_id)
    call.charge(costs.WRITE)
    return record


def update_record(
    call: Call,
    entity: Entity,
    record_id: int,
    fields: Mapping[str, Any],
    style: ErrorStyle = LEGACY,
    *,
    move_category: bool = False,
) -> dict[str, Any]:
    """Change a record; ``move_category`` (crm.item.update only) lets CATEGORY_ID move a deal."""
    portal = call.portal
    current = portal.records[entity.name].get(record_id)
    if current is None:
        raise style.not_found()
    # A shallow copy: the write path never changes a list or multi-field item in place (it builds
    # new ones), so the stored record stays untouched until the new one replaces it.
    record = dict(current)
    w = _Write(entity, record, False, style, call.user_id, portal.now_text(), record_id)
    if entity.stage_field:
        w.stage_before = current[entity.stage_field]
    if entity.name == "deal":
        w.category_before = int(current["CATEGORY_ID"] or 0)
    special = _apply_fields(portal, w, fields, uf_table(portal, entity))
    if entity.name == "deal":
        _resolve_deal_stage(portal, w, special, move_category=move_category and "CATEGORY_ID" in special)
    elif entity.name == "lead":
        _resolve_lead_status(portal, w, special)
    _derive(portal, w)
    portal.records[entity.name][record_id] = record
    _history(portal, w)
    if entity.name == "deal" and int(record["CATEGORY_ID"]) != w.category_before:
        event = {"ID": record_id, "CATEGORY_ID": int(record["CATEGORY_ID"]), "STAGE_ID": record["STAGE_ID"]}
        portal.emit("ONCRMDEALMOVETOCATEGORY", event, connector_key(call), user_id=call.user_id)
    else:
        portal.emit(entity.update_event, {"ID": record_id}, connector_key(call), user_id=call.user_id)
    call.charge(costs.WRITE)
    return record


def delete_record(call: Call, entity: Entity, record_id: int, style: ErrorStyle = LEGACY) -> None:
    """Delete a record; its stage history stops being listed."""
    portal = call.portal
    if portal.records[entity.name].pop(record_id, None) is None:
        raise style.not_found()
    index_remove(portal, entity.name, record_id)
    if entity.stage_field:
        history.mark_filtered(portal, entity)
    portal.emit(f"ONCRM{entity.event}DELETE", {"ID": record_id}, connector_key(call), user_id=call.user_id)
    call.charge(costs.WRITE)
