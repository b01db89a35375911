"""Pure functions from a Bitrix24 REST record to mirror rows: ids, money, dates with offsets, flags, UF_*.

Nothing here does I/O. Every parser takes whatever a portal may send (strings in legacy lists,
ints in stage history and crm.item, ``""`` or ``None`` for empty) and returns the typed value or
raises ``FieldError``, never anything else.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from mappings import entities as ent

UTC = timezone.utc
_CENT = Decimal("0.01")
_MONEY_LIMIT = Decimal("1e18")  # NUMERIC(20,2)
_OFFSET_RE = re.compile(r"^([+-])(\d{2}):?(\d{2})$", re.ASCII)
_RU_DATE_RE = re.compile(r"^(\d{2})\.(\d{2})\.(\d{4})(?:[ T](.*))?$", re.ASCII | re.S)
_INT_RE = re.compile(r"^[+-]?\d{1,19}$", re.ASCII)
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?$", re.ASCII)
_TRUE = frozenset({"Y", "1", "TRUE", "YES", "ON"})
_FALSE = frozenset({"N", "0", "FALSE", "NO", "OFF"})


class FieldError(ValueError):
    """A value that cannot be read as its declared type; the message names the value (never a secret)."""


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "") or (isinstance(value, (list, dict)) and not value)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ---------------------------------------------------------------- scalars


def parse_id(value: Any) -> int | None:
    """An ID or other integer: ``"37"``, ``37``, ``"  37 "`` -> 37; empty -> None."""
    if type(value) is str and 0 < len(value) < 19 and value.isascii() and value.isdigit():
        return int(value)  # the common case, first
    if _empty(value):
        return None
    if isinstance(value, bool):
        raise FieldError(f"{_short(value)} is not an integer")
    if isinstance(value, int):
        if abs(value) >= 2**63:
            raise FieldError(f"{_short(value)} is too large for an integer column")
        return value
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer():
            raise FieldError(f"{_short(value)} is not an integer")
        return parse_id(int(value))
    if isinstance(value, str):
        text = value.strip()
        if _INT_RE.match(text):
            return parse_id(int(text))
        if text.endswith(".0") and _INT_RE.match(text[:-2]):  # "5.0" as PHP prints some floats
            return parse_id(int(text[:-2]))
    raise FieldError(f"{_short(value)} is not an integer")


def parse_int(value: Any) -> int | None:
    """A small integer (PROBABILITY, SORT, TYPE_ID); the same rules as ``parse_id`` within 32 bits."""
    number = parse_id(value)
    if number is not None and abs(number) >= 2**31:
        raise FieldError(f"{_short(value)} is too large for an integer column")
    return number


def parse_money(value: Any) -> Decimal | None:
    """An amount as an exact Decimal with two places: ``"19999.99"``, ``100``, ``100.5`` -> Decimal; empty -> None."""
    if _empty(value):
        return None
    if isinstance(value, bool):
        raise FieldError(f"{_short(value)} is not an amount")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise FieldError(f"{_short(value)} is not an amount")
        amount = Decimal(repr(value))
    elif isinstance(value, str) and _NUMBER_RE.match(value.strip()):
        amount = Decimal(value.strip())
    else:
        raise FieldError(f"{_short(value)} is not an amount")
    if not amount.is_finite() or abs(amount) >= _MONEY_LIMIT:
        raise FieldError(f"{_short(value)} is not an amount that fits NUMERIC(20,2)")
    try:
        return amount.quantize(_CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation:
        raise FieldError(f"{_short(value)} is not an amount") from None


def parse_flag(value: Any) -> bool | None:
    """Y/N (also 1/0, true/false) -> bool; empty -> None."""
    if value == "Y" or value is True:
        return True
    if value == "N" or value is False:
        return False
    if _empty(value):
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().upper()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise FieldError(f"{_short(value)} is not a Y/N flag")


def parse_text(value: Any) -> str | None:
    """Text as the portal sent it; numbers become their text, lists and objects JSON; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.replace("\x00", "")  # PostgreSQL text cannot hold NUL
    if isinstance(value, bool):
        return "Y" if value else "N"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    try:
        return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str).replace("\\u0000", "")
    except (TypeError, ValueError):
        raise FieldError(f"{_short(value)} is not text") from None


