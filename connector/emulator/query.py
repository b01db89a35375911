"""Filter, order, select and 50-row paging shared by every list method of the emulator.

crm.*.list, crm.item.list, crm.stagehistory.list, user.get, the user-field lists, crm.status.list
and the offline event queue all compile their parameters here, so the operator prefixes, typed
comparisons, ``total``/``next`` and ``start=-1`` behave alike. (crm.status.list and the queue first
apply their own rules about which parameter keys count; the matching and ordering are this module's.)

Operators (key prefix -> meaning) as Bitrix24 documents them: none or ``=`` equal (an array
value means IN), ``!``/``!=`` not equal, ``>`` ``>=`` ``<`` ``<=``, ``@`` IN, ``!@`` NOT IN,
``%`` substring, ``=%``/``%=`` LIKE with explicit ``%``/``_`` wildcards, ``!%`` not substring,
``!=%``/``!%=`` NOT LIKE, plus ``><`` BETWEEN. Comparisons use the field's kind (int, double,
datetime, bool, char, string, plus ``exact`` text and ``int0`` for the older dictionary code);
strings compare case-insensitively like MySQL's collation, and an empty value (``""``/None) means
"the field is empty". A record value that is a list
(multi-fields such as PHONE, multiple user fields) matches when any element matches.

Strict lists (crm.item.list, crm.stagehistory.list) answer an unknown filter or order field and a
bad sort direction with 400 ``INVALID_ARG_VALUE`` as the documentation states. Legacy lists
(crm.deal.list and friends, user.get) silently ignore unknown filter and order fields and read
any direction other than DESC as ASC: the docs are silent there and ignoring is what the old
PHP GetList code does with keys it does not know.

Keyset paging is the fast path: when a list is ordered by ID only, conditions on ID (``>ID``,
``>=ID``, ``<ID``, ``<=ID``, ``ID``) become a bisect over the sorted ID sequence and the walk
stops after 50 matches when ``start=-1``, so a page costs O(log n + 50) on 100,000 records.
Counting pages (``start >= 0``) must visit every candidate to compute ``total``, as the real
database does; the cost model charges them accordingly.
"""

from __future__ import annotations

import operator
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone, tzinfo
from typing import Any

from connector.emulator import costs
from connector.emulator.registry import ApiError

PAGE_SIZE = 50

# Bitrix24 field types (as crm.*.fields reports them) -> how values compare
_KINDS = {
    "integer": "int",
    "int": "int",
    "user": "int",
    "employee": "int",
    "crm_company": "int",
    "crm_contact": "int",
    "crm_lead": "int",
    "crm_quote": "int",
    "crm_category": "int",
    "enumeration": "int",
    "double": "double",
    "float": "double",
    "datetime": "datetime",
    "date": "datetime",
    "boolean": "bool",
    "bool": "bool",
    "char": "char",
}

# prefix -> operator; longest prefixes are matched first
_OPERATORS = {
    "": "eq",
    "=": "eq",
    "!": "ne",
    "!=": "ne",
    ">": "gt",
    ">=": "ge",
    "<": "lt",
    "<=": "le",
    "@": "in",
    "!@": "nin",
    "%": "contains",
    "=%": "like",
    "%=": "like",
    "!%": "ncontains",
    "!=%": "nlike",
    "!%=": "nlike",
    "><": "between",
    "!><": "nbetween",
}
_PREFIX_RE = re.compile(r"^([!=<>@%]*)(.*)$", re.S)
_NEGATED = {"ne": "eq", "nin": "in", "ncontains": "contains", "nlike": "like", "nbetween": "between"}
_LIKE_OPS = {"contains", "like"}


def kind_of(bitrix_type: str) -> str:
    """How values of a Bitrix24 field type compare: int, double, datetime, bool, char or string."""
    return _KINDS.get(bitrix_type, "string")


# ---------------------------------------------------------------------------- values


def parse_moment(value: Any, tz: tzinfo) -> datetime | None:
    """A filter or record date as an aware datetime; naive values are read in the portal's offset.

    Accepts ``2025-01-01``, ISO 8601 with or without an offset (``2025-01-01T10:00:00+02:00``,
    a trailing ``Z``), and the Russian site format ``01.01.2025`` / ``01.01.2025 10:00:00``.
    """
    if isinstance(value, datetime):
        moment = value
    else:
        text = str(value).strip()
        if not text:
            return None
        if len(text) >= 10 and text[2] == "." and text[5] == ".":
            text = f"{text[6:10]}-{text[3:5]}-{text[0:2]}{text[10:].replace(' ', 'T', 1)}"
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment


