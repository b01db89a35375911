"""CRM records: legacy crm.lead/deal/contact/company methods, crm.item, user fields, events and errors."""

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


def bind_offline(portal: Any, *events: str) -> None:
    """Bind offline handlers directly in state, as event.bind would."""
    for event in events:
        portal.event_handlers.append({"event": event, "offline": True, "auth_connector": ""})


def queued(portal: Any) -> list[tuple[str, dict[str, Any]]]:
    return [(e["EVENT_NAME"], e["EVENT_DATA"]["FIELDS"]) for e in portal.offline_events.values()]


def error_of(portal: Any, method: str, params: dict[str, Any]) -> tuple[Any, str, int]:
    with pytest.raises(ApiError) as err:
        invoke(portal, method, params)
    return err.value.code, err.value.description, err.value.status


@pytest.fixture
def second_pipeline(portal: Any) -> int:
    return pipelines.new_category(portal, "Тендеры", 200)["id"]


# ---------------------------------------------------------------------------- legacy deal values


def test_deal_values_are_typed_as_the_real_portal(portal: Any) -> None:
    at(portal, "2026-03-01T10:15:00+03:00")
    deal_id = invoke(portal, "crm.deal.add", {"fields": {"TITLE": "Поставка", "OPPORTUNITY": 19999.99}})
    assert isinstance(deal_id, int)
    deal = invoke(portal, "crm.deal.get", {"id": deal_id})
    assert deal["ID"] == str(deal_id) and deal["OPPORTUNITY"] == "19999.99" and deal["TAX_VALUE"] == "0.00"
    assert deal["CATEGORY_ID"] == "0" and deal["STAGE_ID"] == pipelines.first_stage(portal, 0) == "NEW"
    assert deal["STAGE_SEMANTIC_ID"] == "P" and deal["CLOSED"] == "N" and deal["IS_NEW"] == "Y"
    assert deal["DATE_CREATE"] == deal["DATE_MODIFY"] == deal["MOVED_TIME"] == "2026-03-01T10:15:00+03:00"
    assert deal["BEGINDATE"] == "2026-03-01T00:00:00+03:00" and deal["CLOSEDATE"] == "2026-03-08T00:00:00+03:00"
    assert deal["ASSIGNED_BY_ID"] == deal["CREATED_BY_ID"] == deal["MOVED_BY_ID"] == "1"
    assert deal["CURRENCY_ID"] == "RUB" and deal["COMPANY_ID"] is None and deal["COMMENTS"] is None
    assert "CONTACT_IDS" not in deal  # documented: not returned by crm.deal.get/list


def test_deal_add_with_all_main_fields(portal: Any, second_pipeline: int) -> None:
    company = invoke(portal, "crm.company.add", {"fields": {"TITLE": "ООО Ромашка"}})
    contacts = [invoke(portal, "crm.contact.add", {"fields": {"NAME": n}}) for n in ("Анна", "Олег")]
    lead = invoke(portal, "crm.lead.add", {"fields": {"TITLE": "Заявка"}})
    deal_id = invoke(portal, "crm.deal.add", {"fields": {
        "TITLE": "Сделка", "CATEGORY_ID": second_pipeline, "OPPORTUNITY": "1000", "CURRENCY_ID": "usd",
        "ASSIGNED_BY_ID": 5, "SOURCE_ID": "WEB", "COMPANY_ID": company, "CONTACT_IDS": contacts, "LEAD_ID": lead,
        "BEGINDATE": "2026-04-01", "CLOSEDATE": "2026-04-30T15:00:00+00:00", "DATE_CREATE": "2000-01-01",
    }})
    deal = invoke(portal, "crm.deal.get", {"id": deal_id})
    assert deal["CATEGORY_ID"] == str(second_pipeline) and deal["STAGE_ID"] == f"C{second_pipeline}:NEW"
    assert deal["OPPORTUNITY"] == "1000.00" and deal["CURRENCY_ID"] == "USD" and deal["ASSIGNED_BY_ID"] == "5"
    assert deal["SOURCE_ID"] == "WEB" and deal["COMPANY_ID"] == str(company) and deal["LEAD_ID"] == str(lead)
    assert deal["CONTACT_ID"] == str(contacts[0])
    assert deal["BEGINDATE"] == "2026-04-01T00:00:00+03:00" and deal["CLOSEDATE"] == "2026-04-30T00:00:00+03:00"
    assert deal["DATE_CREATE"] != "2000-01-01"  # read-only fields are ignored
    item = invoke(portal, "crm.item.get", {"entityTypeId": 2, "id": deal_id})["item"]
    assert item["contactIds"] == contacts and item["companyId"] == company


