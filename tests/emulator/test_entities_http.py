"""CRM methods over real HTTP: the wire formats and envelopes a Bitrix24 client sees."""

from __future__ import annotations

from typing import Any

import requests

from connector.emulator.registry import invoke


def post(emulator: Any, method: str, payload: dict[str, Any]) -> requests.Response:
    return requests.post(emulator.url + method, json=payload, timeout=10)


def test_json_add_and_query_string_keyset_list(emulator: Any) -> None:
    reply = post(emulator, "crm.deal.add", {"fields": {"TITLE": "Сделка", "OPPORTUNITY": 1000}})
    assert reply.status_code == 200 and reply.json()["result"] == 1
    query = "filter%5B%3EID%5D=0&order[ID]=ASC&select[]=ID&select[]=OPPORTUNITY&select[]=DATE_CREATE&start=-1"
    body = requests.get(f"{emulator.url}crm.deal.list.json?{query}", timeout=10).json()
    assert body["total"] == 0 and "next" not in body
    [row] = body["result"]
    assert row["ID"] == "1" and row["OPPORTUNITY"] == "1000.00" and row["DATE_CREATE"].endswith("+03:00")


def test_form_encoded_multi_fields_and_user_fields(emulator: Any) -> None:
    form = {"fields[FIELD_NAME]": "SCORE", "fields[USER_TYPE_ID]": "integer", "fields[LABEL]": "Оценка"}
    assert requests.post(emulator.url + "crm.lead.userfield.add", data=form, timeout=10).status_code == 200
    form = {
        "fields[TITLE]": "Заявка с сайта",
        "fields[PHONE][0][VALUE]": "+79990001122",
        "fields[PHONE][0][VALUE_TYPE]": "MOBILE",
        "fields[UF_CRM_SCORE]": "5",
    }
    lead_id = requests.post(emulator.url + "crm.lead.add", data=form, timeout=10).json()["result"]
    lead = post(emulator, "crm.lead.get", {"id": lead_id}).json()["result"]
    assert lead["PHONE"][0]["VALUE"] == "+79990001122" and lead["HAS_PHONE"] == "Y" and lead["UF_CRM_SCORE"] == "5"
    fields = post(emulator, "crm.lead.fields", {}).json()["result"]
    assert fields["UF_CRM_SCORE"]["isDynamic"] is True and fields["UF_CRM_SCORE"]["listLabel"] == "Оценка"


def test_paging_envelope_over_http(emulator: Any) -> None:
    for i in range(60):
        invoke(emulator.portal, "crm.deal.add", {"fields": {"TITLE": f"№{i}"}})
    reply = requests.get(emulator.url + "crm.deal.list?select[]=ID&start=0", timeout=10)
    body = reply.json()
    assert list(body) == ["result", "next", "total", "time"]
    assert (len(body["result"]), body["next"], body["total"]) == (50, 50, 60)
    last = requests.get(emulator.url + "crm.deal.list?select[]=ID&start=50", timeout=10).json()
    assert len(last["result"]) == 10 and "next" not in last


def test_legacy_and_item_errors_over_http(emulator: Any) -> None:
    missing = post(emulator, "crm.deal.get", {"id": 404})
    assert missing.status_code == 400 and missing.json() == {"error": "", "error_description": "Not found"}
    bad = post(emulator, "crm.item.list", {"entityTypeId": 2, "filter": {"secret": 1}})
    assert bad.status_code == 400 and bad.json() == {
        "error": "INVALID_ARG_VALUE", "error_description": "Invalid filter: field 'secret' is not allowed in filter"}
    wrong_type = post(emulator, "crm.stagehistory.list", {"entityTypeId": 4})
    assert wrong_type.status_code == 400 and wrong_type.json()["error"] == "ENTITY_TYPE_NOT_SUPPORTED"


def test_stage_history_and_items_are_typed_over_http(emulator: Any) -> None:
    deal = post(emulator, "crm.deal.add", {"fields": {"STAGE_ID": "PREPARATION"}}).json()["result"]
    rows = post(emulator, "crm.stagehistory.list", {"entityTypeId": 2, "filter": {"OWNER_ID": deal}}).json()
    assert rows["total"] == 1 and rows["result"]["items"][0]["OWNER_ID"] == deal
    assert rows["result"]["items"][0]["CATEGORY_ID"] == 0 and rows["result"]["items"][0]["TYPE_ID"] == 1
    item = post(emulator, "crm.item.get", {"entityTypeId": 2, "id": deal}).json()["result"]["item"]
    assert item["id"] == deal and item["opportunity"] == 0 and item["stageId"] == "PREPARATION"
    assert post(emulator, "crm.item.delete", {"entityTypeId": 2, "id": deal}).json()["result"] == []