def _bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    text = str(value).strip().upper()
    if text in ("Y", "1", "TRUE"):
        return True
    if text in ("N", "0", "FALSE"):
        return False
    return None


def _to_int(value: Any, tz: tzinfo | None = None) -> int | None:
    if value is None or value == "":
        return None
    if value.__class__ is int:
        return value
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError):
            return None


def _to_float(value: Any, tz: tzinfo | None = None) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _to_moment(value: Any, tz: tzinfo | None = None) -> datetime | None:
    if value is None or value == "":
        return None
    return parse_moment(value, tz or timezone.utc)


def _to_bool(value: Any, tz: tzinfo | None = None) -> bool | None:
    if value is None or value == "":
        return None
    return _bool(value)


def _to_char(value: Any, tz: tzinfo | None = None) -> str | None:
    if value is None or value == "":
        return None
    return str(value).upper()


def _to_exact(value: Any, tz: tzinfo | None = None) -> str:
    """Text compared as it is, case included; a missing value is "" (crm.status.list, the event queue)."""
    return "" if value is None else str(value)


def _to_int0(value: Any, tz: tzinfo | None = None) -> int | None:
    """An integer where a missing value counts as 0 (crm.status CATEGORY_ID: NULL for pipeline 0)."""
    if value is None or value == "":
        return 0
    return _to_int(value)


def _to_text(value: Any, tz: tzinfo | None = None) -> str | None:
    if value.__class__ is str:
        return value.casefold() if value else None
    if value is None:
        return None
    if isinstance(value, dict):  # a multi-field item {"VALUE": ...}
        return _to_text(value.get("VALUE"))
    if isinstance(value, bool):
        return "1" if value else None
    return str(value).casefold()


_CONVERTERS: dict[str, Callable[[Any, Any], Any]] = {
    "int": _to_int,
    "double": _to_float,
    "datetime": _to_moment,
    "bool": _to_bool,
    "char": _to_char,
    "exact": _to_exact,
    "int0": _to_int0,
}


def converter(kind: str) -> Callable[[Any, Any], Any]:
    """The function ``(value, tz) -> comparable`` for a kind (strings by default)."""
    return _CONVERTERS.get(kind, _to_text)


def coerce(kind: str, value: Any, tz: tzinfo = timezone.utc) -> Any:
    """A single value in comparable form for its kind; None when empty or unreadable."""
    return _CONVERTERS.get(kind, _to_text)(value, tz)


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value is False or (isinstance(value, (list, dict)) and not value)


def _like_regex(pattern: str) -> re.Pattern[str]:
    """SQL LIKE (``%`` any run, ``_`` one character) as an anchored case-insensitive regex."""
    parts = []
    for char in pattern:
        if char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("^" + "".join(parts) + "$", re.S | re.I)


# ---------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Schema:
    """What one list method can filter and sort on.

    ``kinds`` maps canonical field names to comparison kinds (see ``kind_of``); ``resolve`` turns a
    name from the request into a canonical name or None. ``strict`` selects the crm.item /
    crm.stagehistory error behaviour. ``no_like`` names fields where LIKE degrades to equality
    (the legacy deal list documents that LIKE does not work on crm_status-typed fields).
    ``plain_like`` (user.get) makes a plain key whose value contains ``%`` a LIKE. ``plain_contains``
    (crm.status.list) makes ``%`` a plain substring test: ``%`` and ``_`` in the value are literal.
    """

    kinds: Mapping[str, str]
    resolve: Callable[[str], str | None]
    tz: tzinfo = timezone.utc
    strict: bool = False
    id_field: str = "ID"
    no_like: frozenset[str] = frozenset()
    plain_like: bool = False
    plain_contains: bool = False


def upper_resolver(kinds: Mapping[str, str]) -> Callable[[str], str | None]:
    """Resolve request names case-insensitively against UPPER_CASE canonical names."""

    def resolve(name: str) -> str | None:
        upper = name.upper()
        return upper if upper in kinds else None

    return resolve


def bad_arg(text: str) -> ApiError:
    """The 400 INVALID_ARG_VALUE error of crm.item.list / crm.stagehistory.list."""
    return ApiError("INVALID_ARG_VALUE", text, 400)