def test_stage_prefix_picks_the_pipeline_and_final_stages_close(portal: Any, second_pipeline: int) -> None:
    deal_id = invoke(portal, "crm.deal.add", {"fields": {"STAGE_ID": f"C{second_pipeline}:PREPARATION"}})
    deal = invoke(portal, "crm.deal.get", {"id": deal_id})
    assert deal["CATEGORY_ID"] == str(second_pipeline) and deal["IS_NEW"] == "N"
    invoke(portal, "crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": f"C{second_pipeline}:LOSE"}})
    deal = invoke(portal, "crm.deal.get", {"id": deal_id})
    assert (deal["STAGE_SEMANTIC_ID"], deal["CLOSED"]) == ("F", "Y")
    invoke(portal, "crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": f"C{second_pipeline}:EXECUTING"}})
    deal = invoke(portal, "crm.deal.get", {"id": deal_id})
    assert (deal["STAGE_SEMANTIC_ID"], deal["CLOSED"]) == ("P", "N")


def test_deal_update_cannot_change_pipeline(portal: Any, second_pipeline: int) -> None:
    deal_id = invoke(portal, "crm.deal.add", {"fields": {"CATEGORY_ID": second_pipeline}})
    assert invoke(portal, "crm.deal.update", {"id": deal_id, "fields": {"CATEGORY_ID": 0, "TITLE": "Новое"}}) is True
    deal = invoke(portal, "crm.deal.get", {"id": deal_id})
    assert deal["CATEGORY_ID"] == str(second_pipeline) and deal["TITLE"] == "Новое"
    invoke(portal, "crm.deal.update", {"id": deal_id, "fields": {"STAGE_ID": "WON"}})  # a stage of pipeline 0
    deal = invoke(portal, "crm.deal.get", {"id": deal_id})
    assert deal["STAGE_ID"] == f"C{second_pipeline}:NEW" and deal["CATEGORY_ID"] == str(second_pipeline)


def test_update_ignores_unknown_fields_and_stamps_modification(portal: Any) -> None:
    at(portal, "2026-03-01T10:00:00+03:00")
    deal_id = invoke(portal, "crm.deal.add", {"fields": {}})
    at(portal, "2026-03-02T11:00:00+03:00")
    assert dispatch(Call(portal, "crm.deal.update", {"id": str(deal_id), "fields": {"NOPE": 1, "TITLE": "X"}},
                        user_id=7)).result is True
    deal = invoke(portal, "crm.deal.get", {"id": deal_id})
    assert "NOPE" not in deal and deal["TITLE"] == "X"
    assert deal["DATE_MODIFY"] == "2026-03-02T11:00:00+03:00" and deal["MODIFY_BY_ID"] == "7"
    assert deal["MOVED_TIME"] == "2026-03-01T10:00:00+03:00"  # the stage did not move


