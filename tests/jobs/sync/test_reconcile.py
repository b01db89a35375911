"""--reconcile: ID sets compared (IDs only, keyset); vanished rows marked, restored ones un-marked, missing ones fetched."""

from __future__ import annotations

import copy
from typing import Any

import sqlalchemy as sa

from mappings import db, tables
from tests.jobs.sync.conftest import assert_mirror, client_of, clocked_app, rows, sync

DEALS = tables.crm_deal


def _deleted(engine: Any) -> dict[int, bool]:
    return {r["id"]: r["deleted_at"] is not None for r in rows(engine, DEALS)}


def test_deletes_are_caught_by_reconcile_only(make_emulator: Any, mirror_engine: Any) -> None:
    app = make_emulator(seed=4, deals=150, http=False)
    client = client_of(app)
    assert sync(app, mirror_engine).ok
    gone = sorted(app.portal.records["deal"])[::7]
    client.batch([("crm.deal.delete", {"id": deal}) for deal in gone])
    client.call("crm.contact.delete", {"id": min(app.portal.records["contact"])})
    assert sync(app, mirror_engine).ok
    assert not any(_deleted(mirror_engine).values())  # a deletion changes no DATE_MODIFY: incremental cannot see it
    result = sync(app, mirror_engine, reconcile=True)
    assert result.ok and result.entities["deal"].deleted == len(gone) and result.entities["contact"].deleted == 1
    assert sorted(k for k, d in _deleted(mirror_engine).items() if d) == gone
    assert_mirror(mirror_engine, app)
    again = sync(app, mirror_engine, reconcile=True)
    assert again.ok and again.written == 0  # nothing more to mark


def test_a_record_restored_from_the_recycle_bin_comes_back(make_emulator: Any, mirror_engine: Any) -> None:
    app, clock = clocked_app(make_emulator)
    client = client_of(app)
    ids = [client.result("crm.deal.add", {"fields": {"TITLE": f"d{i}"}}) for i in range(3)]
    clock.advance(60)
    client.call("crm.deal.update", {"id": ids[2], "fields": {"TITLE": "moves the cursor on"}})
    assert sync(app, mirror_engine).ok
    kept = copy.deepcopy(app.portal.records["deal"][ids[1]])
    client.call("crm.deal.delete", {"id": ids[1]})
    assert sync(app, mirror_engine, reconcile=True).ok and _deleted(mirror_engine)[ids[1]]
    with app.portal.lock:  # restored as it was: same ID, same DATE_MODIFY
        app.portal.records["deal"][ids[1]] = kept
    assert sync(app, mirror_engine).ok and _deleted(mirror_engine)[ids[1]]  # incremental cannot see a restore either
    result = sync(app, mirror_engine, reconcile=True)
    assert result.ok and not _deleted(mirror_engine)[ids[1]]
    assert_mirror(mirror_engine, app)


def test_records_the_mirror_lacks_are_fetched(app: Any, mirror_engine: Any) -> None:
    client = client_of(app)
    ids = [client.result("crm.deal.add", {"fields": {"TITLE": f"d{i}"}}) for i in range(80)]
    assert sync(app, mirror_engine).ok
    with db.begin_write(mirror_engine) as conn:  # lost rows (a restored backup, a hand-made DELETE)
        conn.execute(DEALS.delete().where(DEALS.c.id.in_(ids[10:70])))
    result = sync(app, mirror_engine, reconcile=True)
    assert result.ok and result.entities["deal"].inserted == 60
    assert_mirror(mirror_engine, app)


def test_reconcile_reads_ids_only(make_emulator: Any, mirror_engine: Any) -> None:
    server = make_emulator(seed=4, deals=150)
    assert sync(server, mirror_engine).ok
    result = sync(server, mirror_engine, reconcile=True)
    assert result.ok and result.written == 0
    # one probe of the top ID and one keyset walk of "select ID" per stream: a few requests for a few thousand rows
    assert result.entities["deal"].requests <= 3 and result.entities["lead"].requests <= 3
    with mirror_engine.connect() as conn:
        log = conn.execute(sa.select(tables.b24sync_run.c.job, tables.b24sync_run.c.entity, tables.b24sync_run.c.status)
                           .where(tables.b24sync_run.c.run_id == result.run_id)).all()
    assert ("reconcile", "deal", "ok") in log and ("sync", "deal", "ok") in log
