"""Pipeline and stage methods over real HTTP: reply shapes, error envelopes and statuses, form and GET encoding."""

from __future__ import annotations

from typing import Any

import requests

from connector.encoding import encode_query


def post(emulator: Any, method: str, params: dict[str, Any]) -> requests.Response:
    return requests.post(f"{emulator.url}{method}", json=params, timeout=10)


def test_category_replies_have_the_real_shapes(emulator: Any) -> None:
    listed = post(emulator, "crm.category.list", {"entityTypeId": 2})
    assert listed.status_code == 200
    body = listed.json()
    assert list(body)[:2] == ["result", "total"]
    assert body["result"] == {"categories": [
        {"id": 0, "name": "Общая", "sort": 0, "entityTypeId": 2, "isDefault": "Y"}]}
    assert body["total"] == 1
    added = post(emulator, "crm.category.add", {"entityTypeId": 2, "fields": {"name": "Тендеры", "sort": 300}})
    category = added.json()["result"]["category"]
    assert category["id"] == 1 and category["name"] == "Тендеры"
    deleted = post(emulator, "crm.category.delete", {"entityTypeId": 2, "id": 1})
    assert deleted.status_code == 200 and deleted.json()["result"] is None


def test_category_errors_over_http(emulator: Any) -> None:
    default = post(emulator, "crm.category.delete", {"entityTypeId": 2, "id": 0})
    assert default.status_code == 400
    assert default.json() == {"error": 0, "error_description": "Default deal category cannot be deleted"}
    lead = post(emulator, "crm.category.list", {"entityTypeId": 1})
    assert (lead.status_code, lead.json()["error"]) == (400, "ENTITY_TYPE_NOT_SUPPORTED")
    spa = post(emulator, "crm.category.list", {"entityTypeId": 1036})
    assert spa.json() == {"error": "NOT_FOUND", "error_description": "Smart process not found"}


def test_status_errors_use_empty_codes_or_error_core(emulator: Any) -> None:
    duplicate = post(emulator, "crm.status.add",
                     {"fields": {"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "NEW", "NAME": "x"}})
    assert duplicate.status_code == 400
    assert duplicate.json() == {"error": "ERROR_CORE", "error_description": "The specified status ID already exists."}
    unknown = post(emulator, "crm.status.add", {"fields": {"ENTITY_ID": "NOPE", "STATUS_ID": "X", "NAME": "x"}})
    assert unknown.status_code == 400
    assert unknown.json() == {"error": "", "error_description": "Specified entity type is not supported."}


def test_status_add_from_a_form_body_prefixes_the_stage(emulator: Any) -> None:
    post(emulator, "crm.category.add", {"entityTypeId": 2, "fields": {"name": "Повторные продажи"}})
    body = encode_query({"fields": {"ENTITY_ID": "DEAL_STAGE_1", "STATUS_ID": "DECISION", "NAME": "Решение",
                                    "SORT": 55, "COLOR": "#FFA900"}})
    reply = requests.post(f"{emulator.url}crm.status.add", data=body, timeout=10,
                          headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert reply.status_code == 200
    new_id = reply.json()["result"]
    assert isinstance(new_id, int)
    row = requests.get(f"{emulator.url}crm.status.get.json?id={new_id}", timeout=10).json()["result"]
    assert (row["STATUS_ID"], row["SORT"], row["CATEGORY_ID"]) == ("C1:DECISION", "55", "1")


def test_status_list_by_query_string(emulator: Any) -> None:
    query = encode_query({"filter": {"ENTITY_ID": "STATUS"}, "order": {"SORT": "ASC"}})
    body = requests.get(f"{emulator.url}crm.status.list?{query}", timeout=10).json()
    assert [r["STATUS_ID"] for r in body["result"]] == ["NEW", "IN_PROCESS", "PROCESSED", "CONVERTED", "JUNK"]
    assert body["total"] == 5 and "next" not in body


def test_entity_types_and_items_over_http(emulator: Any) -> None:
    types = post(emulator, "crm.status.entity.types", {}).json()["result"]
    assert types[0]["ID"] == "STATUS" and {"ID": "SOURCE", "NAME": "Источники"} in types
    items = post(emulator, "crm.status.entity.items", {"entityId": "DEAL_STAGE"}).json()["result"]
    assert items[-1] == {"NAME": "Анализ причины провала", "SORT": 80, "STATUS_ID": "APOLOGY"}
