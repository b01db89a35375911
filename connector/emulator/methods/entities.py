"""CRM records of the emulator: leads, deals, contacts, companies, their user fields and stage history.

Legacy ``crm.{lead,deal,contact,company}.*`` and the universal ``crm.item.*`` read and write the
same records in ``portal.records`` (legacy UPPER_CASE names, values typed exactly as crm.*.list
returns them). One field table per entity (``ENTITIES``) declares each field's type, title, flags
and its crm.item camelCase name, so both APIs and ``crm.*.fields`` come from one declaration.

Rules reproduced (sources in ``/work/shared/bitrix24-rest.md`` §8, §9):

- add returns the integer id, update/delete ``true``; unknown and read-only fields are ignored;
  errors use the empty code with HTTP 400 ("ID is not defined or invalid.", "Not found",
  "Parameter 'fields' must be array.", ``Invalid value for the "Currency" field``).
- deals: CATEGORY_ID defaults to 0 (or the pipeline of a prefixed STAGE_ID) and is immutable
  through crm.deal.update, which also ignores a STAGE_ID of another pipeline; only
  ``crm.item.update`` with ``categoryId`` moves a deal (TYPE_ID 5 history row and
  ``ONCRMDEALMOVETOCATEGORY``). An unknown stage/status is refused with the documented
  "Invalid value for ... field" wording (crm.item: ``CRM_FIELD_ERROR_VALUE_NOT_VALID``) [inferred].
- stage history rows exactly as crm.stagehistory.list returns them (ints); a deal's rows are
  listed only for its current pipeline and a deleted record's rows disappear.
- multi-fields (PHONE, EMAIL, WEB, IM): ID + VALUE changes an item, ID + DELETE=Y or an empty
  VALUE deletes it, an item without ID is appended, omitted items stay.
- CONTACT_IDS (deals) and COMPANY_IDS (contacts) are kept on the record but, as documented, never
  returned by the legacy get/list (crm.item returns them as ``contactIds``/``companyIds``).
- LEAD_ID of deals/contacts/companies is writable here (crm.item.add documents ``leadId``), so
  a seeded portal can link converted leads through either API.
- a write made with ``auth_connector`` is not queued for the offline bindings with that same key
  (events/offline-events.md, "How to avoid cycles"); other bindings still get it.
"""

from __future__ import annotations

import re
import sys
import weakref
from bisect import bisect_left, insort
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from connector.emulator import costs, pipelines, query
from connector.emulator.registry import ApiError, Call, Result, method
from connector.catalog import ENTITY_NAMES

if TYPE_CHECKING:
    from connector.emulator.state import Portal


# ============================================================================ declarations


@dataclass(frozen=True)
class Field:
    """One standard field of an entity, as crm.<entity>.fields describes it."""

    name: str  # legacy UPPER_CASE name
    type: str  # Bitrix24 type (integer, double, char, string, datetime, date, crm_status, user, ...)
    title: str
    camel: str = ""  # crm.item name; "" derives it from ``name``
    read_only: bool = False
    immutable: bool = False
    multiple: bool = False
    status_type: str | None = None
    listed: bool = True  # False: kept on the record, not returned by legacy get/list
    empty: Any = None  # stored value of an unset field
    item_empty: Any = None  # crm.item value of an unset field
    settings: Mapping[str, Any] | None = None

    @property
    def item_name(self) -> str:
        """The crm.item (camelCase) name."""
        return self.camel or camel_case(self.name)


MULTI_FIELDS = ("PHONE", "EMAIL", "WEB", "IM")
MULTI_DEFAULT_TYPE = {"PHONE": "WORK", "EMAIL": "WORK", "WEB": "WORK", "IM": "OTHER"}
_INT_TYPES = {"integer", "user", "crm_company", "crm_contact", "crm_lead", "crm_quote", "crm_category"}
CURRENCIES = {"RUB", "USD", "EUR", "UAH", "BYN", "KZT", "CNY", "GBP"}
DEFAULT_CURRENCY = "RUB"


def camel_case(name: str) -> str:
    """``ASSIGNED_BY_ID`` -> ``assignedById``; ``UF_CRM_1721244482250`` -> ``ufCrm_1721244482250``.

    An underscore before a letter is dropped and the letter raised; one before a digit stays, which
    is how the universal API names user fields (``ufCrm_1720019876534`` in the docs).
    """
    return re.sub(r"_([a-z])", lambda m: m.group(1).upper(), name.lower())


def _f(name: str, type_: str, title: str = "", **flags: Any) -> Field:
    return Field(name, type_, title or name, **flags)


def _ro(name: str, type_: str, title: str = "", **flags: Any) -> Field:
    return Field(name, type_, title or name, read_only=True, **flags)


def _multi() -> tuple[Field, ...]:
    return tuple(Field(name, "crm_multifield", name.title(), multiple=True, camel="fm") for name in MULTI_FIELDS)


_ADDRESS = tuple(
    _f(name, "string", title)
    for name, title in (
        ("ADDRESS", "Street address"),
        ("ADDRESS_2", "Address (line 2)"),
        ("ADDRESS_CITY", "City"),
        ("ADDRESS_POSTAL_CODE", "Zip"),
        ("ADDRESS_REGION", "Region"),
        ("ADDRESS_PROVINCE", "State / Province"),
        ("ADDRESS_COUNTRY", "Country"),
        ("ADDRESS_COUNTRY_CODE", "Country Code"),
        ("ADDRESS_LOC_ADDR_ID", "Location address ID"),
    )
)
_UTM = tuple(
    _f(name, "string", title)
    for name, title in (
        ("UTM_SOURCE", "Advertising System"),
        ("UTM_MEDIUM", "Traffic Type"),
        ("UTM_CAMPAIGN", "Campaign Identifier"),
        ("UTM_CONTENT", "Campaign Content"),
        ("UTM_TERM", "Campaign Search Condition"),
    )
)
_AUDIT = (
    _f("ASSIGNED_BY_ID", "user", "Responsible"),
    _ro("CREATED_BY_ID", "user", "Created By", camel="createdBy"),
    _ro("MODIFY_BY_ID", "user", "Modified By", camel="updatedBy"),
    _ro("DATE_CREATE", "datetime", "Creation Date", camel="createdTime"),
    _ro("DATE_MODIFY", "datetime", "Modification Date", camel="updatedTime"),
)
_ACTIVITY = (
    _ro("LAST_ACTIVITY_TIME", "datetime"),
    _ro("LAST_ACTIVITY_BY", "user"),
)
_ORIGIN = (
    _f("ORIGINATOR_ID", "string", "External Source"),
    _f("ORIGIN_ID", "string", "Identifier in External Source"),
)
_HAS = (
    _ro("HAS_PHONE", "char", "Has phone", empty="N"),
    _ro("HAS_EMAIL", "char", "Has e-mail", empty="N"),
    _ro("HAS_IMOL", "char", "Has Open Channel", empty="N"),
)
_MONEY = {"empty": "0.00"}

