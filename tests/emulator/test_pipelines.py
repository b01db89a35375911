"""Pipelines and stages of the emulator: the defaults of a fresh portal, crm.category.* and crm.status.* rules."""

from __future__ import annotations

from typing import Any

import pytest

from connector.emulator import pipelines
from connector.emulator.registry import ApiError, invoke
from connector.emulator.state import Portal


@pytest.fixture
def fresh() -> Portal:
    """A portal with only the pipeline defaults installed (no users, no records)."""
    portal = Portal("+03:00")
    pipelines.install_defaults(portal)
    return portal


def call(portal: Portal, method: str, **params: Any) -> Any:
    return invoke(portal, method, params)


def error_of(portal: Portal, method: str, **params: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        invoke(portal, method, params)
    return info.value


def add_pipeline(portal: Portal, name: str = "Повторные продажи", sort: int = 200) -> int:
    return call(portal, "crm.category.add", entityTypeId=2, fields={"name": name, "sort": sort})["category"]["id"]


def put_record(portal: Portal, entity: str, **fields: Any) -> int:
    """Place a lead/deal in the portal's store directly (the CRM handlers are tested elsewhere)."""
    record_id = portal.next_id(entity)
    portal.records[entity][record_id] = {"ID": str(record_id), **fields}
    return record_id


def stage_ids(portal: Portal, entity_id: str) -> list[str]:
    rows = call(portal, "crm.status.list", order={"SORT": "ASC"}, filter={"ENTITY_ID": entity_id})
    return [row["STATUS_ID"] for row in rows]


# ---------------------------------------------------------------------------- defaults

DEFAULT_DEAL_STAGES = [
    # STATUS_ID, NAME, SORT, COLOR, SEMANTICS, SYSTEM, EXTRA.SEMANTICS
    ("NEW", "Новая", "10", "#39A8EF", None, "Y", "process"),
    ("PREPARATION", "Подготовка документов", "20", "#2FC6F6", None, "N", "process"),
    ("PREPAYMENT_INVOICE", "Счёт на предоплату", "30", "#55D0E0", None, "N", "process"),
    ("EXECUTING", "В работе", "40", "#47E4C2", None, "N", "process"),
    ("FINAL_INVOICE", "Финальный счёт", "50", "#FFA900", None, "N", "process"),
    ("WON", "Сделка успешна", "60", "#7BD500", "S", "Y", "success"),
    ("LOSE", "Сделка провалена", "70", "#FF5752", "F", "Y", "failure"),
    ("APOLOGY", "Анализ причины провала", "80", "#FF5752", "F", "N", "apology"),
]

DEFAULT_LEAD_STATUSES = [
    ("NEW", "Не обработан", "10", None, "Y"),
    ("IN_PROCESS", "В работе", "20", None, "N"),
    ("PROCESSED", "Обработан", "30", None, "N"),
    ("CONVERTED", "Качественный лид", "40", "S", "Y"),
    ("JUNK", "Некачественный лид", "50", "F", "Y"),
]


def test_fresh_portal_has_the_default_pipeline_only(fresh: Portal) -> None:
    reply = call(fresh, "crm.category.list", entityTypeId=2)
    assert reply == {"categories": [
        {"id": 0, "name": "Общая", "sort": 0, "entityTypeId": 2, "isDefault": "Y"},
    ]}


def test_default_deal_stages_match_a_real_portal(fresh: Portal) -> None:
    rows = call(fresh, "crm.status.list", order={"SORT": "ASC"}, filter={"ENTITY_ID": "DEAL_STAGE"})
    got = [(r["STATUS_ID"], r["NAME"], r["SORT"], r["COLOR"], r["SEMANTICS"], r["SYSTEM"], r["EXTRA"]["SEMANTICS"])
           for r in rows]
    assert got == DEFAULT_DEAL_STAGES
    assert all(r["CATEGORY_ID"] is None and r["ENTITY_ID"] == "DEAL_STAGE" for r in rows)
    assert all(r["EXTRA"]["COLOR"] == r["COLOR"] for r in rows)
    # NAME_INIT is the default name of system rows and empty for the others
    assert [(r["STATUS_ID"], r["NAME_INIT"]) for r in rows if r["NAME_INIT"]] == [
        ("NEW", "Новая"), ("WON", "Сделка успешна"), ("LOSE", "Сделка провалена")]
    assert all(isinstance(r["ID"], str) and r["ID"].isdigit() for r in rows)


def test_default_lead_statuses_match_a_real_portal(fresh: Portal) -> None:
    rows = call(fresh, "crm.status.list", filter={"ENTITY_ID": "STATUS"})
    assert [(r["STATUS_ID"], r["NAME"], r["SORT"], r["SEMANTICS"], r["SYSTEM"]) for r in rows] == DEFAULT_LEAD_STATUSES


def test_default_dictionaries_exist(fresh: Portal) -> None:
    sources = [r["STATUS_ID"] for r in call(fresh, "crm.status.entity.items", entityId="SOURCE")]
    assert sources == ["CALL", "EMAIL", "WEB", "ADVERTISING", "PARTNER", "RECOMMENDATION", "TRADE_SHOW",
                       "WEBFORM", "CALLBACK", "RC_GENERATOR", "STORE", "OTHER"]
    for entity_id in ("DEAL_TYPE", "CONTACT_TYPE", "COMPANY_TYPE", "INDUSTRY", "EMPLOYEES"):
        assert call(fresh, "crm.status.entity.items", entityId=entity_id), entity_id
    source_rows = call(fresh, "crm.status.list", filter={"ENTITY_ID": "SOURCE"})
    assert all("EXTRA" not in row and row["SEMANTICS"] is None for row in source_rows)


def test_helpers_answer_stage_questions(fresh: Portal) -> None:
    assert pipelines.stage_entity_id(0) == "DEAL_STAGE"
    assert pipelines.stage_entity_id("3") == "DEAL_STAGE_3"
    assert pipelines.first_stage(fresh, 0) == "NEW"
    assert [pipelines.semantic_id(fresh, "deal", s) for s in ("NEW", "WON", "LOSE", "APOLOGY", "NOPE")] == \
        ["P", "S", "F", "F", "P"]
    assert [pipelines.semantic_id(fresh, "lead", s) for s in ("IN_PROCESS", "CONVERTED", "JUNK")] == ["P", "S", "F"]
    assert pipelines.stage_row(fresh, "deal", "EXECUTING")["NAME"] == "В работе"
    assert pipelines.stage_row(fresh, "lead", "EXECUTING") is None
    assert [r["STATUS_ID"] for r in pipelines.lead_statuses(fresh)][0] == "NEW"
    assert pipelines.category_exists(fresh, 0) and not pipelines.category_exists(fresh, 1)
    new_id = add_pipeline(fresh)
    assert pipelines.category_exists(fresh, str(new_id))
    assert pipelines.first_stage(fresh, new_id) == f"C{new_id}:NEW"
    assert pipelines.semantic_id(fresh, "deal", f"C{new_id}:WON") == "S"
    assert [r["SORT"] for r in pipelines.stages_of(fresh, new_id)] == [s[2] for s in DEFAULT_DEAL_STAGES]


def test_helpers_follow_sort_changes(fresh: Portal) -> None:
    row = pipelines.stage_row(fresh, "deal", "NEW")
    call(fresh, "crm.status.update", id=row["ID"], fields={"SORT": 25, "NAME": "Новая"})
    order = [r["STATUS_ID"] for r in pipelines.stages_of(fresh, 0)]
    assert order[:3] == ["PREPARATION", "NEW", "PREPAYMENT_INVOICE"]
    assert pipelines.first_stage(fresh, 0) == "PREPARATION"


# ---------------------------------------------------------------------------- crm.category.*


def test_new_pipeline_gets_the_default_stage_template(fresh: Portal) -> None:
    reply = call(fresh, "crm.category.add", entityTypeId=2, fields={"name": "Повторные продажи", "sort": 200})
    category = reply["category"]
    assert category == {"id": 1, "name": "Повторные продажи", "sort": 200, "entityTypeId": 2,
                        "isDefault": "N", "originId": "", "originatorId": ""}
    rows = call(fresh, "crm.status.list", filter={"ENTITY_ID": "DEAL_STAGE_1"})
    assert [r["STATUS_ID"] for r in rows] == [f"C1:{s[0]}" for s in DEFAULT_DEAL_STAGES]
    assert [(r["SORT"], r["SEMANTICS"], r["SYSTEM"]) for r in rows] == [(s[2], s[4], s[5]) for s in DEFAULT_DEAL_STAGES]
    assert {r["CATEGORY_ID"] for r in rows} == {"1"}
    assert call(fresh, "crm.category.get", entityTypeId=2, id=1) == {"category": category}


def test_category_list_is_sorted_and_counted(fresh: Portal) -> None:
    add_pipeline(fresh, "Б", 300)
    add_pipeline(fresh, "А", 100)
    reply = invoke_result(fresh, "crm.category.list", entityTypeId=2)
    assert [c["name"] for c in reply.result["categories"]] == ["Общая", "А", "Б"]
    assert reply.total == 3


def test_category_list_pages_by_fifty(fresh: Portal) -> None:
    for number in range(60):
        add_pipeline(fresh, f"Воронка {number:02d}", number)
    first = invoke_result(fresh, "crm.category.list", entityTypeId=2)
    second = invoke_result(fresh, "crm.category.list", entityTypeId=2, start=first.next)
    assert (len(first.result["categories"]), first.next, first.total) == (50, 50, 61)
    assert (len(second.result["categories"]), second.next, second.total) == (11, None, 61)
    names = [c["name"] for c in first.result["categories"] + second.result["categories"]]
    assert names[0] == "Общая" and len(set(names)) == 61


def invoke_result(portal: Portal, method: str, **params: Any) -> Any:
    from connector.emulator.registry import Call, dispatch
    return dispatch(Call(portal, method, params))


def test_category_sort_defaults_and_negative_sort(fresh: Portal) -> None:
    no_sort = call(fresh, "crm.category.add", entityTypeId=2, fields={"name": "Без сортировки"})["category"]
    negative = call(fresh, "crm.category.add", entityTypeId="2", fields={"name": "Минус", "sort": "-5"})["category"]
    assert (no_sort["sort"], negative["sort"]) == (500, 0)


def test_category_update_changes_name_and_sort_only(fresh: Portal) -> None:
    new_id = add_pipeline(fresh)
    reply = call(fresh, "crm.category.update", entityTypeId=2, id=new_id,
                 fields={"name": "Допродажи", "sort": 50, "isDefault": "Y"})
    assert reply["category"]["name"] == "Допродажи"
    assert reply["category"]["sort"] == 50
    assert reply["category"]["isDefault"] == "N"
    renamed = call(fresh, "crm.category.update", entityTypeId=2, id=0, fields={"name": "Продажи"})
    assert renamed["category"] == {"id": 0, "name": "Продажи", "sort": 0, "entityTypeId": 2, "isDefault": "Y"}


def test_deleting_a_pipeline_removes_its_stages(fresh: Portal) -> None:
    keep = add_pipeline(fresh, "Остаётся")
    gone = add_pipeline(fresh, "Удаляется")
    assert call(fresh, "crm.category.delete", entityTypeId=2, id=gone) is None
    assert stage_ids(fresh, f"DEAL_STAGE_{gone}") == []
    assert len(stage_ids(fresh, f"DEAL_STAGE_{keep}")) == 8
    assert pipelines.stage_row(fresh, "deal", f"C{gone}:NEW") is None
    assert error_of(fresh, "crm.category.get", entityTypeId=2, id=gone).code == "NOT_FOUND"


@pytest.mark.parametrize(
    ("method", "params", "code", "description"),
    [
        ("crm.category.list", {"entityTypeId": 1}, "ENTITY_TYPE_NOT_SUPPORTED", "Entity type LEAD is not supported"),
        ("crm.category.list", {"entityTypeId": 1036}, "NOT_FOUND", "Smart process not found"),
        ("crm.category.add", {"entityTypeId": 1, "fields": {"name": "x"}}, "ENTITY_TYPE_NOT_SUPPORTED",
         "Entity type LEAD is not supported"),
        ("crm.category.get", {"entityTypeId": 2, "id": 99}, "NOT_FOUND", "Element not found"),
        ("crm.category.update", {"entityTypeId": 2, "id": 99, "fields": {"name": "x"}}, "NOT_FOUND",
         "Element not found"),
        ("crm.category.delete", {"entityTypeId": 2, "id": 99}, "NOT_FOUND", "Element not found"),
        ("crm.category.add", {"entityTypeId": 2, "fields": {"name": "   "}}, 0, "Field 'NAME' is required"),
        ("crm.category.add", {"entityTypeId": 2, "fields": {"sort": 10}}, 0, "Field 'NAME' is required"),
        ("crm.category.update", {"entityTypeId": 2, "id": 0, "fields": {"name": ""}}, 0,
         "Field 'NAME' is required"),
        ("crm.category.delete", {"entityTypeId": 2, "id": 0}, 0, "Default deal category cannot be deleted"),
    ],
    ids=["lead-list", "unknown-spa", "lead-add", "get-missing", "update-missing", "delete-missing",
         "blank-name", "no-name", "blank-rename", "delete-default"],
)
def test_category_errors(fresh: Portal, method: str, params: dict[str, Any], code: Any, description: str) -> None:
    error = error_of(fresh, method, **params)
    assert (error.code, error.description, error.status) == (code, description, 400)


def test_pipeline_with_deals_cannot_be_deleted(fresh: Portal) -> None:
    new_id = add_pipeline(fresh, "Повторные продажи")
    deal_id = put_record(fresh, "deal", CATEGORY_ID=str(new_id), STAGE_ID=f"C{new_id}:NEW")
    error = error_of(fresh, "crm.category.delete", entityTypeId=2, id=new_id)
    assert (error.code, error.description) == (0, "Deals related to the funnel Повторные продажи found")
    assert len(stage_ids(fresh, f"DEAL_STAGE_{new_id}")) == 8
    del fresh.records["deal"][deal_id]
    assert call(fresh, "crm.category.delete", entityTypeId=2, id=new_id) is None


def test_category_fields_describe_the_object(fresh: Portal) -> None:
    fields = call(fresh, "crm.category.fields", entityTypeId=2)["fields"]
    assert set(fields) == {"id", "name", "sort", "entityTypeId", "isDefault", "originId", "originatorId"}
    assert fields["id"]["isReadOnly"] is True and fields["id"]["upperName"] == "ID"


# ---------------------------------------------------------------------------- crm.status.add


def add_status(portal: Portal, **fields: Any) -> int:
    return call(portal, "crm.status.add", fields=fields)


def test_status_add_prefixes_stages_of_extra_pipelines(fresh: Portal) -> None:
    new_id = add_pipeline(fresh)
    plain = add_status(fresh, ENTITY_ID=f"DEAL_STAGE_{new_id}", STATUS_ID="DECISION", NAME="Решение", SORT=55)
    prefixed = add_status(fresh, ENTITY_ID=f"DEAL_STAGE_{new_id}", STATUS_ID=f"C{new_id}:OFFER", NAME="КП", SORT=56)
    foreign = add_status(fresh, ENTITY_ID=f"DEAL_STAGE_{new_id}", STATUS_ID="C9:TRIAL", NAME="Тест", SORT=57)
    default = add_status(fresh, ENTITY_ID="DEAL_STAGE", STATUS_ID="DECISION", NAME="Решение", SORT=55)
    got = [call(fresh, "crm.status.get", id=i)["STATUS_ID"] for i in (plain, prefixed, foreign, default)]
    assert got == [f"C{new_id}:DECISION", f"C{new_id}:OFFER", f"C{new_id}:TRIAL", "DECISION"]
    row = call(fresh, "crm.status.get", id=plain)
    assert row["CATEGORY_ID"] == str(new_id) and row["SYSTEM"] == "N" and row["NAME_INIT"] == ""
    assert stage_ids(fresh, f"DEAL_STAGE_{new_id}")[4:8] == [
        f"C{new_id}:FINAL_INVOICE", f"C{new_id}:DECISION", f"C{new_id}:OFFER", f"C{new_id}:TRIAL"]


def test_status_add_defaults(fresh: Portal) -> None:
    source = add_status(fresh, ENTITY_ID="SOURCE", STATUS_ID="TELEGRAM", NAME="Телеграм")
    stage = add_status(fresh, ENTITY_ID="DEAL_STAGE", STATUS_ID="QUALIFY", NAME="Квалификация",
                       SORT=0, COLOR="FFA900", SYSTEM="Y")
    assert call(fresh, "crm.status.get", id=source)["SORT"] == "10"
    row = call(fresh, "crm.status.get", id=stage)
    assert (row["SORT"], row["COLOR"], row["SYSTEM"], row["SEMANTICS"]) == ("10", "#FFA900", "N", None)
    assert row["EXTRA"] == {"SEMANTICS": "process", "COLOR": "#FFA900"}


@pytest.mark.parametrize(
    ("fields", "code", "description"),
    [
        ({"STATUS_ID": "X", "NAME": "x"}, "", "The field ENTITY_ID is required."),
        ({"ENTITY_ID": "DEAL_STAGE", "NAME": "x"}, "", "The field STATUS_ID is required."),
        ({"NAME": "x"}, "", "The field ENTITY_ID is required.\nThe field STATUS_ID is required."),
        ({"ENTITY_ID": "NO_SUCH_DICT", "STATUS_ID": "X", "NAME": "x"}, "", "Specified entity type is not supported."),
        ({"ENTITY_ID": "DEAL_STAGE_7", "STATUS_ID": "X", "NAME": "x"}, "", "Specified entity type is not supported."),
        ({"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "EXECUTING", "NAME": "x", "SORT": 45}, "ERROR_CORE",
         "The specified status ID already exists."),
        ({"ENTITY_ID": "STATUS", "STATUS_ID": "JUNK", "NAME": "x", "SORT": 60, "SEMANTICS": "F"}, "ERROR_CORE",
         "The specified status ID already exists."),
        ({"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "QUALIFY", "SORT": 15}, "", "The field Title is required."),
        ({"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "QUALIFY", "NAME": "  ", "SORT": 15}, "",
         "The field Title is required."),
    ],
    ids=["no-entity", "no-status-id", "neither", "unknown-entity", "missing-pipeline", "duplicate-stage",
         "duplicate-lead-status", "no-name", "blank-name"],
)
def test_status_add_errors(fresh: Portal, fields: dict[str, Any], code: str, description: str) -> None:
    error = error_of(fresh, "crm.status.add", fields=fields)
    assert (error.code, error.description, error.status) == (code, description, 400)


def test_status_add_refuses_a_non_array_fields(fresh: Portal) -> None:
    assert error_of(fresh, "crm.status.add", fields="NAME").description == "Parameter 'fields' must be array."


@pytest.mark.parametrize(
    ("entity_id", "longest_ok"),
    [("STATUS", 21), ("DEAL_STAGE", 22), ("DEAL_STAGE_1", 19), ("SOURCE", 50)],
)
def test_status_id_length_limits(fresh: Portal, entity_id: str, longest_ok: int) -> None:
    add_pipeline(fresh)
    sort = 15  # before the success stage of stage dictionaries
    add_status(fresh, ENTITY_ID=entity_id, STATUS_ID="A" * longest_ok, NAME="ok", SORT=sort)
    error = error_of(fresh, "crm.status.add",
                     fields={"ENTITY_ID": entity_id, "STATUS_ID": "B" * (longest_ok + 1), "NAME": "x", "SORT": sort})
    assert error.code == "" and str(longest_ok) in error.description


def test_status_id_charset_applies_to_stages_only(fresh: Portal) -> None:
    error = error_of(fresh, "crm.status.add", fields={"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "ЭТАП", "NAME": "x"})
    assert error.code == "" and "Latin" in error.description
    assert add_status(fresh, ENTITY_ID="SOURCE", STATUS_ID="ВЫСТАВКА 2026", NAME="Выставка 2026") > 0


def test_stage_order_rules(fresh: Portal) -> None:
    after_won = error_of(fresh, "crm.status.add",
                         fields={"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "LATE", "NAME": "x", "SORT": 65})
    assert after_won.description.startswith("Cannot create more stages after the final stage")
    second_success = error_of(fresh, "crm.status.add", fields={
        "ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "WON2", "NAME": "x", "SORT": 61, "SEMANTICS": "S"})
    assert second_success.description.startswith("Cannot create more stages after the final stage")
    failure_before_won = error_of(fresh, "crm.status.add", fields={
        "ENTITY_ID": "STATUS", "STATUS_ID": "SPAM", "NAME": "Спам", "SORT": 35, "SEMANTICS": "F"})
    assert failure_before_won.description == "Cannot add semantics with the specified sort order"
    failure = add_status(fresh, ENTITY_ID="DEAL_STAGE", STATUS_ID="NO_BUDGET", NAME="Нет бюджета", SORT=75,
                         SEMANTICS="F")
    process = add_status(fresh, ENTITY_ID="DEAL_STAGE", STATUS_ID="CONTRACT", NAME="Договор", SORT=55)
    assert call(fresh, "crm.status.get", id=failure)["EXTRA"]["SEMANTICS"] == "apology"
    assert call(fresh, "crm.status.get", id=process)["SEMANTICS"] is None
    assert stage_ids(fresh, "DEAL_STAGE")[4:] == ["FINAL_INVOICE", "CONTRACT", "WON", "LOSE", "NO_BUDGET", "APOLOGY"]


# ---------------------------------------------------------------------------- crm.status.update / delete


def test_status_update_changes_name_sort_color_only(fresh: Portal) -> None:
    row = pipelines.stage_row(fresh, "deal", "LOSE")
    assert call(fresh, "crm.status.update", id=row["ID"], fields={
        "NAME": "Проиграна", "SORT": 75, "COLOR": "AA0000", "SEMANTICS": "S", "STATUS_ID": "LOST",
        "ENTITY_ID": "SOURCE", "SYSTEM": "N"}) is True
    after = call(fresh, "crm.status.get", id=row["ID"])
    assert (after["NAME"], after["SORT"], after["COLOR"]) == ("Проиграна", "75", "#AA0000")
    assert (after["SEMANTICS"], after["STATUS_ID"], after["ENTITY_ID"], after["SYSTEM"]) == ("F", "LOSE", "DEAL_STAGE", "Y")
    assert after["EXTRA"] == {"SEMANTICS": "failure", "COLOR": "#AA0000"}
    assert after["NAME_INIT"] == "Сделка провалена"


def test_status_update_without_sort_resets_it_to_ten(fresh: Portal) -> None:
    # CCrmStatus::Update writes SORT = 10 when none is given: clients must always send SORT
    row = pipelines.stage_row(fresh, "deal", "EXECUTING")
    call(fresh, "crm.status.update", id=row["ID"], fields={"NAME": "Исполнение"})
    after = call(fresh, "crm.status.get", id=row["ID"])
    assert (after["NAME"], after["SORT"]) == ("Исполнение", "10")


def test_status_update_with_blank_name_keeps_the_name(fresh: Portal) -> None:
    row = pipelines.stage_row(fresh, "deal", "EXECUTING")
    call(fresh, "crm.status.update", id=row["ID"], fields={"NAME": "", "SORT": 40})
    assert call(fresh, "crm.status.get", id=row["ID"])["NAME"] == "В работе"


@pytest.mark.parametrize("method", ["crm.status.get", "crm.status.update", "crm.status.delete"])
@pytest.mark.parametrize(("status_id", "description"), [(999999, "Status is not found."), ("abc", "Invalid identifier."),
                                                        (0, "Invalid identifier.")])
def test_status_id_errors(fresh: Portal, method: str, status_id: Any, description: str) -> None:
    error = error_of(fresh, method, id=status_id, fields={"NAME": "x"})
    assert (error.code, error.description, error.status) == ("", description, 400)


def test_system_stage_needs_forced(fresh: Portal) -> None:
    new_id = add_pipeline(fresh)
    won = pipelines.stage_row(fresh, "deal", f"C{new_id}:WON")
    error = error_of(fresh, "crm.status.delete", id=won["ID"])
    assert error.description == 'CRM System Status can be deleted only if parameter FORCED is specified and equal to "Y".'
    assert error_of(fresh, "crm.status.delete", id=won["ID"], params={"FORCED": "N"}).description == error.description
    assert call(fresh, "crm.status.delete", id=won["ID"], params={"FORCED": "Y"}) is True
    assert pipelines.stage_row(fresh, "deal", f"C{new_id}:WON") is None


def test_plain_stage_deletes_without_forced(fresh: Portal) -> None:
    row = pipelines.stage_row(fresh, "deal", "PREPARATION")
    assert call(fresh, "crm.status.delete", id=row["ID"]) is True
    assert "PREPARATION" not in stage_ids(fresh, "DEAL_STAGE")
    # APOLOGY is the first failure stage after LOSE goes; EXTRA follows
    lose = pipelines.stage_row(fresh, "deal", "LOSE")
    call(fresh, "crm.status.delete", id=lose["ID"], params={"FORCED": "Y"})
    assert pipelines.stage_row(fresh, "deal", "APOLOGY")["EXTRA"]["SEMANTICS"] == "failure"


@pytest.mark.parametrize(
    ("entity", "field", "status_id", "forced"),
    [("deal", "STAGE_ID", "EXECUTING", False), ("deal", "STAGE_ID", "NEW", True),
     ("lead", "STATUS_ID", "IN_PROCESS", False), ("lead", "STATUS_ID", "JUNK", True)],
)
def test_stage_holding_records_cannot_be_deleted(
    fresh: Portal, entity: str, field: str, status_id: str, forced: bool
) -> None:
    record_id = put_record(fresh, entity, **{field: status_id})
    row = pipelines.stage_row(fresh, entity, status_id)
    params = {"FORCED": "Y"} if forced else {}
    error = error_of(fresh, "crm.status.delete", id=row["ID"], params=params)
    assert (error.code, error.description) == ("", "There are active items in this status.")
    assert pipelines.stage_row(fresh, entity, status_id) is not None
    fresh.records[entity][record_id][field] = "NEW" if status_id != "NEW" else "PREPARATION"
    assert call(fresh, "crm.status.delete", id=row["ID"], params=params) is True


def test_stage_in_another_pipeline_with_same_suffix_is_not_active(fresh: Portal) -> None:
    new_id = add_pipeline(fresh)
    put_record(fresh, "deal", CATEGORY_ID="0", STAGE_ID="PREPARATION")
    row = pipelines.stage_row(fresh, "deal", f"C{new_id}:PREPARATION")
    assert call(fresh, "crm.status.delete", id=row["ID"]) is True


# ---------------------------------------------------------------------------- crm.status.list and friends


def test_status_list_filters_and_orders(fresh: Portal) -> None:
    new_id = add_pipeline(fresh)
    by_category = call(fresh, "crm.status.list", filter={"CATEGORY_ID": new_id})
    assert {r["ENTITY_ID"] for r in by_category} == {f"DEAL_STAGE_{new_id}"}
    one = call(fresh, "crm.status.list", filter={"ENTITY_ID": "DEAL_STAGE", "STATUS_ID": "WON"})
    assert [r["STATUS_ID"] for r in one] == ["WON"]
    desc = call(fresh, "crm.status.list", order={"SORT": "DESC"}, filter={"ENTITY_ID": "STATUS"})
    assert [r["STATUS_ID"] for r in desc] == ["JUNK", "CONVERTED", "PROCESSED", "IN_PROCESS", "NEW"]
    system = call(fresh, "crm.status.list", filter={"ENTITY_ID": "DEAL_STAGE", "SYSTEM": "Y"})
    assert [r["STATUS_ID"] for r in system] == ["NEW", "WON", "LOSE"]
    equals = call(fresh, "crm.status.list", filter={"=ENTITY_ID": "STATUS", "ignored_field": "x"})
    assert len(equals) == 5
    reply = invoke_result(fresh, "crm.status.list", filter={"ENTITY_ID": "DEAL_STAGE"})
    assert reply.total == 8 and reply.next is None


def test_status_list_parameter_errors(fresh: Portal) -> None:
    assert error_of(fresh, "crm.status.list", filter="x").description == "Parameter 'filter' must be array."
    assert error_of(fresh, "crm.status.list", order="SORT").description == "Parameter 'order' must be array."


def test_status_list_rows_are_copies(fresh: Portal) -> None:
    rows = call(fresh, "crm.status.list", filter={"ENTITY_ID": "DEAL_STAGE"})
    rows[0]["NAME"] = "испорчено"
    rows[0]["EXTRA"]["COLOR"] = "#000000"
    assert pipelines.stage_row(fresh, "deal", "NEW")["NAME"] == "Новая"
    assert pipelines.stage_row(fresh, "deal", "NEW")["EXTRA"]["COLOR"] == "#39A8EF"


def test_entity_types_list_extra_pipelines(fresh: Portal) -> None:
    types = call(fresh, "crm.status.entity.types")
    deal_types = [t for t in types if t.get("ENTITY_TYPE_ID") == 2]
    assert [(t["ID"], t["CATEGORY_ID"]) for t in deal_types] == [("DEAL_STAGE", 0)]
    assert [t["ID"] for t in types][:7] == ["STATUS", "SOURCE", "CONTACT_TYPE", "COMPANY_TYPE", "EMPLOYEES",
                                            "INDUSTRY", "DEAL_TYPE"]
    lead_type = types[0]
    assert lead_type["SEMANTIC_INFO"] == {"START_FIELD": "NEW", "FINAL_SUCCESS_FIELD": "CONVERTED",
                                          "FINAL_UNSUCCESS_FIELD": "JUNK", "FINAL_SORT": 0}
    new_id = add_pipeline(fresh, "Повторные продажи", 200)
    deal_types = [t for t in call(fresh, "crm.status.entity.types") if t.get("ENTITY_TYPE_ID") == 2]
    assert [t["ID"] for t in deal_types] == ["DEAL_STAGE", f"DEAL_STAGE_{new_id}"]
    extra = deal_types[1]
    assert extra["PARENT_ID"] == "DEAL_STAGE" and extra["PREFIX"] == f"C{new_id}"
    assert extra["CATEGORY_ID"] == str(new_id) and extra["FIELD_ATTRIBUTE_SCOPE"] == f"category_{new_id}"
    assert extra["SEMANTIC_INFO"]["START_FIELD"] == f"C{new_id}:NEW"
    assert "Повторные продажи" in extra["NAME"]
    call(fresh, "crm.category.delete", entityTypeId=2, id=new_id)
    assert [t["ID"] for t in call(fresh, "crm.status.entity.types") if t.get("ENTITY_TYPE_ID") == 2] == ["DEAL_STAGE"]


def test_entity_items_shape(fresh: Portal) -> None:
    items = call(fresh, "crm.status.entity.items", entityId="deal_stage")
    assert items[0] == {"NAME": "Новая", "SORT": 10, "STATUS_ID": "NEW"}
    assert call(fresh, "crm.status.entity.items", entityId="NOTHING") == []
    assert error_of(fresh, "crm.status.entity.items").description == "The parameter entityId is not defined or invalid."


def test_status_fields(fresh: Portal) -> None:
    fields = call(fresh, "crm.status.fields")
    assert fields["SEMANTICS"]["isImmutable"] is True
    assert fields["ENTITY_ID"]["isRequired"] is True and fields["SYSTEM"]["isReadOnly"] is True


# ---------------------------------------------------------------------------- legacy crm.dealcategory.*


def test_legacy_dealcategory_methods(fresh: Portal) -> None:
    new_id = call(fresh, "crm.dealcategory.add", fields={"NAME": "Опт", "SORT": 100})
    assert isinstance(new_id, int)
    listed = call(fresh, "crm.dealcategory.list")
    assert [(r["ID"], r["NAME"], r["SORT"], r["IS_LOCKED"]) for r in listed] == [(str(new_id), "Опт", "100", "N")]
    assert call(fresh, "crm.dealcategory.status", id=new_id) == f"DEAL_STAGE_{new_id}"
    assert [r["STATUS_ID"] for r in call(fresh, "crm.dealcategory.stage.list", id=new_id)][0] == f"C{new_id}:NEW"
    assert [r["STATUS_ID"] for r in call(fresh, "crm.dealcategory.stage.list")][0] == "NEW"
    assert call(fresh, "crm.dealcategory.stage.list", id=77) == []
    assert call(fresh, "crm.dealcategory.default.get") == {"ID": 0, "NAME": "Общая"}
    assert call(fresh, "crm.dealcategory.update", id=new_id, fields={"NAME": "Оптовые"}) is True
    assert call(fresh, "crm.dealcategory.get", id=new_id)["NAME"] == "Оптовые"
    assert call(fresh, "crm.dealcategory.delete", id=new_id) is True
    assert call(fresh, "crm.dealcategory.list") == []
    assert error_of(fresh, "crm.dealcategory.add", fields={"SORT": 1}).description == "Field 'NAME' is required."
