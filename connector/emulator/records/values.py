"""How a written value is stored (as crm.*.list returns it) and how crm.item types a stored value.

``writer(spec)`` is ``stored_value`` of one field with fast paths for the plain values most writes
carry; ``merge_multi`` applies the multi-field (PHONE, EMAIL...) update rules.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connector.emulator import query
from connector.emulator.records.fields import CURRENCIES, DEFAULT_CURRENCY, INT_TYPES, MULTI_DEFAULT_TYPE, Field

if TYPE_CHECKING:
    from connector.emulator.state import Portal


def number_text(number: float) -> str:
    """A float as PHP prints it (``5`` not ``5.0``)."""
    text = repr(float(number))
    return text[:-2] if text.endswith(".0") else text


def json_number(number: float) -> int | float:
    """A float as JSON carries it: whole numbers as integers."""
    return int(number) if float(number).is_integer() else number


def stored_value(portal: "Portal", spec: Field, value: Any) -> Any:
    """A written value in the form crm.<entity>.list returns it (strings, ``None`` for empty)."""
    kind = spec.type
    if spec.multiple:
        values = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
        single = [stored_value(portal, Field(spec.name, kind, spec.title), v) for v in values]
        return [v for v in single if v is not None]
    if value is None or value == "" or value == []:
        return spec.empty
    if kind in INT_TYPES:
        number = query.coerce("int", value)
        if number is None or (number == 0 and kind != "integer"):
            return spec.empty
        return str(number)
    if kind == "double":
        number = query.coerce("double", value)
        return spec.empty if number is None else f"{number:.2f}"
    if kind == "char":
        return "Y" if query.coerce("bool", value) else "N"
    if kind in ("date", "datetime"):
        moment = query.parse_moment(value, portal.tz)
        if moment is None:
            return spec.empty
        if kind == "date":
            moment = datetime(moment.year, moment.month, moment.day, tzinfo=portal.tz)
        return portal.format_time(moment)
    return str(value)


def writer(spec: Field) -> Callable[["Portal", Any], Any]:
    """``stored_value`` of one field with a fast path for the plain values most writes carry (same results)."""
    kind, empty = spec.type, spec.empty

    def write_other(portal: "Portal", value: Any) -> Any:
        return stored_value(portal, spec, value)

    if spec.multiple or kind in ("date", "datetime"):
        return write_other
    if kind in INT_TYPES:
        zero = "0" if kind == "integer" else empty

        def write_int(portal: "Portal", value: Any) -> Any:
            if value.__class__ is int:
                return str(value) if value else zero
            return stored_value(portal, spec, value)

        return write_int
    if kind == "double":

        def write_double(portal: "Portal", value: Any) -> Any:
            if value.__class__ is int or value.__class__ is float:
                return sys.intern(f"{value:.2f}")  # amounts repeat a lot; one string per amount
            return stored_value(portal, spec, value)

        return write_double
    if kind == "char":

        def write_char(portal: "Portal", value: Any) -> Any:
            if value == "Y" or value == "N":
                return "Y" if value == "Y" else "N"
            return stored_value(portal, spec, value)

        return write_char

    def write_text(portal: "Portal", value: Any) -> Any:
        if value.__class__ is str:
            return value or empty
        return stored_value(portal, spec, value)

    return write_text


def item_value(spec: Field, value: Any) -> Any:
    """A stored legacy value as crm.item types it (ints, numbers; strings stay)."""
    if spec.multiple:
        return [item_value(Field(spec.name, spec.type, spec.title), v) for v in value or ()]
    if value is None or value == "":
        return value if value == "" and spec.type in ("string", "char") else spec.item_empty
    if spec.type in INT_TYPES:
        return query.coerce("int", value)
    if spec.type == "double":
        return json_number(float(value))
    return value


def merge_multi(portal: "Portal", type_id: str, current: list[dict[str, Any]], items: Any) -> list[dict[str, Any]]:
    """Multi-field update semantics: change by ID, delete by ID + DELETE=Y or empty VALUE, append without ID."""
    if isinstance(items, dict):
        items = list(items.values())
    elif not isinstance(items, list):
        items = [items]
    result = [dict(item) for item in current or ()]
    for item in items:
        if not isinstance(item, dict):
            item = {"VALUE": item}
        item = {str(k).upper(): v for k, v in item.items()}
        value = item.get("VALUE")
        value = "" if value is None else str(value).strip()
        item_id = str(item.get("ID") or "").strip()
        existing = next((x for x in result if x["ID"] == item_id), None) if item_id else None
        if existing is not None:
            if str(item.get("DELETE", "")).upper() == "Y" or not value:
                result.remove(existing)
            else:
                existing["VALUE"] = value
                if item.get("VALUE_TYPE"):
                    existing["VALUE_TYPE"] = str(item["VALUE_TYPE"])
        elif value and str(item.get("DELETE", "")).upper() != "Y":
            result.append({
                "ID": str(portal.next_id("multifield")),
                "VALUE_TYPE": str(item.get("VALUE_TYPE") or MULTI_DEFAULT_TYPE[type_id]),
                "VALUE": value,
                "TYPE_ID": type_id,
            })
    return result


_CURRENCY_TEXT = {code: code for code in CURRENCIES}  # one string object per currency code


def currency_code(stored: str | None) -> str | None:
    """CURRENCY_ID after a write: the known code (one shared string each), the default when none is
    stored, None for an unknown currency (the caller refuses it)."""
    if stored is None:
        return DEFAULT_CURRENCY
    return _CURRENCY_TEXT.get(stored.upper())