DEAL_FIELDS = (
    _ro("ID", "integer", "ID"),
    _f("TITLE", "string", "Title"),
    _f("TYPE_ID", "crm_status", "Type", status_type="DEAL_TYPE"),
    _f("CATEGORY_ID", "crm_category", "Sales Funnel", immutable=True, empty="0", item_empty=0),
    _f("STAGE_ID", "crm_status", "Deal Stage", status_type="DEAL_STAGE"),
    _ro("STAGE_SEMANTIC_ID", "string", "Stage Group"),
    _ro("IS_NEW", "char", "New Deal", empty="N"),
    _f("IS_RECURRING", "char", "Recurring Deal", empty="N"),
    _f("IS_RETURN_CUSTOMER", "char", "Repeat Deal", empty="N"),
    _f("IS_REPEATED_APPROACH", "char", "Repeated Approach", empty="N"),
    _f("PROBABILITY", "integer", "Probability"),
    _f("CURRENCY_ID", "crm_currency", "Currency"),
    _f("OPPORTUNITY", "double", "Amount", **_MONEY),
    _f("IS_MANUAL_OPPORTUNITY", "char", "IS_MANUAL_OPPORTUNITY", empty="N"),
    _f("TAX_VALUE", "double", "Tax Rate", **_MONEY),
    _f("COMPANY_ID", "crm_company", "Company", item_empty=0, settings={"parentEntityTypeId": 4}),
    _f("CONTACT_ID", "crm_contact", "Contact", item_empty=0),
    _f("CONTACT_IDS", "crm_contact", "Contacts", multiple=True, listed=False, empty=()),
    _ro("QUOTE_ID", "crm_quote", "Estimate", settings={"parentEntityTypeId": 7}),
    _f("BEGINDATE", "date", "Start Date"),
    _f("CLOSEDATE", "date", "Close Date"),
    _f("OPENED", "char", "Available to All", empty="Y"),
    _f("CLOSED", "char", "Closed", empty="N"),
    _f("COMMENTS", "string", "Comment"),
    *_AUDIT[:3],
    _ro("MOVED_BY_ID", "user", camel="movedBy"),
    *_AUDIT[3:],
    _ro("MOVED_TIME", "datetime"),
    _f("SOURCE_ID", "crm_status", "Source", status_type="SOURCE"),
    _f("SOURCE_DESCRIPTION", "string", "Additional Info about Source"),
    _f("LEAD_ID", "crm_lead", "Lead", settings={"parentEntityTypeId": 1}),
    _f("ADDITIONAL_INFO", "string", "Additional Information"),
    _f("LOCATION_ID", "location", "Location"),
    *_ORIGIN,
    *_UTM,
    *_ACTIVITY,
)

LEAD_FIELDS = (
    _ro("ID", "integer", "ID"),
    _f("TITLE", "string", "Lead Name"),
    _f("HONORIFIC", "crm_status", "Salutation", status_type="HONORIFIC"),
    _f("NAME", "string", "First name"),
    _f("SECOND_NAME", "string", "Second name"),
    _f("LAST_NAME", "string", "Last name"),
    _f("COMPANY_TITLE", "string", "Company name"),
    _f("COMPANY_ID", "crm_company", "Company", item_empty=0, settings={"parentEntityTypeId": 4}),
    _f("CONTACT_ID", "crm_contact", "Contact", item_empty=0),
    _f("IS_RETURN_CUSTOMER", "char", "Repeat inquiry", empty="N"),
    _f("BIRTHDATE", "date", "Date of birth", empty=""),
    _f("SOURCE_ID", "crm_status", "Source", status_type="SOURCE"),
    _f("SOURCE_DESCRIPTION", "string", "Source information"),
    _f("STATUS_ID", "crm_status", "Status", status_type="STATUS", camel="stageId"),
    _f("STATUS_DESCRIPTION", "string", "Status information"),
    _f("POST", "string", "Position"),
    _f("COMMENTS", "string", "Comment"),
    _f("CURRENCY_ID", "crm_currency", "Currency"),
    _f("OPPORTUNITY", "double", "Total", **_MONEY),
    _f("IS_MANUAL_OPPORTUNITY", "char", "IS_MANUAL_OPPORTUNITY", empty="N"),
    *_HAS,
    *_AUDIT,
    _ro("DATE_CLOSED", "datetime", "Closed", empty=""),
    _ro("STATUS_SEMANTIC_ID", "string", "Status details", camel="stageSemanticId"),
    _f("OPENED", "char", "Available to everyone", empty="Y"),
    *_ORIGIN,
    _ro("MOVED_BY_ID", "user", camel="movedBy"),
    _ro("MOVED_TIME", "datetime"),
    *_ADDRESS,
    *_UTM,
    *_ACTIVITY,
    *_multi(),
)

CONTACT_FIELDS = (
    _ro("ID", "integer", "ID"),
    _f("HONORIFIC", "crm_status", "Salutation", status_type="HONORIFIC"),
    _f("NAME", "string", "First name"),
    _f("SECOND_NAME", "string", "Second name"),
    _f("LAST_NAME", "string", "Last name"),
    _f("BIRTHDATE", "date", "Date of birth", empty=""),
    _f("TYPE_ID", "crm_status", "Contact type", status_type="CONTACT_TYPE"),
    _f("SOURCE_ID", "crm_status", "Source", status_type="SOURCE"),
    _f("SOURCE_DESCRIPTION", "string", "Source information"),
    _f("POST", "string", "Position"),
    *_ADDRESS,
    _f("COMMENTS", "string", "Comment"),
    _f("OPENED", "char", "Available to everyone", empty="Y"),
    _f("EXPORT", "char", "Included in export", empty="Y"),
    *_HAS,
    *_AUDIT,
    _f("COMPANY_ID", "crm_company", "Company", item_empty=0, settings={"parentEntityTypeId": 4}),
    _f("COMPANY_IDS", "crm_company", "Companies", multiple=True, listed=False, empty=()),
    _f("LEAD_ID", "crm_lead", "Lead", settings={"parentEntityTypeId": 1}),
    *_ORIGIN,
    _f("ORIGIN_VERSION", "string", "Original version"),
    *_UTM,
    *_ACTIVITY,
    *_multi(),
)

COMPANY_FIELDS = (
    _ro("ID", "integer", "ID"),
    _f("TITLE", "string", "Company Name"),
    _f("COMPANY_TYPE", "crm_status", "Company type", status_type="COMPANY_TYPE", camel="typeId"),
    *_ADDRESS,
    _f("ADDRESS_LEGAL", "string", "Legal address"),
    _f("BANKING_DETAILS", "string", "Payment details"),
    _f("INDUSTRY", "crm_status", "Industry", status_type="INDUSTRY"),
    _f("EMPLOYEES", "crm_status", "Employees", status_type="EMPLOYEES"),
    _f("CURRENCY_ID", "crm_currency", "Currency"),
    _f("REVENUE", "double", "Annual revenue", **_MONEY),
    _f("OPENED", "char", "Available to everyone", empty="Y"),
    _f("COMMENTS", "string", "Comment"),
    *_HAS,
    _f("IS_MY_COMPANY", "char", "My Company", empty="N"),
    *_AUDIT,
    _f("LEAD_ID", "crm_lead", "Lead", settings={"parentEntityTypeId": 1}),
    *_ORIGIN,
    _f("ORIGIN_VERSION", "string", "Original version"),
    *_UTM,
    *_ACTIVITY,
    *_multi(),
)


class Entity:
    """An entity's declaration plus the lookups derived from it (one legacy<->camelCase table)."""

    def __init__(self, name: str, title_template: str | None, fields: tuple[Field, ...], stage_field: str | None):
        self.name = name
        self.type_id = {"lead": 1, "deal": 2, "contact": 3, "company": 4}[name]
        self.event = name.upper()  # ONCRM{EVENT}ADD
        self.add_event, self.update_event = f"ONCRM{self.event}ADD", f"ONCRM{self.event}UPDATE"
        self.uf_entity = f"CRM_{name.upper()}"
        self.title_template = title_template
        self.fields = fields
        self.stage_field = stage_field
        self.by_name = {f.name: f for f in fields}
        self.multi = [f.name for f in fields if f.type == "crm_multifield"]
        self.standard = [f.name for f in fields if f.listed and f.type != "crm_multifield"]
        self.to_camel = {f.name: f.item_name for f in fields if f.type != "crm_multifield"}
        self.from_camel = {camel: name for name, camel in self.to_camel.items()}
        self.kinds = {f.name: ("multi" if f.type == "crm_multifield" else query.kind_of(f.type)) for f in fields}
        # a new record before defaults: every field at its empty value (lists copied per record)
        self.blank = {
            f.name: [] if f.type == "crm_multifield" or isinstance(f.empty, tuple) else f.empty for f in fields
        }
        self.list_fields = tuple(name for name, value in self.blank.items() if value == [])
        # how a write treats each field, by UPPER_CASE name: (step, writer, declared name) (filled below)
        self.steps: dict[str, tuple[int, Any, str]] = {}

    def __repr__(self) -> str:
        return f"Entity({self.name})"