LEGACY_ERRORS = [
    pytest.param("crm.deal.get", {"id": 999}, "Not found", id="get-unknown"),
    pytest.param("crm.deal.get", {}, "ID is not defined or invalid.", id="get-missing-id"),
    pytest.param("crm.deal.get", {"id": "abc"}, "ID is not defined or invalid.", id="get-bad-id"),
    pytest.param("crm.deal.get", {"id": -4}, "ID is not defined or invalid.", id="get-negative-id"),
    pytest.param("crm.deal.update", {"id": 999, "fields": {}}, "Not found", id="update-unknown"),
    pytest.param("crm.deal.update", {"id": 1, "fields": "TITLE"}, "Parameter 'fields' must be array.",
                 id="update-fields-scalar"),
    pytest.param("crm.deal.delete", {"id": 999}, "Not found", id="delete-unknown"),
    pytest.param("crm.deal.add", {}, "Parameter 'fields' must be array.", id="add-no-fields"),
    pytest.param("crm.deal.add", {"fields": {"STAGE_ID": "NOPE"}}, 'Invalid value for the "Deal Stage" field',
                 id="add-unknown-stage"),
    pytest.param("crm.deal.add", {"fields": {"CATEGORY_ID": 42}}, 'Invalid value for the "Sales Funnel" field',
                 id="add-unknown-pipeline"),
    pytest.param("crm.deal.add", {"fields": {"CATEGORY_ID": 0, "STAGE_ID": "C1:NEW"}},
                 'Invalid value for the "Deal Stage" field', id="add-stage-of-other-pipeline"),
    pytest.param("crm.deal.update", {"id": 1, "fields": {"STAGE_ID": "NOPE"}},
                 'Invalid value for the "Deal Stage" field', id="update-unknown-stage"),
    pytest.param("crm.deal.add", {"fields": {"CURRENCY_ID": "XXX"}}, 'Invalid value for the "Currency" field',
                 id="add-bad-currency"),
    pytest.param("crm.lead.add", {"fields": {"STATUS_ID": "WON"}}, 'Invalid value for the "Status" field',
                 id="lead-unknown-status"),
    pytest.param("crm.contact.get", {"id": 5}, "Not found", id="contact-unknown"),
    pytest.param("crm.company.delete", {"id": "x"}, "ID is not defined or invalid.", id="company-bad-id"),
    pytest.param("crm.deal.list", {"order": "ID"}, "Parameter 'order' must be array.", id="order-scalar"),
]


@pytest.mark.parametrize("method, params, text", LEGACY_ERRORS)
def test_legacy_errors_use_empty_code_and_400(portal: Any, second_pipeline: int, method: str,
                                              params: dict[str, Any], text: str) -> None:
    invoke(portal, "crm.deal.add", {"fields": {"TITLE": "есть"}})
    assert error_of(portal, method, params) == ("", text, 400)


def test_delete_removes_the_record(portal: Any) -> None:
    deal_id = invoke(portal, "crm.deal.add", {"fields": {}})
    assert invoke(portal, "crm.deal.delete", {"id": deal_id}) is True
    assert error_of(portal, "crm.deal.get", {"id": deal_id})[1] == "Not found"
    assert invoke(portal, "crm.deal.list", {}) == []


# ---------------------------------------------------------------------------- leads, contacts, companies


def test_lead_status_semantics_and_defaults(portal: Any) -> None:
    at(portal, "2026-05-05T12:00:00+03:00")
    lead_id = invoke(portal, "crm.lead.add", {"fields": {"NAME": "Пётр", "LAST_NAME": "Иванов", "SOURCE_ID": "CALL"}})
    lead = invoke(portal, "crm.lead.get", {"id": lead_id})
    assert lead["TITLE"] == f"Лид #{lead_id}" and lead["STATUS_ID"] == pipelines.first_lead_status(portal)
    assert (lead["STATUS_SEMANTIC_ID"], lead["DATE_CLOSED"], lead["BIRTHDATE"]) == ("P", "", "")
    assert lead["HAS_PHONE"] == "N" and lead["OPPORTUNITY"] == "0.00" and lead["SOURCE_ID"] == "CALL"
    at(portal, "2026-05-06T09:30:00+03:00")
    invoke(portal, "crm.lead.update", {"id": lead_id, "fields": {"STATUS_ID": "JUNK"}})
    lead = invoke(portal, "crm.lead.get", {"id": lead_id})
    assert (lead["STATUS_SEMANTIC_ID"], lead["DATE_CLOSED"]) == ("F", "2026-05-06T09:30:00+03:00")
    assert lead["MOVED_TIME"] == "2026-05-06T09:30:00+03:00"


