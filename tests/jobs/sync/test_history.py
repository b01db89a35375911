"""Stage history: kept once per row and never removed, whatever the portal stops listing."""

from __future__ import annotations

from typing import Any

import pytest

from connector.emulator import new_portal
from mappings import entities as ent
from mappings import tables
from jobs.sync.writer import Writer
from tests.jobs.sync.conftest import assert_mirror, assert_stays, client_of, clocked_app, rows, sync

HISTORY = tables.crm_deal_stage_history


def _stage_ids(client: Any, category: int) -> list[str]:
    entity = "DEAL_STAGE" if category == 0 else f"DEAL_STAGE_{category}"
    return [s["STATUS_ID"] for s in client.result("crm.status.list", {"filter": {"ENTITY_ID": entity}, "order": {"SORT": "ASC"}})]


def _path(engine: Any, deal: int) -> list[tuple[int, int, str, Any]]:
    return [(r["type_id"], r["category_id"], r["stage_id"], r["deleted_at"] is not None)
            for r in rows(engine, HISTORY, HISTORY.c.deal_id == deal)]


def test_a_deal_moved_to_another_pipeline_keeps_its_old_history(app: Any, mirror_engine: Any) -> None:
    client = client_of(app)
    other = client.result("crm.category.add", {"entityTypeId": 2, "fields": {"name": "Repeat sales"}})["category"]["id"]
    stages = _stage_ids(client, 0)
    deal = client.result("crm.deal.add", {"fields": {"TITLE": "mover"}})
    client.call("crm.deal.update", {"id": deal, "fields": {"STAGE_ID": stages[1]}})
    assert sync(app, mirror_engine).ok
    client.call("crm.item.update", {"entityTypeId": 2, "id": deal, "fields": {"categoryId": other}})
    client.call("crm.deal.update", {"id": deal, "fields": {"STAGE_ID": _stage_ids(client, other)[1]}})
    assert sync(app, mirror_engine).ok
    listed = client.result("crm.stagehistory.list", {"entityTypeId": 2, "filter": {"OWNER_ID": deal}})["items"]
    assert [row["CATEGORY_ID"] for row in listed] == [other, other]  # the portal shows the current pipeline only
    assert _path(mirror_engine, deal) == [(1, 0, stages[0], False), (2, 0, stages[1], False),
                                          (5, other, f"C{other}:NEW", False), (2, other, _stage_ids(client, other)[1], False)]
    result = sync(app, mirror_engine, reconcile=True)  # reconcile marks what the portal no longer lists, keeps it
    assert result.ok and result.entities["deal_stage_history"].deleted == 2
    assert [p[3] for p in _path(mirror_engine, deal)] == [True, True, False, False]
    assert_mirror(mirror_engine, app)


def test_a_deleted_deal_keeps_its_history(app: Any, mirror_engine: Any) -> None:
    client = client_of(app)
    stages = _stage_ids(client, 0)
    deal = client.result("crm.deal.add", {"fields": {"TITLE": "lost"}})
    client.call("crm.deal.update", {"id": deal, "fields": {"STAGE_ID": stages[2]}})
    assert sync(app, mirror_engine).ok
    client.call("crm.deal.delete", {"id": deal})
    assert sync(app, mirror_engine, reconcile=True).ok
    assert [p[:3] for p in _path(mirror_engine, deal)] == [(1, 0, stages[0]), (2, 0, stages[2])]
    assert rows(mirror_engine, tables.crm_deal, tables.crm_deal.c.id == deal)[0]["deleted_at"] is not None


def test_a_reopened_deal_keeps_its_final_row_on_legacy_portals(make_emulator: Any, mirror_engine: Any) -> None:
    app = make_emulator(new_portal(history="legacy"), http=False)
    client = client_of(app)
    stages = _stage_ids(client, 0)
    won = next(s for s in stages if s == "WON")
    deal = client.result("crm.deal.add", {"fields": {"TITLE": "reopened"}})
    client.call("crm.deal.update", {"id": deal, "fields": {"STAGE_ID": won}})
    assert sync(app, mirror_engine).ok
    client.call("crm.deal.update", {"id": deal, "fields": {"STAGE_ID": stages[1]}})  # the legacy writer drops the WON row
    listed = [r["STAGE_ID"] for r in client.result("crm.stagehistory.list", {"entityTypeId": 2, "filter": {"OWNER_ID": deal}})["items"]]
    assert won not in listed
    assert sync(app, mirror_engine).ok
    assert [p[2] for p in _path(mirror_engine, deal)] == [stages[0], won, stages[1]]


def test_rows_the_portal_rewrote_are_updated_by_reconcile(app: Any, mirror_engine: Any) -> None:
    client = client_of(app)
    deal = client.result("crm.deal.add", {"fields": {"TITLE": "rewritten"}})
    assert sync(app, mirror_engine).ok
    first = rows(mirror_engine, HISTORY)[0]
    with app.portal.lock:  # the portal rewrites a row in place (as it does for dates and the responsible user)
        row = next(r for r in app.portal.history[2] if r["OWNER_ID"] == deal)
        row["CREATED_TIME"] = "2025-01-02T03:04:05+03:00"
    assert sync(app, mirror_engine).ok and rows(mirror_engine, HISTORY)[0]["raw"] == first["raw"]  # IDs did not move
    result = sync(app, mirror_engine, reconcile=True)
    assert result.ok and result.entities["deal_stage_history"].updated == 1
    again = rows(mirror_engine, HISTORY)[0]
    assert again["raw"]["CREATED_TIME"] == "2025-01-02T03:04:05+03:00" and again["first_seen_at"] == first["first_seen_at"]
    assert again["date_create"].isoformat() == "2025-01-02T00:04:05+00:00"