ENTITIES: dict[str, Entity] = {
    "deal": Entity("deal", "Сделка #{id}", DEAL_FIELDS, "STAGE_ID"),
    "lead": Entity("lead", "Лид #{id}", LEAD_FIELDS, "STATUS_ID"),
    "contact": Entity("contact", None, CONTACT_FIELDS, None),
    "company": Entity("company", "Компания #{id}", COMPANY_FIELDS, None),
}


# ============================================================================ user fields

UF_TYPES = {
    "string", "integer", "double", "boolean", "datetime", "date", "money", "url", "address",
    "enumeration", "file", "employee", "crm_status", "iblock_section", "iblock_element", "crm",
}
_UF_KINDS = {"integer": "int", "enumeration": "int", "employee": "int", "double": "double",
             "boolean": "bool", "date": "datetime", "datetime": "datetime"}
_UF_FLAGS = ("MULTIPLE", "MANDATORY", "SHOW_FILTER", "SHOW_IN_LIST", "EDIT_IN_LIST", "IS_SEARCHABLE")
_UF_FLAG_DEFAULTS = {"MULTIPLE": "N", "MANDATORY": "N", "SHOW_FILTER": "N", "SHOW_IN_LIST": "Y",
                     "EDIT_IN_LIST": "Y", "IS_SEARCHABLE": "N"}
_UF_LABELS = ("EDIT_FORM_LABEL", "LIST_COLUMN_LABEL", "LIST_FILTER_LABEL", "ERROR_MESSAGE", "HELP_MESSAGE")
_LANGS = ("ru", "en")
_UF_NAME_RE = re.compile(r"^[A-Z0-9_]+$")


@dataclass(frozen=True)
class _UfTable:
    """An entity's user field rows in SORT, ID order and by FIELD_NAME (shared, never mutated)."""

    source: dict[int, dict[str, Any]]  # the portal.userfields[entity] container it was built from
    members: tuple[int, ...]  # id() of each row it was built from, in container order
    rows: tuple[dict[str, Any], ...]
    by_name: dict[str, dict[str, Any]]


# Keyed by id() of a portal.userfields[entity] container; an entry holds its container, so the id
# cannot be reused while the entry lives. Dropped by every userfield.* write, rebuilt when the
# container's rows changed behind our back. Every write of a record reads it.
_UF_TABLES: dict[int, _UfTable] = {}
_UF_TABLES_MAX = 64  # containers of discarded portals are forgotten when there are more
_NO_UF = _UfTable({}, (), (), {})


def _uf_table(portal: "Portal", entity: Entity) -> _UfTable:
    container = portal.userfields.get(entity.name)
    if not container:
        return _NO_UF
    table = _UF_TABLES.get(id(container))
    members = tuple(map(id, container.values()))
    if table is None or table.members != members:
        if len(_UF_TABLES) >= _UF_TABLES_MAX:
            _UF_TABLES.clear()
        rows = tuple(sorted(container.values(), key=lambda r: (int(r["SORT"]), int(r["ID"]))))
        table = _UF_TABLES[id(container)] = _UfTable(container, members, rows, {r["FIELD_NAME"]: r for r in rows})
    return table


def _uf_changed(portal: "Portal", entity: Entity) -> None:
    """Forget the cached user field table of an entity (after userfield.add/update/delete)."""
    _UF_TABLES.pop(id(portal.userfields.get(entity.name)), None)


def userfields(portal: "Portal", entity: Entity) -> list[dict[str, Any]]:
    """User field definitions of an entity in SORT, ID order."""
    return list(_uf_table(portal, entity).rows)


def _uf_by_name(portal: "Portal", entity: Entity) -> dict[str, dict[str, Any]]:
    return dict(_uf_table(portal, entity).by_name)


def _uf_label(row: Mapping[str, Any], key: str) -> str:
    labels = row.get(key) or {}
    return next((labels[lang] for lang in _LANGS if labels.get(lang)), "") or row["FIELD_NAME"]


def _uf_single(portal: "Portal", row: Mapping[str, Any], value: Any) -> Any:
    """One user field value in the legacy (string) form it is stored and listed in."""
    kind = row["USER_TYPE_ID"]
    if value is None or value == "" or value is False and kind != "boolean":
        return None
    if kind in ("integer", "employee"):
        number = query.coerce("int", value)
        return None if number is None else str(number)
    if kind == "double":
        number = query.coerce("double", value)
        return None if number is None else _number_text(number)
    if kind == "boolean":
        flag = query.coerce("bool", value)
        return "1" if flag else "0"
    if kind == "date":
        moment = query.parse_moment(value, portal.tz)
        return None if moment is None else moment.date().isoformat()
    if kind == "datetime":
        moment = query.parse_moment(value, portal.tz)
        return None if moment is None else portal.format_time(moment)
    if kind == "enumeration":
        for item in row.get("LIST") or ():
            if str(value) in (item["ID"], item["VALUE"], item.get("XML_ID")):
                return item["ID"]
        return None
    return str(value)


def _uf_store(portal: "Portal", row: Mapping[str, Any], value: Any) -> Any:
    if row["MULTIPLE"] == "Y":
        values = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
        stored = [_uf_single(portal, row, v) for v in values]
        return [v for v in stored if v is not None]
    if isinstance(value, list):
        value = value[0] if value else None
    return _uf_single(portal, row, value)


def _uf_default(portal: "Portal", row: Mapping[str, Any]) -> Any:
    """The value a new record gets for a user field (SETTINGS.DEFAULT_VALUE or DEF=Y items)."""
    if row["USER_TYPE_ID"] == "enumeration":
        defaults = [item["ID"] for item in row.get("LIST") or () if item.get("DEF") == "Y"]
        if row["MULTIPLE"] == "Y":
            return defaults
        return defaults[0] if defaults else None
    default = (row.get("SETTINGS") or {}).get("DEFAULT_VALUE")
    if isinstance(default, dict):  # date/datetime: {"VALUE": ..., "TYPE": "NONE|NOW|FIXED"}
        mode = str(default.get("TYPE", "NONE")).upper()
        default = portal.now_text() if mode == "NOW" else default.get("VALUE") if mode == "FIXED" else None
    if default in (None, ""):
        return [] if row["MULTIPLE"] == "Y" else None
    return _uf_store(portal, row, default)


def _uf_item_value(row: Mapping[str, Any], value: Any) -> Any:
    """A stored user field value as crm.item types it (numbers as numbers, booleans Y/N [inferred])."""
    if isinstance(value, list):
        return [_uf_item_value({**row, "MULTIPLE": "N"}, v) for v in value]
    if value is None:
        return None
    kind = row["USER_TYPE_ID"]
    if kind in ("integer", "employee", "enumeration"):
        return query.coerce("int", value)
    if kind == "double":
        return _json_number(float(value))
    if kind == "boolean":
        return "Y" if value == "1" else "N"
    return value


def _uf_description(row: Mapping[str, Any]) -> dict[str, Any]:
    desc: dict[str, Any] = {
        "type": row["USER_TYPE_ID"],
        "isRequired": row["MANDATORY"] == "Y",
        "isReadOnly": False,
        "isImmutable": False,
        "isMultiple": row["MULTIPLE"] == "Y",
        "isDynamic": True,
        "title": row["FIELD_NAME"],
        "listLabel": _uf_label(row, "LIST_COLUMN_LABEL"),
        "formLabel": _uf_label(row, "EDIT_FORM_LABEL"),
        "filterLabel": _uf_label(row, "LIST_FILTER_LABEL"),
        "settings": dict(row.get("SETTINGS") or {}),
    }
    if row["USER_TYPE_ID"] == "enumeration":
        desc["items"] = [{"ID": item["ID"], "VALUE": item["VALUE"]} for item in row.get("LIST") or ()]
    return desc