def test_multi_field_update_semantics(portal: Any) -> None:
    lead_id = invoke(portal, "crm.lead.add", {"fields": {
        "PHONE": [{"VALUE": "+7 111", "VALUE_TYPE": "WORK"}, {"VALUE": "+7 222", "VALUE_TYPE": "MOBILE"},
                  {"VALUE": "+7 333"}, {"VALUE": ""}],
        "EMAIL": [{"VALUE": "a@example.ru", "VALUE_TYPE": "WORK"}],
    }})
    phones = invoke(portal, "crm.lead.get", {"id": lead_id})["PHONE"]
    assert [(p["VALUE"], p["VALUE_TYPE"], p["TYPE_ID"]) for p in phones] == [
        ("+7 111", "WORK", "PHONE"), ("+7 222", "MOBILE", "PHONE"), ("+7 333", "WORK", "PHONE")]
    first, second, third = (p["ID"] for p in phones)
    invoke(portal, "crm.lead.update", {"id": lead_id, "fields": {"PHONE": [
        {"ID": first, "VALUE": "+7 999"},  # change
        {"ID": second, "DELETE": "Y", "VALUE": "+7 222"},  # delete by flag
        {"VALUE": "+7 444", "VALUE_TYPE": "HOME"},  # append
    ]}})
    lead = invoke(portal, "crm.lead.get", {"id": lead_id})
    assert [(p["ID"], p["VALUE"]) for p in lead["PHONE"]][:2] == [(first, "+7 999"), (third, "+7 333")]
    assert lead["PHONE"][2]["VALUE"] == "+7 444" and lead["EMAIL"][0]["VALUE"] == "a@example.ru"
    invoke(portal, "crm.lead.update", {"id": lead_id, "fields": {"PHONE": [{"ID": first, "VALUE": ""}, {"ID": third}]}})
    assert [p["VALUE"] for p in invoke(portal, "crm.lead.get", {"id": lead_id})["PHONE"]] == ["+7 444"]
    invoke(portal, "crm.lead.update", {"id": lead_id, "fields": {"PHONE": {"0": {"ID": lead["PHONE"][2]["ID"],
                                                                                  "DELETE": "Y"}}}})
    lead = invoke(portal, "crm.lead.get", {"id": lead_id})
    assert "PHONE" not in lead and lead["HAS_PHONE"] == "N" and lead["HAS_EMAIL"] == "Y"


def test_contact_and_company_main_fields(portal: Any) -> None:
    company = invoke(portal, "crm.company.add", {"fields": {
        "TITLE": "АО Вектор", "COMPANY_TYPE": "CUSTOMER", "INDUSTRY": "IT", "REVENUE": 5e6,
        "EMAIL": [{"VALUE": "info@vector.ru", "VALUE_TYPE": "WORK"}]}})
    contact = invoke(portal, "crm.contact.add", {"fields": {
        "NAME": "Мария", "LAST_NAME": "Смирнова", "COMPANY_ID": company, "BIRTHDATE": "1990-02-03",
        "PHONE": [{"VALUE": "+79001234567", "VALUE_TYPE": "MOBILE"}]}})
    row = invoke(portal, "crm.contact.get", {"id": contact})
    assert (row["NAME"], row["LAST_NAME"], row["COMPANY_ID"]) == ("Мария", "Смирнова", str(company))
    assert row["BIRTHDATE"] == "1990-02-03T00:00:00+03:00" and row["HAS_PHONE"] == "Y" and "COMPANY_IDS" not in row
    firm = invoke(portal, "crm.company.get", {"id": company})
    assert (firm["TITLE"], firm["COMPANY_TYPE"], firm["REVENUE"], firm["HAS_EMAIL"]) == (
        "АО Вектор", "CUSTOMER", "5000000.00", "Y")
    item = invoke(portal, "crm.item.get", {"entityTypeId": 4, "id": company})["item"]
    assert item["typeId"] == "CUSTOMER" and item["revenue"] == 5000000
    assert item["fm"] == [{"id": int(firm["EMAIL"][0]["ID"]), "valueType": "WORK", "value": "info@vector.ru",
                           "typeId": "EMAIL"}]
    assert invoke(portal, "crm.item.get", {"entityTypeId": 3, "id": contact})["item"]["companyIds"] == [company]


