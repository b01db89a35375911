"""Stage history as Bitrix24 writes it, and crm.stagehistory.list as it answers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from connector.emulator import pipelines
from connector.emulator.registry import ApiError, Call, dispatch, invoke


def at(portal: Any, text: str) -> None:
    """Freeze the portal clock at an ISO moment."""
    moment = datetime.fromisoformat(text).timestamp()
    portal.clock = lambda: moment


def history(portal: Any, type_id: int = 2, **params: Any) -> list[dict[str, Any]]:
    return invoke(portal, "crm.stagehistory.list", {"entityTypeId": type_id, **params})["items"]


def short(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """(TYPE_ID, OWNER_ID, CATEGORY_ID, STAGE_ID) per deal row."""
    return [(r["TYPE_ID"], r["OWNER_ID"], r["CATEGORY_ID"], r["STAGE_ID"]) for r in rows]


@pytest.fixture
def tenders(portal: Any) -> int:
    return pipelines.new_category(portal, "Тендеры", 200)["id"]


def test_creation_intermediate_and_final_moves(portal: Any) -> None:
    at(portal, "2026-03-01T10:00:00+03:00")
    deal = invoke(portal, "crm.deal.add", {"fields": {}})
    at(portal, "2026-03-02T11:00:00+03:00")
    invoke(portal, "crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "PREPARATION"}})
    invoke(portal, "crm.deal.update", {"id": deal, "fields": {"TITLE": "без движения"}})  # no row
    invoke(portal, "crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "PREPARATION"}})  # same stage: no row
    at(portal, "2026-03-05T16:30:00+03:00")
    invoke(portal, "crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "WON"}})
    rows = history(portal)
    assert rows == [
        {"ID": 1, "TYPE_ID": 1, "OWNER_ID": deal, "CREATED_TIME": "2026-03-01T10:00:00+03:00", "CATEGORY_ID": 0,
         "STAGE_SEMANTIC_ID": "P", "STAGE_ID": "NEW"},
        {"ID": 2, "TYPE_ID": 2, "OWNER_ID": deal, "CREATED_TIME": "2026-03-02T11:00:00+03:00", "CATEGORY_ID": 0,
         "STAGE_SEMANTIC_ID": "P", "STAGE_ID": "PREPARATION"},
        {"ID": 3, "TYPE_ID": 3, "OWNER_ID": deal, "CREATED_TIME": "2026-03-05T16:30:00+03:00", "CATEGORY_ID": 0,
         "STAGE_SEMANTIC_ID": "S", "STAGE_ID": "WON"},
    ]
    invoke(portal, "crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "APOLOGY"}})  # final to final
    assert short(history(portal))[-1] == (3, deal, 0, "APOLOGY")
    assert history(portal)[-1]["STAGE_SEMANTIC_ID"] == "F"


def test_creation_directly_in_a_final_stage_is_a_creation_row(portal: Any) -> None:
    deal = invoke(portal, "crm.deal.add", {"fields": {"STAGE_ID": "LOSE"}})
    assert short(history(portal)) == [(1, deal, 0, "LOSE")]
    assert history(portal)[0]["STAGE_SEMANTIC_ID"] == "F"


def test_lead_history_uses_status_fields(portal: Any) -> None:
    lead = invoke(portal, "crm.lead.add", {"fields": {}})
    invoke(portal, "crm.item.update", {"entityTypeId": 1, "id": lead, "fields": {"stageId": "IN_PROCESS"}})
    invoke(portal, "crm.lead.update", {"id": lead, "fields": {"STATUS_ID": "CONVERTED"}})
    rows = history(portal, 1)
    assert [(r["TYPE_ID"], r["STATUS_ID"], r["STATUS_SEMANTIC_ID"]) for r in rows] == [
        (1, "NEW", "P"), (2, "IN_PROCESS", "P"), (3, "CONVERTED", "S")]
    assert set(rows[0]) == {"ID", "TYPE_ID", "OWNER_ID", "CREATED_TIME", "STATUS_SEMANTIC_ID", "STATUS_ID"}
    assert history(portal, 2) == []  # lead rows are not deal rows


def test_contacts_and_companies_have_no_history(portal: Any) -> None:
    invoke(portal, "crm.contact.add", {"fields": {"NAME": "Ян"}})
    invoke(portal, "crm.company.add", {"fields": {"TITLE": "Фирма"}})
    assert history(portal, 1) == [] and history(portal, 2) == []


def test_pipeline_change_writes_type_5_and_hides_old_rows(portal: Any, tenders: int) -> None:
    moved = invoke(portal, "crm.deal.add", {"fields": {}})
    invoke(portal, "crm.deal.update", {"id": moved, "fields": {"STAGE_ID": "EXECUTING"}})
    stays = invoke(portal, "crm.deal.add", {"fields": {}})
    invoke(portal, "crm.item.update", {"entityTypeId": 2, "id": moved, "fields": {"categoryId": tenders}})
    assert short(history(portal)) == [(1, stays, 0, "NEW"), (5, moved, tenders, f"C{tenders}:NEW")]
    invoke(portal, "crm.deal.update", {"id": moved, "fields": {"STAGE_ID": f"C{tenders}:WON"}})
    assert short(history(portal, filter={"OWNER_ID": moved})) == [
        (5, moved, tenders, f"C{tenders}:NEW"), (3, moved, tenders, f"C{tenders}:WON")]
    # moving back shows the rows of the pipeline it is in again, as the real portal filters by category
    invoke(portal, "crm.item.update", {"entityTypeId": 2, "id": moved, "fields": {"categoryId": 0}})
    assert short(history(portal, filter={"OWNER_ID": moved})) == [
        (1, moved, 0, "NEW"), (2, moved, 0, "EXECUTING"), (5, moved, 0, "NEW")]
    counted = dispatch(Call(portal, "crm.stagehistory.list", {"entityTypeId": 2, "start": 0}))
    assert counted.total == 4  # the hidden rows are not counted either


def test_deleted_records_lose_their_history(portal: Any) -> None:
    gone = invoke(portal, "crm.deal.add", {"fields": {}})
    kept = invoke(portal, "crm.deal.add", {"fields": {}})
    lead = invoke(portal, "crm.lead.add", {"fields": {}})
    invoke(portal, "crm.deal.delete", {"id": gone})
    invoke(portal, "crm.lead.delete", {"id": lead})
    assert [r["OWNER_ID"] for r in history(portal)] == [kept]
    assert history(portal, 1) == []


def test_filter_order_select_and_paging(portal: Any) -> None:
    for _ in range(30):
        deal = invoke(portal, "crm.deal.add", {"fields": {}})
        invoke(portal, "crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "PREPARATION"}})
    first = dispatch(Call(portal, "crm.stagehistory.list", {"entityTypeId": 2, "start": 0}))
    assert (len(first.result["items"]), first.total, first.next) == (50, 60, 50)
    keyset = dispatch(Call(portal, "crm.stagehistory.list", {
        "entityTypeId": "2", "start": -1, "order": {"ID": "ASC"}, "filter": {">ID": 40}, "select": ["ID", "STAGE_ID"]}))
    assert keyset.total == 0 and keyset.next is None
    assert keyset.result["items"][0] == {"ID": 41, "STAGE_ID": "NEW"} and len(keyset.result["items"]) == 20
    moves = history(portal, filter={"TYPE_ID": 2, "@OWNER_ID": [3, 4]}, order={"ID": "DESC"}, select=["OWNER_ID"])
    assert moves == [{"ID": 8, "OWNER_ID": 4}, {"ID": 6, "OWNER_ID": 3}]
    assert history(portal, filter={"%STAGE_ID": "PREP", "<OWNER_ID": 2}) == [history(portal)[1]]
    assert history(portal, filter={">CREATED_TIME": "2999-01-01"}) == []


def test_timestamps_come_from_the_portal_clock_and_filter_across_offsets(portal: Any) -> None:
    at(portal, "2025-06-01T23:30:00+03:00")
    invoke(portal, "crm.deal.add", {"fields": {}})
    at(portal, "2025-06-02T09:00:00+03:00")
    invoke(portal, "crm.deal.add", {"fields": {}})
    assert [r["CREATED_TIME"] for r in history(portal)] == ["2025-06-01T23:30:00+03:00", "2025-06-02T09:00:00+03:00"]
    assert [r["OWNER_ID"] for r in history(portal, filter={">=CREATED_TIME": "2025-06-01T21:00:00+00:00"})] == [2]


HISTORY_ERRORS = [
    pytest.param({"entityTypeId": 3}, ("ENTITY_TYPE_NOT_SUPPORTED", "Entity type CONTACT is not supported"),
                 id="contact"),
    pytest.param({"entityTypeId": 128}, ("ENTITY_TYPE_NOT_SUPPORTED", "Entity type 128 is not supported"), id="spa"),
    pytest.param({}, ("ENTITY_TYPE_NOT_SUPPORTED", "Entity type  is not supported"), id="missing"),
    pytest.param({"entityTypeId": 2, "filter": {"STATUS_ID": "NEW"}},
                 ("INVALID_ARG_VALUE", "Invalid filter: field 'STATUS_ID' is not allowed in filter"), id="lead-key"),
    pytest.param({"entityTypeId": 2, "filter": {">OWNER_ID": "many"}},
                 ("INVALID_ARG_VALUE", "Invalid filter: field 'OWNER_ID' has invalid value"), id="bad-value"),
    pytest.param({"entityTypeId": 1, "order": {"STAGE_ID": "ASC"}},
                 ("INVALID_ARG_VALUE", "Invalid order: field 'STAGE_ID' is not allowed in order"), id="order-field"),
]


@pytest.mark.parametrize("params, expected", HISTORY_ERRORS)
def test_history_errors(portal: Any, params: dict[str, Any], expected: tuple[str, str]) -> None:
    with pytest.raises(ApiError) as err:
        invoke(portal, "crm.stagehistory.list", params)
    assert (err.value.code, err.value.description, err.value.status) == (*expected, 400)


# ---------------------------------------------------------------------------- the legacy writer


@pytest.fixture
def legacy() -> Any:
    from connector.emulator import new_portal

    return new_portal(history="legacy")


def test_reopened_deal_loses_its_final_row_on_a_legacy_portal(legacy: Any) -> None:
    deal = invoke(legacy, "crm.deal.add", {"fields": {}})
    invoke(legacy, "crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "WON"}})
    assert short(history(legacy)) == [(1, deal, 0, "NEW"), (3, deal, 0, "WON")]
    invoke(legacy, "crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "EXECUTING"}})  # reopened
    rows = history(legacy)
    assert short(rows) == [(1, deal, 0, "NEW"), (2, deal, 0, "EXECUTING")]
    assert [r["ID"] for r in rows] == [1, 3]  # the won row (ID 2) is gone, its ID is not reused
    assert history(legacy, start=0) == rows


def test_the_same_moves_keep_every_row_on_a_current_portal(portal: Any) -> None:
    deal = invoke(portal, "crm.deal.add", {"fields": {}})
    invoke(portal, "crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "WON"}})
    invoke(portal, "crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "EXECUTING"}})
    assert short(history(portal)) == [(1, deal, 0, "NEW"), (3, deal, 0, "WON"), (2, deal, 0, "EXECUTING")]


def test_legacy_final_to_final_keeps_only_the_last_and_other_records_are_untouched(legacy: Any) -> None:
    first = invoke(legacy, "crm.deal.add", {"fields": {}})
    second = invoke(legacy, "crm.deal.add", {"fields": {"STAGE_ID": "LOSE"}})  # created final: a creation row
    invoke(legacy, "crm.deal.update", {"id": first, "fields": {"STAGE_ID": "WON"}})
    invoke(legacy, "crm.deal.update", {"id": first, "fields": {"STAGE_ID": "APOLOGY"}})
    invoke(legacy, "crm.deal.update", {"id": second, "fields": {"STAGE_ID": "NEW"}})
    assert short(history(legacy)) == [(1, first, 0, "NEW"), (1, second, 0, "LOSE"), (3, first, 0, "APOLOGY"),
                                      (2, second, 0, "NEW")]


def test_legacy_reopened_lead_loses_its_junk_row(legacy: Any) -> None:
    lead = invoke(legacy, "crm.lead.add", {"fields": {}})
    invoke(legacy, "crm.lead.update", {"id": lead, "fields": {"STATUS_ID": "JUNK"}})
    invoke(legacy, "crm.lead.update", {"id": lead, "fields": {"STATUS_ID": "IN_PROCESS"}})
    assert [(r["TYPE_ID"], r["STATUS_ID"]) for r in history(legacy, 1)] == [(1, "NEW"), (2, "IN_PROCESS")]


def test_legacy_writer_keeps_working_on_a_saved_and_loaded_portal(legacy: Any, tmp_path: Any) -> None:
    from connector.emulator.state import Portal

    deal = invoke(legacy, "crm.deal.add", {"fields": {}})
    invoke(legacy, "crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "WON"}})
    legacy.save(tmp_path / "legacy.state")
    loaded = Portal.load(tmp_path / "legacy.state")
    assert loaded.history_mode == "legacy"
    invoke(loaded, "crm.deal.update", {"id": deal, "fields": {"STAGE_ID": "NEW"}})
    assert short(history(loaded)) == [(1, deal, 0, "NEW"), (2, deal, 0, "NEW")]


def test_unknown_history_mode_is_refused() -> None:
    from connector.emulator import new_portal

    with pytest.raises(ValueError, match="unknown history mode 'old'"):
        new_portal(history="old")