# ============================================================================ values


def _number_text(number: float) -> str:
    """A float as PHP prints it (``5`` not ``5.0``)."""
    text = repr(float(number))
    return text[:-2] if text.endswith(".0") else text


def _json_number(number: float) -> int | float:
    return int(number) if float(number).is_integer() else number


def _store(portal: "Portal", spec: Field, value: Any) -> Any:
    """A written value in the form crm.<entity>.list returns it (strings, ``None`` for empty)."""
    kind = spec.type
    if spec.multiple:
        values = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
        single = [_store(portal, Field(spec.name, kind, spec.title), v) for v in values]
        return [v for v in single if v is not None]
    if value is None or value == "" or value == []:
        return spec.empty
    if kind in _INT_TYPES:
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


def _writer(spec: Field) -> Callable[["Portal", Any], Any]:
    """``_store`` of one field with a fast path for the plain values most writes carry (same results)."""
    kind, empty = spec.type, spec.empty

    def write_other(portal: "Portal", value: Any) -> Any:
        return _store(portal, spec, value)

    if spec.multiple or kind in ("date", "datetime"):
        return write_other
    if kind in _INT_TYPES:
        zero = "0" if kind == "integer" else empty

        def write_int(portal: "Portal", value: Any) -> Any:
            if value.__class__ is int:
                return str(value) if value else zero
            return _store(portal, spec, value)

        return write_int
    if kind == "double":

        def write_double(portal: "Portal", value: Any) -> Any:
            if value.__class__ is int or value.__class__ is float:
                return sys.intern(f"{value:.2f}")  # amounts repeat a lot; one string per amount
            return _store(portal, spec, value)

        return write_double
    if kind == "char":

        def write_char(portal: "Portal", value: Any) -> Any:
            if value == "Y" or value == "N":
                return "Y" if value == "Y" else "N"
            return _store(portal, spec, value)

        return write_char

    def write_text(portal: "Portal", value: Any) -> Any:
        if value.__class__ is str:
            return value or empty
        return _store(portal, spec, value)

    return write_text


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
    return (_IMMUTABLE if spec.immutable else _STORE), _writer(spec), spec.name


for _entity in ENTITIES.values():
    _entity.steps = {spec.name: _step(spec) for spec in _entity.fields}


def _item_value(spec: Field, value: Any) -> Any:
    """A stored legacy value as crm.item types it (ints, numbers; strings stay)."""
    if spec.multiple:
        return [_item_value(Field(spec.name, spec.type, spec.title), v) for v in value or ()]
    if value is None or value == "":
        return value if value == "" and spec.type in ("string", "char") else spec.item_empty
    if spec.type in _INT_TYPES:
        return query.coerce("int", value)
    if spec.type == "double":
        return _json_number(float(value))
    return value


def _apply_multi(portal: "Portal", type_id: str, current: list[dict[str, Any]], items: Any) -> list[dict[str, Any]]:
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


# ============================================================================ the record index

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


def _index_add(portal: "Portal", entity: str, record_id: int) -> None:
    hit = _IDS.get(portal, {}).get(entity)
    if hit is None or hit[0] is not portal.records[entity] or len(hit[1]) != len(hit[0]) - 1:
        return  # stale or absent: the next read rebuilds it
    ids = hit[1]
    if not ids or record_id > ids[-1]:
        ids.append(record_id)
    else:
        insort(ids, record_id)


def _index_remove(portal: "Portal", entity: str, record_id: int) -> None:
    hit = _IDS.get(portal, {}).get(entity)
    if hit is None:
        return
    ids = hit[1]
    pos = bisect_left(ids, record_id)
    if pos < len(ids) and ids[pos] == record_id:
        del ids[pos]


# ============================================================================ errors and params


class _Style:
    """How a family of methods words its errors (legacy crm.deal.* vs crm.item.*)."""

    def __init__(self, item: bool):
        self.item = item

    def invalid(self, spec: Field) -> ApiError:
        if self.item:
            return ApiError("CRM_FIELD_ERROR_VALUE_NOT_VALID", f'Invalid value for field "{spec.title}"', 400)
        return ApiError("", f'Invalid value for the "{spec.title}" field', 400)

    def not_found(self) -> ApiError:
        if self.item:
            return ApiError("NOT_FOUND", "Element not found", 400)
        return ApiError("", "Not found", 400)


LEGACY = _Style(item=False)
ITEM = _Style(item=True)


def _id_param(call: Call, style: _Style = LEGACY) -> int:
    raw = call.param("id")
    try:
        value = int(str(raw).strip())
    except (TypeError, ValueError):
        value = 0
    if value <= 0:
        if style.item:
            raise style.not_found()
        raise ApiError("", "ID is not defined or invalid.", 400)
    return value


def _connector(call: Call) -> str | None:
    """The call's ``auth_connector`` key: offline bindings with that key do not queue this write."""
    value = call.param("auth_connector")
    return None if value in (None, "") else str(value)


def _fields_param(call: Call) -> dict[str, Any]:
    raw = call.param("fields")
    if isinstance(raw, dict):
        return raw
    if raw == [] or raw == [""]:
        return {}
    raise ApiError("", "Parameter 'fields' must be array.", 400)


# ============================================================================ writing records


@dataclass(slots=True)
class _Write:
    """One add/update in progress: the record, what changed and what the stage logic decided."""

    entity: Entity
    record: dict[str, Any]
    creating: bool
    style: _Style
    user: int
    now: str
    record_id: int
    written: Collection[str] = ()  # UPPER_CASE names the call gave
    stage_before: str | None = None
    category_before: int | None = None


# field name as given -> UPPER_CASE (names are matched case-insensitively); a few spellings recur
_UPPER: dict[str, str] = {}


def _upper_name(key: Any) -> str:
    name = str(key).upper()
    if key.__class__ is str:
        if len(_UPPER) >= 4096:
            _UPPER.clear()
        _UPPER[key] = name
    return name