def test_fields_describe_standard_and_user_fields(portal: Any) -> None:
    invoke(portal, "crm.deal.userfield.add", {"fields": {"FIELD_NAME": "BUDGET", "USER_TYPE_ID": "double",
                                                         "LABEL": "Бюджет"}})
    fields = invoke(portal, "crm.deal.fields")
    assert fields["CATEGORY_ID"]["isImmutable"] is True and fields["STAGE_ID"]["statusType"] == "DEAL_STAGE"
    assert fields["ID"]["isReadOnly"] is True and fields["CONTACT_IDS"]["isMultiple"] is True
    assert fields["UF_CRM_BUDGET"] | {"settings": None} == {
        "type": "double", "isRequired": False, "isReadOnly": False, "isImmutable": False, "isMultiple": False,
        "isDynamic": True, "title": "UF_CRM_BUDGET", "listLabel": "Бюджет", "formLabel": "Бюджет",
        "filterLabel": "Бюджет", "settings": None}
    lead_fields = invoke(portal, "crm.lead.fields")
    assert lead_fields["PHONE"]["type"] == "crm_multifield" and lead_fields["STATUS_ID"]["statusType"] == "STATUS"
    item_fields = invoke(portal, "crm.item.fields", {"entityTypeId": 2})["fields"]
    assert item_fields["categoryId"]["upperName"] == "CATEGORY_ID" and "ufCrmBudget" in item_fields


# ---------------------------------------------------------------------------- events


def test_every_write_queues_an_offline_event(portal: Any, second_pipeline: int) -> None:
    bind_offline(portal, "ONCRMDEALADD", "ONCRMDEALUPDATE", "ONCRMDEALDELETE", "ONCRMDEALMOVETOCATEGORY",
                 "ONCRMLEADADD", "ONCRMCONTACTUPDATE", "ONCRMCOMPANYDELETE")
    deal = invoke(portal, "crm.deal.add", {"fields": {}})
    assert queued(portal) == [("ONCRMDEALADD", {"ID": deal})]
    invoke(portal, "crm.deal.update", {"id": deal, "fields": {"TITLE": "x"}})
    assert queued(portal) == [("ONCRMDEALUPDATE", {"ID": deal})]  # one record per object, latest wins
    invoke(portal, "crm.item.update", {"entityTypeId": 2, "id": deal, "fields": {"categoryId": second_pipeline}})
    assert queued(portal) == [("ONCRMDEALMOVETOCATEGORY",
                               {"ID": deal, "CATEGORY_ID": second_pipeline, "STAGE_ID": f"C{second_pipeline}:NEW"})]
    invoke(portal, "crm.deal.delete", {"id": deal})
    lead = invoke(portal, "crm.lead.add", {"fields": {}})
    contact = invoke(portal, "crm.contact.add", {"fields": {}})
    invoke(portal, "crm.contact.update", {"id": contact, "fields": {"NAME": "Я"}})
    company = invoke(portal, "crm.item.add", {"entityTypeId": 4, "fields": {"title": "Фирма"}})["item"]["id"]
    invoke(portal, "crm.item.delete", {"entityTypeId": 4, "id": company})
    assert sorted(queued(portal), key=lambda e: e[0]) == [
        ("ONCRMCOMPANYDELETE", {"ID": company}), ("ONCRMCONTACTUPDATE", {"ID": contact}),
        ("ONCRMDEALDELETE", {"ID": deal}), ("ONCRMLEADADD", {"ID": lead})]


# ---------------------------------------------------------------------------- crm.item


def test_item_values_are_typed_unlike_legacy(portal: Any) -> None:
    at(portal, "2026-02-10T08:00:00+03:00")
    created = invoke(portal, "crm.item.add", {"entityTypeId": 2, "fields": {
        "title": "Лицензии", "opportunity": 1500.5, "assignedById": 3, "stageId": "PREPARATION"}})["item"]
    assert created["id"] == 1 and created["opportunity"] == 1500.5 and created["categoryId"] == 0
    assert created["assignedById"] == 3 and created["stageId"] == "PREPARATION" and created["entityTypeId"] == 2
    assert created["createdTime"] == created["updatedTime"] == "2026-02-10T08:00:00+03:00"
    assert created["companyId"] == 0 and created["leadId"] is None and created["contactIds"] == []
    legacy = invoke(portal, "crm.deal.list", {"select": ["ID", "OPPORTUNITY", "ASSIGNED_BY_ID", "CATEGORY_ID"]})
    assert legacy == [{"ID": "1", "CATEGORY_ID": "0", "OPPORTUNITY": "1500.50", "ASSIGNED_BY_ID": "3"}]
    items = invoke(portal, "crm.item.list", {"entityTypeId": 2, "select": ["id", "opportunity"]})
    assert items == {"items": [{"id": 1, "opportunity": 1500.5}]}
    lead = invoke(portal, "crm.item.add", {"entityTypeId": 1, "fields": {"title": "Лид", "stageId": "IN_PROCESS",
                                                                         "fm": [{"typeId": "EMAIL", "value": "x@y.ru"}]}})
    assert lead["item"]["stageId"] == "IN_PROCESS" and lead["item"]["stageSemanticId"] == "P"
    assert invoke(portal, "crm.lead.get", {"id": 1})["EMAIL"][0]["VALUE"] == "x@y.ru"


