"""The records (deals, leads) a stage, lead status or pipeline holds: counted before a delete is planned
or run, and listed when they must move. First pages of many queries share one batch.
"""

from __future__ import annotations

from typing import Any

from jobs.provision.snapshot import UnexpectedReply

PAGE = 50

Query = tuple[str, dict[str, Any]]  # (list method, filter)


def first_pages(client: Any, queries: list[Query]) -> list[list[dict[str, Any]]]:
    """The first page (up to 50 IDs) of each list query, all in one batch."""
    if not queries:
        return []
    pages = client.batch([(m, {"filter": f, "select": ["ID"], "start": 0}) for m, f in queries], halt=True)
    return [_rows(page, method) for page, (method, _) in zip(pages, queries)]


def _rows(page: Any, method: str) -> list[dict[str, Any]]:
    rows = list(page.values()) if isinstance(page, dict) else page if isinstance(page, list) else None
    if rows is None or not all(isinstance(r, dict) and str(r.get("ID", "")).isdigit() for r in rows):
        raise UnexpectedReply(f"not a Bitrix24 reply from {method}: not a list of records with IDs")
    return rows


def count_queries(client: Any, queries: list[Query]) -> list[int]:
    """Records matching each (list method, filter): one batch of first pages; a full page (50) is
    followed by a counted call (``client.count``) for the exact total."""
    return [len(rows) if len(rows) < PAGE else client.count(method, filt)
            for (method, filt), rows in zip(queries, first_pages(client, queries))]


def record_ids(client: Any, query: Query, first_page: list[dict[str, Any]]) -> list[int]:
    """IDs of every record matching ``query``: the first page when it is short, else ``client.ids``."""
    if len(first_page) < PAGE:
        return [int(row["ID"]) for row in first_page]
    return list(client.ids(*query))


def deletion_queries(needed: list[tuple[str, str | int]]) -> list[Query]:
    """The list query that counts the records of each ("lead", STATUS_ID), ("deal", STAGE_ID) or ("category", id)."""
    queries: list[Query] = []
    for what, ident in needed:
        if what == "lead":
            queries.append(("crm.lead.list", {"STATUS_ID": ident}))
        elif what == "deal":
            queries.append(("crm.deal.list", {"STAGE_ID": ident}))
        else:
            queries.append(("crm.deal.list", {"CATEGORY_ID": ident}))
    return queries


def count_records(client: Any, needed: list[tuple[str, str | int]]) -> dict[tuple[str, str | int], int]:
    """Number of leads or deals held by each stage / pipeline in ``needed``."""
    return dict(zip(needed, count_queries(client, deletion_queries(needed))))
