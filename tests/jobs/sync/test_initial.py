"""The first run loads everything: every table equals the portal, field for field, on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from mappings import tables
from tests.jobs.sync.conftest import assert_mirror, client_of, count, rows, sync, uf_rows


def test_initial_load_equals_the_portal(make_emulator: Any, mirror_engine: Any) -> None:
    app = make_emulator(seed=11, deals=120, http=False)
    result = sync(app, mirror_engine)
    assert result.ok, result.error
    assert result.entities["deal"].inserted == len(app.portal.records["deal"])
    assert_mirror(mirror_engine, app)
    # the run log has one row per stream, all ok
    log = rows(mirror_engine, tables.b24sync_run)
    assert {r["entity"] for r in log} == set(result.entities) - {"offline_events"}
    assert {r["status"] for r in log} == {"ok"}


def test_typed_values_multifields_and_user_fields(app: Any, mirror_engine: Any) -> None:
    client = client_of(app)
    client.call("crm.deal.userfield.add", {"fields": {"FIELD_NAME": "KIND", "USER_TYPE_ID": "enumeration", "LABEL": "Kind",
                                                      "LIST": [{"VALUE": "Big"}, {"VALUE": "Small"}]}})
    options = client.result("crm.deal.userfield.list", {})[0]["LIST"]
    deal = client.result("crm.deal.add", {"fields": {"TITLE": "Ёлка", "OPPORTUNITY": "1234567.89", "CURRENCY_ID": "EUR",
                                                     "BEGINDATE": "2026-03-01", "UF_CRM_KIND": options[1]["ID"]}})
    lead = client.result("crm.lead.add", {"fields": {"TITLE": "l", "PHONE": [{"VALUE": "+7 999", "VALUE_TYPE": "MOBILE"}],
                                                     "EMAIL": [{"VALUE": "a@b.c", "VALUE_TYPE": "WORK"}]}})
    assert sync(app, mirror_engine).ok
    row = rows(mirror_engine, tables.crm_deal, tables.crm_deal.c.id == deal)[0]
    assert row["opportunity"] == Decimal("1234567.89") and row["currency_id"] == "EUR"
    assert str(row["begindate"]) == "2026-03-01"  # the portal-local date, whatever the offset
    assert row["date_create"].tzinfo is not None and row["date_create"].utcoffset().total_seconds() == 0
    uf = uf_rows(mirror_engine, "deal")[deal]
    assert uf["uf_crm_kind"] == int(options[1]["ID"]) and uf["uf_crm_kind_label"] == "Small"
    multi = rows(mirror_engine, tables.crm_multifield, tables.crm_multifield.c.owner_id == lead)
    assert {(m["type_id"], m["value_type"], m["value"]) for m in multi} == {("PHONE", "MOBILE", "+7 999"), ("EMAIL", "WORK", "a@b.c")}
    labels = rows(mirror_engine, tables.crm_userfield)
    assert [(u["field_name"], u["label"], u["first_label"]) for u in labels] == [("UF_CRM_KIND", "Kind", "Kind")]


def test_stages_view_names_every_stage(app: Any, mirror_engine: Any) -> None:
    assert sync(app, mirror_engine).ok
    with mirror_engine.connect() as conn:
        stages = conn.execute(sa.select(tables.crm_stages)).mappings().all()
    deal_stages = [s for s in stages if s["entity_type_id"] == 2]
    lead_statuses = [s for s in stages if s["entity_type_id"] == 1]
    assert deal_stages and lead_statuses
    assert {s["semantics"] for s in deal_stages} == {"P", "S", "F"}
    assert all(s["category_name"] for s in deal_stages) and all(s["category_id"] == 0 for s in lead_statuses)
    assert count(mirror_engine, tables.crm_status, tables.crm_status.c.semantics.is_(None)) > 0  # SOURCE and friends