def test_item_update_and_delete(portal: Any) -> None:
    deal = invoke(portal, "crm.item.add", {"entityTypeId": 2, "fields": {"title": "A"}})["item"]["id"]
    updated = invoke(portal, "crm.item.update", {"entityTypeId": 2, "id": deal,
                                                 "fields": {"title": "B", "stageId": "WON", "nope": 1}})
    assert updated["item"]["title"] == "B" and updated["item"]["closed"] == "Y"
    assert invoke(portal, "crm.item.delete", {"entityTypeId": 2, "id": deal}) == []
    assert invoke(portal, "crm.item.list", {"entityTypeId": 2}) == {"items": []}


ITEM_ERRORS = [
    pytest.param("crm.item.list", {"entityTypeId": 7}, ("NOT_FOUND", "Smart process not found", 400), id="bad-type"),
    pytest.param("crm.item.get", {"entityTypeId": 2, "id": 99}, ("NOT_FOUND", "Element not found", 400),
                 id="get-unknown"),
    pytest.param("crm.item.get", {"id": 1}, ("NOT_FOUND", "Smart process not found", 400), id="no-type"),
    pytest.param("crm.item.update", {"entityTypeId": 2, "id": 1, "fields": {"stageId": "NOPE"}},
                 ("CRM_FIELD_ERROR_VALUE_NOT_VALID", 'Invalid value for field "Deal Stage"', 400), id="bad-stage"),
    pytest.param("crm.item.update", {"entityTypeId": 2, "id": 1, "fields": {"categoryId": 77}},
                 ("CRM_FIELD_ERROR_VALUE_NOT_VALID", 'Invalid value for field "Sales Funnel"', 400),
                 id="bad-category"),
    pytest.param("crm.item.delete", {"entityTypeId": 1, "id": 1}, ("NOT_FOUND", "Element not found", 400),
                 id="delete-unknown"),
]


@pytest.mark.parametrize("method, params, expected", ITEM_ERRORS)
def test_item_errors(portal: Any, method: str, params: dict[str, Any], expected: tuple[str, str, int]) -> None:
    invoke(portal, "crm.deal.add", {"fields": {}})
    assert error_of(portal, method, params) == expected


def test_item_update_moves_a_deal_between_pipelines(portal: Any, second_pipeline: int) -> None:
    deal = invoke(portal, "crm.deal.add", {"fields": {"STAGE_ID": "EXECUTING"}})
    moved = invoke(portal, "crm.item.update", {"entityTypeId": 2, "id": deal, "fields": {
        "categoryId": second_pipeline, "stageId": f"C{second_pipeline}:PREPARATION"}})["item"]
    assert moved["categoryId"] == second_pipeline and moved["stageId"] == f"C{second_pipeline}:PREPARATION"
    back = invoke(portal, "crm.item.update", {"entityTypeId": 2, "id": deal, "fields": {"categoryId": 0}})["item"]
    assert back["categoryId"] == 0 and back["stageId"] == "NEW"  # first stage of the new pipeline


# ---------------------------------------------------------------------------- user fields