def _given(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields by UPPER_CASE name; a name given twice keeps its first place and its last value."""
    given: dict[str, Any] = {}
    upper = _UPPER
    for key, value in fields.items():
        name = upper.get(key) if key.__class__ is str else None
        given[name if name is not None else _upper_name(key)] = value
    return given


_CURRENCY_TEXT = {code: code for code in CURRENCIES}  # one string object per currency code


def _apply_fields(portal: "Portal", w: _Write, fields: Mapping[str, Any], uf: _UfTable) -> dict[str, Any]:
    """Write ordinary fields onto the record, then user fields; unknown names are ignored.

    Returns the stage/category requests for the entity rules.
    """
    given = w.written = _given(fields)
    special: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    record, creating, steps, ufs = w.record, w.creating, w.entity.steps, uf.by_name
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
            record[declared] = _apply_multi(portal, declared, record.get(declared) or [], value)
        # read-only fields, and immutable ones on update, are ignored
    if "CURRENCY_ID" in given and "CURRENCY_ID" in steps:
        currency = record.get("CURRENCY_ID")
        if currency is not None and currency.upper() not in CURRENCIES:
            raise w.style.invalid(w.entity.by_name["CURRENCY_ID"])
        record["CURRENCY_ID"] = _CURRENCY_TEXT[currency.upper()] if currency else DEFAULT_CURRENCY
    for name, value in custom.items():
        record[name] = _uf_store(portal, ufs[name], value)
    return special


def _first_status(portal: "Portal", entity_id: str) -> str | None:
    rows = pipelines.entity_rows(portal, entity_id)
    return rows[0]["STATUS_ID"] if rows else None


# (offset, local date text) -> (BEGINDATE, CLOSEDATE) of a deal created that day: one pair per day
_DEAL_DATES: dict[tuple[Any, str], tuple[str, str]] = {}


def _deal_dates(portal: "Portal", now: str) -> tuple[str, str]:
    """Default BEGINDATE (the creation day) and CLOSEDATE (a week later) of a deal created at ``now``."""
    key = (portal.tz, now[:10])
    dates = _DEAL_DATES.get(key)
    if dates is None:
        if len(_DEAL_DATES) > 4096:
            _DEAL_DATES.clear()
        today = datetime.fromisoformat(now).replace(hour=0, minute=0, second=0)
        dates = _DEAL_DATES[key] = (portal.format_time(today), portal.format_time(today + timedelta(days=7)))
    return dates


def _defaults(portal: "Portal", entity: Entity, record_id: int, user: int, uf: _UfTable) -> dict[str, Any]:
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
        record["BEGINDATE"], record["CLOSEDATE"] = _deal_dates(portal, now)
    for row in uf.rows:
        record[row["FIELD_NAME"]] = _uf_default(portal, row)
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


# ---------------------------------------------------------------------------- stage history


def _history_row(portal: "Portal", w: _Write, type_id: int) -> None:
    """Append a crm.stagehistory.list row (creation 1, intermediate 2, final 3, pipeline change 5)."""
    entity, record, now = w.entity, w.record, w.now
    owner = int(record["ID"])
    if owner == w.record_id:
        owner = w.record_id  # the records key itself: all rows of a record share one int
    if entity.name == "deal":
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
    portal.history.setdefault(entity.type_id, []).append(row)


def _mark_history_filtered(portal: "Portal", entity: Entity) -> None:
    """From now on stage history lists must hide rows of moved or deleted records (slower path)."""
    portal.extra.setdefault("stagehistory_filtered", {})[entity.type_id] = True


def _record_history(portal: "Portal", w: _Write) -> None:
    entity, record = w.entity, w.record
    if entity.stage_field is None:
        return
    semantic = record["STAGE_SEMANTIC_ID" if entity.name == "deal" else "STATUS_SEMANTIC_ID"]
    if w.creating:
        _history_row(portal, w, 1)
    elif entity.name == "deal" and int(record["CATEGORY_ID"]) != w.category_before:
        _history_row(portal, w, 5)
        _mark_history_filtered(portal, entity)
    elif record[entity.stage_field] != w.stage_before:
        _history_row(portal, w, 3 if semantic in ("S", "F") else 2)


# ---------------------------------------------------------------------------- add / update / delete


def add_record(call: Call, entity: Entity, fields: Mapping[str, Any], style: _Style = LEGACY) -> dict[str, Any]:
    """Create a record (history, events included) and return it; the caller holds the lock."""
    portal = call.portal
    record_id = portal.next_id(f"record.{entity.name}")
    uf = _uf_table(portal, entity)
    record = _defaults(portal, entity, record_id, call.user_id, uf)
    w = _Write(entity, record, True, style, call.user_id, record["DATE_CREATE"], record_id)
    special = _apply_fields(portal, w, fields, uf)
    if entity.name == "deal":
        _resolve_deal_stage(portal, w, special, move_category=False)
    elif entity.name == "lead":
        _resolve_lead_status(portal, w, special)
    _derive(portal, w)
    portal.records[entity.name][record_id] = record
    _index_add(portal, entity.name, record_id)
    _record_history(portal, w)
    portal.emit(entity.add_event, {"ID": record_id}, _connector(call), user_id=call.user_id)
    call.charge(costs.WRITE)
    return record


def update_record(
    call: Call,
    entity: Entity,
    record_id: int,
    fields: Mapping[str, Any],
    style: _Style = LEGACY,
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
    special = _apply_fields(portal, w, fields, _uf_table(portal, entity))
    if entity.name == "deal":
        _resolve_deal_stage(portal, w, special, move_category=move_category and "CATEGORY_ID" in special)
    elif entity.name == "lead":
        _resolve_lead_status(portal, w, special)
    _derive(portal, w)
    portal.records[entity.name][record_id] = record
    _record_history(portal, w)
    if entity.name == "deal" and int(record["CATEGORY_ID"]) != w.category_before:
        event = {"ID": record_id, "CATEGORY_ID": int(record["CATEGORY_ID"]), "STAGE_ID": record["STAGE_ID"]}
        portal.emit("ONCRMDEALMOVETOCATEGORY", event, _connector(call), user_id=call.user_id)
    else:
        portal.emit(entity.update_event, {"ID": record_id}, _connector(call), user_id=call.user_id)
    call.charge(costs.WRITE)
    return record


def delete_record(call: Call, entity: Entity, record_id: int, style: _Style = LEGACY) -> None:
    """Delete a record; its stage history stops being listed."""
    portal = call.portal
    if portal.records[entity.name].pop(record_id, None) is None:
        raise style.not_found()
    _index_remove(portal, entity.name, record_id)
    if entity.stage_field:
        _mark_history_filtered(portal, entity)
    portal.emit(f"ONCRM{entity.event}DELETE", {"ID": record_id}, _connector(call), user_id=call.user_id)
    call.charge(costs.WRITE)


# ============================================================================ reading records


def _copy(value: Any) -> Any:
    if isinstance(value, list):
        return [dict(v) if isinstance(v, dict) else v for v in value]
    return value


def legacy_view(entity: Entity, record: Mapping[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """A record as crm.<entity>.get/list returns it; empty multi-fields are left out."""
    out: dict[str, Any] = {}
    multi = entity.multi
    for name in names:
        value = record.get(name)
        if name in multi:
            if value:
                out[name] = _copy(value)
        else:
            out[name] = _copy(value)
    return out


def _all_legacy_names(portal: "Portal", entity: Entity) -> list[str]:
    """Every name crm.<entity>.get returns, in declaration order (user fields last)."""
    return [f.name for f in entity.fields if f.listed] + [row["FIELD_NAME"] for row in userfields(portal, entity)]


@dataclass
class _Lists:
    """What a list method of one entity needs: the schema and the name groups of ``select``."""

    schema: query.Schema
    order: list[str]
    groups: dict[str, list[str]]
    ufs: dict[str, dict[str, Any]]


def _legacy_lists(portal: "Portal", entity: Entity) -> _Lists:
    ufs = _uf_by_name(portal, entity)
    kinds = {name: entity.kinds[name] for name in entity.standard + entity.multi}
    kinds.update({name: _UF_KINDS.get(row["USER_TYPE_ID"], "string") for name, row in ufs.items()})
    no_like = frozenset(f.name for f in entity.fields if f.type in ("crm_status", "crm_company", "crm_contact"))
    schema = query.Schema(kinds, query.upper_resolver(kinds), tz=portal.tz, no_like=no_like)
    groups = {
        "*": list(entity.standard),
        "UF_*": [name for name, row in ufs.items() if row["MULTIPLE"] != "Y"],
    }
    return _Lists(schema, _all_legacy_names(portal, entity), groups, ufs)


def _uf_item_name(name: str, original: bool) -> str:
    return name if original else camel_case(name)


def _item_lists(portal: "Portal", entity: Entity, original_uf: bool) -> _Lists:
    ufs = _uf_by_name(portal, entity)
    kinds = {f.name: entity.kinds[f.name] for f in entity.fields if f.type != "crm_multifield"}
    kinds.update({name: _UF_KINDS.get(row["USER_TYPE_ID"], "string") for name, row in ufs.items()})
    aliases = dict(entity.from_camel)
    aliases.update({_uf_item_name(name, original_uf): name for name in ufs})

    def resolve(name: str) -> str | None:
        if name in aliases:
            return aliases[name]
        upper = name.upper()
        return upper if upper in kinds else None

    schema = query.Schema(kinds, resolve, tz=portal.tz, strict=True)
    order = list(kinds)
    return _Lists(schema, order, {"*": order}, ufs)


def item_view(
    entity: Entity,
    record: Mapping[str, Any],
    names: Iterable[str],
    ufs: Mapping[str, Mapping[str, Any]],
    *,
    original_uf: bool = False,
    full: bool = True,
) -> dict[str, Any]:
    """A record as crm.item.* returns it: camelCase, typed; ``full`` adds ``fm`` and ``entityTypeId``."""
    out: dict[str, Any] = {}
    by_name, to_camel = entity.by_name, entity.to_camel
    for name in names:
        spec = by_name.get(name)
        if spec is not None:
            out[to_camel[name]] = _item_value(spec, record.get(name))
        elif name in ufs:
            out[_uf_item_name(name, original_uf)] = _uf_item_value(ufs[name], record.get(name))
    if full:
        if entity.multi:
            out["fm"] = [
                {"id": int(item["ID"]), "valueType": item["VALUE_TYPE"], "value": item["VALUE"], "typeId": item["TYPE_ID"]}
                for type_id in entity.multi
                for item in record.get(type_id) or ()
            ]
        out["entityTypeId"] = entity.type_id
    return out


def _item_input(portal: "Portal", entity: Entity, fields: Mapping[str, Any], original_uf: bool) -> dict[str, Any]:
    """crm.item ``fields`` (camelCase, ``fm``) as the legacy names the write path takes."""
    ufs = {_uf_item_name(name, original_uf): name for name in _uf_by_name(portal, entity)}
    legacy: dict[str, Any] = {}
    for key, value in fields.items():
        key = str(key)
        if key == "fm":
            for type_id, items in _fm_to_legacy(value).items():
                legacy[type_id] = items
        elif key in entity.from_camel:
            legacy[entity.from_camel[key]] = value
        elif key in ufs:
            legacy[ufs[key]] = value
        else:
            legacy[key.upper()] = value
    return legacy


def _fm_to_legacy(fm: Any) -> dict[str, list[dict[str, Any]]]:
    """``fm`` items ``{id?, typeId, valueType, value}`` (a list, or a dict keyed by id) per multi-field."""
    pairs = fm.items() if isinstance(fm, dict) else enumerate(fm if isinstance(fm, list) else [])
    grouped: dict[str, list[dict[str, Any]]] = {}
    for key, item in pairs:
        if not isinstance(item, dict):
            continue
        type_id = str(item.get("typeId") or "").upper()
        if type_id not in MULTI_FIELDS:
            continue
        item_id = item.get("id") or (key if isinstance(fm, dict) and str(key).isdigit() else None)
        grouped.setdefault(type_id, []).append(
            {"ID": item_id, "VALUE": item.get("value"), "VALUE_TYPE": item.get("valueType"), "DELETE": item.get("delete")}
        )
    return grouped


def _field_description(spec: Field) -> dict[str, Any]:
    desc: dict[str, Any] = {
        "type": spec.type,
        "isRequired": False,
        "isReadOnly": spec.read_only,
        "isImmutable": spec.immutable,
        "isMultiple": spec.multiple,
        "isDynamic": False,
    }
    if spec.status_type:
        desc["statusType"] = spec.status_type
    desc["title"] = spec.title
    if spec.settings:
        desc["settings"] = dict(spec.settings)
    return desc


# ============================================================================ legacy methods


def _legacy_list(call: Call, entity: Entity) -> Result:
    portal = call.portal
    with portal.lock:
        lists = _legacy_lists(portal, entity)
        flt = query.compile_filter(call.param("filter"), lists.schema)
        order = query.compile_order(call.param("order"), lists.schema)
        names = query.choose_fields(
            call.param("select"), order=lists.order, groups=lists.groups, default=("*", "UF_*"),
            resolve=lists.schema.resolve,
        )
        source = query.Source(sorted_ids(portal, entity.name), fetch=portal.records[entity.name].get)
        page = query.paginate(source, flt, order, query.parse_start(call.param("start")))
        call.charge(page.cost())
        rows = [legacy_view(entity, record, names) for record in page.rows]
    return Result(rows, page.total, page.next)


def _legacy_get(call: Call, entity: Entity) -> dict[str, Any]:
    portal = call.portal
    record_id = _id_param(call)
    with portal.lock:
        call.charge(costs.CALL)
        record = portal.records[entity.name].get(record_id)
        if record is None:
            raise LEGACY.not_found()
        return legacy_view(entity, record, _all_legacy_names(portal, entity))


def _legacy_add(call: Call, entity: Entity) -> int:
    fields = _fields_param(call)
    with call.portal.lock:
        return int(add_record(call, entity, fields)["ID"])


def _legacy_update(call: Call, entity: Entity) -> bool:
    record_id = _id_param(call)
    with call.portal.lock:
        if record_id not in call.portal.records[entity.name]:
            raise LEGACY.not_found()
        update_record(call, entity, record_id, _fields_param(call))
    return True


def _legacy_delete(call: Call, entity: Entity) -> bool:
    record_id = _id_param(call)
    with call.portal.lock:
        delete_record(call, entity, record_id)
    return True


def _legacy_fields(call: Call, entity: Entity) -> dict[str, Any]:
    portal = call.portal
    with portal.lock:
        call.charge(costs.CALL)
        result = {spec.name: _field_description(spec) for spec in entity.fields}
        for row in userfields(portal, entity):
            result[row["FIELD_NAME"]] = _uf_description(row)
    return result


# ============================================================================ user field methods


def _uf_settings(kind: str, given: Any) -> dict[str, Any]:
    defaults: dict[str, dict[str, Any]] = {
        "string": {"SIZE": 20, "ROWS": 1, "REGEXP": "", "MIN_LENGTH": 0, "MAX_LENGTH": 0, "DEFAULT_VALUE": ""},
        "integer": {"SIZE": 20, "MIN_VALUE": 0, "MAX_VALUE": 0, "DEFAULT_VALUE": None},
        "double": {"PRECISION": 2, "SIZE": 20, "MIN_VALUE": 0, "MAX_VALUE": 0, "DEFAULT_VALUE": None},
        "boolean": {"DEFAULT_VALUE": 0, "DISPLAY": "CHECKBOX", "LABEL": ["", ""], "LABEL_CHECKBOX": ""},
        "date": {"DEFAULT_VALUE": {"VALUE": "", "TYPE": "NONE"}},
        "datetime": {"DEFAULT_VALUE": {"VALUE": "", "TYPE": "NONE"}, "USE_SECOND": "Y"},
        "enumeration": {"DISPLAY": "LIST", "LIST_HEIGHT": 1, "CAPTION_NO_VALUE": "", "SHOW_NO_VALUE": "Y"},
    }
    settings = dict(defaults.get(kind, {}))
    if isinstance(given, dict):
        settings.update({str(k).upper(): v for k, v in given.items()})
    return settings


def _uf_labels(row: dict[str, Any], fields: Mapping[str, Any], creating: bool) -> None:
    label = fields.get("LABEL")
    for key in _UF_LABELS:
        given = fields.get(key)
        current = dict(row.get(key) or {lang: "" for lang in _LANGS})
        if isinstance(given, dict):
            current.update({str(lang): str(text) for lang, text in given.items()})
            for lang in _LANGS:
                if not current.get(lang) and label:
                    current[lang] = str(label)
        elif given not in (None, ""):
            current = {lang: str(given) for lang in _LANGS}
        elif label not in (None, "") and (creating or key in ("EDIT_FORM_LABEL", "LIST_COLUMN_LABEL", "LIST_FILTER_LABEL")):
            current = {lang: str(label) for lang in _LANGS}
        row[key] = current


def _enum_items(portal: "Portal", field_name: str, current: list[dict[str, Any]], given: Any) -> list[dict[str, Any]]:
    """Apply LIST entries: with ID change or (DEL=Y) delete an option; without ID add one."""
    items = [dict(item) for item in current]
    entries = list(given.values()) if isinstance(given, dict) else given if isinstance(given, list) else []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        entry = {str(k).upper(): v for k, v in entry.items()}
        existing = next((i for i in items if i["ID"] == str(entry.get("ID") or "")), None)
        if existing is not None:
            if str(entry.get("DEL", "")).upper() == "Y":
                items.remove(existing)
                continue
            for key in ("VALUE", "SORT", "XML_ID"):
                if entry.get(key) not in (None, ""):
                    existing[key] = str(entry[key])
            if "DEF" in entry:
                existing["DEF"] = "Y" if query.coerce("bool", entry["DEF"]) else "N"
            continue
        value = str(entry.get("VALUE") or "").strip()
        if not value:
            continue
        option_id = portal.next_id("userfield_enum")
        xml_id = str(entry.get("XML_ID") or f"{field_name}_{option_id}")
        if any(i["XML_ID"] == xml_id for i in items):
            raise ApiError("", f"List item with value XML_ID='{xml_id}' already exists", 400)
        items.append({
            "ID": str(option_id),
            "SORT": str(query.coerce("int", entry.get("SORT")) or 0),
            "VALUE": value,
            "DEF": "Y" if query.coerce("bool", entry.get("DEF", "N")) else "N",
            "XML_ID": xml_id,
        })
    items.sort(key=lambda i: (int(i["SORT"]), int(i["ID"])))
    return items


def _uf_add(call: Call, entity: Entity) -> int:
    fields = {str(k).upper(): v for k, v in _fields_param(call).items()}
    name = str(fields.get("FIELD_NAME") or "").strip().upper()
    if not name:
        raise ApiError("", "The 'FIELD_NAME' field is not found.", 400)
    if not name.startswith("UF_CRM_"):
        name = "UF_CRM_" + name
    if not _UF_NAME_RE.match(name):
        raise ApiError("", "Field name contains invalid characters. Allowed characters are: A-Z, 0-9, and _.", 400)
    if len(name) > 50:
        raise ApiError("", "Field name is too long (more than 50 characters).", 400)
    kind = str(fields.get("USER_TYPE_ID") or "").strip().lower()
    if not kind:
        raise ApiError("", "The 'USER_TYPE_ID' field is not found.", 400)
    if kind not in UF_TYPES:
        raise ApiError("", "Invalid custom type specified.", 400)
    portal = call.portal
    with portal.lock:
        if name in _uf_by_name(portal, entity):
            raise ApiError("", f"A user field with the code {name} already exists.", 400)
        uf_id = portal.next_id("userfield")
        row: dict[str, Any] = {
            "ID": str(uf_id),
            "ENTITY_ID": entity.uf_entity,
            "FIELD_NAME": name,
            "USER_TYPE_ID": kind,
            "XML_ID": str(fields["XML_ID"]) if fields.get("XML_ID") else None,
            "SORT": str(query.coerce("int", fields.get("SORT")) or 100),
        }
        for flag in _UF_FLAGS:
            given = fields.get(flag)
            row[flag] = _UF_FLAG_DEFAULTS[flag] if given in (None, "") else ("Y" if query.coerce("bool", given) else "N")
        if kind == "boolean":
            row["MULTIPLE"] = "N"  # boolean fields cannot be multiple
        row["SETTINGS"] = _uf_settings(kind, fields.get("SETTINGS"))
        _uf_labels(row, fields, creating=True)
        if kind == "enumeration":
            row["LIST"] = _enum_items(portal, name, [], fields.get("LIST"))
        portal.userfields.setdefault(entity.name, {})[uf_id] = row
        _uf_changed(portal, entity)
        portal.emit(f"ONCRM{entity.event}USERFIELDADD", {"ID": uf_id}, _connector(call), user_id=call.user_id)
        call.charge(costs.WRITE)
    return uf_id


def _uf_row(call: Call, entity: Entity) -> dict[str, Any]:
    uf_id = _id_param(call)
    row = call.portal.userfields.get(entity.name, {}).get(uf_id)
    if row is None:
        raise ApiError("ERROR_NOT_FOUND", f"The entity with ID '{uf_id}' is not found.", 400)
    return row


def _uf_copy(row: Mapping[str, Any], lang: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key in _UF_LABELS and lang:
            out[key] = (value or {}).get(lang, "")
        elif isinstance(value, dict):
            out[key] = dict(value)
        elif isinstance(value, list):
            out[key] = [dict(v) if isinstance(v, dict) else v for v in value]
        else:
            out[key] = value
    return out


def _uf_get(call: Call, entity: Entity) -> dict[str, Any]:
    with call.portal.lock:
        call.charge(costs.CALL)
        return _uf_copy(_uf_row(call, entity))


_UF_LIST_KINDS = {"ID": "int", "SORT": "int", **{flag: "char" for flag in _UF_FLAGS},
                  "ENTITY_ID": "string", "FIELD_NAME": "string", "USER_TYPE_ID": "string", "XML_ID": "string"}


def _uf_list(call: Call, entity: Entity) -> Result:
    raw_filter = query.as_mapping(call.param("filter"), "filter")
    lang = next((str(v) for k, v in raw_filter.items() if str(k).upper() == "LANG"), None)
    raw_filter = {k: v for k, v in raw_filter.items() if str(k).upper() != "LANG"}
    schema = query.Schema(_UF_LIST_KINDS, query.upper_resolver(_UF_LIST_KINDS), tz=call.portal.tz)
    flt = query.compile_filter(raw_filter, schema)
    order = query.compile_order(call.param("order"), schema) or [query.OrderBy("SORT", "int"), query.OrderBy("ID", "int")]
    with call.portal.lock:
        rows = [row for row in userfields(call.portal, entity) if flt.test(row)]
        query.sort_rows(rows, order, call.portal.tz)
        call.charge(costs.list_page(matched=len(rows), offset=0, counted=True, returned=len(rows)))
        result = [_uf_copy(row, lang) for row in rows]
    return Result(result, len(result))


def _uf_update(call: Call, entity: Entity) -> bool:
    portal = call.portal
    with portal.lock:
        row = _uf_row(call, entity)
        fields = {str(k).upper(): v for k, v in _fields_param(call).items()}
        if fields.get("XML_ID") not in (None, ""):
            row["XML_ID"] = str(fields["XML_ID"])
        if fields.get("SORT") not in (None, ""):
            row["SORT"] = str(query.coerce("int", fields["SORT"]) or row["SORT"])
        for flag in _UF_FLAGS:
            if flag != "MULTIPLE" and fields.get(flag) not in (None, ""):
                row[flag] = "Y" if query.coerce("bool", fields[flag]) else "N"
        if isinstance(fields.get("SETTINGS"), dict):
            row["SETTINGS"] = {**row["SETTINGS"], **{str(k).upper(): v for k, v in fields["SETTINGS"].items()}}
        _uf_labels(row, fields, creating=False)
        if row["USER_TYPE_ID"] == "enumeration" and "LIST" in fields:
            row["LIST"] = _enum_items(portal, row["FIELD_NAME"], row.get("LIST") or [], fields["LIST"])
        _uf_changed(portal, entity)
        portal.emit(f"ONCRM{entity.event}USERFIELDUPDATE", {"ID": int(row["ID"])}, _connector(call), user_id=call.user_id)
        call.charge(costs.WRITE)
    return True


def _uf_delete(call: Call, entity: Entity) -> bool:
    portal = call.portal
    with portal.lock:
        row = _uf_row(call, entity)
        del portal.userfields[entity.name][int(row["ID"])]
        for record in portal.records[entity.name].values():
            record.pop(row["FIELD_NAME"], None)
        _uf_changed(portal, entity)
        portal.emit(f"ONCRM{entity.event}USERFIELDDELETE", {"ID": int(row["ID"])}, _connector(call), user_id=call.user_id)
        call.charge(costs.WRITE)
    return True


# ============================================================================ crm.item.*


def _item_entity(call: Call) -> Entity:
    type_id = query.coerce("int", call.param("entityTypeId"))
    name = ENTITY_NAMES.get(type_id) if type_id is not None else None
    if name is None:
        raise ApiError("NOT_FOUND", "Smart process not found", 400)
    return ENTITIES[name]


def _original_uf(call: Call) -> bool:
    return query.coerce("bool", call.param("useOriginalUfNames") or "N") is True


@method("crm.item.list")
def item_list(call: Call) -> Result:
    """crm.item.list: camelCase typed items, strict filter/order, ``{"items": [...]}``."""
    entity = _item_entity(call)
    original = _original_uf(call)
    portal = call.portal
    with portal.lock:
        lists = _item_lists(portal, entity, original)
        flt = query.compile_filter(call.param("filter"), lists.schema)
        order = query.compile_order(call.param("order"), lists.schema)
        picked = query.select_list(call.param("select"))
        names = query.choose_fields(
            picked, order=lists.order, groups=lists.groups, default=("*",), resolve=lists.schema.resolve
        )
        full = not picked or "*" in picked
        source = query.Source(sorted_ids(portal, entity.name), fetch=portal.records[entity.name].get)
        page = query.paginate(source, flt, order, query.parse_start(call.param("start")))
        call.charge(page.cost())
        items = [item_view(entity, r, names, lists.ufs, original_uf=original, full=full) for r in page.rows]
    return Result({"items": items}, page.total, page.next)


def _item_reply(portal: "Portal", entity: Entity, record: Mapping[str, Any], original: bool) -> dict[str, Any]:
    lists = _item_lists(portal, entity, original)
    return {"item": item_view(entity, record, lists.order, lists.ufs, original_uf=original)}


@method("crm.item.get")
def item_get(call: Call) -> dict[str, Any]:
    """crm.item.get: ``{"item": {...}}``; an unknown id is 400 NOT_FOUND."""
    entity = _item_entity(call)
    record_id = _id_param(call, ITEM)
    with call.portal.lock:
        call.charge(costs.CALL)
        record = call.portal.records[entity.name].get(record_id)
        if record is None:
            raise ITEM.not_found()
        return _item_reply(call.portal, entity, record, _original_uf(call))


@method("crm.item.add")
def item_add(call: Call) -> dict[str, Any]:
    """crm.item.add: create from camelCase fields; returns ``{"item": {...}}``."""
    entity = _item_entity(call)
    original = _original_uf(call)
    with call.portal.lock:
        fields = _item_input(call.portal, entity, _fields_param(call), original)
        record = add_record(call, entity, fields, ITEM)
        return _item_reply(call.portal, entity, record, original)


@method("crm.item.update")
def item_update(call: Call) -> dict[str, Any]:
    """crm.item.update: like crm.deal.update, but ``categoryId`` moves a deal to another pipeline."""
    entity = _item_entity(call)
    original = _original_uf(call)
    record_id = _id_param(call, ITEM)
    with call.portal.lock:
        fields = _item_input(call.portal, entity, _fields_param(call), original)
        record = update_record(call, entity, record_id, fields, ITEM, move_category=True)
        return _item_reply(call.portal, entity, record, original)


@method("crm.item.delete")
def item_delete(call: Call) -> list[Any]:
    """crm.item.delete: answers ``[]``."""
    entity = _item_entity(call)
    record_id = _id_param(call, ITEM)
    with call.portal.lock:
        delete_record(call, entity, record_id, ITEM)
    return []


@method("crm.item.fields")
def item_fields(call: Call) -> dict[str, Any]:
    """crm.item.fields: ``{"fields": {camelName: description + upperName}}``."""
    entity = _item_entity(call)
    original = _original_uf(call)
    with call.portal.lock:
        call.charge(costs.CALL)
        result: dict[str, Any] = {}
        for spec in entity.fields:
            if spec.type != "crm_multifield":
                result[spec.item_name] = {**_field_description(spec), "upperName": spec.name}
        if entity.multi:
            result["fm"] = {"type": "crm_multifield", "isRequired": False, "isReadOnly": False,
                            "isImmutable": False, "isMultiple": True, "isDynamic": False,
                            "title": "Multifields", "upperName": "FM"}
        for row in userfields(call.portal, entity):
            result[_uf_item_name(row["FIELD_NAME"], original)] = {
                **_uf_description(row), "upperName": row["FIELD_NAME"]}
    return {"fields": result}


# ============================================================================ crm.stagehistory.list

HISTORY_KINDS: dict[int, dict[str, str]] = {
    2: {"ID": "int", "TYPE_ID": "int", "OWNER_ID": "int", "CREATED_TIME": "datetime", "CATEGORY_ID": "int",
        "STAGE_SEMANTIC_ID": "string", "STAGE_ID": "string"},
    1: {"ID": "int", "TYPE_ID": "int", "OWNER_ID": "int", "CREATED_TIME": "datetime",
        "STATUS_SEMANTIC_ID": "string", "STATUS_ID": "string"},
}
_TYPE_NAMES = {3: "CONTACT", 4: "COMPANY", 5: "INVOICE", 7: "QUOTE", 31: "SMART_INVOICE"}


def _history_key(row: Mapping[str, Any]) -> int:
    return row["ID"]


def _history_visible(portal: "Portal", type_id: int) -> Any:
    """None while every row is visible; else a test hiding rows of deleted records and old pipelines."""
    if not portal.extra.get("stagehistory_filtered", {}).get(type_id):
        return None
    records = portal.records[ENTITY_NAMES[type_id]]
    if type_id == 2:
        def visible(row: Mapping[str, Any]) -> bool:
            record = records.get(row["OWNER_ID"])
            return record is not None and int(record["CATEGORY_ID"] or 0) == row["CATEGORY_ID"]
    else:
        def visible(row: Mapping[str, Any]) -> bool:
            return row["OWNER_ID"] in records
    return visible


@method("crm.stagehistory.list")
def stagehistory_list(call: Call) -> Result:
    """crm.stagehistory.list for leads (1) and deals (2): ``{"items": [...]}`` with integer fields."""
    raw = call.param("entityTypeId")
    type_id = query.coerce("int", raw)
    if type_id not in HISTORY_KINDS:
        name = _TYPE_NAMES.get(type_id or 0, "" if raw is None else str(raw))
        raise ApiError("ENTITY_TYPE_NOT_SUPPORTED", f"Entity type {name} is not supported", 400)
    kinds = HISTORY_KINDS[type_id]
    portal = call.portal
    schema = query.Schema(kinds, query.upper_resolver(kinds), tz=portal.tz, strict=True)
    flt = query.compile_filter(call.param("filter"), schema)
    order = query.compile_order(call.param("order"), schema)
    names = query.choose_fields(call.param("select"), order=list(kinds), groups={"*": list(kinds)},
                                default=("*",), resolve=schema.resolve)
    with portal.lock:
        rows = portal.history.setdefault(type_id, [])
        source = query.Source(rows, key=_history_key, visible=_history_visible(portal, type_id))
        page = query.paginate(source, flt, order, query.parse_start(call.param("start")))
        call.charge(page.cost())
        items = [{name: row[name] for name in names} for row in page.rows]
    return Result({"items": items}, page.total, page.next)


# ============================================================================ registration


def _register(entity: Entity) -> None:
    """Register crm.<entity>.{list,get,add,update,delete,fields} and crm.<entity>.userfield.*."""
    prefix = f"crm.{entity.name}"
    handlers = {
        "list": _legacy_list,
        "get": _legacy_get,
        "add": _legacy_add,
        "update": _legacy_update,
        "delete": _legacy_delete,
        "fields": _legacy_fields,
        "userfield.add": _uf_add,
        "userfield.get": _uf_get,
        "userfield.list": _uf_list,
        "userfield.update": _uf_update,
        "userfield.delete": _uf_delete,
    }
    for suffix, handler in handlers.items():
        def bound(call: Call, _handler: Any = handler) -> Any:
            return _handler(call, entity)

        bound.__doc__ = f"{prefix}.{suffix}"
        method(f"{prefix}.{suffix}")(bound)


for _entity in ENTITIES.values():
    _register(_entity)