def test_lead_status_history_by_its_own_id(app: Any, mirror_engine: Any) -> None:
    client = client_of(app)
    leads = [client.result("crm.lead.add", {"fields": {"TITLE": f"l{i}"}}) for i in range(60)]
    client.batch([("crm.lead.update", {"id": lead, "fields": {"STATUS_ID": "IN_PROCESS"}}) for lead in leads])
    result = sync(app, mirror_engine)
    assert result.ok and result.entities["lead_status_history"].inserted == 120
    client.batch([("crm.lead.update", {"id": lead, "fields": {"STATUS_ID": "JUNK"}}) for lead in leads[:10]])
    result = sync(app, mirror_engine)
    assert result.entities["lead_status_history"].inserted == 10
    table = tables.crm_lead_status_history
    junk = rows(mirror_engine, table, table.c.status_id == "JUNK")
    assert sorted(r["lead_id"] for r in junk) == leads[:10] and {r["status_semantic_id"] for r in junk} == {"F"}


def _stays(engine: Any, deal: int) -> list[float | None]:
    return [r["stay_seconds"] for r in rows(engine, HISTORY, HISTORY.c.deal_id == deal)]


def test_each_row_knows_its_stay_after_incremental_syncs(make_emulator: Any, mirror_engine: Any) -> None:
    app, clock = clocked_app(make_emulator)
    client = client_of(app)
    stages = _stage_ids(client, 0)
    deal = client.result("crm.deal.add", {"fields": {"TITLE": "stays"}})
    assert sync(app, mirror_engine).ok
    assert _stays(mirror_engine, deal) == [None]  # still in its first stage
    clock.advance(3600)
    client.call("crm.deal.update", {"id": deal, "fields": {"STAGE_ID": stages[1]}})
    assert sync(app, mirror_engine).ok
    assert _stays(mirror_engine, deal) == [3600.0, None]  # the new row closed the previous one's stay
    clock.advance(90)
    client.call("crm.deal.update", {"id": deal, "fields": {"STAGE_ID": stages[2]}})
    clock.advance(30)
    client.call("crm.deal.update", {"id": deal, "fields": {"STAGE_ID": stages[3]}})
    assert sync(app, mirror_engine).ok
    assert _stays(mirror_engine, deal) == [3600.0, 90.0, 30.0, None]
    assert_mirror(mirror_engine, app)


def test_stays_are_right_when_rows_arrive_out_of_order(app: Any, mirror_engine: Any) -> None:
    stream = ent.STREAMS["deal_stage_history"]
    writer = Writer(mirror_engine)

    def item(row_id: int, deal: int, moment: str) -> dict[str, Any]:
        return {"ID": str(row_id), "TYPE_ID": "2", "OWNER_ID": str(deal), "CREATED_TIME": moment, "CATEGORY_ID": "0",
                "STAGE_SEMANTIC_ID": "P", "STAGE_ID": "NEW"}

    writer.history(stream, [item(30, 7, "2026-03-01T12:00:00+00:00"), item(12, 8, "2026-03-01T10:00:00+00:00")])
    writer.history(stream, [item(10, 7, "2026-03-01T10:00:00+00:00")])  # an earlier row of deal 7, after its later one
    assert _stays(mirror_engine, 7) == [7200.0, None]
    writer.history(stream, [item(20, 7, "2026-03-01T11:00:00+00:00"), item(40, 8, "2026-03-01T10:30:00+00:00")])
    assert _stays(mirror_engine, 7) == [3600.0, 3600.0, None] and _stays(mirror_engine, 8) == [1800.0, None]
    writer.history(stream, [item(20, 8, "2026-03-01T10:15:00+00:00")])  # the portal rewrote row 20: another deal now
    assert _stays(mirror_engine, 7) == [7200.0, None] and _stays(mirror_engine, 8) == [900.0, 900.0, None]
    assert_stays(mirror_engine, HISTORY)


def test_a_large_load_is_settled_once_at_its_end_and_a_killed_one_by_the_next_run(make_emulator: Any, mirror_engine: Any,
                                                                                 monkeypatch: Any) -> None:
    from jobs.sync import history, paths, state as st

    app = make_emulator(seed=5, deals=300, http=False)
    monkeypatch.setattr(history, "SETTLE_AT_END", 0)  # every load is large: settled at its end
    settled: list[str] = []
    real = Writer.settle_history

    def dies_before_settling(self: Writer, stream: Any, state: Any) -> int:
        settled.append(stream.name)
        raise SystemExit("killed after the last page")  # as SIGKILL would: the pages are committed, the rest is not

    monkeypatch.setattr(Writer, "settle_history", dies_before_settling)
    try:
        sync(app, mirror_engine)
    except SystemExit:
        pass
    assert settled  # the load reached its end
    with mirror_engine.connect() as conn:
        marks = {name: st.load(conn, name).extra.get(paths.MARK) for name in ent.HISTORIES}
    assert any(mark is not None for mark in marks.values())
    with pytest.raises(AssertionError, match="differ"):  # past the probe's first page no row was settled page by page
        assert_stays(mirror_engine, HISTORY)

    monkeypatch.setattr(Writer, "settle_history", real)
    assert sync(app, mirror_engine).ok  # nothing new to read: the mark alone makes it settle
    with mirror_engine.connect() as conn:
        assert all(st.load(conn, name).extra.get(paths.MARK) is None for name in ent.HISTORIES)
    assert_mirror(mirror_engine, app)
    assert_stays(mirror_engine, HISTORY)
    assert_stays(mirror_engine, tables.crm_lead_status_history)