def test_userfield_round_trip(portal: Any) -> None:
    uf_id = invoke(portal, "crm.deal.userfield.add", {"fields": {
        "FIELD_NAME": "channel", "USER_TYPE_ID": "enumeration", "LABEL": "Канал", "SORT": 50,
        "LIST": [{"VALUE": "Сайт", "DEF": "Y"}, {"VALUE": "Звонок"}, {"VALUE": ""}]}})
    row = invoke(portal, "crm.deal.userfield.get", {"id": uf_id})
    assert (row["ID"], row["ENTITY_ID"], row["FIELD_NAME"], row["USER_TYPE_ID"]) == (
        str(uf_id), "CRM_DEAL", "UF_CRM_CHANNEL", "enumeration")
    assert row["EDIT_FORM_LABEL"]["ru"] == "Канал" and row["MULTIPLE"] == "N" and row["SORT"] == "50"
    site, call = (item["ID"] for item in row["LIST"])
    assert [i["VALUE"] for i in row["LIST"]] == ["Сайт", "Звонок"] and row["LIST"][0]["DEF"] == "Y"

    with_default = invoke(portal, "crm.deal.add", {"fields": {}})
    chosen = invoke(portal, "crm.deal.add", {"fields": {"UF_CRM_CHANNEL": call}})
    assert invoke(portal, "crm.deal.get", {"id": with_default})["UF_CRM_CHANNEL"] == site
    listed = invoke(portal, "crm.deal.list", {"filter": {"UF_CRM_CHANNEL": int(call)}})
    assert [r["ID"] for r in listed] == [str(chosen)] and listed[0]["UF_CRM_CHANNEL"] == call
    item = invoke(portal, "crm.item.get", {"entityTypeId": 2, "id": chosen})["item"]
    assert item["ufCrmChannel"] == int(call)
    original = invoke(portal, "crm.item.get", {"entityTypeId": 2, "id": chosen, "useOriginalUfNames": "Y"})["item"]
    assert original["UF_CRM_CHANNEL"] == int(call)

    invoke(portal, "crm.deal.userfield.update", {"id": uf_id, "fields": {
        "EDIT_FORM_LABEL": {"ru": "Источник"}, "LIST": [{"ID": site, "DEL": "Y"}, {"VALUE": "Партнёр"}]}})
    updated = invoke(portal, "crm.deal.userfield.get", {"id": uf_id})
    assert updated["EDIT_FORM_LABEL"]["ru"] == "Источник" and updated["LIST_COLUMN_LABEL"]["ru"] == "Канал"
    assert [i["VALUE"] for i in updated["LIST"]] == ["Звонок", "Партнёр"]
    assert invoke(portal, "crm.deal.fields")["UF_CRM_CHANNEL"]["items"] == [
        {"ID": i["ID"], "VALUE": i["VALUE"]} for i in updated["LIST"]]

    listed = invoke(portal, "crm.deal.userfield.list", {"filter": {"USER_TYPE_ID": "enumeration", "LANG": "ru"}})
    assert [r["FIELD_NAME"] for r in listed] == ["UF_CRM_CHANNEL"] and listed[0]["EDIT_FORM_LABEL"] == "Источник"
    assert invoke(portal, "crm.lead.userfield.list", {}) == []

    assert invoke(portal, "crm.deal.userfield.delete", {"id": uf_id}) is True
    assert "UF_CRM_CHANNEL" not in invoke(portal, "crm.deal.get", {"id": chosen})
    assert error_of(portal, "crm.deal.userfield.get", {"id": uf_id}) == (
        "ERROR_NOT_FOUND", f"The entity with ID '{uf_id}' is not found.", 400)


