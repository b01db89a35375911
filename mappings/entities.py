"""One declaration per mirrored stream: list method, fields method, primary key, cursor, table, typed columns.

The sync, the reconcile pass, the table definitions and the tests are all driven by ``STREAMS``;
nothing else in b24sync names a CRM field, a list method or a mirror table on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from connector import catalog

# column kinds: how a REST value becomes a column value (mappings/fields.py) and its SQL type (tables.py)
ID = "id"  # BIGINT: record and user ids ("37" or 37)
INT = "int"  # INTEGER: small numbers (PROBABILITY, SORT, TYPE_ID of history rows)
MONEY = "money"  # NUMERIC(20,2)
TEXT = "text"
FLAG = "flag"  # Y/N (or true/false) -> BOOLEAN
DATE = "date"  # the portal-local calendar date
DATETIME = "datetime"  # UTC timestamp
JSON = "json"
KINDS = (ID, INT, MONEY, TEXT, FLAG, DATE, DATETIME, JSON)

# stream kinds
ENTITY = "entity"  # CRM records paged by DATE_MODIFY windows (leads, deals, contacts, companies)
HISTORY = "history"  # stage history, keyset by its own ID, rows never removed
DICTIONARY = "dictionary"  # small lists read in full every run (pipelines, crm.status, user fields, users)

MULTI_FIELDS = ("PHONE", "EMAIL", "WEB", "IM")


@dataclass(frozen=True)
class Column:
    """One typed column: the REST field it comes from, its column name and its kind."""

    rest: str
    name: str
    kind: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.rest}: unknown column kind {self.kind!r}")


@dataclass(frozen=True)
class Stream:
    """A mirrored stream: where it is read from, how it is keyed and paged, and where it is written.

    ``select`` is what a page asks for (user fields that are *multiple* are added by name at run
    time: ``UF_*`` leaves them out). ``raw_only`` names standard fields that are deliberately
    kept only in ``raw`` (or that the list method never returns). ``userfields`` names the
    stream of the entity's user-field definitions; ``uf_table``/``uf_key`` the table of their
    values. ``params`` go with every list call (``entityTypeId`` of pipelines and history).
    """

    name: str
    kind: str
    list_method: str
    table: str
    primary_key: tuple[str, ...]
    columns: tuple[Column, ...]
    fields_method: str | None = None
    cursor_field: str | None = None  # DATE_MODIFY (entities) or ID (history keyset)
    entity_type_id: int | None = None
    select: tuple[str, ...] = ()
    multi_fields: tuple[str, ...] = ()
    raw_only: frozenset[str] = frozenset()
    userfields: str | None = None
    uf_entity: str | None = None  # CRM_DEAL: ENTITY_ID of the user-field definitions
    uf_table: str | None = None
    uf_key: str | None = None  # deal_id
    uf_base: tuple[Column, ...] = ()  # columns copied from the record into the uf table (BI: date_create, closedate)
    params: Mapping[str, object] = field(default_factory=dict)
    title: str = ""

    @property
    def id_field(self) -> str:
        """The REST name of the primary key (``ID``, ``id`` for pipelines)."""
        return self.primary_key[0]

    def column(self, rest: str) -> Column | None:
        """The column of a REST field, or None."""
        return _by_rest(self).get(rest)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Names of the typed columns in declaration order."""
        return tuple(c.name for c in self.columns)


_REST_INDEX: dict[str, dict[str, Column]] = {}


def _by_rest(stream: Stream) -> dict[str, Column]:
    index = _REST_INDEX.get(stream.name)
    if index is None:
        index = _REST_INDEX[stream.name] = {c.rest: c for c in stream.columns}
    return index


def _cols(spec: str) -> tuple[Column, ...]:
    """``"ID:id TITLE ..."`` -> columns named as the REST field in lower case (``NAME>first_name`` renames)."""
    out = []
    for item in spec.split():
        field, _, kind = item.partition(":")
        rest, _, name = field.partition(">")
        out.append(Column(rest, name or rest.lower(), kind or TEXT))
    return tuple(out)


_AUDIT = "ASSIGNED_BY_ID:id CREATED_BY_ID:id MODIFY_BY_ID:id DATE_CREATE:datetime DATE_MODIFY:datetime"
_ACTIVITY = "LAST_ACTIVITY_TIME:datetime LAST_ACTIVITY_BY:id"
_ORIGIN = "ORIGINATOR_ID:text ORIGIN_ID:text"
_UTM = "UTM_SOURCE UTM_MEDIUM UTM_CAMPAIGN UTM_CONTENT UTM_TERM"
_ADDRESS = (
    "ADDRESS ADDRESS_2 ADDRESS_CITY ADDRESS_POSTAL_CODE ADDRESS_REGION ADDRESS_PROVINCE "
    "ADDRESS_COUNTRY ADDRESS_COUNTRY_CODE ADDRESS_LOC_ADDR_ID"
)
_HAS = "HAS_PHONE:flag HAS_EMAIL:flag HAS_IMOL:flag"