def as_mapping(raw: Any, name: str) -> dict[str, Any]:
    """A filter/order parameter as a dict; a PHP list becomes index keys; a scalar is refused.

    An absent or empty parameter (``filter=`` in a form, ``[]``, ``[""]``) is an empty dict.
    A non-empty scalar answers like the legacy methods: ``Parameter 'filter' must be array.``
    """
    if raw is None or raw == "" or raw == [] or raw == [""]:
        return {}
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, list):
        return {str(i): v for i, v in enumerate(raw)}
    raise ApiError("", f"Parameter '{name}' must be array.", 400)


# ---------------------------------------------------------------------------- filter


_COMPARE = {"gt": operator.gt, "ge": operator.ge, "lt": operator.lt, "le": operator.le}


@dataclass
class Condition:
    """One ``prefix+FIELD: value`` entry of a filter."""

    field: str
    op: str  # eq, in, gt, ge, lt, le, contains, like, between (negation in ``negate``)
    kind: str
    values: tuple[Any, ...] = ()
    empty: bool = False  # "field is empty" test (eq/ne with an empty value)
    regex: re.Pattern[str] | None = None
    negate: bool = False
    _check: Callable[[Any], bool] | None = None

    def test(self, row: Mapping[str, Any], tz: tzinfo) -> bool:
        """True when ``row`` satisfies the condition."""
        raw = row.get(self.field)
        if self.empty:
            return _is_empty(raw) != self.negate
        check = self._check or self._build()
        convert = _CONVERTERS.get(self.kind, _to_text)
        if raw.__class__ is list:
            result = any(check(convert(item, tz)) for item in raw)
        else:
            result = check(convert(raw, tz))
        return result != self.negate

    def _build(self) -> Callable[[Any], bool]:
        """The comparison as one closure (built once; filters run it per row)."""
        op, values = self.op, self.values
        check: Callable[[Any], bool]
        if op in ("eq", "in"):
            pool = frozenset(values)
            check = pool.__contains__
        elif op == "between":
            low, high = values
            check = lambda v: v is not None and low <= v <= high  # noqa: E731
        elif op in ("gt", "ge", "lt", "le"):
            bound, compare = values[0], _COMPARE[op]
            check = lambda v: v is not None and compare(v, bound)  # noqa: E731
        else:  # contains / like
            match = self.regex.match if self.regex is not None else (lambda v: None)
            check = lambda v: v is not None and match(v) is not None  # noqa: E731
        self._check = check
        return check


@dataclass
class Group:
    """Conditions joined by AND (default) or OR, possibly nested (crm.item.list ``logic: OR``)."""

    items: list[Any] = field(default_factory=list)
    any_of: bool = False

    def test(self, row: Mapping[str, Any], tz: tzinfo) -> bool:
        """True when ``row`` satisfies the group."""
        if self.any_of:
            for item in self.items:
                if item.test(row, tz):
                    return True
            return not self.items
        for item in self.items:
            if not item.test(row, tz):
                return False
        return True


@dataclass
class IdRange:
    """Bounds on the ID field taken out of the top-level filter for the bisect path."""

    low: int | None = None
    low_inclusive: bool = True
    high: int | None = None
    high_inclusive: bool = True
    empty: bool = False

    def raise_low(self, value: int, inclusive: bool) -> None:
        if self.low is None or value > self.low or (value == self.low and not inclusive):
            self.low, self.low_inclusive = value, inclusive

    def lower_high(self, value: int, inclusive: bool) -> None:
        if self.high is None or value < self.high or (value == self.high and not inclusive):
            self.high, self.high_inclusive = value, inclusive


@dataclass
class Filter:
    """A compiled filter: ID bounds for the bisect path plus the remaining conditions."""

    ids: IdRange
    rest: Group
    tz: tzinfo

    def test(self, row: Mapping[str, Any]) -> bool:
        """True when ``row`` passes every condition (the ID bounds included)."""
        if self.ids.empty:
            return False
        return self._in_range(row) and self.rest.test(row, self.tz)

    def _in_range(self, row: Mapping[str, Any]) -> bool:
        ids = self.ids
        if ids.low is None and ids.high is None:
            return True
        value = coerce("int", row.get("ID"))
        if value is None:
            return False
        if ids.low is not None and (value < ids.low or (value == ids.low and not ids.low_inclusive)):
            return False
        if ids.high is not None and (value > ids.high or (value == ids.high and not ids.high_inclusive)):
            return False
        return True


