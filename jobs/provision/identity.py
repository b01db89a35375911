"""Which portal pipeline a declared pipeline is: pipeline identity on a portal that stores no keys of its own.

The default pipeline is id 0. Any other pipeline records its key in ``originId`` (with
``originatorId`` = ``b24sync``), written on create and on every update. A pipeline made by hand
has no key yet: it is known as ``pipeline_{id}`` and matched by that key plus its name, or adopted
by name, or pinned with ``id``. ``originatorId = b24sync:new`` marks a pipeline whose creation has
not finished (its stock stages are still to be replaced); the next plan finishes it.
"""

from __future__ import annotations

from typing import Any

from mappings.config import PipelineConfig

ORIGINATOR = "b24sync"
ORIGINATOR_NEW = "b24sync:new"  # a pipeline whose creation is not finished yet


def portal_key(category: dict[str, Any]) -> str:
    """The key a portal pipeline is known by: its recorded key, else ``default`` / ``pipeline_{id}``."""
    if is_stamped(category):
        return str(category["originId"])
    return "default" if int(category["id"]) == 0 else f"pipeline_{category['id']}"


def is_stamped(category: dict[str, Any]) -> bool:
    """True when the pipeline carries a key written by b24sync."""
    return category.get("originatorId") in (ORIGINATOR, ORIGINATOR_NEW) and bool(category.get("originId"))


def is_unfinished(category: dict[str, Any]) -> bool:
    """True when b24sync created the pipeline and has not replaced its stock stages yet."""
    return category.get("originatorId") == ORIGINATOR_NEW


def keyed(categories: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """The portal pipelines carrying ``key`` as their recorded key, lowest id first.

    Two applies that both created the pipeline leave two of them; the lowest id is the one both keep.
    """
    return sorted((c for c in categories if is_stamped(c) and c["originId"] == key), key=lambda c: int(c["id"]))


def match_pipelines(
    pipelines: list[PipelineConfig], categories: list[dict[str, Any]]
) -> tuple[dict[str, dict[str, Any] | None], list[str]]:
    """Pair each declared pipeline with a portal pipeline (or None: to create); also return problems.

    Order of evidence: ``default = true`` -> id 0; an ``id`` pin; the key recorded on the portal
    (the lowest id when two carry it); the derived key ``pipeline_{id}`` with the same name (a file
    exported from this portal); finally the same name among pipelines without a recorded key (adoption).
    """
    by_id = {int(c["id"]): c for c in categories}
    claimed: set[int] = set()
    result: dict[str, dict[str, Any] | None] = {}
    problems: list[str] = []

    def claim(p: PipelineConfig, c: dict[str, Any]) -> None:
        """Pair a declared pipeline with a portal pipeline that nothing else may take."""
        result[p.key] = c
        claimed.add(int(c["id"]))

    for p in pipelines:
        if not p.default:
            continue
        if 0 in by_id:
            claim(p, by_id[0])
        else:
            problems.append(f"pipeline {p.key!r}: the portal has no default pipeline (id 0)")
            result[p.key] = None
    for p in pipelines:  # an explicit pin wins, even over a key recorded earlier (that is how a key is renamed)
        if p.default or p.id is None:
            continue
        category = by_id.get(p.id)
        if category is None or int(category["id"]) in claimed:
            problems.append(f"pipeline {p.key!r}: pinned id {p.id} does not exist on the portal")
            result[p.key] = None
        else:
            claim(p, category)
    pending = [p for p in pipelines if p.key not in result]
    for p in pending:
        stamped = [c for c in keyed(categories, p.key) if int(c["id"]) not in claimed]
        if stamped:
            claim(p, stamped[0])
    pending = [p for p in pending if p.key not in result]
    for p in pending:  # an export of this very portal: derived key and same name
        for c in categories:
            if int(c["id"]) not in claimed and not is_stamped(c) and portal_key(c) == p.key and c["name"] == p.name:
                claim(p, c)
                break
    for p in pending:
        if p.key in result:
            continue
        same_name = [
            c for c in categories if int(c["id"]) not in claimed and int(c["id"]) != 0 and not is_stamped(c) and c["name"] == p.name
        ]
        if len(same_name) == 1:
            claim(p, same_name[0])
        else:
            result[p.key] = None
    return result, problems