DEAL_COLUMNS = _cols(
    "ID:id TITLE TYPE_ID CATEGORY_ID:id STAGE_ID STAGE_SEMANTIC_ID IS_NEW:flag IS_RECURRING:flag "
    "IS_RETURN_CUSTOMER:flag IS_REPEATED_APPROACH:flag PROBABILITY:int CURRENCY_ID OPPORTUNITY:money "
    "IS_MANUAL_OPPORTUNITY:flag TAX_VALUE:money COMPANY_ID:id CONTACT_ID:id QUOTE_ID:id BEGINDATE:date "
    f"CLOSEDATE:date OPENED:flag CLOSED:flag COMMENTS {_AUDIT} MOVED_BY_ID:id MOVED_TIME:datetime "
    f"SOURCE_ID SOURCE_DESCRIPTION LEAD_ID:id ADDITIONAL_INFO LOCATION_ID {_ORIGIN} {_UTM} {_ACTIVITY}"
)
LEAD_COLUMNS = _cols(
    "ID:id TITLE HONORIFIC NAME SECOND_NAME LAST_NAME COMPANY_TITLE COMPANY_ID:id CONTACT_ID:id "
    "IS_RETURN_CUSTOMER:flag BIRTHDATE:date SOURCE_ID SOURCE_DESCRIPTION STATUS_ID STATUS_DESCRIPTION "
    f"STATUS_SEMANTIC_ID POST COMMENTS CURRENCY_ID OPPORTUNITY:money IS_MANUAL_OPPORTUNITY:flag {_HAS} "
    f"{_AUDIT} DATE_CLOSED:datetime OPENED:flag {_ORIGIN} MOVED_BY_ID:id MOVED_TIME:datetime {_ADDRESS} "
    f"{_UTM} {_ACTIVITY}"
)
CONTACT_COLUMNS = _cols(
    "ID:id HONORIFIC NAME SECOND_NAME LAST_NAME BIRTHDATE:date TYPE_ID SOURCE_ID SOURCE_DESCRIPTION POST "
    f"{_ADDRESS} COMMENTS OPENED:flag EXPORT:flag {_HAS} {_AUDIT} COMPANY_ID:id LEAD_ID:id {_ORIGIN} "
    f"ORIGIN_VERSION {_UTM} {_ACTIVITY}"
)
COMPANY_COLUMNS = _cols(
    f"ID:id TITLE COMPANY_TYPE {_ADDRESS} ADDRESS_LEGAL BANKING_DETAILS INDUSTRY EMPLOYEES CURRENCY_ID "
    f"REVENUE:money OPENED:flag COMMENTS {_HAS} IS_MY_COMPANY:flag {_AUDIT} LEAD_ID:id {_ORIGIN} "
    f"ORIGIN_VERSION {_UTM} {_ACTIVITY}"
)

def _history(owner: str, spec: str) -> tuple[Column, ...]:
    """Stage-history columns: the row's own ID, its type, the owner (``OWNER_ID`` as deal_id/lead_id), its time."""
    return _cols(f"ID:id TYPE_ID:int OWNER_ID>{owner}:id CREATED_TIME>date_create:datetime {spec}")


DEAL_HISTORY_COLUMNS = _history("deal_id", "CATEGORY_ID:id STAGE_SEMANTIC_ID STAGE_ID")
LEAD_HISTORY_COLUMNS = _history("lead_id", "STATUS_SEMANTIC_ID STATUS_ID")
CATEGORY_COLUMNS = _cols("id:id name sort:int isDefault>is_default:flag originId>origin_id originatorId>originator_id")
# semantics and category_id of crm_status are derived (fields.status_row), not read as they are
STATUS_COLUMNS = _cols("ID:id ENTITY_ID STATUS_ID NAME NAME_INIT SORT:int COLOR SYSTEM:flag")
USER_COLUMNS = _cols("ID:id ACTIVE:flag NAME>first_name LAST_NAME SECOND_NAME EMAIL WORK_POSITION "
                     "UF_DEPARTMENT>department_ids:json USER_TYPE DATE_REGISTER:datetime")
USERFIELD_COLUMNS = _cols("ID:id ENTITY_ID FIELD_NAME USER_TYPE_ID MULTIPLE:flag SORT:int")

_STANDARD = ("*", "UF_*")