def compile_filter(raw: Any, schema: Schema) -> Filter:
    """Compile a request's ``filter`` parameter against a schema."""
    mapping = as_mapping(raw, "filter")
    ids = IdRange()
    top = _compile_group(mapping, schema, ids)
    return Filter(ids, top, schema.tz)


def _compile_group(mapping: Mapping[str, Any], schema: Schema, ids: IdRange | None) -> Group:
    """Compile one level of a filter; ``ids`` (top level only) receives simple ID bounds."""
    group = Group()
    for key, value in mapping.items():
        key = str(key)
        if key.lower() == "logic":
            group.any_of = str(value).upper() == "OR"
        elif key.isdigit() and isinstance(value, (dict, list)):
            group.items.append(_compile_group(as_mapping(value, "filter"), schema, None))
        else:
            condition = _compile_condition(key, value, schema)
            if condition is not None:
                group.items.append(condition)
    if ids is not None and not group.any_of:  # only AND-ed conditions may become bisect bounds
        group.items = [c for c in group.items if not _take_id_bound(c, schema, ids)]
    return group


def _compile_condition(key: str, value: Any, schema: Schema) -> Condition | None:
    """One ``prefix+FIELD: value`` entry; None when a legacy list ignores it."""
    match = _PREFIX_RE.match(key)
    assert match is not None
    prefix, name = match.group(1), match.group(2)
    op = _OPERATORS.get(prefix)
    canonical = schema.resolve(name) if name else None
    if op is None or canonical is None:
        if schema.strict:
            raise bad_arg(f"Invalid filter: field '{name if op is not None else key}' is not allowed in filter")
        return None
    kind = schema.kinds[canonical]
    negate = op in _NEGATED
    op = _NEGATED.get(op, op)
    if isinstance(value, dict):
        value = list(value.values())
    if op == "eq" and isinstance(value, list):
        op = "in"
    if op == "eq" and schema.plain_like and isinstance(value, str) and "%" in value:
        op = "like"
    if op in _LIKE_OPS and canonical in schema.no_like:
        op = "eq"
    condition = Condition(canonical, op, kind, negate=negate)
    single = (value[0] if value else None) if isinstance(value, list) else value
    if op == "eq":
        if value is None or value == "" or (value is False and kind != "bool"):
            condition.empty = True
        else:
            condition.values = (_typed(kind, value, schema, canonical),)
    elif op == "in":
        items = value if isinstance(value, list) else [value]
        typed = (_typed(kind, v, schema, canonical) for v in items if v not in (None, ""))
        condition.values = tuple(v for v in typed if v is not None)
    elif op == "between":
        items = value if isinstance(value, list) else str(value).split(",")
        if len(items) != 2:
            if schema.strict:
                raise bad_arg(f"Invalid filter: field '{canonical}' has invalid value")
            return None
        condition.values = (_typed(kind, items[0], schema, canonical), _typed(kind, items[1], schema, canonical))
    elif op in ("gt", "ge", "lt", "le"):
        condition.values = (_typed(kind, single, schema, canonical),)
    else:  # contains / like compare the text of the value
        text = "" if single is None else str(single)
        if op == "contains" and schema.plain_contains:
            condition.regex = re.compile(".*" + re.escape(text.casefold()), re.S | re.I)
        else:
            condition.regex = _like_regex(f"%{text}%" if op == "contains" else text)
        condition.kind = "text"
    if None in condition.values:
        # an unreadable value (legacy lists only): nothing equals or orders against it
        condition.values = tuple(_NEVER if v is None else v for v in condition.values)
    return condition


class _Never:
    """A filter value no record value equals or orders against."""

    def __eq__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return 0

    def __lt__(self, other: object) -> bool:
        return False

    __gt__ = __le__ = __ge__ = __lt__


_NEVER = _Never()


def _typed(kind: str, value: Any, schema: Schema, name: str) -> Any:
    typed = coerce(kind, value, schema.tz)
    if typed is None and value not in (None, "") and schema.strict:
        raise bad_arg(f"Invalid filter: field '{name}' has invalid value")
    return typed


