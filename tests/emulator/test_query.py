"""The shared list engine: every filter operator, typed comparisons, order, select rules and paging."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from connector.emulator import pipelines, query
from connector.emulator.registry import ApiError, Call, dispatch, invoke

MSK = timezone(timedelta(hours=3))


def at(portal: Any, text: str) -> None:
    """Freeze the portal clock at an ISO moment."""
    moment = datetime.fromisoformat(text).timestamp()
    portal.clock = lambda: moment


def listing(portal: Any, method: str = "crm.deal.list", **params: Any) -> Any:
    """Dispatch a list call and return the full Result (rows, total, next)."""
    return dispatch(Call(portal, method, params))


def ids(result: Any) -> list[int]:
    rows = result.result["items"] if isinstance(result.result, dict) else result.result
    return [int(row.get("ID", row.get("id"))) for row in rows]


@pytest.fixture
def four(portal: Any) -> Any:
    """Four deals with distinct titles, amounts, creation moments and one comment."""
    specs = [
        ("2026-01-01T09:00:00+03:00", {"TITLE": "Молоко", "OPPORTUNITY": 100, "COMMENTS": "срочно"}),
        ("2026-01-01T16:00:00+03:00", {"TITLE": "Молот", "OPPORTUNITY": 200}),
        ("2026-01-02T10:00:00+03:00", {"TITLE": "Сыр", "OPPORTUNITY": 300, "STAGE_ID": "WON"}),
        ("2026-01-03T10:00:00+03:00", {"TITLE": "молоток", "OPPORTUNITY": 400.5}),
    ]
    for moment, fields in specs:
        at(portal, moment)
        invoke(portal, "crm.deal.add", {"fields": fields})
    return portal


OPERATOR_TABLE = [
    pytest.param({"TITLE": "Сыр"}, [3], id="plain-equal"),
    pytest.param({"=TITLE": "сыр"}, [3], id="equal-case-insensitive"),
    pytest.param({"!TITLE": "Сыр"}, [1, 2, 4], id="not"),
    pytest.param({"!=TITLE": "Сыр"}, [1, 2, 4], id="not-equal"),
    pytest.param({">OPPORTUNITY": 200}, [3, 4], id="gt-money"),
    pytest.param({">=OPPORTUNITY": "200"}, [2, 3, 4], id="ge-string-value"),
    pytest.param({"<OPPORTUNITY": 200}, [1], id="lt"),
    pytest.param({"<=OPPORTUNITY": 200.0}, [1, 2], id="le-float"),
    pytest.param({">OPPORTUNITY": 99}, [1, 2, 3, 4], id="numeric-not-string-compare"),
    pytest.param({"><OPPORTUNITY": [150, 300]}, [2, 3], id="between"),
    pytest.param({"@ID": [1, 3]}, [1, 3], id="in"),
    pytest.param({"!@ID": [1, 3]}, [2, 4], id="not-in"),
    pytest.param({"ID": [2, 4]}, [2, 4], id="array-means-in"),
    pytest.param({"!ID": [2, 4]}, [1, 3], id="not-array-means-not-in"),
    pytest.param({"%TITLE": "МОЛО"}, [1, 2, 4], id="substring"),
    pytest.param({"=%TITLE": "Мол%"}, [1, 2, 4], id="like-prefix"),
    pytest.param({"%=TITLE": "%ок"}, [4], id="like-suffix"),
    pytest.param({"=%TITLE": "Мол_т"}, [2], id="like-underscore"),
    pytest.param({"!%TITLE": "лот"}, [1, 3], id="not-substring"),
    pytest.param({"!=%TITLE": "Мол%"}, [3], id="not-like"),
    pytest.param({"!%=TITLE": "%т"}, [1, 3, 4], id="not-like-alias"),
    pytest.param({">=DATE_CREATE": "2026-01-02"}, [3, 4], id="date-only"),
    pytest.param({"<DATE_CREATE": "2026-01-01T12:00:00+00:00"}, [1], id="offset-aware-utc"),
    pytest.param({"<=DATE_CREATE": "2026-01-01T16:00:00+03:00"}, [1, 2], id="offset-aware-same"),
    pytest.param({">DATE_CREATE": "01.01.2026 12:00:00"}, [2, 3, 4], id="site-format"),
    pytest.param({"COMMENTS": ""}, [2, 3, 4], id="empty"),
    pytest.param({"!COMMENTS": ""}, [1], id="not-empty"),
    pytest.param({"CLOSED": "y"}, [3], id="char-flag"),
    pytest.param({"STAGE_SEMANTIC_ID": "S"}, [3], id="semantic"),
    pytest.param({"NO_SUCH_FIELD": 1}, [1, 2, 3, 4], id="legacy-ignores-unknown"),
    pytest.param({">ID": 1, "<ID": 4}, [2, 3], id="id-range"),
    pytest.param({">=ID": 2, "%TITLE": "мол"}, [2, 4], id="id-range-and-like"),
    pytest.param({">ID": "abc"}, [], id="unreadable-id"),
    pytest.param({"filter-typo>": 1}, [1, 2, 3, 4], id="garbage-key-ignored"),
]


@pytest.mark.parametrize("flt, expected", OPERATOR_TABLE)
def test_filter_operators_on_deal_list(four: Any, flt: dict[str, Any], expected: list[int]) -> None:
    assert ids(listing(four, filter=flt)) == expected


def test_like_does_not_work_on_stage_fields_of_legacy_lists(portal: Any) -> None:
    category = pipelines.new_category(portal, "Партнёры", 200)
    invoke(portal, "crm.deal.add", {"fields": {"STAGE_ID": "NEW"}})
    invoke(portal, "crm.deal.add", {"fields": {"CATEGORY_ID": category["id"]}})
    assert ids(listing(portal, filter={"%STAGE_ID": "NEW"})) == [1]  # LIKE degrades to equality
    assert ids(listing(portal, filter={"%TITLE": "Сделка"})) == [1, 2]


def test_filter_must_be_an_array(four: Any) -> None:
    with pytest.raises(ApiError) as err:
        listing(four, filter="TITLE")
    assert (err.value.code, err.value.description, err.value.status) == ("", "Parameter 'filter' must be array.", 400)
    assert ids(listing(four, filter="")) == [1, 2, 3, 4]  # an empty form value is no filter


def test_item_list_filter_is_strict_and_typed(four: Any) -> None:
    assert ids(listing(four, "crm.item.list", entityTypeId=2, filter={">opportunity": 250})) == [3, 4]
    assert ids(listing(four, "crm.item.list", entityTypeId=2, filter={"@id": [1, 2], ">ID": 1})) == [2]
    for flt, text in [
        ({"nope": 1}, "Invalid filter: field 'nope' is not allowed in filter"),
        ({">=nope": 1}, "Invalid filter: field 'nope' is not allowed in filter"),
        ({">opportunity": "lots"}, "Invalid filter: field 'OPPORTUNITY' has invalid value"),
    ]:
        with pytest.raises(ApiError) as err:
            listing(four, "crm.item.list", entityTypeId=2, filter=flt)
        assert (err.value.code, err.value.description, err.value.status) == ("INVALID_ARG_VALUE", text, 400)


def test_item_list_or_groups(four: Any) -> None:
    flt = {"0": {"logic": "OR", "0": {"title": "Сыр"}, "1": {"<opportunity": 150}}, "<id": 4}
    assert ids(listing(four, "crm.item.list", entityTypeId=2, filter=flt)) == [1, 3]
    # the same filter as it arrives from a form body: the outer group became a PHP list
    flt_list = [{"logic": "OR", "0": {"title": "Сыр"}, "1": {"<opportunity": 150}}]
    assert ids(listing(four, "crm.item.list", entityTypeId=2, filter=flt_list)) == [1, 3]


def test_top_level_or_does_not_turn_id_conditions_into_bounds(four: Any) -> None:
    flt = {"logic": "OR", "ID": 1, "TITLE": "Сыр"}
    assert ids(listing(four, "crm.item.list", entityTypeId=2, filter=flt)) == [1, 3]


# ---------------------------------------------------------------------------- order


def test_order_directions_and_defaults(four: Any) -> None:
    assert ids(listing(four)) == [1, 2, 3, 4]
    assert ids(listing(four, order={"OPPORTUNITY": "desc"})) == [4, 3, 2, 1]
    assert ids(listing(four, order={"ID": "DESC"})) == [4, 3, 2, 1]
    assert ids(listing(four, order={"CLOSED": "DESC", "ID": "DESC"})) == [3, 4, 2, 1]
    assert ids(listing(four, order={"TITLE": "ASC"})) == [1, 2, 4, 3]  # case-insensitive collation
    assert ids(listing(four, order={"COMMENTS": "ASC"})) == [2, 3, 4, 1]  # NULLs first
    assert ids(listing(four, order={"NOPE": "DESC"})) == [1, 2, 3, 4]  # legacy ignores it
    assert ids(listing(four, order={"ID": "sideways"})) == [1, 2, 3, 4]  # legacy reads it as ASC


def test_item_and_history_order_is_strict(four: Any) -> None:
    cases = [
        ({"nope": "ASC"}, "Invalid order: field 'nope' is not allowed in order"),
        ({"id": "up"}, "Invalid order: allowed sort directions are ASC, DESC. But got 'up' for field 'id'"),
    ]
    for method, extra in [("crm.item.list", {"entityTypeId": 2}), ("crm.stagehistory.list", {"entityTypeId": 2})]:
        for order, text in cases:
            with pytest.raises(ApiError) as err:
                listing(four, method, order=order, **extra)
            assert err.value.code == "INVALID_ARG_VALUE"
            assert err.value.description == text


# ---------------------------------------------------------------------------- select


@pytest.fixture
def lead_with_extras(portal: Any) -> Any:
    invoke(portal, "crm.lead.userfield.add", {"fields": {"FIELD_NAME": "SCORE", "USER_TYPE_ID": "integer"}})
    invoke(portal, "crm.lead.userfield.add",
           {"fields": {"FIELD_NAME": "TAGS", "USER_TYPE_ID": "string", "MULTIPLE": "Y"}})
    invoke(portal, "crm.lead.add", {"fields": {
        "TITLE": "Лид", "NAME": "Ольга", "PHONE": [{"VALUE": "+79990001122", "VALUE_TYPE": "MOBILE"}],
        "UF_CRM_SCORE": 7, "UF_CRM_TAGS": ["a", "b"],
    }})
    return portal


def test_select_rules_of_legacy_lists(lead_with_extras: Any) -> None:
    def row(select: Any = None) -> dict[str, Any]:
        params = {} if select is None else {"select": select}
        return listing(lead_with_extras, "crm.lead.list", **params).result[0]

    default = row()
    assert default["UF_CRM_SCORE"] == "7" and "NAME" in default
    assert "PHONE" not in default and "UF_CRM_TAGS" not in default  # multi-fields and multiple UFs need naming
    star = row(["*"])
    assert "NAME" in star and "UF_CRM_SCORE" not in star and "PHONE" not in star
    assert set(row(["UF_*"])) == {"ID", "UF_CRM_SCORE"}
    named = row(["NAME", "PHONE", "UF_CRM_TAGS", "NO_SUCH"])
    assert set(named) == {"ID", "NAME", "PHONE", "UF_CRM_TAGS"}  # ID always; unknown names dropped
    assert named["PHONE"][0]["VALUE"] == "+79990001122" and named["UF_CRM_TAGS"] == ["a", "b"]
    assert set(row(["*", "EMAIL"])) == set(star)  # an empty multi-field is left out


def test_deal_list_cannot_select_contact_ids(portal: Any) -> None:
    contact = invoke(portal, "crm.contact.add", {"fields": {"NAME": "Иван"}})
    invoke(portal, "crm.deal.add", {"fields": {"CONTACT_IDS": [contact]}})
    row = listing(portal, select=["ID", "CONTACT_IDS", "CONTACT_ID"]).result[0]
    assert row == {"ID": "1", "CONTACT_ID": str(contact)}


def test_item_select_names_or_star(lead_with_extras: Any) -> None:
    items = listing(lead_with_extras, "crm.item.list", entityTypeId=1, select=["title", "ufCrm_SCORE"]).result
    assert items == {"items": [{"id": 1, "title": "Лид"}]}  # UF camel name is ufCrmScore, not ufCrm_SCORE
    items = listing(lead_with_extras, "crm.item.list", entityTypeId=1, select=["title", "ufCrmScore"]).result
    assert items["items"][0] == {"id": 1, "title": "Лид", "ufCrmScore": 7}
    star = listing(lead_with_extras, "crm.item.list", entityTypeId=1, select=["*"]).result["items"][0]
    assert star["fm"][0]["value"] == "+79990001122" and star["ufCrmTags"] == ["a", "b"]
    assert star["stageId"] == "NEW" and isinstance(star["id"], int)


# ---------------------------------------------------------------------------- paging


@pytest.fixture
def many(portal: Any) -> Any:
    for i in range(120):
        invoke(portal, "crm.deal.add", {"fields": {"TITLE": f"Сделка {i}", "OPPORTUNITY": i}})
    return portal


def test_pages_carry_total_and_next_only_when_more_rows_exist(many: Any) -> None:
    first = listing(many, start=0)
    assert (len(first.result), first.total, first.next) == (50, 120, 50)
    second = listing(many, start=50)
    assert ids(second)[0] == 51 and second.next == 100
    last = listing(many, start=100)
    assert (len(last.result), last.total, last.next) == (20, 120, None)
    beyond = listing(many, start=500)
    assert (beyond.result, beyond.total, beyond.next) == ([], 120, None)
    assert ids(listing(many, start="abc"))[0] == 1  # non-numeric start means 0


def test_start_minus_one_disables_count(many: Any) -> None:
    page = listing(many, start=-1, order={"ID": "ASC"}, filter={">ID": 60})
    assert (len(page.result), page.total, page.next) == (50, 0, None)
    assert ids(page)[0] == 61


def test_keyset_walk_returns_every_row_once(many: Any) -> None:
    seen: list[int] = []
    last = 0
    while True:
        page = listing(many, start=-1, order={"ID": "ASC"}, filter={">ID": last}, select=["ID"])
        seen += ids(page)
        if len(page.result) < 50:
            break
        last = seen[-1]
    assert seen == list(range(1, 121))
    desc = listing(many, start=-1, order={"ID": "DESC"}, filter={"<ID": 100}, select=["ID"])
    assert ids(desc) == list(range(99, 49, -1))


def test_counting_and_offsets_cost_more_than_keyset(many: Any) -> None:
    keyset = Call(many, "crm.deal.list", {"start": -1, "order": {"ID": "ASC"}, "filter": {">ID": 10}})
    counted = Call(many, "crm.deal.list", {"start": 0})
    deep = Call(many, "crm.deal.list", {"start": 50})  # same 50 rows returned, 50 more skipped
    for call in (keyset, counted, deep):
        dispatch(call)
    assert keyset.cost < counted.cost < deep.cost


def test_keyset_page_stops_after_fifty_matches() -> None:
    rows = {i: {"ID": str(i), "N": str(i % 2)} for i in range(1, 10_001)}
    source = query.Source(sorted(rows), fetch=rows.get)
    kinds = {"ID": "int", "N": "int"}
    schema = query.Schema(kinds, query.upper_resolver(kinds))
    flt = query.compile_filter({">ID": 5000, "N": 1}, schema)
    page = query.paginate(source, flt, [], -1)
    assert [int(r["ID"]) for r in page.rows] == list(range(5001, 5100, 2))
    assert page.scanned == 99  # walked from the bisect point, stopped at the 50th match
    counted = query.paginate(source, flt, [], 0)
    assert counted.matched == 2500 and counted.next == 50


def test_parse_moment_reads_the_documented_formats() -> None:
    assert query.parse_moment("2025-01-01", MSK) == datetime(2025, 1, 1, tzinfo=MSK)
    assert query.parse_moment("2025-10-31T00:00:00+02:00", MSK) == datetime(2025, 10, 30, 22, tzinfo=timezone.utc)
    assert query.parse_moment("2025-01-01T00:00:00Z", MSK) == datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert query.parse_moment("31.12.2025", MSK) == datetime(2025, 12, 31, tzinfo=MSK)
    assert query.parse_moment("soon", MSK) is None
