"""Offline events (OAuth): deletions and changes between runs, the queue cleared only after the changes are committed."""

from __future__ import annotations

from typing import Any

from connector.emulator.registry import ApiError
from jobs.sync import events, state as st
from mappings import tables
from tests.jobs.sync.conftest import assert_mirror, client_of, rows, sync

DEALS = tables.crm_deal


def _queue(app: Any) -> list[dict[str, Any]]:
    return list(app.portal.offline_events.values())


def test_deletions_arrive_through_offline_events(make_emulator: Any, mirror_engine: Any) -> None:
    app = make_emulator(oauth=True, http=False)
    client = client_of(app, oauth=True)
    ids = [client.result("crm.deal.add", {"fields": {"TITLE": f"d{i}"}}) for i in range(4)]
    first = sync(app, mirror_engine, oauth=True)
    assert first.ok, first.error
    bindings = {b["event"] for b in app.portal.event_handlers if b.get("offline")}
    assert {"ONCRMDEALDELETE", "ONCRMLEADUPDATE", "ONCRMCOMPANYADD"} <= bindings
    client.call("crm.deal.delete", {"id": ids[0]})
    client.call("crm.deal.update", {"id": ids[1], "fields": {"TITLE": "changed"}})
    assert len(_queue(app)) == 2
    result = sync(app, mirror_engine, oauth=True)  # no --reconcile: the queue says what was deleted
    assert result.ok and result.entities["deal"].deleted == 1 and result.entities["offline_events"].fetched == 2
    deleted = {r["id"]: r["deleted_at"] is not None for r in rows(mirror_engine, DEALS)}
    assert deleted == {ids[0]: True, ids[1]: False, ids[2]: False, ids[3]: False}
    assert _queue(app) == []  # cleared after the commit
    assert_mirror(mirror_engine, app)


def test_the_queue_is_cleared_only_after_the_commit(make_emulator: Any, mirror_engine: Any, wrap_method: Any) -> None:
    app = make_emulator(oauth=True, http=False)
    client = client_of(app, oauth=True)
    ids = [client.result("crm.deal.add", {"fields": {"TITLE": f"d{i}"}}) for i in range(3)]
    assert sync(app, mirror_engine, oauth=True).ok
    client.call("crm.deal.delete", {"id": ids[2]})
    failures: list[int] = []

    def clear_fails_once(call: Any, handler: Any) -> Any:
        if not failures:
            failures.append(1)
            raise ApiError("INTERNAL_SERVER_ERROR", "Internal server error", 500)  # the run dies before the clear lands
        return handler(call)

    wrap_method("event.offline.clear", clear_fails_once)
    broken = sync(app, mirror_engine, oauth=True)
    assert not broken.ok and broken.entities["offline_events"].status == "failed"
    assert rows(mirror_engine, DEALS, DEALS.c.id == ids[2])[0]["deleted_at"] is not None  # committed first
    assert [e["PROCESS_ID"] for e in _queue(app)] != [None]  # still reserved for the mirror
    with mirror_engine.connect() as conn:
        process_id = st.load(conn, events.STREAM).extra["process_id"]
    assert _queue(app)[0]["PROCESS_ID"] == process_id
    again = sync(app, mirror_engine, oauth=True)  # reads the reserved records again, applies them (no change), clears
    assert again.ok and _queue(app) == []
    assert_mirror(mirror_engine, app)


def test_a_webhook_mirror_never_reads_the_queue(app: Any, mirror_engine: Any) -> None:
    client = client_of(app)
    client.result("crm.deal.add", {"fields": {"TITLE": "x"}})
    result = sync(app, mirror_engine)
    assert result.ok and "offline_events" not in result.entities
    assert app.portal.event_handlers == []