def _take_id_bound(condition: Condition, schema: Schema, ids: IdRange) -> bool:
    """Move a simple top-level ID condition into the bisect bounds; True when consumed."""
    if not isinstance(condition, Condition) or condition.field != schema.id_field:
        return False
    if condition.negate or condition.empty:
        return False
    if condition.op not in ("eq", "gt", "ge", "lt", "le") or len(condition.values) != 1:
        return False
    value = condition.values[0]
    if not isinstance(value, int):
        ids.empty = True  # an unreadable ID value matches nothing
        return True
    if condition.op in ("eq", "gt", "ge"):
        ids.raise_low(value, condition.op != "gt")
    if condition.op in ("eq", "lt", "le"):
        ids.lower_high(value, condition.op != "lt")
    return True


# ---------------------------------------------------------------------------- order


@dataclass(frozen=True)
class OrderBy:
    """One ``order`` entry."""

    field: str
    kind: str
    descending: bool = False


def compile_order(raw: Any, schema: Schema) -> list[OrderBy]:
    """Compile ``order`` (``{FIELD: ASC|DESC}``, case-insensitive directions); default is ID ASC."""
    mapping = as_mapping(raw, "order")
    if all(str(k).isdigit() for k in mapping):  # a bare list of field names
        mapping = {str(v): "ASC" for v in mapping.values() if isinstance(v, str)}
    result: list[OrderBy] = []
    for name, direction in mapping.items():
        canonical = schema.resolve(str(name))
        text = str(direction).strip().upper()
        if canonical is None:
            if schema.strict:
                raise bad_arg(f"Invalid order: field '{name}' is not allowed in order")
            continue
        if text not in ("ASC", "DESC"):
            if schema.strict:
                raise bad_arg(
                    f"Invalid order: allowed sort directions are ASC, DESC. But got '{direction}' for field '{name}'"
                )
            text = "ASC"
        if all(o.field != canonical for o in result):
            result.append(OrderBy(canonical, schema.kinds[canonical], text == "DESC"))
    return result


def _sort_value(kind: str, value: Any, tz: tzinfo) -> tuple[int, Any]:
    if isinstance(value, list):
        value = value[0] if value else None
    typed = _CONVERTERS.get(kind, _to_text)(value, tz)
    return (0, 0) if typed is None else (1, typed)


def sort_rows(rows: list[Mapping[str, Any]], order: Sequence[OrderBy], tz: tzinfo) -> list[Mapping[str, Any]]:
    """Sort rows by several keys (stable; NULLs first on ASC and last on DESC, as MySQL does)."""
    for item in reversed(order):
        rows.sort(key=lambda row, o=item: _sort_value(o.kind, row.get(o.field), tz), reverse=item.descending)
    return rows


# ---------------------------------------------------------------------------- select


def select_list(raw: Any) -> list[str]:
    """The ``select`` parameter as a list of names (empty entries dropped)."""
    if raw is None or raw == "":
        return []
    if isinstance(raw, dict):
        raw = list(raw.values())
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise ApiError("", "Parameter 'select' must be array.", 400)
    return [str(v).strip() for v in raw if isinstance(v, (str, int)) and str(v).strip()]


def choose_fields(
    raw: Any,
    *,
    order: Sequence[str],
    groups: Mapping[str, Iterable[str]],
    default: Sequence[str],
    resolve: Callable[[str], str | None],
    always: Sequence[str] = ("ID",),
) -> list[str]:
    """Field names a reply carries, in ``order`` (the declaration order of the entity).

    ``groups`` are wildcard tokens (legacy ``*`` and ``UF_*``; crm.item ``*``); other names resolve
    one by one and unknown ones are dropped. An empty select means ``default`` tokens.
    """
    names = select_list(raw) or list(default)
    chosen: set[str] = set(always)
    for name in names:
        token = name.upper() if name.upper() in groups else name
        if token in groups:
            chosen.update(groups[token])
            continue
        canonical = resolve(name)
        if canonical is not None:
            chosen.add(canonical)
    return [name for name in order if name in chosen]


# ---------------------------------------------------------------------------- paging


def parse_start(raw: Any) -> int:
    """``start``: an offset; non-numeric means 0; any negative value means -1 (no count)."""
    if raw is None or raw == "":
        return 0
    try:
        value = int(float(raw))
    except (TypeError, ValueError):
        return 0
    return -1 if value < 0 else value


