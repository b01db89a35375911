"""What provisioning reads from a portal: the deal pipelines and the rows of every stage dictionary,
checked for the shape Bitrix24 gives them, and the fingerprint a saved plan is compared against.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from connector.catalog import DEAL, LEAD_STATUS, stage_entity_id
from jobs.provision.changes import ProvisionError
from jobs.provision.stages import Stage, actual_stages

CATEGORY_PAGE = 50


class UnexpectedReply(ProvisionError):
    """The portal (or something in front of it) answered in a shape Bitrix24 never uses."""


@dataclass
class Snapshot:
    """What provisioning reads from a portal: deal pipelines and the rows of every stage dictionary."""

    categories: list[dict[str, Any]]
    statuses: dict[str, list[dict[str, Any]]]  # ENTITY_ID -> rows sorted by SORT

    def rows(self, entity_id: str) -> list[dict[str, Any]]:
        """Rows of one dictionary in portal order."""
        return self.statuses.get(entity_id, [])

    def fingerprint(self) -> str:
        """A hash of everything a plan depends on (names, sorts, colours, semantics, ids, keys)."""
        cats = sorted(
            ([c.get("id"), c.get("name"), c.get("sort"), c.get("originId") or "", c.get("originatorId") or ""]
             for c in self.categories),
            key=lambda c: int(c[0]),
        )
        rows = sorted(
            ([r.get("ID"), r.get("ENTITY_ID"), r.get("STATUS_ID"), r.get("NAME"), str(r.get("SORT")),
              (r.get("COLOR") or "").upper(), r.get("SEMANTICS") or "", r.get("SYSTEM")]
             for rows in self.statuses.values() for r in rows),
            key=lambda r: (str(r[1]), int(r[0])),
        )
        text = json.dumps({"categories": cats, "statuses": rows}, ensure_ascii=False, sort_keys=True)
        return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def plan_fingerprint(snapshot: Snapshot, counts: list[dict[str, Any]]) -> str:
    """A hash of the portal state a plan is made from: the snapshot and the record counts it relies on."""
    relied = sorted([c["kind"], c["key"], c["method"], c["filter"], int(c["records"])] for c in counts)
    text = json.dumps({"snapshot": snapshot.fingerprint(), "counts": relied}, ensure_ascii=False, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_snapshot(client: Any) -> Snapshot:
    """Read deal pipelines (crm.category.list) and lead statuses and stages (crm.status.list, one
    batch of one call per dictionary)."""
    categories = read_categories(client)
    entities = [LEAD_STATUS] + [stage_entity_id(int(c["id"])) for c in categories]
    replies = client.batch([status_list(e) for e in entities], halt=True)
    statuses = {entity: status_rows(rows, entity) for entity, rows in zip(entities, replies)}
    categories.sort(key=lambda c: (int(c.get("sort") or 0), int(c["id"])))
    return Snapshot(categories, statuses)


def read_categories(client: Any) -> list[dict[str, Any]]:
    """Every deal pipeline (crm.category.list, 50 a page), in the portal's order."""
    categories: list[dict[str, Any]] = []
    seen: set[int] = set()
    while True:  # stop at a short page or one that brings nothing new
        result = client.result("crm.category.list", {"entityTypeId": DEAL, "start": len(categories)})
        listed = result.get("categories") if isinstance(result, dict) else None
        if not isinstance(listed, list):
            raise UnexpectedReply("not a Bitrix24 reply from crm.category.list: no list of categories")
        page = [_category(c) for c in listed]
        page = [c for c in page if c["id"] not in seen]
        seen.update(c["id"] for c in page)
        categories += page
        if len(page) < CATEGORY_PAGE:
            return categories


def _category(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not _int_like(raw.get("id")):
        raise UnexpectedReply("not a Bitrix24 reply from crm.category.list: a category without an id")
    category = dict(raw)
    category["id"] = int(raw["id"])
    if (
        not isinstance(category.get("name"), str)
        or not _int_like(category.get("sort") or 0)
        or not all(isinstance(category.get(k), (str, int, type(None))) for k in ("originId", "originatorId"))
    ):
        raise UnexpectedReply(f"not a Bitrix24 reply from crm.category.list: category {category['id']} has a bad name, sort or origin")
    return category


def status_list(entity: str) -> tuple[str, dict[str, Any]]:
    """The crm.status.list call that reads one dictionary."""
    return "crm.status.list", {"order": {"SORT": "ASC"}, "filter": {"ENTITY_ID": entity}}


def status_rows(result: Any, entity: str) -> list[dict[str, Any]]:
    """crm.status.list rows of one dictionary sorted by SORT, then ID (a keyed result is accepted too)."""
    rows = list(result.values()) if isinstance(result, dict) else result if isinstance(result, list) else None
    if rows is None or not all(_status_row(r) for r in rows):
        raise UnexpectedReply(f"not a Bitrix24 reply from crm.status.list ({entity}): not a list of dictionary rows")
    rows = [r for r in rows if r.get("ENTITY_ID") == entity]
    return sorted(rows, key=lambda r: (int(r.get("SORT") or 0), int(r.get("ID") or 0)))


def _status_row(row: Any) -> bool:
    """True when ``row`` has the fields of a crm.status row with the types Bitrix24 gives them."""
    return (
        isinstance(row, dict)
        and _int_like(row.get("ID"))
        and isinstance(row.get("STATUS_ID"), str)
        and isinstance(row.get("ENTITY_ID"), str)
        and _int_like(row.get("SORT") or 0)
        and all(isinstance(row.get(k), (str, type(None))) for k in ("NAME", "COLOR", "SEMANTICS", "SYSTEM"))
    )


def _int_like(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    return isinstance(value, str) and value.strip().lstrip("-").isdigit()


def read_stages(client: Any, entity: str, prefix: str) -> list[Stage]:
    """The stages of one dictionary as they are on the portal now."""
    method, params = status_list(entity)
    return actual_stages(status_rows(client.result(method, params), entity), prefix)
