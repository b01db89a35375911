"""mappings.fields: every parser by table (what portals send, what the mirror stores) and by property (random input)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from mappings import entities as ent, fields
from mappings.fields import FieldError

MSK = timezone(timedelta(hours=3))
UTC = timezone.utc
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

# ---------------------------------------------------------------- tables


@pytest.mark.parametrize(("value", "expected"), [
    ("37", 37), (37, 37), (" 37 ", 37), ("-5", -5), (5.0, 5), ("5.0", 5), (0, 0), ("0", 0),
    (None, None), ("", None), ("  ", None), ([], None),
], ids=repr)
def test_parse_id(value: Any, expected: Any) -> None:
    assert fields.parse_id(value) == expected


@pytest.mark.parametrize("value", ["abc", "1.5", 1.5, True, "9" * 20, 2**63, "١٢", float("nan"), {"a": 1}, [1]], ids=repr)
def test_parse_id_refuses(value: Any) -> None:
    with pytest.raises(FieldError):
        fields.parse_id(value)


@pytest.mark.parametrize(("value", "expected"), [
    ("19999.99", Decimal("19999.99")), ("100", Decimal("100.00")), (100, Decimal("100.00")), (100.5, Decimal("100.50")),
    ("0.005", Decimal("0.01")), ("-3.1", Decimal("-3.10")), ("1e3", Decimal("1000.00")), (None, None), ("", None),
    ("99999999999999999.99", Decimal("99999999999999999.99")),
], ids=repr)
def test_parse_money(value: Any, expected: Any) -> None:
    assert fields.parse_money(value) == expected


@pytest.mark.parametrize("value", ["1,5", "abc", "1e30", float("inf"), True, "NaN", [1]], ids=repr)
def test_parse_money_refuses(value: Any) -> None:
    with pytest.raises(FieldError):
        fields.parse_money(value)


@pytest.mark.parametrize(("value", "expected"), [
    ("Y", True), ("N", False), ("y", True), ("1", True), ("0", False), (True, True), (False, False), (1, True),
    ("true", True), (None, None), ("", None),
], ids=repr)
def test_parse_flag(value: Any, expected: Any) -> None:
    assert fields.parse_flag(value) is expected


@pytest.mark.parametrize("value", ["maybe", 2, [True]], ids=repr)
def test_parse_flag_refuses(value: Any) -> None:
    with pytest.raises(FieldError):
        fields.parse_flag(value)


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-09-02T17:48:35+02:00", datetime(2024, 9, 2, 15, 48, 35, tzinfo=UTC)),  # the offset is applied
    ("2024-09-02T17:48:35+00:00", datetime(2024, 9, 2, 17, 48, 35, tzinfo=UTC)),
    ("2024-09-02T17:48:35Z", datetime(2024, 9, 2, 17, 48, 35, tzinfo=UTC)),
    ("2024-09-02 17:48:35", datetime(2024, 9, 2, 14, 48, 35, tzinfo=UTC)),  # naive: the portal's offset (+03:00)
    ("2024-09-02", datetime(2024, 9, 1, 21, 0, tzinfo=UTC)),
    ("02.09.2024 17:48:35", datetime(2024, 9, 2, 14, 48, 35, tzinfo=UTC)),  # the Russian site format
    ("2024-03-31T03:30:00+02:00", datetime(2024, 3, 31, 1, 30, tzinfo=UTC)),  # a DST night keeps its offset
    (None, None), ("", None),
], ids=repr)
def test_parse_datetime(value: Any, expected: Any) -> None:
    assert fields.parse_datetime(value, MSK) == expected


@pytest.mark.parametrize(("value", "expected"), [
    ("2024-08-30T00:00:00+03:00", date(2024, 8, 30)),
    ("2024-08-30T00:00:00+02:00", date(2024, 8, 30)),  # printed after the portal's offset changed: the same day
    ("2024-08-30T02:00:00+02:00", date(2024, 8, 30)),  # the day printed, never shifted to another offset
    ("2024-08-30", date(2024, 8, 30)),
    ("30.08.2024", date(2024, 8, 30)),
    ("", None), (None, None),
], ids=repr)
def test_parse_date_is_the_portal_local_day(value: Any, expected: Any) -> None:
    assert fields.parse_date(value, MSK) == expected


@pytest.mark.parametrize("value", ["2024-02-30", "yesterday", "2024-13-01T00:00:00", 12345, ["2024-01-01"]], ids=repr)
def test_parse_datetime_refuses(value: Any) -> None:
    with pytest.raises(FieldError):
        fields.parse_datetime(value, MSK)


@pytest.mark.parametrize(("text", "hours"), [("+03:00", 3), ("-05:30", -5.5), ("+0000", 0), ("+14:00", 14)])
def test_offsets(text: str, hours: float) -> None:
    tz = fields.parse_offset(text)
    assert tz.utcoffset(None) == timedelta(hours=hours)
    assert fields.parse_offset(fields.format_offset(tz)) == tz


@pytest.mark.parametrize("text", ["03:00", "+3", "+25:00", "+03:75", "", None, 3])
def test_offsets_refused(text: Any) -> None:
    with pytest.raises(FieldError):
        fields.parse_offset(text)


def test_portal_time_keeps_the_offset() -> None:
    moment = fields.portal_time({"start": 1725292115.02, "date_start": "2024-09-02T17:48:35+02:00"})
    assert moment.utcoffset() == timedelta(hours=2) and moment.astimezone(UTC).hour == 15
    assert fields.portal_time({"start": 1725292115.0}).tzinfo == UTC
    with pytest.raises(FieldError):
        fields.portal_time({})


def test_filter_time_is_iso_in_the_portal_offset() -> None:
    assert fields.to_filter_time(datetime(2026, 3, 1, 9, 0, 5, 999, tzinfo=UTC), MSK) == "2026-03-01T12:00:05+03:00"


def test_record_row_keeps_bad_values_in_raw_only() -> None:
    stream = ent.STREAMS["deal"]
    problems: list[str] = []
    record = {"ID": "7", "TITLE": "x\x00y", "OPPORTUNITY": "lots", "DATE_MODIFY": "2026-03-01T10:00:00+03:00", "CLOSED": "Y"}
    row = fields.record_row(stream, record, MSK, NOW, problems)
    assert row["id"] == 7 and row["opportunity"] is None and row["closed"] is True
    assert row["title"] == "xy" and row["raw"]["TITLE"] == "xy"  # PostgreSQL cannot hold NUL
    assert row["date_modify"] == datetime(2026, 3, 1, 7, 0, tzinfo=UTC)
    assert len(problems) == 1 and "OPPORTUNITY" in problems[0]
    with pytest.raises(FieldError):
        fields.record_row(stream, {"TITLE": "no id"}, MSK, NOW)


def test_history_rows_take_ints_or_strings() -> None:
    stream = ent.STREAMS["deal_stage_history"]
    legacy = {"ID": "7365", "TYPE_ID": "2", "OWNER_ID": "12", "CREATED_TIME": "2023-01-02T10:00:00+03:00",
              "CATEGORY_ID": "0", "STAGE_SEMANTIC_ID": "P", "STAGE_ID": "PREPARATION"}
    modern = {**legacy, "ID": 7365, "TYPE_ID": 2, "OWNER_ID": 12, "CATEGORY_ID": 0}
    a, b = fields.history_row(stream, legacy, MSK, NOW), fields.history_row(stream, modern, MSK, NOW)
    assert {k: v for k, v in a.items() if k != "raw"} == {k: v for k, v in b.items() if k != "raw"}
    assert a["deal_id"] == 12 and a["type_id"] == 2 and a["date_create"] == datetime(2023, 1, 2, 7, 0, tzinfo=UTC)


def test_multifields_become_rows() -> None:
    stream = ent.STREAMS["contact"]
    record = {"ID": "3", "PHONE": [{"ID": "10", "VALUE_TYPE": "WORK", "VALUE": "+7 1", "TYPE_ID": "PHONE"}],
              "IM": [{"ID": "11", "VALUE_TYPE": "TELEGRAM", "VALUE": "@x", "TYPE_ID": "IM"}, {"VALUE": "no id"}, "junk"]}
    assert fields.multifield_rows(stream, record) == [
        {"entity_type_id": 3, "owner_id": 3, "item_id": 10, "type_id": "PHONE", "value_type": "WORK", "value": "+7 1"},
        {"entity_type_id": 3, "owner_id": 3, "item_id": 11, "type_id": "IM", "value_type": "TELEGRAM", "value": "@x"},
    ]


def test_status_rows_know_stage_semantics_and_pipelines() -> None:
    won = fields.status_row({"ID": "6", "ENTITY_ID": "DEAL_STAGE_3", "STATUS_ID": "C3:WON", "SEMANTICS": "S", "CATEGORY_ID": "3"}, NOW)
    new = fields.status_row({"ID": "1", "ENTITY_ID": "STATUS", "STATUS_ID": "NEW", "SEMANTICS": None, "CATEGORY_ID": None}, NOW)
    source = fields.status_row({"ID": "9", "ENTITY_ID": "SOURCE", "STATUS_ID": "CALL", "SEMANTICS": None}, NOW)
    assert (won["semantics"], won["category_id"]) == ("S", 3)
    assert (new["semantics"], new["category_id"]) == ("P", 0)
    assert (source["semantics"], source["category_id"]) == (None, None)


def test_userfield_rows_keep_the_first_label_and_every_option() -> None:
    first = {"ID": "5", "ENTITY_ID": "CRM_DEAL", "FIELD_NAME": "UF_CRM_KIND", "USER_TYPE_ID": "enumeration", "MULTIPLE": "N",
             "LIST_COLUMN_LABEL": {"ru": "Вид", "en": "Kind"}, "LIST": [{"ID": "1", "VALUE": "A"}, {"ID": "2", "VALUE": "B"}]}
    row = fields.userfield_row(first, None, NOW)
    assert (row["label"], row["first_label"], row["enum_items"]) == ("Вид", "Вид", {"1": "A", "2": "B"})
    renamed = {**first, "LIST_COLUMN_LABEL": {"ru": "Тип"}, "LIST": [{"ID": "2", "VALUE": "B2"}, {"ID": "3", "VALUE": "C"}]}
    again = fields.userfield_row(renamed, row, NOW + timedelta(days=1))
    assert (again["label"], again["first_label"]) == ("Тип", "Вид")
    assert again["enum_items"] == {"1": "A", "2": "B2", "3": "C"} and again["first_seen_at"] == NOW


def test_uf_row_values_labels_and_deleted_fields() -> None:
    stream = ent.STREAMS["deal"]
    columns = {"uf_crm_kind": ent.ID, "uf_crm_kind_label": ent.TEXT, "uf_crm_tags": ent.JSON, "uf_crm_day": ent.DATE}
    definitions = {"UF_CRM_KIND": {"enum_items": {"1": "A", "2": "B"}}}
    record = {"ID": "4", "DATE_CREATE": "2026-01-01T10:00:00+03:00", "CLOSEDATE": "2026-02-01T00:00:00+03:00",
              "UF_CRM_KIND": "2", "UF_CRM_TAGS": ["x", "y"], "UF_CRM_DAY": "2026-05-05"}
    row = fields.uf_row(stream, record, columns, definitions, MSK, NOW)
    assert row["deal_id"] == 4 and row["uf_crm_kind"] == 2 and row["uf_crm_kind_label"] == "B"
    assert row["uf_crm_tags"] == ["x", "y"] and row["uf_crm_day"] == date(2026, 5, 5)
    assert row["closedate"] == date(2026, 2, 1)
    # a field the portal deleted is not in the record: its column is left out, so what was stored stays
    assert "uf_crm_day" not in fields.uf_row(stream, {"ID": "4", "UF_CRM_KIND": "1"}, columns, definitions, MSK, NOW)


def test_enum_labels() -> None:
    options = {"1": "A", "2": "B"}
    assert fields.enum_label("1", options) == "A"
    assert fields.enum_label(["1", "2", "9"], options) == "A, B, 9"
    assert fields.enum_label(None, options) is None and fields.enum_label([], options) is None


def test_user_rows_name_first_and_last() -> None:
    row = fields.user_row({"ID": "1", "NAME": "Андрей", "LAST_NAME": "Соколов", "ACTIVE": True, "UF_DEPARTMENT": [1, 5]}, MSK, NOW)
    assert (row["name"], row["active"], row["department_ids"]) == ("Андрей Соколов", True, [1, 5])


# ---------------------------------------------------------------- properties: random input raises FieldError or nothing

JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text() | st.decimals(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=10,
)
ANYTHING = JSONISH | st.datetimes() | st.dates() | st.binary(max_size=8) | st.from_regex(
    r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?([+-]\d{2}:?\d{2}|Z)?", fullmatch=True
) | st.from_regex(r"[+-]?\d{1,22}(\.\d{0,6})?([eE][+-]?\d{1,4})?", fullmatch=True)
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


def _only_field_errors(parse: Any, *args: Any) -> Any:
    try:
        return parse(*args)
    except FieldError:
        return None


@settings(max_examples=300, deadline=None)
@given(ANYTHING)
def test_scalar_parsers_raise_only_field_errors(value: Any) -> None:
    for parse in (fields.parse_id, fields.parse_int, fields.parse_money, fields.parse_flag, fields.parse_text, fields.parse_json,
                  fields.parse_offset):
        _only_field_errors(parse, value)


@settings(max_examples=300, deadline=None)
@given(ANYTHING, OFFSETS)
def test_time_parsers_raise_only_field_errors(value: Any, tz: timezone) -> None:
    moment = _only_field_errors(fields.parse_datetime, value, tz)
    assert moment is None or moment.utcoffset() == timedelta(0)
    _only_field_errors(fields.parse_date, value, tz)
    _only_field_errors(fields.portal_time, {"date_start": value, "start": value})


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1900, 1, 2), max_value=datetime(2999, 12, 30), timezones=OFFSETS), OFFSETS)
def test_a_moment_survives_its_offset(moment: datetime, portal_tz: timezone) -> None:
    text = moment.replace(microsecond=0).isoformat()
    assert fields.parse_datetime(text, portal_tz) == moment.replace(microsecond=0).astimezone(UTC)
    assert fields.parse_date(text, portal_tz) == moment.date()  # the calendar day as printed


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=-(2**62), max_value=2**62), st.sampled_from([str, int, lambda v: f" {v} "]))
def test_ids_round_trip(number: int, shape: Any) -> None:
    assert fields.parse_id(shape(number)) == number


@settings(max_examples=200, deadline=None)
@given(st.decimals(min_value=Decimal("-1e15"), max_value=Decimal("1e15"), places=2, allow_nan=False))
def test_money_is_exact(amount: Decimal) -> None:
    assert fields.parse_money(str(amount)) == amount


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.sampled_from([c.rest for c in ent.STREAMS["deal"].columns] + ["UF_CRM_X", "PHONE"]), ANYTHING, max_size=12),
       st.integers(min_value=1, max_value=10**9), OFFSETS)
def test_row_builders_raise_only_field_errors(record: dict[str, Any], record_id: int, tz: timezone) -> None:
    record = {**record, "ID": str(record_id)}
    for name in ("deal", "lead", "contact", "company"):
        stream = ent.STREAMS[name]
        _only_field_errors(fields.record_row, stream, record, tz, NOW, [])
        _only_field_errors(fields.multifield_rows, stream, record)
        _only_field_errors(fields.uf_row, stream, record, {"uf_crm_x": ent.ID, "uf_crm_x_label": ent.TEXT}, {}, tz, NOW, [])
    _only_field_errors(fields.history_row, ent.STREAMS["deal_stage_history"], record, tz, NOW)
    _only_field_errors(fields.status_row, record, NOW)
    _only_field_errors(fields.user_row, record, tz, NOW)
    _only_field_errors(fields.userfield_row, record, None, NOW)
    _only_field_errors(fields.enum_label, record.get("UF_CRM_X"), {"1": "a"})
