"""Stage history of leads and deals: the rows crm.stagehistory.list returns, and which of them it shows.

Rows (``portal.history[entity_type_id]``, in ID order) are written by the record write path: TYPE_ID
1 on creation, 2 for a move to an in-progress stage, 3 for a move to a final stage, 5 when a deal
changes pipeline. Two writers, as ``portal.history_mode`` says (see the shared notes
``bitrix24-history-and-funnels.md`` §2):

- ``"current"`` (the default), today's portals: rows are never deleted, but a deleted record's rows
  and the rows of a moved deal's former pipeline are no longer listed.
- ``"legacy"``, the older portals' writer: the same, and when a new row follows a final (TYPE_ID 3)
  row of the same record, that final row is deleted (a reopened deal loses its won/lost row).
"""

from __future__ import annotations

import weakref
from bisect import bisect_left
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from connector.catalog import DEAL, ENTITY_NAMES, LEAD
from connector.emulator.records.fields import Entity

if TYPE_CHECKING:
    from connector.emulator.state import Portal

CREATION, MODIFICATION, FINALIZATION, CATEGORY_CHANGE = 1, 2, 3, 5
HISTORY_MODES = ("current", "legacy")

# crm.stagehistory.list fields per entity type and how they compare
HISTORY_KINDS: dict[int, dict[str, str]] = {
    DEAL: {"ID": "int", "TYPE_ID": "int", "OWNER_ID": "int", "CREATED_TIME": "datetime", "CATEGORY_ID": "int",
           "STAGE_SEMANTIC_ID": "string", "STAGE_ID": "string"},
    LEAD: {"ID": "int", "TYPE_ID": "int", "OWNER_ID": "int", "CREATED_TIME": "datetime",
           "STATUS_SEMANTIC_ID": "string", "STATUS_ID": "string"},
}


def check_mode(mode: str) -> str:
    """``mode`` when it names a history writer, else ValueError."""
    if mode not in HISTORY_MODES:
        raise ValueError(f"unknown history mode {mode!r}: use one of {', '.join(HISTORY_MODES)}")
    return mode


def record_history(
    portal: "Portal",
    entity: Entity,
    record: Mapping[str, Any],
    *,
    record_id: int,
    now: str,
    creating: bool,
    stage_before: str | None,
    category_before: int | None,
) -> None:
    """Write the history row a create or update of ``record`` calls for, if any."""
    if entity.stage_field is None:
        return
    semantic = record["STAGE_SEMANTIC_ID" if entity.type_id == DEAL else "STATUS_SEMANTIC_ID"]
    if creating:
        _append(portal, entity, record, record_id, now, CREATION)
    elif entity.type_id == DEAL and int(record["CATEGORY_ID"]) != category_before:
        _append(portal, entity, record, record_id, now, CATEGORY_CHANGE)
        mark_filtered(portal, entity)
    elif record[entity.stage_field] != stage_before:
        _append(portal, entity, record, record_id, now, FINALIZATION if semantic in ("S", "F") else MODIFICATION)


def _append(portal: "Portal", entity: Entity, record: Mapping[str, Any], record_id: int, now: str, type_id: int) -> None:
    """Append one row; the legacy writer then drops the record's previous row when it was final."""
    owner = int(record["ID"])
    if owner == record_id:
        owner = record_id  # the records key itself: all rows of a record share one int
    if entity.type_id == DEAL:
        row = {
            "ID": portal.next_id("stagehistory.deal"),
            "TYPE_ID": type_id,
            "OWNER_ID": owner,
            "CREATED_TIME": now,
            "CATEGORY_ID": int(record["CATEGORY_ID"] or 0),
            "STAGE_SEMANTIC_ID": record["STAGE_SEMANTIC_ID"],
            "STAGE_ID": record["STAGE_ID"],
        }
    else:
        row = {
            "ID": portal.next_id("stagehistory.lead"),
            "TYPE_ID": type_id,
            "OWNER_ID": owner,
            "CREATED_TIME": now,
            "STATUS_SEMANTIC_ID": record["STATUS_SEMANTIC_ID"],
            "STATUS_ID": record["STATUS_ID"],
        }
    rows = portal.history.setdefault(entity.type_id, [])
    if portal.history_mode == "legacy":
        latest = _latest_rows(portal, entity.type_id)
        previous = latest.get(owner)
        rows.append(row)
        latest[owner] = row
        if previous is not None and previous["TYPE_ID"] == FINALIZATION:
            position = bisect_left(rows, previous["ID"], key=row_id)
            if position < len(rows) and rows[position] is previous:
                del rows[position]
        _LATEST[portal][entity.type_id] = (rows, len(rows), latest)
    else:
        rows.append(row)


def row_id(row: Mapping[str, Any]) -> int:
    """A history row's ID (the key its list is sorted by)."""
    return row["ID"]


# The legacy writer needs each record's latest row: per portal and entity type, (rows container,
# its length when last seen, owner -> latest row), rebuilt by one scan when the rows changed
# behind its back (a portal loaded from a file, another writer mode).
_LATEST: "weakref.WeakKeyDictionary[Portal, dict[int, tuple[list[Any], int, dict[int, Any]]]]" = (
    weakref.WeakKeyDictionary()
)


def _latest_rows(portal: "Portal", type_id: int) -> dict[int, Any]:
    rows = portal.history.setdefault(type_id, [])
    known = _LATEST.setdefault(portal, {}).get(type_id)
    if known is None or known[0] is not rows or known[1] != len(rows):
        latest: dict[int, Any] = {}
        for row in rows:
            latest[row["OWNER_ID"]] = row
        known = (rows, len(rows), latest)
        _LATEST[portal][type_id] = known
    return known[2]


def mark_filtered(portal: "Portal", entity: Entity) -> None:
    """From now on stage history lists must hide rows of moved or deleted records (slower path)."""
    portal.extra.setdefault("stagehistory_filtered", {})[entity.type_id] = True


def visible_filter(portal: "Portal", type_id: int) -> Callable[[Mapping[str, Any]], bool] | None:
    """None while every row is visible; else a test hiding rows of deleted records and old pipelines."""
    if not portal.extra.get("stagehistory_filtered", {}).get(type_id):
        return None
    records = portal.records[ENTITY_NAMES[type_id]]
    if type_id == DEAL:
        def visible(row: Mapping[str, Any]) -> bool:
            record = records.get(row["OWNER_ID"])
            return record is not None and int(record["CATEGORY_ID"] or 0) == row["CATEGORY_ID"]
    else:
        def visible(row: Mapping[str, Any]) -> bool:
            return row["OWNER_ID"] in records
    return visible
