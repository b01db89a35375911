"""Protocol facts that both sides of the connector need: the client, the jobs and the emulator import them.

- CRM entity type ids as Bitrix24 numbers them (1 lead, 2 deal, 3 contact, 4 company, ...);
- how a deal pipeline names its stage dictionary (``DEAL_STAGE``, ``DEAL_STAGE_N``, the ``CN:`` prefix);
- how a list method pages (where its rows are, its ID field, its sort parameters);
- which methods change the portal (a lost reply to such a call must not be blindly repeated, and the
  emulator counts them as writes);
- what a method name may look like (nothing else may reach the URL path).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# ---------------------------------------------------------------- CRM entity types

LEAD = 1
DEAL = 2
CONTACT = 3
COMPANY = 4
QUOTE = 7
SMART_INVOICE = 31

ENTITY_TYPE_IDS: dict[str, int] = {"lead": LEAD, "deal": DEAL, "contact": CONTACT, "company": COMPANY}
ENTITY_NAMES: dict[int, str] = {v: k for k, v in ENTITY_TYPE_IDS.items()}
# names the portal uses in "Entity type X is not supported" messages
TYPE_LABELS: dict[int, str] = {
    LEAD: "LEAD", DEAL: "DEAL", CONTACT: "CONTACT", COMPANY: "COMPANY", 5: "INVOICE", QUOTE: "QUOTE",
    SMART_INVOICE: "SMART_INVOICE",
}

# ---------------------------------------------------------------- stage dictionaries

LEAD_STATUS = "STATUS"  # ENTITY_ID of the lead statuses in crm.status
DEAL_STAGE = "DEAL_STAGE"  # ENTITY_ID of the default pipeline's stages; DEAL_STAGE_N for pipeline N


def _category(category_id: int | str | None) -> int:
    return int(category_id or 0)


def stage_entity_id(category_id: int | str | None) -> str:
    """ENTITY_ID of a deal pipeline's stages: ``DEAL_STAGE`` for 0, ``DEAL_STAGE_N`` otherwise."""
    category = _category(category_id)
    return DEAL_STAGE if category == 0 else f"{DEAL_STAGE}_{category}"


def stage_prefix(category_id: int | str | None) -> str:
    """STATUS_ID prefix of a deal pipeline's stages: "" for 0, ``C{N}:`` otherwise."""
    category = _category(category_id)
    return "" if category == 0 else f"C{category}:"


# ---------------------------------------------------------------- method names

_METHOD_NAME = re.compile(r"[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*")
MAX_METHOD_NAME = 200


class InvalidMethodName(ValueError):
    """A method name that is not ``[A-Za-z0-9_.]+`` (no ``..``): it would change the URL it is sent to."""


def check_method(method: object) -> str:
    """``method`` when it is a valid method name (``crm.deal.list``, ``batch``), else ``InvalidMethodName``.

    Only letters, digits, ``_`` and single dots between them reach the URL path: no ``/``, ``?``,
    ``#``, ``%`` or ``..`` that would point the call elsewhere.
    """
    if isinstance(method, str) and len(method) <= MAX_METHOD_NAME and _METHOD_NAME.fullmatch(method):
        return method
    raise InvalidMethodName(f"not a Bitrix24 method name ({_why_not(method)}): use letters, digits, _ and single dots, e.g. crm.deal.list")


def _why_not(method: object) -> str:
    """What is wrong with a method name, without echoing it (a pasted webhook URL holds a secret)."""
    if not isinstance(method, str):
        return f"a {type(method).__name__}, not text"
    if not method:
        return "empty"
    if len(method) > MAX_METHOD_NAME:
        return f"longer than {MAX_METHOD_NAME} characters"
    for index, char in enumerate(method):
        if not (char.isascii() and (char.isalnum() or char in "_.")):
            return f"{char!r} at position {index + 1}"
    if ".." in method:
        return "'..' in it"
    return "a dot at its start or end"


def canonical(method: str) -> str:
    """A method name as the portal treats it: case-insensitive, ``.json`` suffix dropped."""
    name = method.strip().lower()
    return name[: -len(".json")] if name.endswith(".json") else name


# ---------------------------------------------------------------- list shapes


@dataclass(frozen=True)
class ListShape:
    """How a list method pages: where its rows are, its ID field, and its sort parameters."""

    items_key: str | None = None  # rows are result[items_key] instead of result itself
    id_field: str = "ID"
    sort_style: bool = False  # user.get: sort="ID", order="ASC" instead of order={"ID": "ASC"}
    counts: bool = False  # True: send start=0 (the method may not know start=-1)


SHAPES: dict[str, ListShape] = {
    "crm.item.list": ListShape("items", "id"),
    "crm.stagehistory.list": ListShape("items", "ID"),
    "user.get": ListShape(None, "ID", sort_style=True, counts=True),
}


def shape_of(method: str) -> ListShape:
    """The paging shape of a list method (legacy ``crm.*.list`` by default)."""
    return SHAPES.get(canonical(method), ListShape())


def is_list_method(method: str) -> bool:
    """True for a method a keyset export can page through: ``*.list`` or one ``SHAPES`` knows (``user.get``)."""
    name = canonical(method)
    return name.endswith(".list") or name in SHAPES


# ---------------------------------------------------------------- which methods write

# the last part of a method name that only reads
READ_VERBS = frozenset({"list", "get", "fields", "types", "items", "current", "search", "info", "count", "time"})
# whole names that only read although their last part is not a read verb
READ_METHODS = frozenset({
    "profile", "methods", "scope", "method.get", "events", "feature.get", "app.info", "user.access",
    "crm.dealcategory.status",  # returns the ENTITY_ID of a pipeline's stages
})


def is_write(method: str, params: Mapping[str, Any] | None = None) -> bool:
    """True when ``method`` may change the portal: a lost reply to it must not be repeated blindly.

    ``event.offline.get`` deletes what it returns unless ``clear=0``. With ``clear=0`` it only reserves
    the records under a process_id; that changes the queue, but repeating it loses nothing the first
    call did not already hold back (a lost reply's records stay reserved either way, and stay listed by
    ``event.offline.list`` with their PROCESS_ID), so it counts as a read: repeating it is how a reader
    gets on after a lost reply. ``batch`` writes when one of
    its commands does (``cmd`` as ``method?query`` strings); a batch whose commands are not given
    counts as a write.
    """
    name = canonical(method)
    if name == "batch":
        commands = _commands(params)
        if not commands:
            return True
        return any(is_write(*_split_command(text)) for text in commands)
    if name == "event.offline.get":
        clear = next((v for k, v in (params or {}).items() if str(k).lower() == "clear"), 1)
        return str(clear).strip().lower() not in ("0", "false", "n", "")
    if name in READ_METHODS:
        return False
    return name.rsplit(".", 1)[-1] not in READ_VERBS


def _split_command(text: Any) -> tuple[str, dict[str, Any]]:
    """A batch command ``method?query`` as (method, parameters)."""
    from connector.encoding import decode_query

    method, _, query = str(text).partition("?")
    return method, decode_query(query) if query else {}


def _commands(params: Mapping[str, Any] | None) -> list[Any]:
    if not params:
        return []
    cmd = next((value for key, value in params.items() if str(key).lower() == "cmd"), None)
    if isinstance(cmd, Mapping):
        return list(cmd.values())
    if isinstance(cmd, (list, tuple)):
        return list(cmd)
    return []
