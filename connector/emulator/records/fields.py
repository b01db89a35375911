"""Field declarations of the CRM entities: one table per entity, from which every API and ``*.fields`` derive.

``ENTITIES[name]`` is an ``Entity``: its fields (type, title, flags, crm.item name), the lookups
derived from them, and ``given_by_upper`` reads a write's field names as the declarations spell them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connector.catalog import COMPANY, ENTITY_TYPE_IDS, LEAD, QUOTE
from connector.emulator import query


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
INT_TYPES = {"integer", "user", "crm_company", "crm_contact", "crm_lead", "crm_quote", "crm_category"}
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


def _texts(*fields: tuple[str, str]) -> tuple[Field, ...]:
    return tuple(_f(name, "string", title) for name, title in fields)


_ADDRESS = _texts(
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
_UTM = _texts(
    ("UTM_SOURCE", "Advertising System"),
    ("UTM_MEDIUM", "Traffic Type"),
    ("UTM_CAMPAIGN", "Campaign Identifier"),
    ("UTM_CONTENT", "Campaign Content"),
    ("UTM_TERM", "Campaign Search Condition"),
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
    _f("COMPANY_ID", "crm_company", "Company", item_empty=0, settings={"parentEntityTypeId": COMPANY}),
    _f("CONTACT_ID", "crm_contact", "Contact", item_empty=0),
    _f("CONTACT_IDS", "crm_contact", "Contacts", multiple=True, listed=False, empty=()),
    _ro("QUOTE_ID", "crm_quote", "Estimate", settings={"parentEntityTypeId": QUOTE}),
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
    _f("LEAD_ID", "crm_lead", "Lead", settings={"parentEntityTypeId": LEAD}),
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
    _f("COMPANY_ID", "crm_company", "Company", item_empty=0, settings={"parentEntityTypeId": COMPANY}),
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
    _f("COMPANY_ID", "crm_company", "Company", item_empty=0, settings={"parentEntityTypeId": COMPANY}),
    _f("COMPANY_IDS", "crm_company", "Companies", multiple=True, listed=False, empty=()),
    _f("LEAD_ID", "crm_lead", "Lead", settings={"parentEntityTypeId": LEAD}),
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
    _f("LEAD_ID", "crm_lead", "Lead", settings={"parentEntityTypeId": LEAD}),
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
        self.type_id = ENTITY_TYPE_IDS[name]
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

    def __repr__(self) -> str:
        return f"Entity({self.name})"


ENTITIES: dict[str, Entity] = {
    "deal": Entity("deal", "Сделка #{id}", DEAL_FIELDS, "STAGE_ID"),
    "lead": Entity("lead", "Лид #{id}", LEAD_FIELDS, "STATUS_ID"),
    "contact": Entity("contact", None, CONTACT_FIELDS, None),
    "company": Entity("company", "Компания #{id}", COMPANY_FIELDS, None),
}


# ---------------------------------------------------------------------------- field names of a write

# field name as given -> UPPER_CASE (names are matched case-insensitively); a few spellings recur
_UPPER: dict[str, str] = {}


def _upper_name(key: Any) -> str:
    name = str(key).upper()
    if key.__class__ is str:
        if len(_UPPER) >= 4096:
            _UPPER.clear()
        _UPPER[key] = name
    return name


def given_by_upper(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields by UPPER_CASE name; a name given twice keeps its first place and its last value."""
    given: dict[str, Any] = {}
    upper = _UPPER
    for key, value in fields.items():
        name = upper.get(key) if key.__class__ is str else None
        given[name if name is not None else _upper_name(key)] = value
    return given
