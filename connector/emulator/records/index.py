"""The record index: each entity's record IDs in ascending order, for keyset pages by bisect.

A list page ordered by ID walks this list from a bisected position instead of sorting the
records (``query.Source``); add and delete keep it in step, and a list that no longer matches its
records (a portal loaded from a file, records changed directly) is rebuilt on the next read.
"""

from __future__ import annotations

import weakref
from bisect import bisect_left, insort
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connector.emulator.state import Portal

# Sorted ID lists per portal and entity, kept in step with adds and deletes (bisect keyset paging).
_IDS: "weakref.WeakKeyDictionary[Portal, dict[str, tuple[dict[int, Any], list[int]]]]" = weakref.WeakKeyDictionary()


def sorted_ids(portal: "Portal", entity: str) -> list[int]:
    """IDs of an entity's records in ascending order (rebuilt when the records changed behind our back)."""
    records = portal.records[entity]
    cache = _IDS.setdefault(portal, {})
    hit = cache.get(entity)
    if hit is None or hit[0] is not records or len(hit[1]) != len(records):
        hit = (records, sorted(records))
        cache[entity] = hit
    return hit[1]


def index_add(portal: "Portal", entity: str, record_id: int) -> None:
    """Put a new record's ID into the sorted list (a stale list is left for the next read to rebuild)."""
    hit = _IDS.get(portal, {}).get(entity)
    if hit is None or hit[0] is not portal.records[entity] or len(hit[1]) != len(hit[0]) - 1:
        return  # stale or absent: the next read rebuilds it
    ids = hit[1]
    if not ids or record_id > ids[-1]:
        ids.append(record_id)
    else:
        insort(ids, record_id)


def index_remove(portal: "Portal", entity: str, record_id: int) -> None:
    """Take a deleted record's ID out of the sorted list."""
    hit = _IDS.get(portal, {}).get(entity)
    if hit is None:
        return
    ids = hit[1]
    pos = bisect_left(ids, record_id)
    if pos < len(ids) and ids[pos] == record_id:
        del ids[pos]
