"""The small lists read in full every run: pipelines, every crm.status dictionary, user-field definitions, users.

They come with the probe (pages beyond the first are fetched here); what the portal no longer
lists keeps its row with ``deleted_at``. User-field definitions are written before any record, so
the columns for new fields exist when their values arrive.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from jobs.sync import probe
from jobs.sync.context import Context
from jobs.sync.result import StreamResult
from jobs.sync.writer import utcnow
from mappings import entities as ent, fields

log = logging.getLogger(__name__)


def _rows_of(stream: ent.Stream, result: Any) -> list[dict[str, Any]]:
    if stream.name == "deal_category":
        result = result.get("categories", []) if isinstance(result, Mapping) else result
    if isinstance(result, Mapping):  # PHP prints a list with holes as an object
        result = list(result.values())
    if not isinstance(result, list):
        raise fields.FieldError(f"{stream.list_method} returned {type(result).__name__}, not a list")
    return [row for row in result if isinstance(row, Mapping)]


def fetch_all(ctx: Context, stream: ent.Stream, reply: probe.Reply | None) -> list[dict[str, Any]]:
    """Every row of a dictionary: the probe's page(s), then further pages by ``start`` (or by keyset for users)."""
    if stream.name == "user":
        return _users(ctx, reply)
    name = stream.name
    if reply is not None and reply.ok(name):
        rows, following = _rows_of(stream, reply.results[name]), reply.nexts.get(name)
    else:
        answer = ctx.client.call(stream.list_method, probe.dictionary_params(stream, 0))
        rows, following = _rows_of(stream, answer.result), answer.next
    seen = 0
    while following not in (None, "", 0) and seen < 10_000:
        seen += 1
        answer = ctx.client.call(stream.list_method, probe.dictionary_params(stream, int(following)))
        page = _rows_of(stream, answer.result)
        rows.extend(page)
        following = answer.next if page else None
    return rows


def _users(ctx: Context, reply: probe.Reply | None) -> list[dict[str, Any]]:
    stream = ent.STREAMS["user"]
    rows: list[dict[str, Any]] = []
    pages = sorted((int(n.split(".")[1]) for n in (reply.results if reply else {}) if n.startswith("user.")))
    complete = bool(pages)
    for page in pages:
        name = f"user.{page}"
        if not reply or not reply.ok(name):
            complete = False
            break
        part = _rows_of(stream, reply.results[name])
        rows.extend(part)
        if len(part) < probe.PAGE:
            return _unique(rows)
    last = max((fields.parse_id(r.get("ID")) or 0 for r in rows), default=0) if complete else 0
    if not complete:
        rows = []
    rows.extend(ctx.client.list_all("user.get", filter={">ID": last}))
    return _unique(rows)


def _unique(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {}
    for row in rows:
        by_id[str(row.get("ID"))] = row
    return list(by_id.values())


def write(ctx: Context, stream: ent.Stream, rows: list[dict[str, Any]]) -> StreamResult:
    """Write one dictionary read in full."""
    synced_at = utcnow()
    if stream.kind == ent.DICTIONARY and stream.table == "crm_userfield":
        return ctx.writer.definitions(stream, rows)
    if stream.name == "status":
        built = [fields.status_row(row, synced_at) for row in rows]
    elif stream.name == "deal_category":
        built = [fields.category_row(row, synced_at) for row in rows]
    elif stream.name == "user":
        problems: list[str] = []
        built = [fields.user_row(row, ctx.portal_tz, synced_at, problems) for row in rows]
        for problem in problems[:5]:
            log.warning("%s", problem)
    else:  # pragma: no cover - every dictionary is named above
        raise ValueError(f"no writer for {stream.name}")
    return ctx.writer.full_list(stream, built)