@dataclass
class Source:
    """The rows a list runs over, sorted ascending by integer ID.

    ``items`` is either the sorted IDs themselves (``fetch`` maps an ID to its row) or the sorted
    rows (``key`` reads a row's ID). ``visible`` hides rows the portal would not return.
    """

    items: Sequence[Any]
    fetch: Callable[[Any], Mapping[str, Any] | None] | None = None
    key: Callable[[Any], int] | None = None
    visible: Callable[[Mapping[str, Any]], bool] | None = None

    def bounds(self, ids: IdRange) -> tuple[int, int]:
        """Index range of ``items`` inside the ID bounds (bisect)."""
        lo, hi = 0, len(self.items)
        if ids.low is not None:
            find = bisect_left if ids.low_inclusive else bisect_right
            lo = find(self.items, ids.low, key=self.key)
        if ids.high is not None:
            find = bisect_right if ids.high_inclusive else bisect_left
            hi = find(self.items, ids.high, key=self.key)
        return lo, max(lo, hi)

    def row(self, item: Any) -> Mapping[str, Any] | None:
        """The row for one entry of ``items``."""
        return self.fetch(item) if self.fetch is not None else item


@dataclass
class Page:
    """One page of a list reply and the work it took."""

    rows: list[Mapping[str, Any]]
    start: int
    matched: int
    scanned: int

    @property
    def counted(self) -> bool:
        """True when the page computed ``total`` (``start >= 0``)."""
        return self.start >= 0

    @property
    def offset(self) -> int:
        """Rows skipped before this page."""
        return max(self.start, 0)

    @property
    def total(self) -> int:
        """The reply's ``total``: the match count, or 0 when counting was disabled."""
        return self.matched if self.counted else 0

    @property
    def next(self) -> int | None:
        """The reply's ``next``: only when counting and more rows exist."""
        if self.counted and self.matched > self.offset + PAGE_SIZE:
            return self.offset + PAGE_SIZE
        return None

    def cost(self) -> float:
        """Modelled database seconds of this page (see ``costs.list_page``)."""
        return costs.list_page(
            matched=self.matched,
            offset=self.offset,
            counted=self.counted,
            scanned=self.scanned,
            returned=len(self.rows),
        )


def paginate(source: Source, flt: Filter, order: Sequence[OrderBy], start: int, id_field: str = "ID") -> Page:
    """Run a compiled filter and order over a source and cut the page ``start`` asks for."""
    offset = max(start, 0)
    counted = start >= 0
    if flt.ids.empty:
        return Page([], start, 0, 0)
    lo, hi = source.bounds(flt.ids)
    by_id = not order or (len(order) == 1 and order[0].field == id_field)
    if by_id:
        descending = bool(order) and order[0].descending
        return _walk_by_id(source, flt, lo, hi, descending, offset, counted, start)
    matched_rows: list[Mapping[str, Any]] = []
    scanned = 0
    for row in _rows(source, lo, hi, False):
        scanned += 1
        if flt.rest.test(row, flt.tz):
            matched_rows.append(row)
    sort_rows(matched_rows, order, flt.tz)
    return Page(matched_rows[offset : offset + PAGE_SIZE], start, len(matched_rows), scanned)


def _rows(source: Source, lo: int, hi: int, descending: bool) -> Iterator[Mapping[str, Any]]:
    indices = range(hi - 1, lo - 1, -1) if descending else range(lo, hi)
    items, visible = source.items, source.visible
    for index in indices:
        row = source.row(items[index])
        if row is None or (visible is not None and not visible(row)):
            continue
        yield row


def _walk_by_id(
    source: Source, flt: Filter, lo: int, hi: int, descending: bool, offset: int, counted: bool, start: int
) -> Page:
    """ID-ordered pages: a slice when nothing else filters, else a walk that stops early without a count."""
    if not flt.rest.items and source.visible is None:
        matched = hi - lo
        if descending:
            picked = range(hi - 1 - offset, max(hi - 1 - offset - PAGE_SIZE, lo - 1), -1)
        else:
            picked = range(lo + offset, min(lo + offset + PAGE_SIZE, hi))
        rows = [r for r in (source.row(source.items[i]) for i in picked) if r is not None]
        return Page(rows, start, matched, len(rows))
    rows: list[Mapping[str, Any]] = []
    matched = scanned = 0
    for row in _rows(source, lo, hi, descending):
        scanned += 1
        if not flt.rest.test(row, flt.tz):
            continue
        if matched >= offset and len(rows) < PAGE_SIZE:
            rows.append(row)
        matched += 1
        if not counted and len(rows) >= PAGE_SIZE:
            break
    return Page(rows, start, matched, scanned)
