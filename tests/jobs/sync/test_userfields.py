"""User fields: a new field gets its column without a manual step; renames and deletions change nothing stored."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from mappings import tables
from tests.jobs.sync.conftest import assert_mirror, client_of, rows, sync, uf_rows

UF = tables.crm_userfield


def _columns(engine: Any, table: str) -> list[str]:
    with engine.connect() as conn:
        return [c["name"] for c in sa.inspect(conn).get_columns(table)]


def test_added_renamed_and_removed_fields(app: Any, mirror_engine: Any) -> None:
    client = client_of(app)
    deal = client.result("crm.deal.add", {"fields": {"TITLE": "before any field"}})
    assert sync(app, mirror_engine).ok
    assert [c for c in _columns(mirror_engine, "crm_deal_uf") if c.startswith("uf_")] == []

    # added: a text field and a list field; values arrive with the next run
    text_id = client.result("crm.deal.userfield.add", {"fields": {"FIELD_NAME": "CONTRACT", "USER_TYPE_ID": "string", "LABEL": "Contract"}})
    client.result("crm.deal.userfield.add", {"fields": {"FIELD_NAME": "SIZE", "USER_TYPE_ID": "enumeration", "LABEL": "Size",
                                                        "LIST": [{"VALUE": "S"}, {"VALUE": "L"}]}})
    options = {o["VALUE"]: o["ID"] for o in next(f for f in client.result("crm.deal.userfield.list", {}) if f["FIELD_NAME"] == "UF_CRM_SIZE")["LIST"]}
    client.call("crm.deal.update", {"id": deal, "fields": {"UF_CRM_CONTRACT": "Д-1", "UF_CRM_SIZE": options["L"]}})
    assert sync(app, mirror_engine).ok
    assert {"uf_crm_contract", "uf_crm_size", "uf_crm_size_label"} <= set(_columns(mirror_engine, "crm_deal_uf"))
    stored = uf_rows(mirror_engine, "deal")[deal]
    assert (stored["uf_crm_contract"], stored["uf_crm_size"], stored["uf_crm_size_label"]) == ("Д-1", int(options["L"]), "L")

    # renamed (its label) and an option renamed: the column and the value stay, the labels follow
    client.call("crm.deal.userfield.update", {"id": text_id, "fields": {"LABEL": "Contract number"}})
    size_id = next(f["ID"] for f in client.result("crm.deal.userfield.list", {}) if f["FIELD_NAME"] == "UF_CRM_SIZE")
    client.call("crm.deal.userfield.update", {"id": size_id, "fields": {"LIST": [{"ID": options["L"], "VALUE": "Large"}]}})
    assert sync(app, mirror_engine).ok
    field = rows(mirror_engine, UF, UF.c.field_name == "UF_CRM_CONTRACT")[0]
    assert (field["label"], field["first_label"], field["deleted_at"]) == ("Contract number", "Contract", None)
    stored = uf_rows(mirror_engine, "deal")[deal]
    assert stored["uf_crm_contract"] == "Д-1" and stored["uf_crm_size_label"] == "Large"
    sizes = rows(mirror_engine, UF, UF.c.field_name == "UF_CRM_SIZE")[0]
    assert sizes["enum_items"] == {options["S"]: "S", options["L"]: "Large"}

    # removed: the definition is marked, the column and the stored value stay, even after the record changes
    client.call("crm.deal.userfield.delete", {"id": text_id})
    client.call("crm.deal.update", {"id": deal, "fields": {"TITLE": "after the field went"}})
    assert sync(app, mirror_engine).ok
    field = rows(mirror_engine, UF, UF.c.field_name == "UF_CRM_CONTRACT")[0]
    assert field["deleted_at"] is not None and "uf_crm_contract" in _columns(mirror_engine, "crm_deal_uf")
    assert uf_rows(mirror_engine, "deal")[deal]["uf_crm_contract"] == "Д-1"
    assert rows(mirror_engine, tables.crm_deal, tables.crm_deal.c.id == deal)[0]["title"] == "after the field went"


def test_multiple_and_typed_fields(app: Any, mirror_engine: Any) -> None:
    client = client_of(app)
    for name, kind, multiple in (("TAGS", "string", "Y"), ("DUE", "date", "N"), ("SEEN", "datetime", "N"), ("VIP", "boolean", "N"),
                                 ("SEATS", "integer", "N"), ("PRICE", "double", "N")):
        client.call("crm.contact.userfield.add", {"fields": {"FIELD_NAME": name, "USER_TYPE_ID": kind, "MULTIPLE": multiple, "LABEL": name}})
    contact = client.result("crm.contact.add", {"fields": {
        "NAME": "Анна", "UF_CRM_TAGS": ["a", "b"], "UF_CRM_DUE": "2026-04-01", "UF_CRM_SEEN": "2026-04-01T10:00:00+03:00",
        "UF_CRM_VIP": "Y", "UF_CRM_SEATS": 12, "UF_CRM_PRICE": 10.5}})
    assert sync(app, mirror_engine).ok
    stored = uf_rows(mirror_engine, "contact")[contact]
    assert stored["uf_crm_tags"] == ["a", "b"]  # a multiple field: UF_* leaves it out, the sync asks for it by name
    assert str(stored["uf_crm_due"]) == "2026-04-01" and stored["uf_crm_vip"] is True and stored["uf_crm_seats"] == 12
    assert stored["uf_crm_seen"].isoformat().startswith("2026-04-01T07:00:00") and stored["uf_crm_price"] == "10.5"
    assert_mirror(mirror_engine, app)


def test_a_multiple_field_added_between_runs_is_read_with_its_values(app: Any, mirror_engine: Any) -> None:
    client = client_of(app)
    lead = client.result("crm.lead.add", {"fields": {"TITLE": "l"}})
    assert sync(app, mirror_engine).ok
    client.call("crm.lead.userfield.add", {"fields": {"FIELD_NAME": "LANGS", "USER_TYPE_ID": "string", "MULTIPLE": "Y"}})
    client.call("crm.lead.update", {"id": lead, "fields": {"UF_CRM_LANGS": ["ru", "en"]}})
    result = sync(app, mirror_engine)  # the probe asked without the new field; the page is read again with it
    assert result.ok
    assert uf_rows(mirror_engine, "lead")[lead]["uf_crm_langs"] == ["ru", "en"]