def _entity(name: str, type_id: int, columns: tuple[Column, ...], *, multi: bool, raw_only: Iterable[str] = (),
            uf_base: str = "DATE_CREATE:datetime", title: str = "") -> Stream:
    return Stream(
        name=name,
        kind=ENTITY,
        list_method=f"crm.{name}.list",
        fields_method=f"crm.{name}.fields",
        table=f"crm_{name}",
        primary_key=("ID",),
        columns=columns,
        cursor_field="DATE_MODIFY",
        entity_type_id=type_id,
        select=_STANDARD + (MULTI_FIELDS if multi else ()),
        multi_fields=MULTI_FIELDS if multi else (),
        raw_only=frozenset(raw_only),
        userfields=f"{name}_userfield",
        uf_entity=f"CRM_{name.upper()}",
        uf_table=f"crm_{name}_uf",
        uf_key=f"{name}_id",
        uf_base=_cols(uf_base),
        title=title or name,
    )


def _userfields(entity: str) -> Stream:
    return Stream(
        name=f"{entity}_userfield",
        kind=DICTIONARY,
        list_method=f"crm.{entity}.userfield.list",
        table="crm_userfield",
        primary_key=("ENTITY_ID", "FIELD_NAME"),
        columns=USERFIELD_COLUMNS,
        uf_entity=f"CRM_{entity.upper()}",
        title=f"{entity} user fields",
    )


STREAMS: dict[str, Stream] = {
    stream.name: stream
    for stream in (
        # dictionaries first: a run reads them before the records that refer to them
        Stream("deal_category", DICTIONARY, "crm.category.list", "crm_deal_category", ("id",), CATEGORY_COLUMNS,
               fields_method="crm.category.fields", entity_type_id=catalog.DEAL,
               params={"entityTypeId": catalog.DEAL}, title="deal pipelines"),
        Stream("status", DICTIONARY, "crm.status.list", "crm_status", ("ID",), STATUS_COLUMNS,
               fields_method="crm.status.fields", raw_only=frozenset({"CATEGORY_ID", "SEMANTICS", "EXTRA"}),
               title="statuses and stages"),
        *(_userfields(name) for name in ("lead", "deal", "contact", "company")),
        Stream("user", DICTIONARY, "user.get", "users", ("ID",), USER_COLUMNS, title="users"),
        _entity("lead", catalog.LEAD, LEAD_COLUMNS, multi=True, title="leads"),
        _entity("deal", catalog.DEAL, DEAL_COLUMNS, multi=False, raw_only=("CONTACT_IDS",),
                uf_base="DATE_CREATE:datetime CLOSEDATE:date", title="deals"),
        _entity("contact", catalog.CONTACT, CONTACT_COLUMNS, multi=True, raw_only=("COMPANY_IDS",), title="contacts"),
        _entity("company", catalog.COMPANY, COMPANY_COLUMNS, multi=True, title="companies"),
        Stream("deal_stage_history", HISTORY, "crm.stagehistory.list", "crm_deal_stage_history", ("ID",),
               DEAL_HISTORY_COLUMNS, cursor_field="ID", entity_type_id=catalog.DEAL,
               params={"entityTypeId": catalog.DEAL}, title="deal stage history"),
        Stream("lead_status_history", HISTORY, "crm.stagehistory.list", "crm_lead_status_history", ("ID",),
               LEAD_HISTORY_COLUMNS, cursor_field="ID", entity_type_id=catalog.LEAD,
               params={"entityTypeId": catalog.LEAD}, title="lead status history"),
    )
}

ENTITIES: tuple[str, ...] = tuple(name for name, s in STREAMS.items() if s.kind == ENTITY)
HISTORIES: tuple[str, ...] = tuple(name for name, s in STREAMS.items() if s.kind == HISTORY)

# the names a user may pass to ``sync --entity``; each brings the streams it needs with it
ALIASES: dict[str, tuple[str, ...]] = {
    **{name: (name, f"{name}_userfield") for name in ENTITIES},
    "deal_category": ("deal_category",),
    "pipeline": ("deal_category",),
    "status": ("status",),
    "userfield": tuple(f"{name}_userfield" for name in ENTITIES),
    "user": ("user",),
    "deal_stage_history": ("deal_stage_history",),
    "lead_status_history": ("lead_status_history",),
    "history": HISTORIES,
}


def stream(name: str) -> Stream:
    """The declaration of one stream (KeyError for an unknown name)."""
    return STREAMS[name]


def select_streams(names: Iterable[str] | None) -> list[Stream]:
    """The streams to sync for ``--entity`` names (all when None), in ``STREAMS`` order.

    Raises ``KeyError`` naming the first unknown name.
    """
    if names is None:
        return list(STREAMS.values())
    wanted: set[str] = set()
    for raw in names:
        name = raw.strip().lower()
        if not name:
            continue
        if name not in ALIASES:
            raise KeyError(name)
        wanted.update(ALIASES[name])
    return [s for n, s in STREAMS.items() if n in wanted]