def parse_json(value: Any) -> Any:
    """A value kept as JSON (the raw record, department ids, multiple user fields), NUL characters removed.

    PostgreSQL's JSONB cannot hold ``\\u0000``; everything else is kept exactly. The value must be
    JSON data (objects, arrays, strings, finite numbers, booleans, null).
    """
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        raise FieldError(f"{_short(value)} cannot be stored as JSON") from None
    return _without_nul(value)


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "") if "\x00" in value else value
    if isinstance(value, dict):
        return {(_without_nul(k) if isinstance(k, str) else k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


# ---------------------------------------------------------------- time


def parse_offset(text: Any) -> timezone:
    """``+03:00`` (or ``+0300``) -> a fixed-offset timezone."""
    match = _OFFSET_RE.match(str(text).strip()) if isinstance(text, str) else None
    if not match:
        raise FieldError(f"{_short(text)} is not a UTC offset like +03:00")
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta >= timedelta(hours=24) or int(minutes) >= 60:
        raise FieldError(f"{_short(text)} is not a UTC offset like +03:00")
    return timezone(-delta if sign == "-" else delta)


def format_offset(tz: tzinfo | None) -> str:
    """A fixed timezone as Bitrix24 prints it: ``+03:00``."""
    delta = (tz.utcoffset(None) if tz is not None else None) or timedelta(0)
    sign = "-" if delta < timedelta(0) else "+"
    minutes = abs(int(delta.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def parse_moment(value: Any, portal_tz: tzinfo) -> datetime | None:
    """A portal date or datetime as an aware datetime (its own offset kept); naive values are read in ``portal_tz``.

    Accepts ISO 8601 (``2024-09-02T17:48:35+02:00``, ``2024-09-02 17:48:35``, ``2024-09-02``, a
    trailing ``Z``) and the Russian site format (``02.09.2024 17:48:35``). Empty -> None.
    """
    if _empty(value):
        return None
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        text = value.strip()
        ru = _RU_DATE_RE.match(text)
        if ru:
            day, month, year, rest = ru.groups()
            text = f"{year}-{month}-{day}" + (f"T{rest.strip()}" if rest else "")
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise FieldError(f"{_short(value)} is not a date or time") from None
    else:
        raise FieldError(f"{_short(value)} is not a date or time")
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=portal_tz)
    try:
        moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise FieldError(f"{_short(value)} is out of range") from None
    return moment


_MOMENTS: dict[tuple[str, tzinfo, str], Any] = {}  # (text, portal offset, kind) -> parsed: the same stamps repeat a lot
_MOMENTS_MAX = 50_000


def _cached(kind: str, value: Any, portal_tz: tzinfo, parse: Any) -> Any:
    if type(value) is not str:
        return parse(value, portal_tz)
    key = (value, portal_tz, kind)
    found = _MOMENTS.get(key, _MOMENTS)
    if found is _MOMENTS:
        found = parse(value, portal_tz)
        if len(_MOMENTS) >= _MOMENTS_MAX:
            _MOMENTS.clear()
        _MOMENTS[key] = found
    return found


def _datetime(value: Any, portal_tz: tzinfo) -> datetime | None:
    moment = parse_moment(value, portal_tz)
    return None if moment is None else moment.astimezone(UTC)


def parse_datetime(value: Any, portal_tz: tzinfo) -> datetime | None:
    """A portal datetime in UTC (the offset it carries is applied, never dropped); empty -> None."""
    return _cached("datetime", value, portal_tz, _datetime)


def parse_date(value: Any, portal_tz: tzinfo) -> date | None:
    """A date-typed field as the portal-local calendar date (see ``_date``)."""
    return _cached("date", value, portal_tz, _date)


def _date(value: Any, portal_tz: tzinfo) -> date | None:
    """A date-typed field as the portal-local calendar date.

    BEGINDATE/CLOSEDATE/BIRTHDATE are calendar dates the portal prints as its local midnight
    (``2024-08-30T00:00:00+03:00``, or ``+02:00`` once its offset changed for winter): the date
    is the one printed, in the value's own offset, never shifted to UTC or to another offset.
    Empty -> None.
    """
    moment = parse_moment(value, portal_tz)
    return None if moment is None else moment.date()


def portal_time(block: Any) -> datetime:
    """The moment a reply's ``time`` block says the call started, aware in the portal's offset.

    ``date_start`` carries the portal offset; without it, ``start`` (unix seconds) in UTC.
    """
    if isinstance(block, Mapping):
        text = block.get("date_start")
        if isinstance(text, str) and text:
            moment = parse_moment(text, UTC)
            if moment is not None and moment.tzinfo is not None and _has_offset(text):
                return moment
        start = block.get("start")
        if isinstance(start, (int, float)) and not isinstance(start, bool) and math.isfinite(start):
            try:
                return datetime.fromtimestamp(float(start), UTC).replace(microsecond=0)
            except (OverflowError, OSError, ValueError):
                pass
    raise FieldError("the reply has no usable time block (date_start)")


def _has_offset(text: str) -> bool:
    return bool(re.search(r"([+-]\d{2}:?\d{2}|[Zz])$", text.strip(), re.ASCII))


def to_filter_time(moment: datetime, portal_tz: tzinfo) -> str:
    """A moment as a filter value the portal reads unambiguously: ISO 8601 in the portal's offset."""
    return moment.astimezone(portal_tz).replace(microsecond=0).isoformat()


# ---------------------------------------------------------------- rows

PARSERS = {
    ent.ID: lambda value, tz: parse_id(value),
    ent.INT: lambda value, tz: parse_int(value),
    ent.MONEY: lambda value, tz: parse_money(value),
    ent.TEXT: lambda value, tz: parse_text(value),
    ent.FLAG: lambda value, tz: parse_flag(value),
    ent.DATE: parse_date,
    ent.DATETIME: parse_datetime,
    ent.JSON: lambda value, tz: parse_json(value),
}


def parse_value(kind: str, value: Any, portal_tz: tzinfo) -> Any:
    """One value of a column kind."""
    return PARSERS[kind](value, portal_tz)


def record_id(stream: ent.Stream, record: Mapping[str, Any]) -> int:
    """The primary key of a record (FieldError when it has none)."""
    if not isinstance(record, Mapping):
        raise FieldError(f"{stream.name}: a record is {type(record).__name__}, not an object")
    value = parse_id(record.get(stream.id_field))
    if value is None:
        raise FieldError(f"{stream.name}: a record has no {stream.id_field}")
    return value


def typed_columns(
    stream: ent.Stream, record: Mapping[str, Any], portal_tz: tzinfo, problems: list[str] | None = None
) -> dict[str, Any]:
    """The declared columns of one record; a value that does not parse becomes NULL (and a problem), raw keeps it."""
    row: dict[str, Any] = {}
    get = record.get
    for rest, name, parse in _plan(stream):
        value = get(rest)
        if value is None:
            row[name] = None
            continue
        try:
            row[name] = parse(value, portal_tz)
        except FieldError as exc:
            if name == "id":
                raise
            row[name] = None
            if problems is not None:
                problems.append(f"{stream.name} {get(stream.id_field)}: {rest}: {exc}")
    return row


_PLANS: dict[str, list[tuple[str, str, Any]]] = {}


def _plan(stream: ent.Stream) -> list[tuple[str, str, Any]]:
    plan = _PLANS.get(stream.name)
    if plan is None:
        plan = _PLANS[stream.name] = [(c.rest, c.name, PARSERS[c.kind]) for c in stream.columns]
    return plan


def record_row(
    stream: ent.Stream,
    record: Mapping[str, Any],
    portal_tz: tzinfo,
    synced_at: datetime,
    problems: list[str] | None = None,
) -> dict[str, Any]:
    """The ``crm_*``/``users``/dictionary row of one REST record: typed columns, ``raw``, ``synced_at``."""
    record_id(stream, record)
    row = typed_columns(stream, record, portal_tz, problems)
    row["raw"] = raw_json(record)
    row["deleted_at"] = None
    row["synced_at"] = synced_at
    return row


def raw_json(record: Mapping[str, Any]) -> dict[str, Any]:
    """A decoded REST record as stored in ``raw``: the same data, NUL characters removed (JSONB cannot hold them).

    The record came out of a JSON reply, so it is JSON data already; only its strings are checked,
    and it is copied only when one holds a NUL.
    """
    if _has_nul(record):
        return parse_json(dict(record))
    return record if type(record) is dict else dict(record)  # the decoded reply's own dict: no copy


def _has_nul(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return "\x00" in value
    if kind is dict:
        return any(_has_nul(v) or (type(k) is str and "\x00" in k) for k, v in value.items())
    if kind is list:
        return any(_has_nul(v) for v in value)
    return False


def multifield_rows(stream: ent.Stream, record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Phones, e-mails, web and messenger addresses of one record as ``crm_multifield`` rows."""
    owner = record_id(stream, record)
    rows: list[dict[str, Any]] = []
    for type_id in stream.multi_fields:
        items = record.get(type_id)
        if isinstance(items, Mapping):
            items = list(items.values())
        if not isinstance(items, list):
            continue
        for item in items:
            if not isinstance(item, Mapping):
                continue
            item_id = parse_id(item.get("ID"))
            if item_id is None:
                continue
            rows.append({
                "entity_type_id": stream.entity_type_id,
                "owner_id": owner,
                "item_id": item_id,
                "type_id": parse_text(item.get("TYPE_ID")) or type_id,
                "value_type": parse_text(item.get("VALUE_TYPE")),
                "value": parse_text(item.get("VALUE")),
            })
    return rows


def history_row(stream: ent.Stream, item: Mapping[str, Any], portal_tz: tzinfo, seen_at: datetime) -> dict[str, Any]:
    """A stage-history row (integer or string values alike) with ``raw`` and ``first_seen_at``."""
    record_id(stream, item)
    row = typed_columns(stream, item, portal_tz)
    row["raw"] = raw_json(item)
    row["first_seen_at"] = seen_at
    row["deleted_at"] = None
    return row


_STAGE_DICTIONARY_RE = re.compile(r"^(STATUS|DEAL_STAGE(_\d+)?|QUOTE_STATUS|SMART_INVOICE_STAGE_\d+|DYNAMIC_\d+_STAGE_\d+|SMART_DOCUMENT_STAGE_\d+)$")


def is_stage_dictionary(entity_id: Any) -> bool:
    """True for dictionaries whose rows are stages (lead statuses, deal stages, quote and SPA stages)."""
    return isinstance(entity_id, str) and bool(_STAGE_DICTIONARY_RE.match(entity_id))


def status_row(item: Mapping[str, Any], synced_at: datetime) -> dict[str, Any]:
    """A ``crm_status`` row: stage dictionaries get semantics P/S/F and a pipeline id (0 for the default)."""
    stream = ent.STREAMS["status"]
    row = record_row(stream, item, UTC, synced_at)
    entity_id = item.get("ENTITY_ID")
    if is_stage_dictionary(entity_id):
        semantics = str(item.get("SEMANTICS") or "").strip().upper()
        row["semantics"] = semantics if semantics in ("S", "F") else "P"
        category = parse_id(item.get("CATEGORY_ID"))
        if category is None and isinstance(entity_id, str) and entity_id.startswith("DEAL_STAGE_"):
            category = parse_id(entity_id.rsplit("_", 1)[1])
        row["category_id"] = category or 0
    else:
        row["semantics"] = None
        row["category_id"] = None
    return row


def category_row(item: Mapping[str, Any], synced_at: datetime) -> dict[str, Any]:
    """A ``crm_deal_category`` row (the default pipeline is id 0)."""
    return record_row(ent.STREAMS["deal_category"], item, UTC, synced_at)


def user_row(item: Mapping[str, Any], portal_tz: tzinfo, synced_at: datetime, problems: list[str] | None = None) -> dict[str, Any]:
    """A ``users`` row; ``name`` is first + last name as BI Builder's ``user.NAME``."""
    row = record_row(ent.STREAMS["user"], item, portal_tz, synced_at, problems)
    parts = [row.get("first_name"), row.get("last_name")]
    row["name"] = " ".join(p.strip() for p in parts if p and p.strip()) or None
    return row


# ---------------------------------------------------------------- user fields

LABEL_KEYS = ("LIST_COLUMN_LABEL", "EDIT_FORM_LABEL", "LIST_FILTER_LABEL")
LANGS = ("ru", "en", "de", "ua", "kz", "by")


def userfield_label(item: Mapping[str, Any]) -> str:
    """The label people see for a user field: the first non-empty list/form label, else its FIELD_NAME."""
    for key in LABEL_KEYS:
        value = item.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
        if isinstance(value, Mapping):
            langs = [lang for lang in LANGS if lang in value] + sorted(k for k in value if k not in LANGS)
            for lang in langs:
                text = value.get(lang)
                if isinstance(text, str) and text.strip():
                    return text.strip()
    return parse_text(item.get("FIELD_NAME")) or ""


def enum_options(item: Mapping[str, Any]) -> dict[str, str]:
    """``{option ID: VALUE}`` of an enumeration field's ``LIST``."""
    options = item.get("LIST")
    if isinstance(options, Mapping):
        options = list(options.values())
    found: dict[str, str] = {}
    for option in options if isinstance(options, list) else ():
        if isinstance(option, Mapping) and not _empty(option.get("ID")):
            found[str(option["ID"]).strip()] = parse_text(option.get("VALUE")) or ""
    return found


def userfield_row(
    item: Mapping[str, Any], previous: Mapping[str, Any] | None, seen_at: datetime
) -> dict[str, Any]:
    """A ``crm_userfield`` row: the current label, the first label ever seen, every enum option ever seen."""
    field_name = parse_text(item.get("FIELD_NAME"))
    entity_id = parse_text(item.get("ENTITY_ID"))
    if not field_name or not entity_id:
        raise FieldError("a user field without ENTITY_ID or FIELD_NAME")
    label = userfield_label(item)
    options = dict((previous or {}).get("enum_items") or {})
    options.update(enum_options(item))
    return {
        "entity_id": entity_id,
        "field_name": field_name,
        "id": parse_id(item.get("ID")),
        "user_type_id": parse_text(item.get("USER_TYPE_ID")),
        "multiple": parse_flag(item.get("MULTIPLE")) or False,
        "sort": _lenient(parse_int, item.get("SORT")),
        "label": label,
        "first_label": (previous or {}).get("first_label") or label,
        "enum_items": options or None,
        "raw": parse_json(dict(item)),
        "first_seen_at": (previous or {}).get("first_seen_at") or seen_at,
        "deleted_at": None,
        "synced_at": seen_at,
    }


def _lenient(parse: Any, value: Any) -> Any:
    try:
        return parse(value)
    except FieldError:
        return None


def enum_label(value: Any, options: Mapping[str, str] | None) -> str | None:
    """The label of an enumeration value (several values: labels joined with ``", "`` as BI does)."""
    if _empty(value):
        return None
    values = value if isinstance(value, list) else [value]
    labels = []
    for one in values:
        if _empty(one) or isinstance(one, (list, dict)):
            continue
        key = str(one).strip()
        labels.append((options or {}).get(key, key))
    return ", ".join(labels) or None


def uf_row(
    stream: ent.Stream,
    record: Mapping[str, Any],
    columns: Mapping[str, str],
    userfields: Mapping[str, Mapping[str, Any]],
    portal_tz: tzinfo,
    synced_at: datetime,
    problems: list[str] | None = None,
) -> dict[str, Any]:
    """The ``crm_*_uf`` row of one record: base columns, then each user field the record carries.

    ``columns`` maps the table's user-field columns to their kinds (as they exist in the table);
    ``userfields`` the field names to their ``crm_userfield`` rows (for enumeration labels). A field
    the record does not carry (deleted on the portal) is left out, so what was stored stays.
    """
    key = record_id(stream, record)
    assert stream.uf_key is not None
    row: dict[str, Any] = {stream.uf_key: key, "synced_at": synced_at}
    for column in stream.uf_base:
        row[column.name] = _lenient(lambda v: parse_value(column.kind, v, portal_tz), record.get(column.rest))
    for name, value in record.items():
        if type(name) is not str or name[:3] != "UF_":
            continue
        column = name.lower()
        kind = columns.get(column)
        if kind is None:
            continue
        if kind == ent.JSON and not isinstance(value, list) and not _empty(value):
            value = [value]
        try:
            row[column] = parse_value(kind, value, portal_tz)
        except FieldError as exc:
            row[column] = None
            if problems is not None:
                problems.append(f"{stream.name} {key}: {name}: {exc}")
        if f"{column}_label" in columns:
            definition = userfields.get(name) or userfields.get(name.upper()) or {}
            row[f"{column}_label"] = enum_label(value, definition.get("enum_items"))
    return row


def uf_names(record: Mapping[str, Any]) -> Iterable[str]:
    """The user-field names a record carries."""
    return (name for name in record if type(name) is str and name[:3] == "UF_")