def test_userfield_types_store_values_like_the_legacy_api(portal: Any) -> None:
    for name, kind, extra in [("N", "integer", {}), ("D", "double", {}), ("B", "boolean", {"MULTIPLE": "Y"}),
                              ("DAY", "date", {}), ("AT", "datetime", {}), ("S", "string", {"MULTIPLE": "Y"})]:
        invoke(portal, "crm.company.userfield.add", {"fields": {"FIELD_NAME": f"UF_CRM_{name}", "USER_TYPE_ID": kind,
                                                                **extra}})
    company = invoke(portal, "crm.company.add", {"fields": {
        "TITLE": "X", "UF_CRM_N": "12", "UF_CRM_D": 2.5, "UF_CRM_B": "Y", "UF_CRM_DAY": "2026-01-05",
        "UF_CRM_AT": "2026-01-05T10:00:00+00:00", "UF_CRM_S": "один"}})
    row = invoke(portal, "crm.company.get", {"id": company})
    assert (row["UF_CRM_N"], row["UF_CRM_D"], row["UF_CRM_B"]) == ("12", "2.5", "1")  # boolean is never multiple
    assert row["UF_CRM_DAY"] == "2026-01-05" and row["UF_CRM_AT"] == "2026-01-05T13:00:00+03:00"
    assert row["UF_CRM_S"] == ["один"]
    item = invoke(portal, "crm.item.get", {"entityTypeId": 4, "id": company})["item"]
    assert (item["ufCrmN"], item["ufCrmD"], item["ufCrmB"], item["ufCrmS"]) == (12, 2.5, "Y", ["один"])
    found = invoke(portal, "crm.item.list", {"entityTypeId": 4, "filter": {"ufCrmB": 1, ">ufCrmN": 10}})
    assert [i["id"] for i in found["items"]] == [company]
    assert invoke(portal, "crm.company.list", {"filter": {">=UF_CRM_DAY": "2026-01-06"}}) == []


USERFIELD_ERRORS = [
    pytest.param({"USER_TYPE_ID": "string"}, "The 'FIELD_NAME' field is not found.", id="no-name"),
    pytest.param({"FIELD_NAME": "X"}, "The 'USER_TYPE_ID' field is not found.", id="no-type"),
    pytest.param({"FIELD_NAME": "X", "USER_TYPE_ID": "rocket"}, "Invalid custom type specified.", id="bad-type"),
    pytest.param({"FIELD_NAME": "Ж", "USER_TYPE_ID": "string"},
                 "Field name contains invalid characters. Allowed characters are: A-Z, 0-9, and _.", id="bad-chars"),
    pytest.param({"FIELD_NAME": "X" * 45, "USER_TYPE_ID": "string"},
                 "Field name is too long (more than 50 characters).", id="too-long"),
]


@pytest.mark.parametrize("fields, text", USERFIELD_ERRORS)
def test_userfield_add_errors(portal: Any, fields: dict[str, Any], text: str) -> None:
    assert error_of(portal, "crm.lead.userfield.add", {"fields": fields}) == ("", text, 400)


def test_userfield_names_are_unique_and_prefixed(portal: Any) -> None:
    invoke(portal, "crm.contact.userfield.add", {"fields": {"FIELD_NAME": "UF_CRM_VIP", "USER_TYPE_ID": "boolean"}})
    code, text, status = error_of(portal, "crm.contact.userfield.add",
                                  {"fields": {"FIELD_NAME": "VIP", "USER_TYPE_ID": "string"}})
    assert (code, status) == ("", 400) and "UF_CRM_VIP" in text
    assert error_of(portal, "crm.contact.userfield.get", {"id": 0})[1] == "ID is not defined or invalid."


def test_contact_link_list_and_single_link_stay_in_step(portal: Any) -> None:
    a, b, c = (invoke(portal, "crm.contact.add", {"fields": {"NAME": n}}) for n in "ABC")
    deal = invoke(portal, "crm.deal.add", {"fields": {"CONTACT_ID": a}})

    def links() -> tuple[Any, Any]:
        item = invoke(portal, "crm.item.get", {"entityTypeId": 2, "id": deal})["item"]
        return invoke(portal, "crm.deal.get", {"id": deal})["CONTACT_ID"], item["contactIds"]

    assert links() == (str(a), [a])
    invoke(portal, "crm.deal.update", {"id": deal, "fields": {"CONTACT_IDS": [b, c]}})
    assert links() == (str(b), [b, c])
    invoke(portal, "crm.deal.update", {"id": deal, "fields": {"CONTACT_ID": a}})
    assert links() == (str(a), [a, c])  # the single link replaces the first of the list
    invoke(portal, "crm.deal.update", {"id": deal, "fields": {"CONTACT_IDS": []}})
    assert links() == (None, [])
    lead = invoke(portal, "crm.lead.add", {"fields": {}})
    assert invoke(portal, "crm.item.get", {"entityTypeId": 1, "id": lead})["item"]["birthdate"] is None
