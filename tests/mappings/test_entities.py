"""mappings.entities: every declaration walked against the emulator's own field lists, over HTTP."""

from __future__ import annotations

from typing import Any

import pytest

from connector.auth import WebhookAuth
from connector.client import Bitrix24Client
from connector.transport import HttpTransport
from mappings import entities as ent, tables

# which Bitrix24 field types each column kind may hold
COMPATIBLE = {
    ent.ID: {"integer", "user", "crm_company", "crm_contact", "crm_lead", "crm_quote", "crm_category"},
    ent.INT: {"integer"},
    ent.MONEY: {"double", "money"},
    ent.TEXT: {"string", "char", "crm_status", "crm_currency", "location", "text"},
    ent.FLAG: {"char", "boolean"},
    ent.DATE: {"date"},
    ent.DATETIME: {"datetime"},
    ent.JSON: {"crm_multifield"},
}


@pytest.fixture(scope="module")
def described(request: Any) -> dict[str, dict[str, Any]]:
    """``<stream>.fields`` of every declaration that names a fields method, read over HTTP once."""
    from connector.emulator import new_portal
    from connector.emulator.app import EmulatorApp
    from connector.emulator.server import EmulatorServer

    secret = "entities-test-code"
    server = EmulatorServer(EmulatorApp(new_portal(), secret=secret, rate=1e6, burst=1e6, operating_budget=1e9), secret=secret).start()
    try:
        client = Bitrix24Client(HttpTransport(), WebhookAuth(server.url))
        out = {}
        for stream in ent.STREAMS.values():
            if stream.fields_method:
                result = client.result(stream.fields_method, dict(stream.params))
                out[stream.name] = result.get("fields", result) if isinstance(result, dict) else result
        client.close()
        return out
    finally:
        server.stop()


@pytest.mark.parametrize("name", [s.name for s in ent.STREAMS.values() if s.fields_method])
def test_declared_columns_exist_with_compatible_types(described: dict[str, dict[str, Any]], name: str) -> None:
    stream = ent.STREAMS[name]
    fields = described[name]
    for column in stream.columns:
        assert column.rest in fields, f"{name}: {column.rest} is not a field of {stream.fields_method}"
        kind = fields[column.rest]["type"]
        assert kind in COMPATIBLE[column.kind], f"{name}: {column.rest} is {kind}, declared {column.kind}"


@pytest.mark.parametrize("name", [s.name for s in ent.STREAMS.values() if s.kind == ent.ENTITY])
def test_every_standard_field_is_a_column_or_deliberately_raw_only(described: dict[str, dict[str, Any]], name: str) -> None:
    stream = ent.STREAMS[name]
    declared = {c.rest for c in stream.columns} | set(stream.multi_fields) | set(stream.raw_only)
    standard = {field for field, info in described[name].items() if not info.get("isDynamic")}
    assert standard - declared == set(), f"{name}: fields neither mirrored nor declared raw-only"


def test_every_stream_has_its_table_and_key() -> None:
    for stream in ent.STREAMS.values():
        table = tables.metadata.tables[stream.table]
        if stream.kind in (ent.ENTITY, ent.HISTORY) or stream.name in ("status", "deal_category", "user"):
            assert [c.name for c in table.primary_key.columns] == ["id"]
            assert stream.column(stream.id_field).name == "id"
        if stream.uf_table:
            assert stream.uf_table in tables.metadata.tables and stream.userfields in ent.STREAMS
        for column in stream.columns:
            assert column.name in table.c, f"{stream.name}: {column.name} not in {stream.table}"


def test_contract_columns_are_there() -> None:
    """The columns the reports and BI queries name (Contract 2) exist in lower case."""
    must = {
        "crm_deal": "id title type_id category_id stage_id stage_semantic_id is_new probability currency_id opportunity "
                    "is_manual_opportunity tax_value company_id contact_id lead_id quote_id begindate closedate closed opened "
                    "assigned_by_id created_by_id modify_by_id moved_by_id date_create date_modify moved_time source_id "
                    "source_description originator_id origin_id comments additional_info is_recurring is_return_customer "
                    "is_repeated_approach utm_source utm_medium utm_campaign utm_content utm_term last_activity_time "
                    "last_activity_by raw deleted_at synced_at",
        "crm_lead": "id title name second_name last_name company_title status_id status_semantic_id status_description source_id "
                    "source_description opportunity currency_id assigned_by_id created_by_id modify_by_id date_create date_modify "
                    "date_closed company_id contact_id opened is_return_customer birthdate post comments raw deleted_at synced_at",
        "crm_deal_stage_history": "id type_id deal_id date_create category_id stage_semantic_id stage_id raw first_seen_at deleted_at",
        "crm_lead_status_history": "id type_id lead_id date_create status_semantic_id status_id raw first_seen_at deleted_at",
        "crm_status": "id entity_id status_id name name_init sort semantics category_id color system raw deleted_at",
        "crm_deal_category": "id name sort is_default origin_id originator_id raw deleted_at",
        "users": "id active name first_name last_name second_name email work_position department_ids raw deleted_at synced_at",
        "crm_userfield": "entity_id field_name id user_type_id multiple label first_label enum_items raw first_seen_at deleted_at",
        "crm_multifield": "entity_type_id owner_id item_id type_id value_type value",
        "crm_deal_uf": "deal_id date_create closedate",
        "b24sync_portal": "address member_id timezone",
        "b24sync_run": "run_id job entity started_at finished_at status fetched inserted updated deleted http_requests error worker",
        "b24sync_lease": "name owner acquired_at expires_at",
    }
    for name, columns in must.items():
        table = tables.metadata.tables[name]
        assert set(columns.split()) <= set(table.c.keys()), f"{name}: {set(columns.split()) - set(table.c.keys())}"
    assert {c.name for c in tables.crm_stages.c} == set(
        "id entity_type_id entity_id status_id name category_id category_name sort semantics".split())


def test_entity_names_a_user_may_pass() -> None:
    assert [s.name for s in ent.select_streams(["deal"])] == ["deal_userfield", "deal"]
    assert [s.name for s in ent.select_streams(["history"])] == ["deal_stage_history", "lead_status_history"]
    assert len(ent.select_streams(None)) == len(ent.STREAMS)
    with pytest.raises(KeyError):
        ent.select_streams(["deals"])
